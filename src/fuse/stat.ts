// Attributes as the layer filesystem hands them to the kernel: taken from bigint lstat results,
// so inode numbers keep all 64 bits and times keep their nanoseconds.
import type { BigIntStats, StatsFs } from 'node:fs';

export interface LayerAttr {
  ino: bigint;
  size: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** The kernel's new_encode_dev form, which glibc's dev_t matches for every real device. */
  rdev: number;
  blksize: number;
}

export interface LayerStatfs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  frsize: number;
  namelen: number;
}

export function toLayerAttr(s: BigIntStats): LayerAttr {
  return {
    ino: s.ino,
    size: Number(s.size),
    blocks: Number(s.blocks),
    atimeNs: s.atimeNs,
    mtimeNs: s.mtimeNs,
    ctimeNs: s.ctimeNs,
    mode: Number(s.mode),
    nlink: Number(s.nlink),
    uid: Number(s.uid),
    gid: Number(s.gid),
    rdev: Number(s.rdev & 0xffffffffn),
    blksize: Number(s.blksize),
  };
}

export function toLayerStatfs(s: StatsFs): LayerStatfs {
  return {
    blocks: s.blocks,
    bfree: s.bfree,
    bavail: s.bavail,
    files: s.files,
    ffree: s.ffree,
    bsize: s.bsize,
    frsize: s.bsize,
    namelen: 255,
  };
}
