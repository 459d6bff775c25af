// What an operator reads about the layer store in /metrics: how long its calls take (CernVM-FS
// answers in microseconds from its cache and in seconds or minutes when it downloads), which
// failed and with what errno, and which passed their deadline. A layer is served in this process
// from a FaultyStore (a python FUSE store in its own process) that is slowed, failed and stalled
// on purpose, and the FUSE server's own metrics (createFuseMetrics) are read after each fault.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { createFuseMetrics } from '../../src/metrics/index.js';
import { poolStats } from '../../src/sys/native.js';
import { samples } from '../helpers/metrics-text.js';
import { Scope } from '../helpers/scope.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';
import { LogCapture } from './fault-kit.js';
import { probeOne } from './fs-probe.js';
import { LAYER_REL, WIDE_DATA, entry, writeWideLayer } from './stall-kit.js';

const DEADLINE_MS = 1500;

let scope: Scope;
let mounter: FuseLayerMounter;
let store: FaultyStore;
let mnt: string;
const log = new LogCapture();
let metrics: ReturnType<typeof createFuseMetrics>;

const sample = async (): Promise<Map<string, number>> => samples(await (await metrics.registry()).metrics());
const storePath = (rel: string): string => `/${LAYER_REL}/${rel}`;

before(async () => {
  scope = await Scope.create('store-metrics');
  let m: FuseLayerMounter | undefined;
  metrics = createFuseMetrics({
    counters: () => (m as FuseLayerMounter).counters(),
    cacheStats: () => (m as FuseLayerMounter).cacheStats(),
    pool: () => poolStats(),
  });
  // Served reads (no passthrough), so that a READ is a store call too; no background walk, so
  // that every store call comes from the reader here.
  m = new FuseLayerMounter({ log: log.logger, observer: metrics.observer, tuning: { storeDeadlineMs: DEADLINE_MS, passthrough: false, censusEntries: 0 } });
  mounter = m;
  scope.defer('close the layer mounter', async () => { assert.deepEqual((await mounter.close()).failed, []); });
  const backing = await scope.mkdir('backing');
  const storeMnt = await scope.mkdir('store');
  writeWideLayer(path.join(backing, LAYER_REL));
  store = await FaultyStore.start(backing, storeMnt);
  scope.defer('stop the store', () => store.stop());
  mnt = scope.path('mnt');
  await mounter.mount(path.join(storeMnt, LAYER_REL), mnt, log.logger);
  scope.defer('unmount the layer', async () => { await mounter.unmount(mnt); });
  // Runs first: a stalled request would keep the unmount waiting.
  scope.defer('heal the store', async () => { if (store.running) await store.heal(); });
});

after(() => scope.teardown());

test('a slow store shows in the time of its calls, by call', async () => {
  const rel = `D/${entry(5)}`;
  await store.delay(storePath(rel), 'lookup', 400);
  const r = await probeOne({ op: 'lstat', path: path.join(mnt, rel) });
  await store.heal();
  assert.equal(r.stat?.size, 5, 'the slow lookup answered');
  const s = await sample();
  const count = s.get('cvmfs_snapshotter_store_call_duration_seconds_count{call="lookup"}') ?? 0;
  const fast = s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="0.25",call="lookup"}') ?? 0;
  assert.ok(count >= 1, `lookups on the store are counted (${count})`);
  assert.ok(count - fast >= 1, `the lookup that took 400 ms is above the 0.25 s bound (${count} lookups, ${fast} within 0.25 s)`);
  assert.ok((s.get('cvmfs_snapshotter_store_call_duration_seconds_sum{call="lookup"}') ?? 0) >= 0.4, 'its time is in the sum');
});

test('a store that fails an open or a read is counted by call and errno, and a name the layer lacks is not a failure', async () => {
  const before = await sample();
  const errors = (call: string, errno: string, s: Map<string, number>): number => s.get(`cvmfs_snapshotter_store_call_errors_total{call="${call}",errno="${errno}"}`) ?? 0;
  const missing = await probeOne({ op: 'lstat', path: path.join(mnt, 'D', 'no-such-entry') });
  assert.equal(missing.errno, 'ENOENT');
  await store.fail(storePath(`D/${entry(7)}`), 'open', 'EIO');
  const opened = await probeOne({ op: 'read', path: path.join(mnt, 'D', entry(7)) });
  await store.fail(storePath('data.txt'), 'read', 'EIO');
  const read = await probeOne({ op: 'read', path: path.join(mnt, 'data.txt') });
  await store.heal();
  const again = await probeOne({ op: 'read', path: path.join(mnt, 'data.txt') });
  assert.deepEqual([opened.errno, read.errno, again.data?.toString()], ['EIO', 'EIO', WIDE_DATA]);
  const after = await sample();
  // The kernel may ask twice before it gives up on a page (read-ahead, then the read itself).
  const opens = errors('open', 'EIO', after) - errors('open', 'EIO', before);
  const reads = errors('read', 'EIO', after) - errors('read', 'EIO', before);
  assert.ok(opens >= 1 && opens <= 2, `the failed open is counted (${opens})`);
  assert.ok(reads >= 1 && reads <= 2, `the failed read is counted (${reads})`);
  assert.equal(errors('lookup', 'ENOENT', after), 0, 'the missing name');
});

test('a call past its deadline is counted when it passes, and timed when the store answers it at last', async () => {
  const rel = `D/${entry(11)}`;
  const slow = (s: Map<string, number>): number => (s.get('cvmfs_snapshotter_store_call_duration_seconds_count{call="lookup"}') ?? 0)
    - (s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="1",call="lookup"}') ?? 0);
  const before = await sample();
  await store.stall(storePath(rel), 'lookup');
  const r = await probeOne({ op: 'lstat', path: path.join(mnt, rel) });
  assert.equal(r.errno, 'EIO', 'answered EIO at the deadline');
  const passed = await sample();
  assert.equal(passed.get('cvmfs_snapshotter_store_call_deadlines_total{call="lookup"}'), 1);
  assert.equal(slow(passed), slow(before), 'not timed while the store holds it');
  await store.heal();
  await waitUntil(async () => slow(await sample()) === slow(before) + 1, { what: 'the late lookup to be timed once the store answers', timeoutMs: 10_000 });
  const again = await probeOne({ op: 'lstat', path: path.join(mnt, rel) });
  assert.equal(again.stat?.size, 11);
  assert.equal((await sample()).get('cvmfs_snapshotter_store_call_deadlines_total{call="lookup"}'), 1, 'the answered lookup passed no deadline');
});
