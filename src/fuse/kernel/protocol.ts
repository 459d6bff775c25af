// The FUSE kernel protocol (include/uapi/linux/fuse.h), the part a read-only filesystem needs:
// opcodes, init flags, and the layouts of the requests we decode and the replies we encode.
// All integers are little-endian on the architectures we run on (x86_64, arm64).
import type { LayerAttr, LayerStatfs } from '../stat.js';

export const FUSE_KERNEL_VERSION = 7;
/** The protocol minor we speak; the kernel talks down to it. 7.31 has every flag we use. */
export const FUSE_OUR_MINOR = 31;
export const FUSE_ROOT_ID = 1n;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
/** The kernel refuses a read buffer smaller than this. */
export const MIN_READ_BUFFER = 8192;

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32,
  SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
  COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()]));

export function opName(opcode: number): string {
  return OP_NAMES.get(opcode) ?? `op${opcode}`;
}

export const InitFlag = {
  ASYNC_READ: 1 << 0,
  BIG_WRITES: 1 << 5,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
} as const;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
}

export function readInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    nodeid: b.readBigUInt64LE(16),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
}

export function readInitIn(body: Buffer): InitIn {
  return { major: body.readUInt32LE(0), minor: body.readUInt32LE(4), maxReadahead: body.readUInt32LE(8), flags: body.readUInt32LE(12) };
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  maxPages: number;
}

/** fuse_init_out as of 7.23+: 64 bytes. */
export function encodeInitOut(o: InitOut): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
  b.writeUInt32LE(o.minor, 4);
  b.writeUInt32LE(o.maxReadahead, 8);
  b.writeUInt32LE(o.flags >>> 0, 12);
  b.writeUInt16LE(o.maxBackground, 16);
  b.writeUInt16LE(o.congestionThreshold, 18);
  b.writeUInt32LE(o.maxWrite, 20);
  b.writeUInt32LE(1, 24); // time_gran: nanoseconds
  b.writeUInt16LE(o.maxPages, 28);
  return b;
}

/** A NUL-terminated name at the start of body (LOOKUP, GETXATTR after its fixed part). */
export function readCString(body: Buffer, offset = 0): Buffer {
  const end = body.indexOf(0, offset);
  return body.subarray(offset, end < 0 ? body.length : end);
}

export interface ReadIn {
  fh: bigint;
  offset: number;
  size: number;
}

export function readReadIn(body: Buffer): ReadIn {
  return { fh: body.readBigUInt64LE(0), offset: Number(body.readBigUInt64LE(8)), size: body.readUInt32LE(16) };
}

export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const DIRENT_BASE = 24;

function writeAttr(b: Buffer, at: number, a: LayerAttr): void {
  b.writeBigUInt64LE(a.ino, at);
  b.writeBigUInt64LE(BigInt(a.size), at + 8);
  b.writeBigUInt64LE(BigInt(a.blocks), at + 16);
  const [as, ans] = splitNs(a.atimeNs);
  const [ms, mns] = splitNs(a.mtimeNs);
  const [cs, cns] = splitNs(a.ctimeNs);
  b.writeBigInt64LE(as, at + 24);
  b.writeBigInt64LE(ms, at + 32);
  b.writeBigInt64LE(cs, at + 40);
  b.writeUInt32LE(ans, at + 48);
  b.writeUInt32LE(mns, at + 52);
  b.writeUInt32LE(cns, at + 56);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink >>> 0, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(a.rdev >>> 0, at + 76);
  b.writeUInt32LE(a.blksize >>> 0, at + 80);
  b.writeUInt32LE(0, at + 84); // flags
}

function splitNs(ns: bigint): [bigint, number] {
  let s = ns / 1_000_000_000n;
  let r = ns % 1_000_000_000n;
  if (r < 0n) {
    r += 1_000_000_000n;
    s -= 1n;
  }
  return [s, Number(r)];
}

export interface Validity {
  entrySec: number;
  attrSec: number;
}

/** fuse_entry_out; nodeid 0 with a timeout is a negative entry the kernel may cache. */
export function writeEntryOut(b: Buffer, at: number, nodeid: bigint, attr: LayerAttr | undefined, v: Validity): void {
  b.writeBigUInt64LE(nodeid, at);
  b.writeBigUInt64LE(0n, at + 8); // generation: node ids are never reused
  b.writeBigUInt64LE(BigInt(v.entrySec), at + 16);
  b.writeBigUInt64LE(BigInt(v.attrSec), at + 24);
  b.writeUInt32LE(0, at + 32);
  b.writeUInt32LE(0, at + 36);
  if (attr) writeAttr(b, at + 40, attr);
  else b.fill(0, at + 40, at + ENTRY_OUT_SIZE);
}

export function encodeEntryOut(nodeid: bigint, attr: LayerAttr | undefined, v: Validity): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_OUT_SIZE);
  writeEntryOut(b, 0, nodeid, attr, v);
  return b;
}

export function encodeAttrOut(attr: LayerAttr, attrSec: number): Buffer {
  const b = Buffer.allocUnsafe(ATTR_OUT_SIZE);
  b.writeBigUInt64LE(BigInt(attrSec), 0);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  writeAttr(b, 16, attr);
  return b;
}

export function encodeStatfsOut(s: LayerStatfs): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(s.blocks))), 0);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(s.bfree))), 8);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(s.bavail))), 16);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(s.files))), 24);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(s.ffree))), 32);
  b.writeUInt32LE(s.bsize >>> 0, 40);
  b.writeUInt32LE(s.namelen, 44);
  b.writeUInt32LE(s.frsize >>> 0, 48);
  return b;
}

/** fuse_getxattr_out / the size-only answer of LISTXATTR. */
export function encodeXattrSize(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return b;
}

const pad8 = (n: number): number => (n + 7) & ~7;

export function direntSize(nameLen: number, plus: boolean): number {
  return pad8((plus ? ENTRY_OUT_SIZE : 0) + DIRENT_BASE + nameLen);
}

/** One fuse_dirent (or fuse_direntplus) at `at`; `off` is the cookie of the NEXT entry. */
export function writeDirent(
  b: Buffer, at: number, name: Buffer, ino: bigint, off: number, mode: number,
  plus: { nodeid: bigint; attr: LayerAttr; v: Validity } | undefined,
): number {
  const size = direntSize(name.length, plus !== undefined);
  let p = at;
  if (plus) {
    // Node id 0: no entry for the kernel to keep (the dots); the whole entry stays zero.
    if (plus.nodeid === 0n) b.fill(0, p, p + ENTRY_OUT_SIZE);
    else writeEntryOut(b, p, plus.nodeid, plus.attr, plus.v);
    p += ENTRY_OUT_SIZE;
  }
  b.writeBigUInt64LE(ino, p);
  b.writeBigUInt64LE(BigInt(off), p + 8);
  b.writeUInt32LE(name.length, p + 16);
  b.writeUInt32LE((mode >>> 12) & 0o17, p + 20); // DT_* is S_IFMT >> 12
  name.copy(b, p + DIRENT_BASE);
  b.fill(0, p + DIRENT_BASE + name.length, at + size);
  return size;
}
