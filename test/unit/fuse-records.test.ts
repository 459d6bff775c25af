// The store pool's answers decoded, and the AUFS whiteout translation, without a kernel: the
// records are built here byte for byte as native/cvmfs_sys.c writes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyName } from '../../src/fuse/whiteout.js';
import {
  NO_XATTRS, RecordFlag, decodeListAnswer, isDirAttr, listingEntry, type Listing,
} from '../../src/fuse/records.js';
import { Attr, attrIno, attrMode } from '../../src/fuse/kernel/protocol.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

interface Rec { name: string; mode: number; ino?: number; err?: number; flags?: number; uid?: number; size?: number; xattrs?: [string, Buffer | null][] }

function record(r: Rec): Buffer {
  const name = Buffer.from(r.name, 'latin1');
  const xs = (r.xattrs ?? []).map(([k, v]) => {
    const kb = Buffer.from(k, 'latin1');
    const h = Buffer.alloc(8);
    h.writeUInt16LE(kb.length, 0);
    h.writeUInt32LE(v === null ? 0xffffffff : v.length, 4);
    return Buffer.concat([h, kb, v ?? Buffer.alloc(0)]);
  });
  const x = Buffer.concat(xs);
  const len = (16 + 88 + name.length + x.length + 7) & ~7;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(r.err ?? 0, 4);
  b.writeUInt16LE(name.length, 8);
  b.writeUInt8(r.flags ?? 0, 10);
  b.writeUInt32LE(x.length, 12);
  b.writeUInt32LE(r.ino ?? 100, 16 + Attr.INO);
  b.writeUInt32LE(r.size ?? 7, 16 + Attr.SIZE);
  b.writeUInt32LE(r.mode, 16 + Attr.MODE);
  b.writeUInt32LE(1, 16 + Attr.NLINK);
  b.writeUInt32LE(r.uid ?? 0, 16 + 68);
  name.copy(b, 16 + 88);
  x.copy(b, 16 + 88 + name.length);
  return b;
}

function block(rel: string, self: Rec, entries: Rec[]): Buffer {
  const relB = Buffer.from(rel, 'latin1');
  const h = Buffer.alloc(16 + ((relB.length + 7) & ~7));
  h.writeUInt32LE(entries.length, 0);
  h.writeUInt16LE(relB.length, 4);
  relB.copy(h, 16);
  return Buffer.concat([h, record(self), ...entries.map(record)]);
}

function answer(...blocks: Buffer[]): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(blocks.length, 0);
  return Buffer.concat([h, ...blocks]);
}

const dir = (name: string, extra: Partial<Rec> = {}): Rec => ({ name, mode: S_IFDIR | 0o755, ...extra });
const file = (name: string, extra: Partial<Rec> = {}): Rec => ({ name, mode: S_IFREG | 0o644, ...extra });

function only(buf: Buffer): Listing {
  const dirs = decodeListAnswer(buf);
  assert.equal(dirs.length, 1);
  return (dirs[0] as { listing: Listing }).listing;
}

test('names: plain, whiteout, opaque marker, AUFS metadata', () => {
  assert.deepEqual(classifyName('etc'), { kind: 'plain' });
  assert.deepEqual(classifyName('.bashrc'), { kind: 'plain' });
  assert.deepEqual(classifyName('.wh.passwd'), { kind: 'whiteout', target: 'passwd' });
  assert.deepEqual(classifyName('.wh..hidden'), { kind: 'whiteout', target: '.hidden' });
  assert.deepEqual(classifyName('.wh..wh..opq'), { kind: 'opaque-marker' });
  assert.deepEqual(classifyName('.wh..wh.plnk'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh.'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh..'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh...'), { kind: 'hidden' });
});

test('a listing shows whiteouts under their own names, after the real entries, and hides every .wh. entry', () => {
  const l = only(answer(block('', dir(''), [file('a'), file('.wh.b', { uid: 7, ino: 42 }), file('c'), file('.wh..wh..opq'), file('.wh..wh.plnk')])));
  assert.deepEqual(l.names, ['a', 'c', 'b']);
  assert.equal(l.self.opaque, true, 'the marker makes the directory opaque');
  const b = listingEntry(l, l.byName.get('b') as number);
  assert.equal(b.whiteout, true);
  assert.equal(attrMode(b.buf, b.at), S_IFCHR, 'a 0/0 character device with no permission bits');
  assert.equal(b.buf.readUInt32LE(b.at + Attr.RDEV), 0);
  assert.equal(b.buf.readUInt32LE(b.at + Attr.SIZE), 0);
  assert.equal(b.buf.readUInt32LE(b.at + 68), 7, 'owned like its marker');
  assert.equal(attrIno(b.buf, b.at), 42);
});

test('a real entry wins over a whiteout of the same name in the same layer', () => {
  const l = only(answer(block('', dir(''), [file('.wh.x'), file('x')])));
  assert.deepEqual(l.names, ['x']);
  assert.equal(listingEntry(l, 0).whiteout, false);
  assert.equal(l.self.opaque, false);
});

test('an entry that vanished between the listing and its stat is left out; one that failed is listed with an unknown type', () => {
  const l = only(answer(block('', dir(''), [file('gone', { err: -2 }), file('broken', { err: -5 }), file('fine')])));
  assert.deepEqual(l.names, ['broken', 'fine']);
  const broken = listingEntry(l, 0);
  assert.equal(attrMode(broken.buf, broken.at), 0);
  assert.notEqual(attrIno(broken.buf, broken.at), 0, 'ino 0 would make libc skip the entry');
});

test('xattrs come along with their entries; a value left for later is null; failures are marked', () => {
  const l = only(answer(block('', dir(''), [
    file('cap', { xattrs: [['security.capability', Buffer.from([1, 2, 3])], ['user.big', null]] }),
    file('plain'),
    file('bad', { flags: RecordFlag.XATTR_ERROR }),
    file('latin', { xattrs: [['user.\xe9', Buffer.from('v')]] }),
  ])));
  const cap = listingEntry(l, 0).xattrs;
  assert.ok(cap !== 'error');
  assert.deepEqual([...cap.entries()], [['security.capability', Buffer.from([1, 2, 3])], ['user.big', null]]);
  assert.equal(listingEntry(l, 1).xattrs, NO_XATTRS);
  assert.equal(listingEntry(l, 2).xattrs, 'error');
  const latin = listingEntry(l, 3).xattrs;
  assert.ok(latin !== 'error' && latin.has('user.\xe9'), 'a name that is not UTF-8 keeps its bytes');
});

test('whether a subdirectory is opaque is unknown until it is listed, unless the store said so', () => {
  const l = only(answer(block('', dir(''), [dir('sub'), dir('known', { flags: RecordFlag.NOT_OPAQUE }), dir('opq', { flags: RecordFlag.OPAQUE })])));
  assert.equal(listingEntry(l, 0).opaque, undefined);
  assert.equal(listingEntry(l, 1).opaque, false);
  assert.equal(listingEntry(l, 2).opaque, true);
  assert.ok(isDirAttr(listingEntry(l, 0).buf, listingEntry(l, 0).at));
});

test('subdirectories listed along with a directory come back as blocks named by their relative path', () => {
  const dirs = decodeListAnswer(answer(
    block('', dir(''), [dir('a'), file('f')]),
    block('a', dir('a'), [dir('b'), file('.wh.x')]),
    block('a/b', dir('b'), [file('\xff\xfe')]),
  ));
  assert.deepEqual(dirs.map((d) => d.rel), ['', 'a', 'a/b']);
  assert.deepEqual(dirs[1]?.listing.names, ['b', 'x']);
  assert.deepEqual(dirs[2]?.listing.names, ['\xff\xfe']);
});

test('a truncated or malformed answer is refused, not misread', () => {
  const good = answer(block('', dir(''), [file('a')]));
  assert.throws(() => decodeListAnswer(good.subarray(0, good.length - 8)), RangeError);
  const bad = Buffer.from(good);
  bad.writeUInt32LE(8, 8 + 16 + 104); // a record length shorter than its own header
  assert.throws(() => decodeListAnswer(bad), RangeError);
});
