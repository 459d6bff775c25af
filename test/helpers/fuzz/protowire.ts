// Just enough of the protobuf wire format to craft messages that no generated encoder would
// write: wrong wire types, lengths past the end, unknown fields, broken map entries.

export const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

export function varint(value: number | bigint): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Buffer.from(out);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType & 7));
}

export function lenField(field: number, payload: Buffer | string): Buffer {
  const b = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return Buffer.concat([tag(field, WIRE.LEN), varint(b.length), b]);
}

export function varintField(field: number, value: number | bigint): Buffer {
  return Buffer.concat([tag(field, WIRE.VARINT), varint(value)]);
}

/** A map<string,string> entry as a length-delimited field. */
export function mapEntry(field: number, key: Buffer | string, value: Buffer | string): Buffer {
  return lenField(field, Buffer.concat([lenField(1, key), lenField(2, value)]));
}
