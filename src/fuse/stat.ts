// Conversions from Node's stat results to what fuse-native can marshal (uint32 words).
import type { Stats, StatsFs } from 'node:fs';
import type { FuseStat, FuseStatfs } from './fuse-native.js';

const TWO32 = 4294967296;

/**
 * fuse-native passes st_ino as 32 bits. Folding the high word in (instead of cutting it off)
 * keeps stores with generation bits in the high word (XFS inode64, cvmfs) from colliding on
 * the low word alone. Hardlinks still share a number, which is what tar and du look at.
 */
export function foldIno(ino: number): number {
  if (ino < TWO32) return ino;
  return ((ino % TWO32) ^ Math.floor(ino / TWO32)) >>> 0;
}

export function toFuseStat(s: Stats): FuseStat {
  return {
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    dev: s.dev >>> 0,
    nlink: s.nlink,
    ino: foldIno(s.ino),
    rdev: s.rdev >>> 0,
    blksize: s.blksize,
    blocks: s.blocks,
    atime: s.atimeMs,
    mtime: s.mtimeMs,
    ctime: s.ctimeMs,
  };
}

const MAX32 = TWO32 - 1;

/** Scales block counts into 32 bits by growing the block size, so df on a huge store stays right. */
export function toFuseStatfs(s: StatsFs): FuseStatfs {
  let bsize = s.bsize;
  let { blocks, bfree, bavail } = s;
  while (blocks > MAX32 && bsize < 2 ** 30) {
    bsize *= 2;
    blocks = Math.floor(blocks / 2);
    bfree = Math.floor(bfree / 2);
    bavail = Math.floor(bavail / 2);
  }
  const clamp = (n: number): number => Math.min(Math.max(0, n), MAX32);
  return {
    bsize,
    frsize: bsize,
    blocks: clamp(blocks),
    bfree: clamp(bfree),
    bavail: clamp(bavail),
    files: clamp(s.files),
    ffree: clamp(s.ffree),
    favail: clamp(s.ffree),
    fsid: 0,
    flag: 1, // ST_RDONLY
    namemax: 255,
  };
}
