// The unpack bound of ingest: TarBounds counts a tar stream's bytes and entries the way GNU tar
// reads the archive (ustar, GNU long names, pax headers with a size record, base-256 sizes), and
// stops before passing on the chunk that would cross a bound. The archives are built here block
// by block, so each header kind is exactly what the test says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BoundExceeded, maxUnpackedBytes, TarBounds, UNPACK_FLOOR_BYTES } from '../../src/layers/ingest/bounds.js';

const BLOCK = 512;

/** One header block: name, type flag, size (octal, or base-256 when `big`). */
function header(name: string, type: string, size: number, big = false): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  if (big) {
    h[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      h[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  }
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

const padded = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)]);
const file = (name: string, data: Buffer): Buffer => Buffer.concat([header(name, '0', data.length), padded(data)]);
const END = Buffer.alloc(2 * BLOCK);

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
  return `${len}${body}`;
}

/** Streams the archive through TarBounds in chunks of `chunk` bytes; resolves what it counted and passed. */
async function run(archive: Buffer, opts: { maxBytes?: number; maxEntries?: number; chunk?: number } = {}): Promise<{ bounds: TarBounds; passed: number; error?: unknown }> {
  const bounds = new TarBounds(opts.maxBytes ?? 1e12, opts.maxEntries ?? 1e9);
  const chunk = opts.chunk ?? 1000;
  const chunks: Buffer[] = [];
  for (let i = 0; i < archive.length; i += chunk) chunks.push(archive.subarray(i, i + chunk));
  let passed = 0;
  const sink = new Writable({ write(c: Buffer, _e, cb) { passed += c.length; cb(); } });
  try {
    await pipeline(Readable.from(chunks), bounds, sink);
    return { bounds, passed };
  } catch (error) {
    return { bounds, passed, error };
  }
}

test('entries are counted across chunk boundaries of any size; metadata headers are not entries', async () => {
  const longName = 'd/'.repeat(80) + 'file';
  const archive = Buffer.concat([
    header('d/', '5', 0),
    file('d/a', Buffer.alloc(700, 1)),
    // A GNU long name: an 'L' header whose data is the name, then the entry itself.
    header('././@LongLink', 'L', longName.length + 1), padded(Buffer.from(`${longName}\0`)),
    file(longName.slice(0, 99), Buffer.alloc(10, 2)),
    // A global pax header, then a symlink, a hard link and a fifo.
    header('pax_global_header', 'g', 40), padded(Buffer.from(paxRecord('comment', 'x'.repeat(20)))),
    header('d/s', '2', 0), header('d/h', '1', 0), header('d/f', '6', 0),
    END,
  ]);
  for (const chunk of [1, 7, 512, 513, 4096, archive.length]) {
    const { bounds, passed, error } = await run(archive, { chunk });
    assert.equal(error, undefined);
    assert.equal(bounds.entries, 6, `chunk ${chunk}`);
    assert.equal(passed, archive.length);
    assert.equal(bounds.bytes, archive.length);
  }
});

test('a pax size record overrides the header size, so the entries after a big file are still counted', async () => {
  // The header says 0 bytes (as for a file over 8 GiB in ustar); the pax record says 1500.
  const pax = Buffer.from(paxRecord('size', '1500') + paxRecord('path', 'big'));
  const archive = Buffer.concat([
    header('PaxHeaders/big', 'x', pax.length), padded(pax),
    header('big', '0', 0), padded(Buffer.alloc(1500, 7)),
    file('after1', Buffer.from('x')),
    file('after2', Buffer.from('y')),
    END,
  ]);
  const { bounds, error } = await run(archive, { chunk: 300 });
  assert.equal(error, undefined);
  assert.equal(bounds.entries, 3, 'had the pax size been ignored, the data would be read as headers');
});

test('base-256 sizes are read', async () => {
  const archive = Buffer.concat([header('b', '0', 1100, true), padded(Buffer.alloc(1100, 3)), file('c', Buffer.from('c')), END]);
  const { bounds } = await run(archive);
  assert.equal(bounds.entries, 2);
});

test('the byte bound stops before passing on the chunk that crosses it', async () => {
  const archive = Buffer.concat([file('zeros', Buffer.alloc(100_000)), END]);
  const { error, passed, bounds } = await run(archive, { maxBytes: 50_000, chunk: 4096 });
  assert.ok(error instanceof BoundExceeded);
  assert.equal(error.what, 'bytes');
  assert.equal(error.limit, 50_000);
  assert.ok(passed <= 50_000, `passed ${passed}`);
  assert.equal(passed, Math.floor(50_000 / 4096) * 4096);
  assert.equal(bounds.bytes, passed);
  // Exactly at the bound is allowed.
  const exact = await run(archive, { maxBytes: archive.length });
  assert.equal(exact.error, undefined);
});

test('the entry bound stops at the first entry too many', async () => {
  const archive = Buffer.concat([...Array.from({ length: 50 }, (_, i) => file(`f${i}`, Buffer.from('z'))), END]);
  const over = await run(archive, { maxEntries: 10, chunk: 1024 });
  assert.ok(over.error instanceof BoundExceeded);
  assert.equal(over.error.what, 'entries');
  assert.ok(over.passed <= 10 * 1024, `passed ${over.passed}: no more than the ten allowed entries`);
  const fits = await run(archive, { maxEntries: 50 });
  assert.equal(fits.error, undefined);
  assert.equal(fits.bounds.entries, 50);
});

test('what follows the end of the archive, or an unreadable header, is not counted (tar judges it)', async () => {
  const garbage = Buffer.alloc(4096, 0x41);
  const afterEnd = await run(Buffer.concat([file('a', Buffer.from('a')), END, header('late', '0', 0)]));
  assert.equal(afterEnd.bounds.entries, 1);
  const bad = await run(Buffer.concat([file('a', Buffer.from('a')), garbage, header('x', '0', 0)]));
  assert.equal(bad.error, undefined);
  assert.equal(bad.bounds.entries, 1);
});

test('the bound is the ratio times the compressed size, with a floor for small layers', () => {
  assert.equal(maxUnpackedBytes(10 * 1024 * 1024, { ratio: 100, maxEntries: 1 }), 1000 * 1024 * 1024);
  assert.equal(maxUnpackedBytes(45, { ratio: 100, maxEntries: 1 }), UNPACK_FLOOR_BYTES);
  assert.equal(maxUnpackedBytes(203_757, { ratio: 100, maxEntries: 1 }), 20_375_700);
});
