// The daemon's store calls on the native pool: Usage walks a layer as du does, and a call the
// store does not answer within its deadline, or past the bound of unanswered calls, fails with
// StoreUnanswered instead of waiting. The pool's threads are held here by the addon's sleep job
// (no FUSE needed): a call queued behind them is a call into a store that does not answer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerStore } from '../../src/layers/store.js';
import { PooledLayerStore, StoreUnanswered } from '../../src/remote/index.js';
import { diskUsage } from '../../src/sys/du.js';
import { NC, native, poolStats, submitJob } from '../../src/sys/native.js';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const layer = digestOf('a layer');

let dir: string;
let store: LayerStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'store-calls-'));
  store = new LayerStore(dir);
  const root = store.layerPath(layer);
  // Wider than one listing call (4096 entries), deeper than one level, with hardlinks and links.
  for (let d = 0; d < 6; d++) {
    const sub = join(root, `d${d}`, 'deeper', 'deepest');
    await mkdir(sub, { recursive: true });
    for (let f = 0; f < 900; f++) await writeFile(join(root, `d${d}`, `f${f}`), f % 7 === 0 ? 'x'.repeat(5000) : `${d}/${f}`);
    await writeFile(join(sub, 'leaf'), 'leaf');
    await link(join(root, `d${d}`, 'f0'), join(sub, 'hardlink'));
    await symlink('/etc/passwd', join(sub, 'link'));
    await writeFile(join(sub, '.wh.gone'), '');
  }
});
after(async () => { await rm(dir, { recursive: true, force: true }); });

test('the usage of a layer is what du says: bytes on disk and inodes, hardlinks once', async () => {
  const want = await diskUsage(store.layerPath(layer));
  const got = await new PooledLayerStore(store, { deadlineMs: 10_000, maxInFlight: 4 }).usage(layer);
  assert.deepEqual(got, { size: want.size, inodes: want.inodes });
  assert.ok(got.inodes > 5000, `the tree has ${got.inodes} inodes`);
});

test('a layer check is true for a layer, false for one that is not there', async () => {
  const s = new PooledLayerStore(store, { deadlineMs: 10_000, maxInFlight: 4 });
  assert.equal(await s.has(layer), true);
  assert.equal(await s.has(digestOf('missing')), false);
});

/** Holds every pool thread for ms: the next call waits behind them as behind a stalled store. */
function holdPool(ms: number): Promise<void> {
  // No new thread while these sleep (none counts as stuck for a minute); every idle one is taken.
  const threads = Math.max(1, poolStats().threads);
  native.poolConfig(threads, 60_000);
  const done: Promise<void>[] = [];
  for (let i = 0; i < threads; i++) done.push(new Promise((resolve) => { submitJob(NC.OP_SLEEP, () => resolve(), 0, 0, ms); }));
  return Promise.all(done).then(() => undefined);
}

test('a call the store does not answer within the deadline fails with StoreUnanswered, and a late answer is released', async () => {
  const released = holdPool(1500);
  const s = new PooledLayerStore(store, { deadlineMs: 200, maxInFlight: 4 });
  await assert.rejects(s.has(layer), (err: unknown) => err instanceof StoreUnanswered && err.why === 'timeout' && /did not answer within 200 ms/.test(err.message));
  await assert.rejects(s.usage(layer), (err: unknown) => err instanceof StoreUnanswered && err.why === 'timeout');
  assert.equal(s.pending, 2, 'both calls are still in the pool');
  await released;
  // The late answers come back, are closed, and the store answers again.
  while (s.pending > 0) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await s.has(layer), true);
  native.poolConfig(32, 1000);
});

test('past the bound of unanswered calls a call fails at once as busy', async () => {
  const released = holdPool(1500);
  const s = new PooledLayerStore(store, { deadlineMs: 100, maxInFlight: 2 });
  const first = s.has(layer).catch((e: unknown) => e);
  const second = s.has(layer).catch((e: unknown) => e);
  await assert.rejects(s.has(layer), (err: unknown) => err instanceof StoreUnanswered && err.why === 'busy' && /2 calls into the layer store are still unanswered/.test(err.message));
  assert.ok((await first) instanceof StoreUnanswered);
  assert.ok((await second) instanceof StoreUnanswered);
  await released;
  while (s.pending > 0) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await s.has(layer), true, 'once the store answers, calls go through again');
  assert.equal(poolStats().stuck, 0);
  native.poolConfig(32, 1000);
});
