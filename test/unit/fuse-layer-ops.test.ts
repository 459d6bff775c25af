// The FUSE request layer without a kernel: requests are encoded as the kernel would send them
// and the replies decoded from what LayerOps answers over a real LayerTree on a temp directory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { setAttributeSync } from 'fs-xattr';
import { MetadataCache } from '../../src/cache/index.js';
import { LayerTree, type LayerMeta } from '../../src/fuse/layer-tree.js';
import { LayerOps } from '../../src/fuse/layer-ops.js';
import { DEFAULT_TUNING } from '../../src/fuse/tuning.js';
import {
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, InitFlag, Op, OUT_HEADER_SIZE, direntSize, type InHeader,
} from '../../src/fuse/kernel/protocol.js';
import type { Reply } from '../../src/fuse/kernel/session.js';
import { silentLogger } from '../../src/log.js';

const E = os.constants.errno;
let dir = '';
let tree: LayerTree;
let ops: LayerOps;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layer-ops-'));
  const l = path.join(dir, 'layer');
  fs.mkdirSync(path.join(l, 'd'), { recursive: true });
  fs.writeFileSync(path.join(l, 'd/file'), 'hello, layer');
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(l, 'd', `n${String(i).padStart(2, '0')}`), '');
  fs.writeFileSync(path.join(l, '.wh.gone'), '');
  setAttributeSync(path.join(l, 'd'), 'user.colour', 'blue');
  fs.symlinkSync('/etc/passwd', path.join(l, 'link'));
  // JS dates cannot carry nanoseconds; touch can.
  execFileSync('touch', ['-m', '-d', '@1700000000.123456789', path.join(l, 'd/file')]);
  tree = new LayerTree({ root: l, cache: new MetadataCache<LayerMeta>({ maxEntries: 1000 }), namespace: 'o\0', log: silentLogger() });
  ops = new LayerOps(tree, silentLogger(), DEFAULT_TUNING);
});

after(async () => {
  await ops.closeFiles();
  await tree.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Answer { errno: number; body: Buffer }

let unique = 1n;
function ask(opcode: number, nodeid: bigint, body: Buffer = Buffer.alloc(0)): Promise<Answer> {
  const h: InHeader = { len: 40 + body.length, opcode, unique: unique++, nodeid, uid: 0, gid: 0, pid: 1 };
  return new Promise((resolve) => {
    const reply: Reply = {
      ok: (b) => resolve({ errno: 0, body: b ?? Buffer.alloc(0) }),
      okInPlace: (b, n) => resolve({ errno: 0, body: Buffer.from(b.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + n)) }),
      error: (e) => resolve({ errno: e, body: Buffer.alloc(0) }),
    };
    ops.handle(h, body, reply);
  });
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
function readIn(offset: number, size: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}
const attrMode = (entry: Buffer): number => entry.readUInt32LE(40 + 60);

test('INIT asks for readdirplus, zero-message opens, large reads, and speaks at most 7.31', () => {
  const out = ops.init({ major: 7, minor: 45, maxReadahead: 131072, flags: 0xffffffff });
  assert.equal(out.minor, 31);
  for (const f of [InitFlag.DO_READDIRPLUS, InitFlag.NO_OPEN_SUPPORT, InitFlag.NO_OPENDIR_SUPPORT, InitFlag.MAX_PAGES, InitFlag.ASYNC_READ]) {
    assert.notEqual(out.flags & f, 0);
  }
  assert.equal(out.flags & InitFlag.READDIRPLUS_AUTO, 0, 'always readdirplus: a walk stats everything it lists');
  assert.equal(ops.init({ major: 7, minor: 28, maxReadahead: 4096, flags: InitFlag.ASYNC_READ }).flags, InitFlag.ASYNC_READ,
    'never a flag the kernel did not offer');
});

test('LOOKUP hands out one node id per path and caches absent names as negative entries', async () => {
  const a = await ask(Op.LOOKUP, 1n, cstr('d'));
  assert.equal(a.errno, 0);
  assert.equal(a.body.length, ENTRY_OUT_SIZE);
  const id = a.body.readBigUInt64LE(0);
  assert.ok(id > 1n);
  assert.equal(attrMode(a.body) & fs.constants.S_IFMT, fs.constants.S_IFDIR);
  const again = await ask(Op.LOOKUP, 1n, cstr('d'));
  assert.equal(again.body.readBigUInt64LE(0), id, 'the same path keeps its node id');

  const missing = await ask(Op.LOOKUP, 1n, cstr('nope'));
  assert.equal(missing.errno, 0, 'a negative entry is a reply, not ENOENT');
  assert.equal(missing.body.readBigUInt64LE(0), 0n);
  assert.equal(missing.body.readBigUInt64LE(16), BigInt(DEFAULT_TUNING.negativeTimeoutSec), 'with the negative timeout');

  const hidden = await ask(Op.LOOKUP, 1n, cstr('.wh.gone'));
  assert.equal(hidden.body.readBigUInt64LE(0), 0n, 'AUFS markers never show');
  const wh = await ask(Op.LOOKUP, 1n, cstr('gone'));
  assert.equal(attrMode(wh.body), fs.constants.S_IFCHR, 'the marker shows as an overlay whiteout');
});

test('GETATTR keeps nanoseconds; FORGET drops a node and its id goes stale', async () => {
  const d = (await ask(Op.LOOKUP, 1n, cstr('d'))).body.readBigUInt64LE(0);
  const f = await ask(Op.LOOKUP, d, cstr('file'));
  const id = f.body.readBigUInt64LE(0);
  const attr = await ask(Op.GETATTR, id, Buffer.alloc(16));
  assert.equal(attr.body.length, ATTR_OUT_SIZE);
  assert.equal(attr.body.readBigInt64LE(16 + 32), 1_700_000_000n, 'mtime seconds');
  assert.equal(attr.body.readUInt32LE(16 + 52), 123_456_789, 'mtime nanoseconds');
  const st = fs.lstatSync(path.join(dir, 'layer/d/file'), { bigint: true });
  assert.equal(attr.body.readBigUInt64LE(16), st.ino, 'the store inode number, all 64 bits');

  const forget = Buffer.alloc(8);
  forget.writeBigUInt64LE(1n);
  const none = (): never => assert.fail('FORGET has no reply');
  ops.handle({ len: 48, opcode: Op.FORGET, unique: unique++, nodeid: id, uid: 0, gid: 0, pid: 1 }, forget, { ok: none, okInPlace: none, error: none });
  assert.equal((await ask(Op.GETATTR, id, Buffer.alloc(16))).errno, E.ESTALE, 'one lookup, one forget: the node is gone');
});

test('READ by node id, without OPEN; OPEN and OPENDIR answer ENOSYS so the kernel stops asking', async () => {
  const d = (await ask(Op.LOOKUP, 1n, cstr('d'))).body.readBigUInt64LE(0);
  const id = (await ask(Op.LOOKUP, d, cstr('file'))).body.readBigUInt64LE(0);
  assert.equal((await ask(Op.OPEN, id, Buffer.alloc(8))).errno, E.ENOSYS);
  assert.equal((await ask(Op.OPENDIR, d, Buffer.alloc(8))).errno, E.ENOSYS);
  assert.equal((await ask(Op.READ, id, readIn(7, 100))).body.toString(), 'layer');
  assert.equal((await ask(Op.READ, id, readIn(100, 100))).body.length, 0, 'past the end: a short read');
});

test('READDIRPLUS pages through a directory by cookie, with an entry and attributes per name', async () => {
  const d = (await ask(Op.LOOKUP, 1n, cstr('d'))).body.readBigUInt64LE(0);
  const names: string[] = [];
  let offset = 0;
  for (let round = 0; round < 50; round++) {
    const r = await ask(Op.READDIRPLUS, d, readIn(offset, 1024));
    assert.equal(r.errno, 0);
    if (r.body.length === 0) break;
    let p = 0;
    while (p < r.body.length) {
      const nodeid = r.body.readBigUInt64LE(p);
      const dirent = p + ENTRY_OUT_SIZE;
      const namelen = r.body.readUInt32LE(dirent + 16);
      const name = r.body.subarray(dirent + 24, dirent + 24 + namelen).toString();
      offset = Number(r.body.readBigUInt64LE(dirent + 8));
      assert.equal(nodeid === 0n, name === '.' || name === '..', `${name}: dots carry no node`);
      names.push(name);
      p += direntSize(namelen, true);
    }
  }
  assert.deepEqual(names.slice(0, 2), ['.', '..']);
  assert.equal(names.length, 2 + 41, 'every entry once, across several pages');
  assert.ok(names.includes('file'));
});

test('xattrs: a size probe, ERANGE for a short buffer, the value, ENODATA for none', async () => {
  const d = (await ask(Op.LOOKUP, 1n, cstr('d'))).body.readBigUInt64LE(0);
  const req = (size: number, name: string): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(size, 0);
    return Buffer.concat([b, cstr(name)]);
  };
  const probe = await ask(Op.GETXATTR, d, req(0, 'user.colour'));
  assert.equal(probe.errno, 0);
  assert.equal(probe.body.readUInt32LE(0), 4, 'size 0 asks for the length only');
  assert.equal((await ask(Op.GETXATTR, d, req(3, 'user.colour'))).errno, E.ERANGE);
  assert.equal((await ask(Op.GETXATTR, d, req(4, 'user.colour'))).body.toString(), 'blue');
  assert.equal((await ask(Op.GETXATTR, d, req(0, 'trusted.overlay.opaque'))).errno, E.ENODATA);
  const names = Buffer.from('user.colour\0');
  assert.equal((await ask(Op.LISTXATTR, d, req(0, ''))).body.readUInt32LE(0), names.length);
  assert.equal((await ask(Op.LISTXATTR, d, req(names.length - 1, ''))).errno, E.ERANGE);
  assert.deepEqual((await ask(Op.LISTXATTR, d, req(names.length, ''))).body, names);
});

test('every write-type request answers EROFS, and an unknown node ESTALE', async () => {
  for (const op of [Op.SETATTR, Op.MKDIR, Op.MKNOD, Op.UNLINK, Op.RMDIR, Op.RENAME, Op.RENAME2, Op.LINK, Op.SYMLINK,
    Op.WRITE, Op.CREATE, Op.SETXATTR, Op.REMOVEXATTR, Op.FALLOCATE, Op.TMPFILE, Op.COPY_FILE_RANGE]) {
    assert.equal((await ask(op, 1n, Buffer.alloc(64))).errno, E.EROFS, `op ${op}`);
  }
  assert.equal((await ask(Op.GETATTR, 999_999n, Buffer.alloc(16))).errno, E.ESTALE);
});

test('the node table survives export and import (a handover keeps the kernel\'s node ids valid)', async () => {
  const d = (await ask(Op.LOOKUP, 1n, cstr('d'))).body.readBigUInt64LE(0);
  const state = ops.exportNodes();
  const next = new LayerOps(tree, silentLogger(), DEFAULT_TUNING, JSON.parse(JSON.stringify(state)) as typeof state);
  assert.equal(next.nodeCount, ops.nodeCount);
  const r = await new Promise<number>((resolve) => next.handle(
    { len: 56, opcode: Op.GETATTR, unique: 1n, nodeid: d, uid: 0, gid: 0, pid: 1 }, Buffer.alloc(16),
    { ok: () => resolve(0), okInPlace: () => resolve(0), error: (e) => resolve(e) }));
  assert.equal(r, 0, 'a node id from before the handover still answers');
});
