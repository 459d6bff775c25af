// The FUSE kernel protocol (include/uapi/linux/fuse.h), the part a read-only filesystem needs:
// the opcode table with each request's fixed input size, the init flags, and the layouts of
// the replies we encode. Integers are little-endian on the architectures we run (x86_64, arm64).
// Numbers that are 64 bits on the wire (node ids, uniques) are kept as two 32-bit halves or as
// a double: node ids are ours and stay far below 2^53.

export const FUSE_KERNEL_VERSION = 7;
/** The protocol minor we speak; the kernel talks down to it. 7.40 brings passthrough. */
export const FUSE_OUR_MINOR = 41;
/** The oldest minor we accept: READDIRPLUS, NO_OPEN_SUPPORT and a 64-byte init_out. */
export const FUSE_MIN_MINOR = 23;
export const FUSE_ROOT_ID = 1;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32,
  SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
  COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;

/** What the transport knows of an opcode before anyone handles it. */
export interface OpInfo {
  readonly name: string;
  /** Bytes of fixed input after the header; a shorter request is malformed. */
  readonly inSize: number;
  /** The input ends with a NUL-terminated name (LOOKUP, GETXATTR, ...). */
  readonly name0: boolean;
  /** The kernel expects no reply (FORGET, BATCH_FORGET, INTERRUPT's own answer is optional). */
  readonly noReply: boolean;
}

const info = (name: string, inSize: number, name0 = false, noReply = false): OpInfo => ({ name, inSize, name0, noReply });

// Fixed input sizes from fuse.h for the minors we speak (fuse_read_in is 40 bytes since 7.9,
// fuse_getattr_in 16, fuse_open_in 8, fuse_release_in 24, fuse_getxattr_in 8, ...).
const OPS: ReadonlyMap<number, OpInfo> = new Map<number, OpInfo>([
  [Op.LOOKUP, info('lookup', 0, true)],
  [Op.FORGET, info('forget', 8, false, true)],
  [Op.GETATTR, info('getattr', 16)],
  [Op.SETATTR, info('setattr', 88)],
  [Op.READLINK, info('readlink', 0)],
  [Op.SYMLINK, info('symlink', 0, true)],
  [Op.MKNOD, info('mknod', 8, true)],
  [Op.MKDIR, info('mkdir', 8, true)],
  [Op.UNLINK, info('unlink', 0, true)],
  [Op.RMDIR, info('rmdir', 0, true)],
  [Op.RENAME, info('rename', 8, true)],
  [Op.LINK, info('link', 8, true)],
  [Op.OPEN, info('open', 8)],
  [Op.READ, info('read', 40)],
  [Op.WRITE, info('write', 40)],
  [Op.STATFS, info('statfs', 0)],
  [Op.RELEASE, info('release', 24)],
  [Op.FSYNC, info('fsync', 16)],
  [Op.SETXATTR, info('setxattr', 8, true)],
  [Op.GETXATTR, info('getxattr', 8, true)],
  [Op.LISTXATTR, info('listxattr', 8)],
  [Op.REMOVEXATTR, info('removexattr', 0, true)],
  [Op.FLUSH, info('flush', 24)],
  [Op.INIT, info('init', 16)],
  [Op.OPENDIR, info('opendir', 8)],
  [Op.READDIR, info('readdir', 40)],
  [Op.RELEASEDIR, info('releasedir', 24)],
  [Op.FSYNCDIR, info('fsyncdir', 16)],
  [Op.GETLK, info('getlk', 48)],
  [Op.SETLK, info('setlk', 48)],
  [Op.SETLKW, info('setlkw', 48)],
  [Op.ACCESS, info('access', 8)],
  [Op.CREATE, info('create', 16, true)],
  [Op.INTERRUPT, info('interrupt', 8, false, true)],
  [Op.BMAP, info('bmap', 16)],
  [Op.DESTROY, info('destroy', 0)],
  [Op.IOCTL, info('ioctl', 32)],
  [Op.POLL, info('poll', 24)],
  [Op.BATCH_FORGET, info('batch_forget', 8, false, true)],
  [Op.FALLOCATE, info('fallocate', 32)],
  [Op.READDIRPLUS, info('readdirplus', 40)],
  [Op.RENAME2, info('rename2', 16, true)],
  [Op.LSEEK, info('lseek', 24)],
  [Op.COPY_FILE_RANGE, info('copy_file_range', 56)],
  [Op.SYNCFS, info('syncfs', 8)],
  [Op.TMPFILE, info('tmpfile', 16)],
  [Op.STATX, info('statx', 24)],
]);

export function opInfo(opcode: number): OpInfo | undefined {
  return OPS.get(opcode);
}

export function opName(opcode: number): string {
  return OPS.get(opcode)?.name ?? `op${opcode}`;
}

/** Requests that would change the layer: answered EROFS, whatever they name. */
export const WRITE_OPS: ReadonlySet<number> = new Set<number>([
  Op.SETATTR, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME, Op.RENAME2, Op.LINK, Op.WRITE,
  Op.SETXATTR, Op.REMOVEXATTR, Op.CREATE, Op.FALLOCATE, Op.TMPFILE, Op.COPY_FILE_RANGE,
]);

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
  INIT_EXT: 1 << 30,
} as const;

/** Flags 32..63 travel shifted down in flags2. */
export const InitFlag2 = {
  PASSTHROUGH: 1 << (37 - 32),
  HAS_RESEND: 1 << (39 - 32),
} as const;

export const OpenFlag = {
  KEEP_CACHE: 1 << 1,
  CACHE_DIR: 1 << 3,
  PASSTHROUGH: 1 << 7,
} as const;

/** Notification codes travel in the error field of an out header with unique 0. */
export const NOTIFY_RESEND = 7;
/** The kernel marks a resent request with this bit of the unique. */
export const UNIQUE_RESEND_HI = 0x80000000;

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  /** 0 unless flags has INIT_EXT. */
  flags2: number;
}

export function readInitIn(body: Buffer): InitIn {
  const flags = body.readUInt32LE(12);
  const ext = (flags & InitFlag.INIT_EXT) !== 0 && body.length >= 20;
  return { major: body.readUInt32LE(0), minor: body.readUInt32LE(4), maxReadahead: body.readUInt32LE(8), flags, flags2: ext ? body.readUInt32LE(16) : 0 };
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  maxPages: number;
  /** Stacking depth of the backing files passthrough may use; 0 without passthrough. */
  maxStackDepth: number;
}

/** fuse_init_out as of 7.40: 64 bytes (the kernel reads what our minor promises). */
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
  b.writeUInt32LE(o.flags2 >>> 0, 32);
  b.writeUInt32LE(o.maxStackDepth, 36);
  return b;
}

/** A NUL-terminated name at `offset` of body; undefined when there is no NUL. */
export function readCString(body: Buffer, offset = 0): Buffer | undefined {
  const end = body.indexOf(0, offset);
  return end < 0 ? undefined : body.subarray(offset, end);
}

export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const DIRENT_BASE = 24;

/** Byte offsets inside a fuse_attr. */
export const Attr = { INO: 0, SIZE: 8, MODE: 60, NLINK: 64, RDEV: 76 } as const;

export function attrMode(a: Buffer, at = 0): number {
  return a.readUInt32LE(at + Attr.MODE);
}

/** The inode number as a double: exact below 2^53, which is what comparing two of them needs. */
export function attrIno(a: Buffer, at = 0): number {
  return a.readUInt32LE(at + Attr.INO) + a.readUInt32LE(at + Attr.INO + 4) * 0x1_0000_0000;
}

export function writeU64(b: Buffer, v: number, at: number): void {
  b.writeUInt32LE(v >>> 0, at);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000) >>> 0, at + 4);
}

export function readU64(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x1_0000_0000;
}

export interface Validity {
  entrySec: number;
  attrSec: number;
}

/** fuse_entry_out; node id 0 with a timeout is a negative entry the kernel may cache. */
export function writeEntryOut(b: Buffer, at: number, nodeid: number, attr: Buffer | undefined, attrAt: number, v: Validity): void {
  writeU64(b, nodeid, at);
  writeU64(b, 0, at + 8); // generation: node ids are never reused
  writeU64(b, v.entrySec, at + 16);
  writeU64(b, v.attrSec, at + 24);
  b.writeUInt32LE(0, at + 32);
  b.writeUInt32LE(0, at + 36);
  if (attr) attr.copy(b, at + 40, attrAt, attrAt + ATTR_SIZE);
  else b.fill(0, at + 40, at + ENTRY_OUT_SIZE);
}

export function writeAttrOut(b: Buffer, at: number, attr: Buffer, attrAt: number, attrSec: number): void {
  writeU64(b, attrSec, at);
  b.writeUInt32LE(0, at + 8);
  b.writeUInt32LE(0, at + 12);
  attr.copy(b, at + 16, attrAt, attrAt + ATTR_SIZE);
}

export function writeOpenOut(b: Buffer, at: number, fh: number, openFlags: number, backingId: number): void {
  writeU64(b, fh, at);
  b.writeUInt32LE(openFlags >>> 0, at + 8);
  b.writeInt32LE(backingId, at + 12);
}

const pad8 = (n: number): number => (n + 7) & ~7;

export function direntSize(nameLen: number, plus: boolean): number {
  return pad8((plus ? ENTRY_OUT_SIZE : 0) + DIRENT_BASE + nameLen);
}

/**
 * One fuse_dirent (or fuse_direntplus) at `at`; `off` is the cookie of the NEXT entry. With
 * plus, node id 0 makes the kernel keep no entry (the dots).
 */
export function writeDirent(
  b: Buffer, at: number, name: string, nameLen: number, attr: Buffer, attrAt: number, off: number,
  plus: { nodeid: number; v: Validity } | undefined,
): number {
  const size = direntSize(nameLen, plus !== undefined);
  let p = at;
  if (plus) {
    if (plus.nodeid === 0) b.fill(0, p, p + ENTRY_OUT_SIZE);
    else writeEntryOut(b, p, plus.nodeid, attr, attrAt, plus.v);
    p += ENTRY_OUT_SIZE;
  }
  attr.copy(b, p, attrAt + Attr.INO, attrAt + Attr.INO + 8);
  writeU64(b, off, p + 8);
  b.writeUInt32LE(nameLen, p + 16);
  b.writeUInt32LE((attrMode(attr, attrAt) >>> 12) & 0o17, p + 20); // DT_* is S_IFMT >> 12
  b.write(name, p + DIRENT_BASE, nameLen, 'latin1');
  b.fill(0, p + DIRENT_BASE + nameLen, at + size);
  return size;
}

/** fuse_getxattr_out / the size-only answer of LISTXATTR. */
export function encodeXattrSize(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return b;
}
