// The fuse-native ops adapter against a stand-in layer: errno signs, EROFS, and no escaping error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { layerFuseOps, layerMountOptions, DEFAULT_TUNING, type LayerView } from '../../src/fuse/layerfs.js';
import { FsError } from '../../src/fuse/errno.js';
import { foldIno, toFuseStatfs } from '../../src/fuse/stat.js';
import type { StatsFs } from 'node:fs';
import type { Logger } from '../../src/log.js';

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb(); } });
  return { log: pino<never>({ level: 'trace' }, sink), lines };
}

const eio = Object.assign(new Error('EIO: i/o error, lstat'), { code: 'EIO' });

const failing: LayerView = {
  getattr: async (p) => { if (p === '/missing') throw new FsError('ENOENT'); throw eio; },
  readdir: async () => { throw eio; },
  readlink: async () => { throw new Error('a bug without a code'); },
  open: async () => { throw eio; },
  read: async () => { throw eio; },
  release: async () => undefined,
  getxattr: async () => null,
  listxattr: () => { throw eio; }, // throws synchronously: must still answer
  statfs: async () => { throw eio; },
};

function call<T extends unknown[]>(fn: (cb: (...a: T) => void) => void): Promise<T> {
  return new Promise((resolve) => fn((...a: T) => resolve(a)));
}

test('errors reach the kernel as negative errnos; unexpected ones are logged, expected ones are not warned', async () => {
  const { log, lines } = capture();
  const ops = layerFuseOps(failing, log);
  assert.deepEqual(await call<[number]>((cb) => ops.getattr?.('/missing', cb)), [-2]);
  assert.equal(lines.filter((l) => l.includes('"level":40')).length, 0);
  assert.deepEqual(await call<[number]>((cb) => ops.getattr?.('/broken', cb)), [-5]);
  assert.deepEqual(await call<[number]>((cb) => ops.readlink?.('/x', cb)), [-5], 'no code: EIO');
  assert.deepEqual(await call<[number]>((cb) => ops.listxattr?.('/x', cb)), [-5]);
  assert.deepEqual(await call<[number]>((cb) => ops.read?.('/x', 1, Buffer.alloc(1), 1, 0, cb)), [-5]);
  const warned = lines.filter((l) => l.includes('"level":40'));
  assert.equal(warned.length, 4);
  assert.ok(warned[0]?.includes('"path":"/broken"') && warned[0].includes('"op":"getattr"'));
});

test('getxattr with no value answers null (fuse-native turns that into ENODATA)', async () => {
  const ops = layerFuseOps(failing, capture().log);
  assert.deepEqual(await call<[number, Buffer | null | undefined]>((cb) => ops.getxattr?.('/x', 'user.a', 0, cb)), [0, null]);
});

test('every write-type operation answers EROFS', async () => {
  const ops = layerFuseOps(failing, capture().log);
  const EROFS = -30;
  const answers = await Promise.all([
    call<[number]>((cb) => ops.write?.('/f', 1, Buffer.alloc(1), 1, 0, cb)),
    call<[number]>((cb) => ops.create?.('/f', 0o644, cb)),
    call<[number]>((cb) => ops.mkdir?.('/d', 0o755, cb)),
    call<[number]>((cb) => ops.mknod?.('/n', 0o644, 0, cb)),
    call<[number]>((cb) => ops.unlink?.('/f', cb)),
    call<[number]>((cb) => ops.rmdir?.('/d', cb)),
    call<[number]>((cb) => ops.rename?.('/a', '/b', cb)),
    call<[number]>((cb) => ops.link?.('/a', '/b', cb)),
    call<[number]>((cb) => ops.symlink?.('/a', '/b', cb)),
    call<[number]>((cb) => ops.chmod?.('/a', 0o777, cb)),
    call<[number]>((cb) => ops.chown?.('/a', 1, 1, cb)),
    call<[number]>((cb) => ops.truncate?.('/a', 0, cb)),
    call<[number]>((cb) => ops.ftruncate?.('/a', 1, 0, cb)),
    call<[number]>((cb) => ops.utimens?.('/a', 0, 0, cb)),
    call<[number]>((cb) => ops.setxattr?.('/a', 'user.x', Buffer.from('1'), 0, 0, cb)),
    call<[number]>((cb) => ops.removexattr?.('/a', 'user.x', cb)),
    call<[number]>((cb) => ops.access?.('/a', 2, cb)),
  ]);
  for (const a of answers) assert.equal(a[0], EROFS);
});

test('mount options: read-only, long timeouts, kernel cache, shared, permission checks in the kernel', () => {
  const o = layerMountOptions(DEFAULT_TUNING);
  assert.equal(o.fsname, 'cvmfs-snapshotter,ro,use_ino,negative_timeout=86400');
  assert.equal(o.kernelCache, true);
  assert.equal(o.allowOther, true);
  assert.equal(o.defaultPermissions, true);
  assert.equal(o.entryTimeout, 86400);
  assert.equal(o.attrTimeout, 86400);
  assert.equal(o.timeout, false);
  assert.deepEqual(layerMountOptions({ ...DEFAULT_TUNING, opTimeoutMs: 60000 }).timeout, { default: 60000, read: false });
});

test('inode numbers above 32 bits fold instead of being cut; small ones pass unchanged', () => {
  assert.equal(foldIno(12345), 12345);
  assert.equal(foldIno(2 ** 32 + 5), 4);
  assert.notEqual(foldIno(2 ** 33 + 5), foldIno(2 ** 34 + 5));
});

test('statfs of a huge store scales the block size so counts fit 32 bits', () => {
  const s: StatsFs = { type: 0, bsize: 4096, blocks: 2 ** 34, bfree: 2 ** 33, bavail: 2 ** 33, files: 100, ffree: 50 };
  const f = toFuseStatfs(s);
  assert.ok(f.blocks <= 0xffffffff);
  assert.equal(f.bsize * f.blocks, 4096 * 2 ** 34);
  assert.equal(f.namemax, 255);
});
