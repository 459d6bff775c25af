// How much a layer may unpack to. A digest only proves that the registry served the blob the
// manifest names, not that the blob is sane: a gzip of zeros shrinks about 1000 times, so a
// 200 KiB blob can fill 200 MiB, and zstd shrinks zeros further still. The bytes that leave the
// decompressor (the tar stream: file data, headers, padding) are counted before tar sees them,
// and the layer is refused before tar gets the first byte past the bound. The tar stream is an
// upper bound of the file data tar writes, so the store never holds more than the bound of a
// refused layer.
//
// The default ratio, 100: gzip shrinks real layers 2 to 4 times (binaries, libraries), text and
// source trees up to 10 to 20 times; a layer of mostly zeros (a preallocated file) is the rare
// genuine exception and a bomb is ~1000 times. 100 leaves real layers 5 to 50 times headroom
// and stops a bomb at a tenth of what it would write. Apache POI guards zip files with the
// same factor (ZipSecureFile's minimum inflate ratio, 0.01). A small layer may always unpack to
// UNPACK_FLOOR_BYTES: an empty tar is 10 KiB of zeros that gzip makes 45 bytes, which is
// harmless and common.
//
// Entries are counted as well: a bomb of millions of empty files uses up inodes, not bytes. The
// count follows the tar headers in the stream (ustar, GNU and pax, as GNU tar reads them); the
// bound on bytes does not depend on it.
import { Transform, type TransformCallback } from 'node:stream';

export const DEFAULT_MAX_UNPACK_RATIO = 100;
export const UNPACK_FLOOR_BYTES = 1024 * 1024;
// The biggest real layers hold a few hundred thousand files (a conda environment, TeX Live, a
// HEP software release); ten times the biggest we know of.
export const DEFAULT_MAX_UNPACK_ENTRIES = 2_000_000;

export interface UnpackBound {
  /** Unpacked bytes allowed per compressed byte. */
  ratio: number;
  maxEntries: number;
}

/** The bytes a layer of this compressed size may unpack to. */
export function maxUnpackedBytes(compressedSize: number, bound: UnpackBound): number {
  return Math.max(UNPACK_FLOOR_BYTES, Math.ceil(compressedSize * bound.ratio));
}

export class BoundExceeded extends Error {
  constructor(readonly what: 'bytes' | 'entries', readonly limit: number) {
    super(what === 'bytes' ? `unpacks to more than ${limit} bytes` : `holds more than ${limit} entries`);
  }
}

const BLOCK = 512;
// A pax header larger than this is skipped rather than read for a size record.
const MAX_PAX_BYTES = 1024 * 1024;

/**
 * Passes a tar stream through, counting its bytes and its entries; fails with BoundExceeded
 * before passing on the chunk that would cross either bound.
 */
export class TarBounds extends Transform {
  bytes = 0;
  entries = 0;
  private header = Buffer.alloc(0);
  /** Bytes of entry data (and padding) still to pass before the next header. */
  private skip = 0;
  /** Data of a pax extended header being collected, and how much of it is still to come. */
  private pax: Buffer[] | undefined;
  private paxLeft = 0;
  private paxPadding = 0;
  /** The size a pax header set for the next entry. */
  private nextSize: number | undefined;
  /** The archive ended, or its headers stopped making sense: tar judges the rest itself. */
  private done = false;

  constructor(private readonly maxBytes: number, private readonly maxEntries: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.bytes + chunk.length > this.maxBytes) {
      cb(new BoundExceeded('bytes', this.maxBytes));
      return;
    }
    this.bytes += chunk.length;
    if (!this.done) this.scan(chunk);
    if (this.entries > this.maxEntries) {
      cb(new BoundExceeded('entries', this.maxEntries));
      return;
    }
    cb(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.done) {
      if (this.pax) {
        const n = Math.min(this.paxLeft, chunk.length - off);
        this.pax.push(chunk.subarray(off, off + n));
        this.paxLeft -= n;
        off += n;
        if (this.paxLeft === 0) {
          this.nextSize = paxSize(Buffer.concat(this.pax));
          this.pax = undefined;
          this.skip = this.paxPadding;
        }
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        this.skip -= n;
        off += n;
        continue;
      }
      const n = Math.min(BLOCK - this.header.length, chunk.length - off);
      this.header = Buffer.concat([this.header, chunk.subarray(off, off + n)]);
      off += n;
      if (this.header.length === BLOCK) {
        const h = this.header;
        this.header = Buffer.alloc(0);
        this.onHeader(h);
      }
    }
  }

  private onHeader(h: Buffer): void {
    if (!validChecksum(h)) {
      // A zero block ends the archive; anything else unreadable is tar's to report.
      this.done = true;
      return;
    }
    const type = String.fromCharCode(h[156] ?? 0);
    const own = headerSize(h);
    if (own === undefined) {
      this.done = true;
      return;
    }
    if (type === 'x' || type === 'X') {
      // A pax header for the next entry: read it for a "size" record (files over 8 GiB).
      if (own > 0 && own <= MAX_PAX_BYTES) {
        this.pax = [];
        this.paxLeft = own;
        this.paxPadding = padTo(own) - own;
      } else {
        this.nextSize = undefined;
        this.skip = padTo(own);
      }
      return;
    }
    // Global pax headers, GNU long names and link names, and volume labels describe entries or
    // the archive; they are not entries themselves.
    if (type === 'g' || type === 'L' || type === 'K' || type === 'V') {
      this.skip = padTo(own);
      return;
    }
    this.skip = padTo(this.nextSize ?? own);
    this.nextSize = undefined;
    this.entries++;
  }
}

const padTo = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

function validChecksum(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
  if (sum === 8 * 0x20) return false; // a zero block
  const field = h.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/g, '').trim();
  return /^[0-7]+$/.test(field) && parseInt(field, 8) === sum;
}

/** The 12-byte size field: octal digits, or base-256 when its first byte has the high bit set. */
function headerSize(h: Buffer): number | undefined {
  const f = h.subarray(124, 136);
  if (((f[0] as number) & 0x80) !== 0) {
    let v = (f[0] as number) & 0x7f;
    for (let i = 1; i < f.length; i++) v = v * 256 + (f[i] as number);
    return Number.isSafeInteger(v) ? v : undefined;
  }
  const text = f.toString('latin1').replace(/[\0 ]+$/g, '').trim();
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

/** The "size" record of a pax header ("<len> size=<decimal>\n"), if it has one. */
function paxSize(data: Buffer): number | undefined {
  const m = /(?:^|\n)\d+ size=(\d+)\n/.exec(data.toString('latin1'));
  if (!m) return undefined;
  const v = Number(m[1]);
  return Number.isSafeInteger(v) ? v : undefined;
}
