// The protobuf wire format (proto3) for the messages in proto/, driven by the field tables that
// scripts/gen-proto.mjs generates into generated/. One codec for the daemon's gRPC server, the
// Snapshots client and the CRI client of `pull`, with no .proto parsed at run time.
//
// Decoding follows what @grpc/proto-loader gave before (keepCase, longs as numbers, enums as
// names, defaults filled in): every field is present, absent messages are null. Unknown fields
// are skipped; bytes that are not a protobuf message throw a ProtoDecodeError saying why.

export type ScalarKind =
  | 'string' | 'bytes' | 'bool'
  | 'int32' | 'uint32' | 'sint32' | 'fixed32' | 'sfixed32'
  | 'int64' | 'uint64' | 'sint64' | 'fixed64' | 'sfixed64'
  | 'double' | 'float';

export type FieldSpec =
  | { readonly name: string; readonly number: number; readonly kind: ScalarKind; readonly repeated?: boolean }
  | { readonly name: string; readonly number: number; readonly kind: 'enum' | 'message'; readonly type: string; readonly repeated?: boolean }
  | { readonly name: string; readonly number: number; readonly kind: 'map'; readonly map: MapValueSpec };

export type MapValueSpec = { readonly kind: ScalarKind } | { readonly kind: 'enum' | 'message'; readonly type: string };

export interface Schema {
  readonly messages: Readonly<Record<string, readonly FieldSpec[]>>;
  readonly enums: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** What an encoder accepts for a message: any field may be left out (it is then the default). */
export type Input<T> = T extends Buffer ? Buffer
  : T extends readonly (infer U)[] ? readonly Input<U>[]
  : T extends object ? { readonly [K in keyof T]?: Input<T[K]> | null | undefined }
  : T;

export class ProtoDecodeError extends Error {
  override name = 'ProtoDecodeError';
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const TWO_32 = 2 ** 32;

function wireTypeOf(kind: ScalarKind | 'enum' | 'message' | 'map'): number {
  switch (kind) {
    case 'string': case 'bytes': case 'message': case 'map': return WIRE_LEN;
    case 'fixed64': case 'sfixed64': case 'double': return WIRE_FIXED64;
    case 'fixed32': case 'sfixed32': case 'float': return WIRE_FIXED32;
    default: return WIRE_VARINT;
  }
}

function defaultOf(f: FieldSpec): unknown {
  if (f.kind === 'map') return {};
  if (f.repeated) return [];
  switch (f.kind) {
    case 'string': return '';
    case 'bytes': return Buffer.alloc(0);
    case 'bool': return false;
    case 'message': return null;
    case 'enum': return enumDefault;
    default: return 0;
  }
}
const enumDefault = Symbol('enum default');

// ---- writing ----------------------------------------------------------------------------------

class Writer {
  private chunks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(256);
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(256, n));
    this.pos = 0;
  }

  /** An unsigned varint of up to 2^53, or a 64-bit two's complement one given as a bigint. */
  varint(v: number | bigint): void {
    this.room(10);
    if (typeof v === 'number' && v >= 0 && v < TWO_32) {
      let n = v >>> 0;
      while (n > 0x7f) { this.cur[this.pos++] = (n & 0x7f) | 0x80; n >>>= 7; }
      this.cur[this.pos++] = n;
      return;
    }
    let b = BigInt.asUintN(64, BigInt(v));
    while (b > 0x7fn) { this.cur[this.pos++] = Number(b & 0x7fn) | 0x80; b >>= 7n; }
    this.cur[this.pos++] = Number(b);
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  bytes(b: Buffer): void {
    this.varint(b.length);
    this.room(b.length);
    b.copy(this.cur, this.pos);
    this.pos += b.length;
  }

  fixed32(v: number, kind: 'fixed32' | 'sfixed32' | 'float'): void {
    this.room(4);
    if (kind === 'float') this.cur.writeFloatLE(v, this.pos);
    else if (kind === 'sfixed32') this.cur.writeInt32LE(v, this.pos);
    else this.cur.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }

  fixed64(v: number, kind: 'fixed64' | 'sfixed64' | 'double'): void {
    this.room(8);
    if (kind === 'double') this.cur.writeDoubleLE(v, this.pos);
    else if (kind === 'sfixed64') this.cur.writeBigInt64LE(BigInt(Math.trunc(v)), this.pos);
    else this.cur.writeBigUInt64LE(BigInt.asUintN(64, BigInt(Math.trunc(v))), this.pos);
    this.pos += 8;
  }

  finish(): Buffer {
    this.chunks.push(this.cur.subarray(0, this.pos));
    return this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
  }
}

function toNumber(v: unknown, what: string): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new TypeError(`${what}: expected a number, got ${typeof v}`);
  return n;
}

function writeScalar(w: Writer, kind: ScalarKind, v: unknown, what: string): void {
  switch (kind) {
    case 'string': w.bytes(Buffer.from(String(v), 'utf8')); return;
    case 'bytes': w.bytes(Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array)); return;
    case 'bool': w.varint(v ? 1 : 0); return;
    case 'int32': case 'int64': {
      const n = Math.trunc(toNumber(v, what));
      w.varint(n >= 0 ? n : BigInt(n));
      return;
    }
    case 'uint32': w.varint(toNumber(v, what) >>> 0); return;
    case 'uint64': w.varint(BigInt.asUintN(64, BigInt(Math.trunc(toNumber(v, what))))); return;
    case 'sint32': { const n = toNumber(v, what) | 0; w.varint(((n << 1) ^ (n >> 31)) >>> 0); return; }
    case 'sint64': { const n = BigInt(Math.trunc(toNumber(v, what))); w.varint(BigInt.asUintN(64, (n << 1n) ^ (n >> 63n))); return; }
    case 'fixed32': case 'sfixed32': case 'float': w.fixed32(toNumber(v, what), kind); return;
    case 'fixed64': case 'sfixed64': case 'double': w.fixed64(toNumber(v, what), kind); return;
  }
}

function isDefaultScalar(kind: ScalarKind, v: unknown): boolean {
  if (kind === 'string') return v === '';
  if (kind === 'bytes') return (v as Buffer).length === 0;
  if (kind === 'bool') return v === false;
  return v === 0 || v === '0';
}

// ---- reading ----------------------------------------------------------------------------------

class Reader {
  pos: number;
  constructor(readonly buf: Buffer, start: number, readonly end: number) { this.pos = start; }

  /** A varint as a bigint (64 bits, unsigned). */
  varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtoDecodeError(`a varint runs past the end of the message (offset ${this.pos})`);
      const b = this.buf[this.pos++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtoDecodeError(`a varint is longer than 10 bytes (offset ${this.pos})`);
  }

  /** A varint known to fit 32 bits unsigned (tags, lengths), without bigints on the fast path. */
  varint32(): number {
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= this.end) throw new ProtoDecodeError(`a varint runs past the end of the message (offset ${this.pos})`);
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
    this.pos -= 4;
    const big = this.varint64();
    return Number(big);
  }

  take(n: number): Buffer {
    if (n > this.end - this.pos) throw new ProtoDecodeError(`a field of ${n} bytes runs past the end of the message (offset ${this.pos}, ${this.end - this.pos} bytes left)`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  skip(wire: number, field: number): void {
    switch (wire) {
      case WIRE_VARINT: this.varint64(); return;
      case WIRE_FIXED64: this.take(8); return;
      case WIRE_LEN: this.take(this.varint32()); return;
      case WIRE_FIXED32: this.take(4); return;
      default: throw new ProtoDecodeError(`field ${field} has wire type ${wire}, which proto3 does not use`);
    }
  }
}

function readScalar(r: Reader, kind: ScalarKind): unknown {
  switch (kind) {
    case 'string': return r.take(r.varint32()).toString('utf8');
    case 'bytes': return Buffer.from(r.take(r.varint32()));
    case 'bool': return r.varint64() !== 0n;
    case 'int32': return Number(BigInt.asIntN(32, r.varint64()));
    case 'uint32': return Number(BigInt.asUintN(32, r.varint64()));
    case 'sint32': { const n = Number(BigInt.asUintN(32, r.varint64())); return (n >>> 1) ^ -(n & 1); }
    case 'int64': return Number(BigInt.asIntN(64, r.varint64()));
    case 'uint64': return Number(r.varint64());
    case 'sint64': { const n = r.varint64(); return Number((n >> 1n) ^ -(n & 1n)); }
    case 'fixed32': return r.take(4).readUInt32LE(0);
    case 'sfixed32': return r.take(4).readInt32LE(0);
    case 'float': return r.take(4).readFloatLE(0);
    case 'fixed64': return Number(r.take(8).readBigUInt64LE(0));
    case 'sfixed64': return Number(r.take(8).readBigInt64LE(0));
    case 'double': return r.take(8).readDoubleLE(0);
  }
}

// ---- the codec --------------------------------------------------------------------------------

export class ProtoCodec<M extends object> {
  private readonly byNumber = new Map<string, Map<number, FieldSpec>>();
  private readonly enumNames = new Map<string, Map<number, string>>();

  constructor(private readonly schema: Schema) {
    for (const [name, fields] of Object.entries(schema.messages)) this.byNumber.set(name, new Map(fields.map((f) => [f.number, f])));
    for (const [name, values] of Object.entries(schema.enums)) this.enumNames.set(name, new Map(Object.entries(values).map(([k, v]) => [v, k])));
  }

  has(type: string): boolean {
    return this.byNumber.has(type);
  }

  encode<T extends keyof M & string>(type: T, message: Input<M[T]>): Buffer {
    const w = new Writer();
    this.writeMessage(w, type, message as object);
    return w.finish();
  }

  decode<T extends keyof M & string>(type: T, bytes: Buffer): M[T] {
    return this.readMessage(new Reader(bytes, 0, bytes.length), type) as M[T];
  }

  private fields(type: string): readonly FieldSpec[] {
    const f = this.schema.messages[type];
    if (!f) throw new Error(`no message type ${type} in the generated schema`);
    return f;
  }

  private enumValue(type: string, v: unknown, what: string): number {
    if (typeof v === 'number') return v;
    const n = this.schema.enums[type]?.[String(v)];
    if (n === undefined) throw new TypeError(`${what}: ${String(v)} is not a value of ${type}`);
    return n;
  }

  private writeMessage(w: Writer, type: string, msg: object): void {
    const obj = msg as Record<string, unknown>;
    for (const f of this.fields(type)) {
      const v = obj[f.name];
      if (v === undefined || v === null) continue;
      const what = `${type}.${f.name}`;
      if (f.kind === 'map') {
        for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
          if (val === undefined || val === null) continue;
          const entry = new Writer();
          entry.tag(1, WIRE_LEN);
          entry.bytes(Buffer.from(k, 'utf8'));
          this.writeValue(entry, 2, f.map, val, what);
          w.tag(f.number, WIRE_LEN);
          w.bytes(entry.finish());
        }
        continue;
      }
      if (f.repeated) {
        const list = v as readonly unknown[];
        if (list.length === 0) continue;
        if (f.kind !== 'message' && (f.kind === 'enum' || (f.kind !== 'string' && f.kind !== 'bytes'))) {
          // proto3 packs repeated numbers: one length-delimited field.
          const packed = new Writer();
          for (const x of list) {
            if (f.kind === 'enum') packed.varint(this.enumValue(f.type, x, what));
            else writeScalar(packed, f.kind, x, what);
          }
          w.tag(f.number, WIRE_LEN);
          w.bytes(packed.finish());
        } else {
          for (const x of list) this.writeValue(w, f.number, f, x, what);
        }
        continue;
      }
      if (f.kind === 'message') {
        this.writeValue(w, f.number, f, v, what);
      } else if (f.kind === 'enum') {
        const n = this.enumValue(f.type, v, what);
        if (n !== 0) { w.tag(f.number, WIRE_VARINT); w.varint(n >= 0 ? n : BigInt(n)); }
      } else if (!isDefaultScalar(f.kind, v)) {
        this.writeValue(w, f.number, f, v, what);
      }
    }
  }

  private writeValue(w: Writer, number: number, spec: MapValueSpec, v: unknown, what: string): void {
    w.tag(number, wireTypeOf(spec.kind));
    if (spec.kind === 'message') {
      const inner = new Writer();
      if (v !== null && v !== undefined) this.writeMessage(inner, spec.type, v as object);
      w.bytes(inner.finish());
    } else if (spec.kind === 'enum') {
      const n = this.enumValue(spec.type, v, what);
      w.varint(n >= 0 ? n : BigInt(n));
    } else {
      writeScalar(w, spec.kind, v, what);
    }
  }

  private readMessage(r: Reader, type: string): Record<string, unknown> {
    const fields = this.fields(type);
    const byNumber = this.byNumber.get(type) as Map<number, FieldSpec>;
    const out: Record<string, unknown> = {};
    for (const f of fields) {
      const d = defaultOf(f);
      out[f.name] = d === enumDefault ? this.enumName((f as { type: string }).type, 0) : d;
    }
    while (r.pos < r.end) {
      const key = r.varint32();
      const number = Math.floor(key / 8);
      const wire = key & 7;
      if (number === 0) throw new ProtoDecodeError(`field number 0 at offset ${r.pos} (not a protobuf message)`);
      const f = byNumber.get(number);
      if (!f) { r.skip(wire, number); continue; }
      const what = `${type}.${f.name}`;
      if (f.kind === 'map') {
        if (wire !== WIRE_LEN) throw new ProtoDecodeError(`${what} has wire type ${wire}, expected ${WIRE_LEN}`);
        const [k, v] = this.readMapEntry(r, f.map, what);
        (out[f.name] as Record<string, unknown>)[k] = v;
        continue;
      }
      const expected = wireTypeOf(f.kind);
      if (f.repeated && wire === WIRE_LEN && expected !== WIRE_LEN) {
        const len = r.varint32();
        const inner = new Reader(r.buf, r.pos, r.pos + len);
        r.take(len);
        while (inner.pos < inner.end) (out[f.name] as unknown[]).push(this.readValue(inner, f, what));
        continue;
      }
      if (wire !== expected) throw new ProtoDecodeError(`${what} has wire type ${wire}, expected ${expected}`);
      const v = this.readValue(r, f, what);
      if (f.repeated) (out[f.name] as unknown[]).push(v);
      else out[f.name] = v;
    }
    return out;
  }

  private readValue(r: Reader, spec: MapValueSpec, what: string): unknown {
    if (spec.kind === 'message') {
      const len = r.varint32();
      if (len > r.end - r.pos) throw new ProtoDecodeError(`${what}: a message of ${len} bytes runs past the end (offset ${r.pos})`);
      const inner = new Reader(r.buf, r.pos, r.pos + len);
      r.pos += len;
      return this.readMessage(inner, spec.type);
    }
    if (spec.kind === 'enum') return this.enumName(spec.type, Number(BigInt.asIntN(32, r.varint64())));
    return readScalar(r, spec.kind);
  }

  private readMapEntry(r: Reader, value: MapValueSpec, what: string): [string, unknown] {
    const len = r.varint32();
    if (len > r.end - r.pos) throw new ProtoDecodeError(`${what}: a map entry of ${len} bytes runs past the end (offset ${r.pos})`);
    const inner = new Reader(r.buf, r.pos, r.pos + len);
    r.pos += len;
    let k = '';
    let v: unknown = value.kind === 'message' ? null : defaultOf({ name: 'value', number: 2, ...value } as FieldSpec);
    if (v === enumDefault) v = this.enumName((value as { type: string }).type, 0);
    while (inner.pos < inner.end) {
      const key = inner.varint32();
      const number = Math.floor(key / 8);
      const wire = key & 7;
      if (number === 1 && wire === WIRE_LEN) k = readScalar(inner, 'string') as string;
      else if (number === 2 && wire === wireTypeOf(value.kind)) v = this.readValue(inner, value, what);
      else if (number === 0) throw new ProtoDecodeError(`${what}: field number 0 in a map entry`);
      else inner.skip(wire, number);
    }
    return [k, v];
  }

  private enumName(type: string, n: number): string | number {
    return this.enumNames.get(type)?.get(n) ?? n;
  }
}
