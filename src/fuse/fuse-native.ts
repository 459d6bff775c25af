// Typed access to fuse-native (a CommonJS module without types), loaded on first use so that
// a daemon on a host without libfuse.so.2 still starts and can serve non-lazy snapshots.
import { createRequire } from 'node:module';

/** The stat fields fuse-native marshals (as uint32 words; times in milliseconds). */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** Every fuse-native callback takes 0 or a NEGATIVE errno first (see NOTES.md). */
export type DoneCb = (code: number) => void;

export interface FuseOps {
  init?(cb: DoneCb): void;
  access?(path: string, mode: number, cb: DoneCb): void;
  statfs?(path: string, cb: (code: number, st?: FuseStatfs) => void): void;
  getattr?(path: string, cb: (code: number, st?: FuseStat) => void): void;
  readdir?(path: string, cb: (code: number, names?: string[], stats?: FuseStat[]) => void): void;
  readlink?(path: string, cb: (code: number, target?: string) => void): void;
  open?(path: string, flags: number, cb: (code: number, fh?: number) => void): void;
  opendir?(path: string, flags: number, cb: (code: number, fh?: number) => void): void;
  /** cb's first argument is the byte count read, or a negative errno. */
  read?(path: string, fh: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
  release?(path: string, fh: number, cb: DoneCb): void;
  releasedir?(path: string, fh: number, cb: DoneCb): void;
  /** A null value answers ENODATA. */
  getxattr?(path: string, name: string, position: number, cb: (code: number, value?: Buffer | null) => void): void;
  listxattr?(path: string, cb: (code: number, names?: string[]) => void): void;
  // Writes: present only to answer EROFS.
  write?(path: string, fh: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
  create?(path: string, mode: number, cb: (code: number, fh?: number) => void): void;
  mkdir?(path: string, mode: number, cb: DoneCb): void;
  mknod?(path: string, mode: number, dev: number, cb: DoneCb): void;
  unlink?(path: string, cb: DoneCb): void;
  rmdir?(path: string, cb: DoneCb): void;
  rename?(src: string, dest: string, cb: DoneCb): void;
  link?(src: string, dest: string, cb: DoneCb): void;
  symlink?(target: string, path: string, cb: DoneCb): void;
  chmod?(path: string, mode: number, cb: DoneCb): void;
  chown?(path: string, uid: number, gid: number, cb: DoneCb): void;
  truncate?(path: string, size: number, cb: DoneCb): void;
  ftruncate?(path: string, fh: number, size: number, cb: DoneCb): void;
  utimens?(path: string, atime: number, mtime: number, cb: DoneCb): void;
  setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: DoneCb): void;
  removexattr?(path: string, name: string, cb: DoneCb): void;
}

/** The subset of fuse-native's options we use; each maps to one `-o` flag. */
export interface FuseNativeOptions {
  /** Per-op timeout in ms, per-op overrides, or false for none. */
  timeout?: number | false | Record<string, number | false>;
  debug?: boolean;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  kernelCache?: boolean;
  entryTimeout?: number;
  attrTimeout?: number;
  maxRead?: number;
  fsname?: string;
  subtype?: string;
}

export interface FuseInstance {
  readonly mnt: string;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

interface FuseClass {
  new (mnt: string, ops: FuseOps, opts?: FuseNativeOptions): FuseInstance;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
}

/** The two fuse-native internals that guardXattrBuffers replaces (index.js, `_op_getxattr` and `_op_listxattr`). */
type Signal = (code: number, buf: ArrayBufferLike) => void;
interface FuseInternals {
  ops: FuseOps;
  _op_getxattr?: (this: FuseInternals, signal: Signal, path: string, name: string, valueBuf: Buffer, position: number) => void;
  _op_listxattr?: (this: FuseInternals, signal: Signal, path: string, listBuf: Buffer) => void;
}

const ENODATA = -61;
const ERANGE = -34;

/**
 * fuse-native copies an xattr value (or name list) into the caller's buffer without checking
 * its size and returns the full length; libfuse then replies with more bytes than the buffer
 * it allocated, and the kernel rejects the reply, so the caller gets an error instead of the
 * ERANGE that tells it to retry with a bigger buffer. These replacements answer ERANGE.
 */
function guardXattrBuffers(proto: FuseInternals): void {
  if (typeof proto._op_getxattr === 'function') {
    proto._op_getxattr = function (signal, path, name, valueBuf, position) {
      const getxattr = this.ops.getxattr;
      if (!getxattr) return signal(ENODATA, valueBuf.buffer);
      getxattr(path, name, position, (code, value) => {
        if (code !== 0) return signal(code, valueBuf.buffer);
        if (!value) return signal(ENODATA, valueBuf.buffer);
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer);
      });
    };
  }
  if (typeof proto._op_listxattr === 'function') {
    proto._op_listxattr = function (signal, path, listBuf) {
      const listxattr = this.ops.listxattr;
      if (!listxattr) return signal(0, listBuf.buffer);
      listxattr(path, (code, names) => {
        if (code !== 0 || !names) return signal(code, listBuf.buffer);
        const size = names.reduce((n, x) => n + Buffer.byteLength(x) + 1, 0);
        if (listBuf.length === 0) return signal(size, listBuf.buffer);
        if (size > listBuf.length) return signal(ERANGE, listBuf.buffer);
        let at = 0;
        for (const x of names) {
          at += listBuf.write(x, at);
          listBuf[at++] = 0;
        }
        return signal(at, listBuf.buffer);
      });
    };
  }
}

let loaded: FuseClass | undefined;

/**
 * fuse-native's instance unmount first runs `fusermount -uz` itself (a lazy detach, outside
 * src/sys/exec.ts), then releases its native handles. Our mounter is the one place that
 * unmounts, so the static hook becomes a no-op and `instance.unmount()` only releases handles
 * after the kernel mount is already gone.
 */
export function loadFuse(): FuseClass {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const cls = require('fuse-native') as FuseClass & { prototype: FuseInternals };
  cls.unmount = (_mnt, cb) => process.nextTick(cb, null);
  guardXattrBuffers(cls.prototype);
  loaded = cls;
  return cls;
}
