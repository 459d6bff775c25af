// At most one collection per interval: the FUSE server's registry and the daemon's page both
// rest on throttle(); here with a clock the test moves by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MounterCounters } from '../../src/fuse/index.js';
import type { CacheStats } from '../../src/cache/index.js';
import { createFuseMetrics, throttle } from '../../src/metrics/index.js';

test('throttle runs at most once per interval, shares a run under way, and keeps no failure', async () => {
  let t = 0;
  let runs = 0;
  let fail = false;
  let release: () => void = () => undefined;
  let gate: Promise<void> | undefined;
  const get = throttle(async () => {
    runs++;
    if (gate) await gate;
    if (fail) throw new Error(`run ${runs} failed`);
    return runs;
  }, 1000, () => t);

  assert.equal(await get(), 1);
  t = 999;
  assert.deepEqual(await Promise.all([get(), get(), get()]), [1, 1, 1], 'within the interval: the first run\'s answer');
  t = 1000;
  assert.equal(await get(), 2, 'a new run once the interval is over');

  // A slow run: everyone asking meanwhile shares it, even past the interval.
  gate = new Promise<void>((resolve) => { release = resolve; });
  t = 2000;
  const a = get();
  t = 5000;
  const b = get();
  release();
  gate = undefined;
  assert.deepEqual([await a, await b], [3, 3]);
  assert.equal(runs, 3);

  // A failure is the answer of the askers who shared it, and is not kept.
  t = 6000;
  fail = true;
  await assert.rejects(get(), /run 4 failed/);
  fail = false;
  assert.equal(await get(), 5, 'the next ask runs again at once');
  assert.equal(get.runs, 5);
});

test('the FUSE registry is collected at most once per second, and counts its collections', async () => {
  const counters: MounterCounters = { mounts: 1, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 1, passthrough: 0, waitingForStore: 0 };
  const cache: CacheStats = { hits: 0, negativeHits: 0, misses: 0, evictions: 0, size: 0, bytes: 0, maxBytes: 1 << 20, maxEntries: 0 };
  let reads = 0;
  const m = createFuseMetrics({ counters: () => { reads++; return counters; }, cacheStats: () => cache, pool: () => ({ threads: 1, stuck: 0 }) }, 200);
  const collectionsIn = (json: Awaited<ReturnType<typeof m.collect>>): number | undefined =>
    json.find((f) => f.name === 'cvmfs_snapshotter_fuse_metrics_collections_total')?.values[0]?.value;

  const first = await m.collect();
  assert.equal(collectionsIn(first), 1, 'the first collection counts itself');
  const readsAfterFirst = reads;
  const t0 = performance.now();
  let asked = 0;
  let last = first;
  while (performance.now() - t0 < 150) {
    last = await m.collect();
    asked++;
  }
  assert.ok(asked > 100, `asked ${asked} times`);
  assert.equal(last, first, 'every ask within the interval got the first collection');
  assert.equal(reads, readsAfterFirst, 'and the mounter was not asked again');
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(collectionsIn(await m.collect()), 2, 'after the interval: a second collection');
});
