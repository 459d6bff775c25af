// The metric definitions and the merge of registries, without a daemon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Counter, Registry } from 'prom-client';
import type { MounterCounters } from '../../src/fuse/index.js';
import type { CacheStats } from '../../src/cache/index.js';
import {
  createDaemonMetrics, createFuseMetrics, errnoLabel, grpcCodeLabel, mergeMetrics, registrySource, type MetricsSource,
} from '../../src/metrics/index.js';
import { samples } from '../helpers/metrics-text.js';

test('gRPC codes are labelled as Go spells them, and stay bounded', () => {
  assert.equal(grpcCodeLabel('OK'), 'OK');
  assert.equal(grpcCodeLabel('NOT_FOUND'), 'NotFound');
  assert.equal(grpcCodeLabel('CANCELLED'), 'Canceled');
  assert.equal(grpcCodeLabel('FAILED_PRECONDITION'), 'FailedPrecondition');
  assert.equal(grpcCodeLabel('5'), 'NotFound');
  assert.equal(grpcCodeLabel('99'), 'Unknown');
  assert.equal(grpcCodeLabel('whatever'), 'Unknown');
});

test('errnos are labelled by name, whatever their sign', () => {
  assert.equal(errnoLabel(-2), 'ENOENT');
  assert.equal(errnoLabel(2), 'ENOENT');
  assert.equal(errnoLabel(-61), 'ENODATA');
  assert.equal(errnoLabel(-100000), 'EUNKNOWN');
});

test('the FUSE observer and the mounter counters show up in the FUSE registry', async () => {
  const counters: MounterCounters = { mounts: 3, unmounts: 1, lazyUnmounts: 1, staleCleared: 0, failedUnmounts: 0, active: 1, passthrough: 1, xattrFree: 1, waitingForStore: 0 };
  const cache: CacheStats = { hits: 10, negativeHits: 2, misses: 4, evictions: 0, size: 14, bytes: 2000, maxBytes: 65536, maxEntries: 100 };
  const m = createFuseMetrics({ counters: () => counters, cacheStats: () => cache, pool: () => ({ threads: 2, stuck: 0 }) });
  m.observer.op('lookup', 0.00002, 0);
  m.observer.op('lookup', 0.00003, -2);
  m.observer.op('read', 0.0004, 0);
  m.observer.bytesServed(4096);
  m.observer.bytesServed(100);
  let s = samples(await (await m.registry()).metrics());
  assert.equal(s.get('cvmfs_snapshotter_fuse_request_duration_seconds_count{op="lookup"}'), 2);
  assert.equal(s.get('cvmfs_snapshotter_fuse_request_duration_seconds_count{op="read"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_fuse_request_duration_seconds_bucket{le="0.000025",op="lookup"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_fuse_request_errors_total{op="lookup",errno="ENOENT"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_fuse_read_bytes_total'), 4196);
  assert.equal(s.get('cvmfs_snapshotter_layers_mounted'), 1);
  assert.equal(s.get('cvmfs_snapshotter_layer_mounts_total'), 3);
  assert.equal(s.get('cvmfs_snapshotter_layer_unmounts_total{mode="normal"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_layer_unmounts_total{mode="lazy"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_metadata_cache_hits_total'), 10);
  assert.equal(s.get('cvmfs_snapshotter_metadata_cache_misses_total'), 4);
  assert.equal(s.get('cvmfs_snapshotter_metadata_cache_entries'), 14);
  assert.equal(s.get('cvmfs_snapshotter_layers_passthrough'), 1);
  assert.equal(s.get('cvmfs_snapshotter_layers_xattr_free'), 1);
  // Mirrored counters follow the mounter's counts on every scrape, without adding up.
  counters.mounts = 5;
  counters.active = 0;
  cache.hits = 11;
  s = samples(await (await m.registry()).metrics());
  assert.equal(s.get('cvmfs_snapshotter_layer_mounts_total'), 5);
  assert.equal(s.get('cvmfs_snapshotter_layers_mounted'), 0);
  assert.equal(s.get('cvmfs_snapshotter_metadata_cache_hits_total'), 11);
});

test('calls on the layer store show up in the FUSE registry: their time by call, failures by errno, deadlines passed and roots reopened', async () => {
  const counters: MounterCounters = { mounts: 0, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 0, passthrough: 0, xattrFree: 0, waitingForStore: 0 };
  const cache: CacheStats = { hits: 0, negativeHits: 0, misses: 0, evictions: 0, size: 0, bytes: 0, maxBytes: 65536, maxEntries: 100 };
  const m = createFuseMetrics({ counters: () => counters, cacheStats: () => cache, pool: () => ({ threads: 2, stuck: 0 }) });
  let s = samples(await (await m.registry()).metrics());
  assert.equal(s.get('cvmfs_snapshotter_store_reopens_total'), 0, 'shown before anything happened');
  m.observer.storeCall('lookup', 0.00002);
  m.observer.storeCall('lookup', 0.003);
  m.observer.storeCall('read', 45);
  m.observer.storeCall('list', 200);
  m.observer.storeError('open', -5);
  m.observer.storeError('open', 5);
  m.observer.storeError('lookup', -116);
  m.observer.storeDeadline('list');
  m.observer.storeReopen();
  s = samples(await (await m.registry()).metrics());
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_count{call="lookup"}'), 2);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="0.000025",call="lookup"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="0.0025",call="lookup"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="0.01",call="lookup"}'), 2);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="30",call="read"}'), 0);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="60",call="read"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="60",call="list"}'), 0, 'past the last bound');
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_bucket{le="+Inf",call="list"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_call_duration_seconds_sum{call="read"}'), 45);
  assert.equal(s.get('cvmfs_snapshotter_store_call_errors_total{call="open",errno="EIO"}'), 2);
  assert.equal(s.get('cvmfs_snapshotter_store_call_errors_total{call="lookup",errno="ESTALE"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_call_deadlines_total{call="list"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_store_reopens_total'), 1);
});

test('gRPC calls and decisions show up in the daemon registry, with process metrics under the prefix', async () => {
  const m = createDaemonMetrics();
  m.call('Stat', 'NOT_FOUND', 0.0001);
  m.call('Stat', 'OK', 0.0001);
  m.call('Stat', 'OK', 0.0002);
  m.decision(true, 'in_store');
  m.decision(false, 'not_in_store');
  m.decision(false, 'not_in_store');
  const text = await m.registry.metrics();
  const s = samples(text);
  assert.equal(s.get('cvmfs_snapshotter_grpc_requests_total{method="Stat",code="NotFound"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_grpc_requests_total{method="Stat",code="OK"}'), 2);
  assert.equal(s.get('cvmfs_snapshotter_grpc_request_duration_seconds_count{method="Stat"}'), 3);
  assert.equal(s.get('cvmfs_snapshotter_layer_decisions_total{decision="remote",reason="in_store"}'), 1);
  assert.equal(s.get('cvmfs_snapshotter_layer_decisions_total{decision="downloaded",reason="not_in_store"}'), 2);
  assert.ok(s.has('cvmfs_snapshotter_process_resident_memory_bytes'), 'default process metrics are there');
  assert.ok(s.has('cvmfs_snapshotter_process_start_time_seconds'));
  for (const line of text.split('\n').filter((l) => l.startsWith('# HELP '))) {
    assert.match(line, /^# HELP cvmfs_snapshotter_\S+ \S/, 'every metric has the prefix and a HELP text');
  }
});

test('merging: families of one source pass through, shared ones add up, a failing source is left out', async () => {
  const a = new Registry();
  const b = new Registry();
  new Counter({ name: 'only_a_total', help: 'a', registers: [a] }).inc(2);
  new Counter({ name: 'only_b_total', help: 'b', registers: [b], aggregator: 'omit' }).inc(3);
  new Counter({ name: 'shared_total', help: 's', labelNames: ['k'], registers: [a] }).inc({ k: 'x' }, 1);
  new Counter({ name: 'shared_total', help: 's', labelNames: ['k'], registers: [b] }).inc({ k: 'x' }, 4);
  const broken: MetricsSource = { name: 'broken', collect: () => Promise.reject(new Error('gone')) };
  // Over a socket the JSON loses its functions: a source made from parsed JSON must work too.
  const overTheWire: MetricsSource = { name: 'b', collect: async () => JSON.parse(JSON.stringify(await b.getMetricsAsJSON())) };
  const merged = await mergeMetrics([registrySource('a', a), overTheWire, broken]);
  assert.deepEqual(merged.failed.map((f) => f.name), ['broken']);
  const text = await merged.registry.metrics();
  const s = samples(text);
  assert.equal(s.get('only_a_total'), 2);
  assert.equal(s.get('only_b_total'), 3, 'an "omit" family of a single source is kept');
  assert.equal(s.get('shared_total{k="x"}'), 5);
  assert.match(text, /# HELP only_a_total a\n# TYPE only_a_total counter/);
});

test('the FUSE server process does not load prom-client: its metrics are counted and rendered without it', () => {
  // In a child, so that what this test file imports does not count.
  const entry = fileURLToPath(new URL('../../src/cli/fuse-server.js', import.meta.url));
  const script = `import { createRequire } from 'node:module';
await import(${JSON.stringify(entry)});
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/prom-client/'));
process.stdout.write(JSON.stringify(loaded));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [], 'prom-client modules loaded by the FUSE server command');
});
