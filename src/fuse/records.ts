// What the store pool answers (native/cvmfs_sys.c), decoded: one record per entry with its
// fuse_attr, its xattrs and two facts learnt in the same breath (a directory's opaque marker,
// an AUFS whiteout found in place of a name), and a directory as its translated listing.
// Pure: no I/O, so the whiteout translation is testable without a kernel.
import { E } from './kernel/errno.js';
import { ATTR_SIZE, Attr } from './kernel/protocol.js';
import { classifyName } from './whiteout.js';

/** Record flags set by the native side. */
export const RecordFlag = { OPAQUE: 1, XATTR_ERROR: 4, WHITEOUT: 8, NOT_OPAQUE: 16 } as const;
/** A value too big to come along with its entry: asked for by name when wanted. */
const VALUE_LATER = 0xffffffff;
const REC_HEAD = 16;

/** Names (binary strings) to values; null for a value to ask the store for by name. */
export type XattrMap = ReadonlyMap<string, Buffer | null>;
/** A node's xattrs, or 'error' when the store failed to list them. */
export type Xattrs = XattrMap | 'error';
export const NO_XATTRS: XattrMap = new Map();

/** What the kernel is told about one entry. */
export interface EntryInfo {
  /** Its fuse_attr (88 bytes) is buf[at, at + 88); whiteouts are already 0/0 character devices. */
  readonly buf: Buffer;
  readonly at: number;
  readonly whiteout: boolean;
  /**
   * A directory that hides the lower layers (it holds `.wh..wh..opq`); undefined while unknown
   * (a directory seen in its parent's listing and not listed itself yet).
   */
  opaque: boolean | undefined;
  readonly xattrs: Xattrs;
}

export interface RawRecord {
  /** Binary string: one char per byte, as the kernel names things. */
  readonly name: string;
  /** 0 or -errno of the entry's own stat. */
  readonly err: number;
  readonly flags: number;
  readonly attrAt: number;
  readonly xattrAt: number;
  readonly xattrLen: number;
  /** Where the next record starts. */
  readonly next: number;
}

function checkRecord(buf: Buffer, at: number): number {
  if (at + REC_HEAD + ATTR_SIZE > buf.length) throw new RangeError(`store record at ${at} runs past the answer (${buf.length} bytes)`);
  const recLen = buf.readUInt32LE(at);
  const nameLen = buf.readUInt16LE(at + 8);
  const xattrLen = buf.readUInt32LE(at + 12);
  if (recLen < REC_HEAD + ATTR_SIZE || at + recLen > buf.length || REC_HEAD + ATTR_SIZE + nameLen + xattrLen > recLen) {
    throw new RangeError(`malformed store record at ${at}`);
  }
  return recLen;
}

export function readRecord(buf: Buffer, at: number): RawRecord {
  const recLen = checkRecord(buf, at);
  const nameLen = buf.readUInt16LE(at + 8);
  const nameAt = at + REC_HEAD + ATTR_SIZE;
  return {
    name: buf.toString('latin1', nameAt, nameAt + nameLen),
    err: buf.readInt32LE(at + 4),
    flags: buf.readUInt8(at + 10),
    attrAt: at + REC_HEAD,
    xattrAt: nameAt + nameLen,
    xattrLen: buf.readUInt32LE(at + 12),
    next: at + recLen,
  };
}

/** {u16 nameLen, u16 0, u32 valueLen, name, value}...; names as binary strings. */
export function parseXattrs(buf: Buffer, at: number, len: number): XattrMap {
  if (len === 0) return NO_XATTRS;
  const m = new Map<string, Buffer | null>();
  const end = at + len;
  for (let p = at; p < end;) {
    const nl = buf.readUInt16LE(p);
    const raw = buf.readUInt32LE(p + 4);
    const vl = raw === VALUE_LATER ? 0 : raw;
    const n = buf.toString('latin1', p + 8, p + 8 + nl);
    m.set(n, raw === VALUE_LATER ? null : Buffer.from(buf.subarray(p + 8 + nl, p + 8 + nl + vl)));
    p += 8 + nl + vl;
  }
  return m;
}

function xattrsAt(buf: Buffer, flags: number, xattrAt: number, xattrLen: number): Xattrs {
  if (flags & RecordFlag.XATTR_ERROR) return 'error';
  return parseXattrs(buf, xattrAt, xattrLen);
}

function opaqueOf(flags: number): boolean | undefined {
  if (flags & RecordFlag.OPAQUE) return true;
  if (flags & RecordFlag.NOT_OPAQUE) return false;
  return undefined;
}

const S_IFCHR = 0o020000;

/** The overlayfs whiteout shown in place of an AUFS marker: a 0/0 character device, mode 0. */
export function writeWhiteoutAttr(dst: Buffer, dstAt: number, marker: Buffer, markerAt: number): void {
  marker.copy(dst, dstAt, markerAt, markerAt + ATTR_SIZE);
  dst.fill(0, dstAt + Attr.SIZE, dstAt + Attr.SIZE + 16); // size, blocks
  dst.writeUInt32LE(S_IFCHR, dstAt + Attr.MODE);
  dst.writeUInt32LE(1, dstAt + Attr.NLINK);
  dst.writeUInt32LE(0, dstAt + Attr.RDEV);
}

/** An entry whose own stat failed is listed with an unknown type; ino must not be 0 (libc skips those). */
function writeUnknownAttr(dst: Buffer, at: number): void {
  dst.fill(0, at, at + ATTR_SIZE);
  dst.writeUInt32LE(0xffffffff, at + Attr.INO);
  dst.writeUInt32LE(1, at + Attr.NLINK);
}

/** One record as an entry; a whiteout record (LOOKUP found `.wh.<name>`) becomes a 0/0 device. */
export function entryOf(buf: Buffer, r: RawRecord): EntryInfo {
  const attr = Buffer.allocUnsafe(ATTR_SIZE);
  const whiteout = (r.flags & RecordFlag.WHITEOUT) !== 0;
  if (whiteout) writeWhiteoutAttr(attr, 0, buf, r.attrAt);
  else buf.copy(attr, 0, r.attrAt, r.attrAt + ATTR_SIZE);
  return {
    buf: attr, at: 0, whiteout, opaque: whiteout ? false : opaqueOf(r.flags),
    xattrs: whiteout ? NO_XATTRS : xattrsAt(buf, r.flags, r.xattrAt, r.xattrLen),
  };
}

/** A directory as the kernel sees it after translation; compact, because big ones are cached. */
export interface Listing {
  readonly self: EntryInfo;
  /** Shown names in order: the real entries as the store lists them, then the whiteouts. */
  readonly names: readonly string[];
  /** names.length fuse_attrs, back to back. */
  readonly attrs: Buffer;
  readonly flags: Uint8Array;
  /** Xattrs of the entries that have any, by index; entries missing here have none. */
  readonly xattrs: ReadonlyMap<number, Xattrs>;
  readonly byName: ReadonlyMap<string, number>;
  /** The errno (negative) of entries whose stat failed, by index; they are listed with mode 0. */
  readonly errors: ReadonlyMap<number, number>;
  /** What this listing costs the cache, roughly, in bytes. */
  readonly bytes: number;
}

/** The entry at index i of a listing; it shares the listing's attributes (no copy). */
export function listingEntry(l: Listing, i: number): EntryInfo {
  const f = l.flags[i] ?? 0;
  const whiteout = (f & RecordFlag.WHITEOUT) !== 0;
  return { buf: l.attrs, at: i * ATTR_SIZE, whiteout, opaque: whiteout ? false : opaqueOf(f), xattrs: l.xattrs.get(i) ?? NO_XATTRS };
}

/** Per-entry cost of the JS objects behind a cached listing, in bytes (name string, map slot, array slot). */
const ENTRY_OVERHEAD = 72;

/** One directory of an OP_LIST answer; rel is its path in the layer ('' for the root). */
export interface ListedDir {
  readonly rel: string;
  readonly listing: Listing;
}

/**
 * Decodes an OP_LIST answer: u32 blocks, u32 0, then one block per directory listed, the one
 * asked for first and then those listed along with it. A block is u32 count,
 * u16 relLen, 10 bytes of 0, rel padded to 8, the directory's own record, one record per name.
 */
export function decodeListAnswer(buf: Buffer): ListedDir[] {
  return decodeListAnswerWithFrontier(buf).dirs;
}

/**
 * The same, with what follows the blocks when the answer has it: the frontier, directories
 * the walk reached and did not list (u32 count, then a u16 length and the path, each).
 */
export function decodeListAnswerWithFrontier(buf: Buffer): { dirs: ListedDir[]; frontier: string[] } {
  const blocks = buf.readUInt32LE(0);
  const dirs: ListedDir[] = [];
  let at = 8;
  for (let i = 0; i < blocks; i++) {
    if (at + 16 > buf.length) throw new RangeError(`listing block ${i} runs past the answer`);
    const count = buf.readUInt32LE(at);
    const relLen = buf.readUInt16LE(at + 4);
    const rel = buf.toString('latin1', at + 16, at + 16 + relLen);
    const { listing, next } = decodeListing(buf, at + 16 + ((relLen + 7) & ~7), count);
    dirs.push({ rel, listing });
    at = next;
  }
  const frontier: string[] = [];
  if (at + 4 <= buf.length) {
    const n = buf.readUInt32LE(at);
    at += 4;
    for (let i = 0; i < n; i++) {
      if (at + 2 > buf.length) throw new RangeError('listing frontier runs past the answer');
      const l = buf.readUInt16LE(at);
      if (at + 2 + l > buf.length) throw new RangeError('listing frontier runs past the answer');
      frontier.push(buf.toString('latin1', at + 2, at + 2 + l));
      at += 2 + l;
    }
  }
  return { dirs, frontier };
}

/**
 * Decodes one directory: its own record, then one record per name. AUFS markers are translated (see whiteout.ts): `.wh.<x>` becomes a whiteout named x
 * unless the layer has a real x, `.wh..wh..opq` marks the directory opaque, AUFS metadata and
 * the markers themselves are never shown. An entry that vanished between the listing and its
 * stat is left out; one whose stat failed otherwise is shown with an unknown type, so that one
 * broken entry does not hide its siblings (its lookup reports the error).
 */
export function decodeListing(buf: Buffer, from: number, count: number): { listing: Listing; next: number } {
  const selfRec = readRecord(buf, from);
  if (selfRec.err !== 0) throw new RangeError(`the listed directory's own stat failed (${selfRec.err})`);
  const self = entryOf(buf, selfRec);
  // First pass: the plain names, kept in place; markers noted for the second pass.
  const names: string[] = [];
  const recAt: number[] = [];
  const byName = new Map<string, number>();
  let markers: { target: string; at: number }[] | undefined;
  let opaqueMarker = false;
  let at = selfRec.next;
  for (let i = 0; i < count; i++) {
    const recLen = checkRecord(buf, at);
    const nameLen = buf.readUInt16LE(at + 8);
    const err = buf.readInt32LE(at + 4);
    const nameAt = at + REC_HEAD + ATTR_SIZE;
    const name = buf.toString('latin1', nameAt, nameAt + nameLen);
    if (name.startsWith('.wh.')) {
      const c = classifyName(name);
      if (err === 0 && c.kind === 'opaque-marker') opaqueMarker = true;
      else if (err === 0 && c.kind === 'whiteout') (markers ??= []).push({ target: c.target, at });
    } else if (err !== -E.ENOENT) {
      byName.set(name, names.length);
      names.push(name);
      recAt.push(at);
    }
    at += recLen;
  }
  const plainCount = names.length;
  for (const m of markers ?? []) {
    if (byName.has(m.target)) continue;
    byName.set(m.target, names.length);
    names.push(m.target);
    recAt.push(m.at);
  }
  const n = names.length;
  const attrs = Buffer.allocUnsafe(n * ATTR_SIZE);
  const flags = new Uint8Array(n);
  const xattrs = new Map<number, Xattrs>();
  const errors = new Map<number, number>();
  let bytes = n * (ATTR_SIZE + 1 + ENTRY_OVERHEAD) + 256;
  for (let i = 0; i < n; i++) {
    const r = recAt[i] as number;
    const rAttr = r + REC_HEAD;
    bytes += (names[i] as string).length;
    if (i >= plainCount) {
      writeWhiteoutAttr(attrs, i * ATTR_SIZE, buf, rAttr);
      flags[i] = RecordFlag.WHITEOUT;
      continue;
    }
    const err = buf.readInt32LE(r + 4);
    if (err !== 0) {
      errors.set(i, err);
      writeUnknownAttr(attrs, i * ATTR_SIZE);
      flags[i] = RecordFlag.XATTR_ERROR;
      continue;
    }
    buf.copy(attrs, i * ATTR_SIZE, rAttr, rAttr + ATTR_SIZE);
    const f = buf.readUInt8(r + 10);
    flags[i] = f & (RecordFlag.OPAQUE | RecordFlag.NOT_OPAQUE | RecordFlag.XATTR_ERROR);
    const xl = buf.readUInt32LE(r + 12);
    if (xl > 0 || (f & RecordFlag.XATTR_ERROR)) {
      const nl = buf.readUInt16LE(r + 8);
      const x = xattrsAt(buf, f, r + REC_HEAD + ATTR_SIZE + nl, xl);
      xattrs.set(i, x);
      if (typeof x !== 'string') for (const [k, v] of x) bytes += k.length + (v?.length ?? 0) + 48;
    }
  }
  // The marker seen in the listing settles whether the directory is opaque.
  return { listing: { self: { ...self, opaque: opaqueMarker }, names, attrs, flags, xattrs, byName, errors, bytes }, next: at };
}

export function isDirAttr(a: Buffer, at = 0): boolean {
  return (a.readUInt32LE(at + Attr.MODE) & 0o170000) === 0o040000;
}

export function isRegAttr(a: Buffer, at = 0): boolean {
  return (a.readUInt32LE(at + Attr.MODE) & 0o170000) === 0o100000;
}

export function isLinkAttr(a: Buffer, at = 0): boolean {
  return (a.readUInt32LE(at + Attr.MODE) & 0o170000) === 0o120000;
}
