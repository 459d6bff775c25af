// At most one collection per interval: the FUSE server's registry and the daemon's page both
// rest on throttle(); here with a clock the test moves by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import type { MounterCounters } from '../../src/fuse/index.js';
import type { CacheStats } from '../../src/cache/index.js';
import { silentLogger } from '../../src/log.js';
import { createFuseMetrics, startMetricsServer, throttle } from '../../src/metrics/index.js';

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
  const counters: MounterCounters = { mounts: 1, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 1, passthrough: 0, xattrFree: 0, waitingForStore: 0 };
  const cache: CacheStats = { hits: 0, negativeHits: 0, misses: 0, evictions: 0, size: 0, bytes: 0, maxBytes: 1 << 20, maxEntries: 0 };
  const m = createFuseMetrics({ counters: () => counters, cacheStats: () => cache, pool: () => ({ threads: 1, stuck: 0 }) }, 200);
  const collectionsIn = (json: Awaited<ReturnType<typeof m.collect>>): number | undefined =>
    json.find((f) => f.name === 'cvmfs_snapshotter_fuse_metrics_collections_total')?.values[0]?.value;

  const t0 = performance.now();
  const first = await m.collect();
  assert.equal(collectionsIn(first), 1, 'the first collection counts itself');
  let last = first;
  for (let i = 0; i < 500; i++) last = await m.collect();
  const elapsed = performance.now() - t0;
  const during = collectionsIn(last) ?? NaN;
  assert.ok(during <= 1 + Math.ceil(elapsed / 200), `${during} collections for 501 asks in ${elapsed.toFixed(0)} ms; at most one per 200 ms`);
  if (during === 1) assert.equal(last, first, 'asks within the interval get the first collection itself');
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(collectionsIn(await m.collect()), during + 1, 'after the interval: a new collection');
});

test('the daemon renders /metrics at most once per cacheMs: scrapes in between, and those during a rendering, share it', async () => {
  const registry = new Registry();
  const calls = new Counter({ name: 'x_renders_total', help: 'renders', registers: [registry] });
  let collected = 0;
  let release: () => void = () => undefined;
  let gate: Promise<void> | undefined;
  const source = {
    name: 'slow',
    async collect() {
      collected++;
      calls.inc();
      if (gate) await gate;
      return registry.getMetricsAsJSON();
    },
  };
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, sources: [source], log: silentLogger(), cacheMs: 300 });
  try {
    const scrape = async (): Promise<string> => {
      const res = await fetch(server.url);
      assert.equal(res.status, 200);
      return res.text();
    };
    const t0 = performance.now();
    const first = await scrape();
    await Promise.all(Array.from({ length: 50 }, scrape));
    const elapsed = performance.now() - t0;
    assert.ok(collected <= 1 + Math.ceil(elapsed / 300), `${collected} renderings for 51 scrapes in ${elapsed.toFixed(0)} ms; at most one per 300 ms`);
    await new Promise((resolve) => setTimeout(resolve, 350));
    const again = await scrape();
    assert.notEqual(again, first, 'after the interval: a new rendering');
  } finally {
    await server.close();
  }

  // A slow rendering (on a server whose page never goes stale here): the scrapes that arrive
  // meanwhile wait for it instead of starting their own.
  const slow = await startMetricsServer({ host: '127.0.0.1', port: 0, sources: [source], log: silentLogger(), cacheMs: 60_000 });
  try {
    gate = new Promise<void>((resolve) => { release = resolve; });
    const before = collected;
    const during = Array.from({ length: 20 }, async () => (await fetch(slow.url)).text());
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    gate = undefined;
    const texts = await Promise.all(during);
    assert.equal(collected, before + 1, 'one rendering for the 20 scrapes that came during it');
    assert.ok(texts.every((b) => b === texts[0] && b.includes('x_renders_total')));
  } finally {
    await slow.close();
  }
});
