// The FUSE server's metadata cache is bounded in bytes, not in entries: names under a deep path
// cost their length, and a flood of distinct negative lookups there (a program probing paths)
// must neither grow the server past its memory request nor turn any answer into a wrong one.
// The entry-bounded cache this replaced reached 1.07 GB of RSS on workload (a).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/mounts/lifecycle.js';
import { NO_OBSERVER, type FuseObserver } from '../../src/fuse/observer.js';
import type { CacheStats } from '../../src/cache/index.js';
import { silentLogger } from '../../src/log.js';
import { Scope } from '../helpers/scope.js';
import { probe } from './fs-probe.js';
import { MiB, buildDeepLayer, dropDentries, mib, missingLookups, missingName, peakRssKb, rssKb, startMemoryServer, storeLayerDir, type DeepLayer } from '../helpers/memory-load.js';

const SERVER_CACHE_BYTES = 32 * MiB;
/** The DaemonSet's memory request for the FUSE server. */
const RSS_LIMIT_KB = 256 * 1024;
const LOOKUPS = 120_000;
const NAME_BYTES = 240;

let scope: Scope;
let store = '';
let root = '';
let layer = '';
let tree: DeepLayer;

before(async () => {
  scope = await Scope.create('cache-bytes');
  store = await scope.mkdir('store');
  root = await scope.mkdir('root');
  layer = storeLayerDir(store, 'cb');
  // 1,000 files: the deep directory is far over 16 KiB, so its names are looked up one by one.
  tree = await buildDeepLayer(layer, 1000);
});

after(async () => {
  await scope?.teardown();
});

test('a FUSE server with --cache-bytes 32 MiB stays within its byte bound and under 256 MiB of RSS through 120,000 negative lookups of 240-byte names under a 3,000-byte path', async (t) => {
  // No background walk: it would list the deep directory, and the names would be answered from
  // that listing without ever filling the cache (--walk-entries 0 is what keeps this test honest).
  const server = await startMemoryServer(scope, { name: 'fuse-server', root, store, cacheBytes: SERVER_CACHE_BYTES, walkEntries: 0 });
  scope.defer('stop the FUSE server', () => server.stop());
  const { client, process: proc } = server;
  const mnt = join(root, 'snapshots', '1', 'fs');
  await client.mount(layer, mnt);
  const dir = join(mnt, tree.deep);
  assert.ok(dir.length > 3000 && dir.length + 1 + NAME_BYTES < 4096, `the looked-up paths are ~3,000 bytes long (${dir.length + 1 + NAME_BYTES})`);

  const stats = async (): Promise<CacheStats> => {
    await client.metrics();
    return client.cacheStats();
  };
  interface Sample { lookups: number; rssKb: number; cache: CacheStats }
  const samples: Sample[] = [{ lookups: 0, rssKb: await rssKb(proc.pid), cache: await stats() }];
  const result = await missingLookups(dir, LOOKUPS, 10_000, NAME_BYTES, async (done) => {
    samples.push({ lookups: done, rssKb: await rssKb(proc.pid), cache: await stats() });
  });
  samples.push({ lookups: LOOKUPS, rssKb: await rssKb(proc.pid), cache: await stats() });
  const peakKb = await peakRssKb(proc.pid);

  for (const s of samples) {
    t.diagnostic(`after ${s.lookups} lookups: RSS ${mib(s.rssKb, 'kB')} MiB, cache ${mib(s.cache.bytes, 'bytes')} of ${mib(s.cache.maxBytes, 'bytes')} MiB in ${s.cache.size} entries, ${s.cache.misses} misses, ${s.cache.evictions} evictions`);
  }
  t.diagnostic(`peak RSS of the server (VmHWM): ${mib(peakKb, 'kB')} MiB`);
  assert.deepEqual({ found: result.found, odd: result.odd }, { found: 0, odd: {} }, 'every name is absent, and says so');
  const last = samples[samples.length - 1] as Sample;
  assert.equal(last.cache.maxBytes, SERVER_CACHE_BYTES, 'the server took --cache-bytes');
  // Every answer was remembered, and then evicted or still held: a listing answering the names
  // instead would leave the cache empty and prove nothing about the bound.
  assert.ok(last.cache.evictions + last.cache.size >= LOOKUPS, `every negative answer went into the cache (${last.cache.evictions} evicted, ${last.cache.size} held)`);
  assert.ok(last.cache.bytes > SERVER_CACHE_BYTES / 2, `the negative answers filled the cache (${last.cache.bytes} bytes)`);
  assert.ok(last.cache.evictions > 0, 'entries were evicted for room');
  for (const s of samples) {
    assert.ok(s.cache.bytes <= s.cache.maxBytes, `after ${s.lookups} lookups the cache holds ${s.cache.bytes} bytes, over its bound of ${s.cache.maxBytes}`);
    assert.ok(s.rssKb < RSS_LIMIT_KB, `after ${s.lookups} lookups the server's RSS is ${mib(s.rssKb, 'kB')} MiB, over its memory request of 256 MiB`);
  }
  assert.ok(peakKb < RSS_LIMIT_KB, `the server's RSS peaked at ${mib(peakKb, 'kB')} MiB, over its memory request of 256 MiB`);
  assert.equal(await client.unmount(mnt), 'unmounted');
});

test('after its cache overflowed, an in-process mounter still finds every name that exists and no name that does not', async (t) => {
  const lookups = { n: 0 };
  const observer: FuseObserver = { ...NO_OBSERVER, op: (name) => { if (name === 'lookup') lookups.n++; } };
  const m = new FuseLayerMounter({ log: silentLogger(), cacheBytes: 1 * MiB, observer, tuning: { censusEntries: 0 } });
  const mnt = await scope.mkdir('in-process', 'mnt');
  try {
    await m.mount(layer, mnt);
    const dir = join(mnt, tree.deep);
    const existing = tree.files.map((f) => join(dir, f));
    // Seen once before the overflow: cached, then evicted by the flood.
    const absentBefore = Array.from({ length: 500 }, (_, i) => join(dir, missingName(i, NAME_BYTES)));
    const first = await probe([...existing, ...absentBefore].map((p) => ({ op: 'lstat' as const, path: p })), { timeoutMs: 60_000 });
    assert.equal(first.filter((r) => r.ok).length, existing.length);

    const flood = await missingLookups(dir, 20_000, 20_000, NAME_BYTES, () => Promise.resolve());
    assert.deepEqual({ found: flood.found, odd: flood.odd }, { found: 0, odd: {} });
    const overflowed = m.cacheStats();
    assert.ok(overflowed.evictions > 0, 'the flood evicted entries');
    assert.ok(overflowed.bytes <= overflowed.maxBytes, `${overflowed.bytes} bytes held, bound ${overflowed.maxBytes}`);

    // The kernel forgets what it knew, so every answer below comes from the server again.
    await dropDentries();
    const askedBefore = lookups.n;
    const absentAfter = Array.from({ length: 500 }, (_, i) => join(dir, missingName(1_000_000 + i, NAME_BYTES)));
    const ops = [...existing, ...absentBefore, ...absentAfter].map((p) => ({ op: 'lstat' as const, path: p }));
    const again = await probe(ops, { timeoutMs: 60_000 });
    const asked = lookups.n - askedBefore;
    t.diagnostic(`cache after the flood: ${overflowed.size} entries, ${overflowed.bytes} bytes, ${overflowed.evictions} evictions; the server answered ${asked} lookups afterwards`);
    assert.ok(asked >= ops.length, `the server, not the kernel, answered the names again (${asked} lookups for ${ops.length} names)`);

    const wrong: string[] = [];
    existing.forEach((p, i) => {
      const r = again[i];
      const want = (tree.files[i] as string).length + 1;
      if (!r?.ok || r.stat?.type !== 'file' || r.stat.size !== want) wrong.push(`${p.slice(-12)}: ${JSON.stringify(r)}`);
    });
    again.slice(existing.length).forEach((r, i) => {
      if (r.ok || r.errno !== 'ENOENT') wrong.push(`absent name ${i}: ${JSON.stringify(r)}`);
    });
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} wrong answers after the overflow`);
    const end = m.cacheStats();
    assert.ok(end.bytes <= end.maxBytes);
  } finally {
    const r = await m.close();
    assert.deepEqual(r.failed, []);
    assert.deepEqual(r.lazilyUnmounted, []);
  }
});
