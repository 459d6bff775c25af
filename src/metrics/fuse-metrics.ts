// The FUSE side's metrics: the FUSE server process counts them and hands them over the control
// socket to the daemon's HTTP endpoint, as one source among others (see merge.ts), at most one
// collection per second. They are kept in plain counts and rendered as prom-client's JSON by
// hand, so that the server never loads prom-client (measured: 3.4 MiB of anonymous memory and
// 4.1 MiB of RSS on import, in a process whose idle RSS is ~56 MiB), and a request's count is an
// increment in an array instead of prom-client's label hashing.
import type { Registry } from 'prom-client';
import type { CacheStats } from '../cache/index.js';
import type { FuseObserver, MounterCounters, StoreCall } from '../fuse/index.js';
import type { MetricsJson } from './merge.js';
import { errnoLabel, PREFIX } from './names.js';
import { throttle } from './throttle.js';

/** What these metrics read from the mounter when scraped. */
export interface MounterStats {
  counters(): MounterCounters;
  cacheStats(): CacheStats;
  /** The store pool's threads now, and how many of them wait on a store that stopped answering. */
  pool(): { threads: number; stuck: number };
}

/** The FUSE server collects its registry at most this often; askers in between get the last collection. */
export const FUSE_METRICS_INTERVAL_MS = 1000;

export interface FuseMetrics {
  /** A registry of one collection, rendered by prom-client (loaded then): for readers in this process. */
  registry(): Promise<Registry>;
  /**
   * The registry's contents, collected at most once per FUSE_METRICS_INTERVAL_MS however often
   * this is called (a scraper must not make the server that serves every layer busy); callers
   * within the interval get the last collection.
   */
  collect(): Promise<MetricsJson>;
  /** Give this to the FUSE layer; it is called on every request, so it only increments. */
  readonly observer: FuseObserver;
  /** FUSE requests answered since the start, all operations together. */
  answered(): number;
}

// FUSE requests take tens of microseconds when answered from memory and up to seconds when
// the store is a cold CernVM-FS mount.
const REQUEST_BUCKETS = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1, 2.5];
// A store call takes microseconds when the store's metadata and pages are cached, and up to
// minutes when CernVM-FS downloads a file through a slow proxy (its deadline is minutes too).
const STORE_BUCKETS = [2.5e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 2.5e-2, 0.1, 0.25, 1, 2.5, 10, 30, 60];

/** One sample as prom-client's getMetricsAsJSON() has it. */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** One family as prom-client's getMetricsAsJSON() has it; every family here adds up across sources. */
interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

/** One operation's request durations: per bucket (not cumulative), their sum and count. */
interface OpTally {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

function tally(m: Map<string, OpTally>, key: string, bounds: readonly number[], seconds: number): void {
  let t = m.get(key);
  if (!t) {
    t = { buckets: new Float64Array(bounds.length), sum: 0, count: 0 };
    m.set(key, t);
  }
  t.sum += seconds;
  t.count++;
  for (let i = 0; i < bounds.length; i++) {
    if (seconds <= (bounds[i] as number)) {
      (t.buckets[i] as number)++;
      break;
    }
  }
}

/** A histogram family from tallies keyed by the value of `label`. */
function histogram(name: string, help: string, label: string, bounds: readonly number[], m: ReadonlyMap<string, OpTally>): Family {
  const full = `${PREFIX}${name}`;
  const values: Sample[] = [];
  for (const [key, t] of m) {
    let acc = 0;
    bounds.forEach((le, i) => {
      acc += t.buckets[i] as number;
      values.push({ value: acc, labels: { le, [label]: key }, metricName: `${full}_bucket` });
    });
    values.push({ value: t.count, labels: { le: '+Inf', [label]: key }, metricName: `${full}_bucket` });
    values.push({ value: t.sum, labels: { [label]: key }, metricName: `${full}_sum` });
    values.push({ value: t.count, labels: { [label]: key }, metricName: `${full}_count` });
  }
  return { name: full, help, type: 'histogram', values, aggregator: 'sum' };
}

/** Counts by two labels, as a counter family. */
function byTwo(name: string, help: string, l1: string, l2: string, m: ReadonlyMap<string, ReadonlyMap<string, number>>): Family {
  const values: Sample[] = [];
  for (const [v1, inner] of m) for (const [v2, value] of inner) values.push({ value, labels: { [l1]: v1, [l2]: v2 } });
  return { name: `${PREFIX}${name}`, help, type: 'counter', values, aggregator: 'sum' };
}

function bump<K>(m: Map<K, number>, k: K): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Counts by two keys: bump2(m, a, b) adds one to m[a][b]. */
function bump2<K>(m: Map<string, Map<K, number>>, a: string, b: K): void {
  let inner = m.get(a);
  if (!inner) {
    inner = new Map();
    m.set(a, inner);
  }
  bump(inner, b);
}

function one(name: string, help: string, type: 'counter' | 'gauge', value: number): Family {
  return { name: `${PREFIX}${name}`, help, type, values: [{ value, labels: {} }], aggregator: 'sum' };
}

function labelled(name: string, help: string, label: string, counts: ReadonlyMap<string, number>): Family {
  return { name: `${PREFIX}${name}`, help, type: 'counter', values: [...counts].map(([v, value]) => ({ value, labels: { [label]: v } })), aggregator: 'sum' };
}

export function createFuseMetrics(mounter: MounterStats, intervalMs = FUSE_METRICS_INTERVAL_MS): FuseMetrics {
  const ops = new Map<string, OpTally>();
  /** Errors by operation, then by errno name. */
  const errors = new Map<string, Map<string, number>>();
  const fallbacks = new Map<string, number>();
  const storeCalls = new Map<string, OpTally>();
  /** Store calls that failed, by call, then by errno name. */
  const storeErrors = new Map<string, Map<string, number>>();
  const storeDeadlines = new Map<StoreCall, number>();
  let storeReopens = 0;
  let bytes = 0;
  let collections = 0;
  let answered = 0;

  // Per-request work: a map lookup by operation name and an increment.
  const observer: FuseObserver = {
    op(name, seconds, errno) {
      tally(ops, name, REQUEST_BUCKETS, seconds);
      answered++;
      if (errno !== 0) bump2(errors, name, errnoLabel(errno));
    },
    bytesServed(n) {
      if (n > 0) bytes += n;
    },
    passthroughFallback(reason) {
      const r = /^[A-Za-z0-9_]{1,24}$/.test(reason) ? reason : 'other';
      bump(fallbacks, r);
    },
    storeCall(call, seconds) {
      tally(storeCalls, call, STORE_BUCKETS, seconds);
    },
    storeError(call, errno) {
      bump2(storeErrors, call, errnoLabel(errno));
    },
    storeDeadline(call) {
      bump(storeDeadlines, call);
    },
    storeReopen() {
      storeReopens++;
    },
  };

  function render(): Family[] {
    const c = mounter.counters();
    const cache = mounter.cacheStats();
    const pool = mounter.pool();
    return [
      one('fuse_metrics_collections_total', `Collections of the FUSE server's metrics; at most one per ${intervalMs / 1000} s, however often they are scraped.`, 'counter', collections),
      histogram('fuse_request_duration_seconds', 'Time to answer a FUSE request, by operation; its _count is the number of requests answered.', 'op', REQUEST_BUCKETS, ops),
      byTwo('fuse_request_errors_total', 'FUSE requests answered with an error, by operation and errno name (ENOENT for a missing name is normal).', 'op', 'errno', errors),
      one('fuse_read_bytes_total', 'File bytes handed to the kernel by FUSE READ requests.', 'counter', bytes),
      one('layers_mounted', 'Layer filesystems mounted and served now.', 'gauge', c.active),
      one('layer_mounts_total', 'Layer filesystems mounted since the start.', 'counter', c.mounts),
      labelled('layer_unmounts_total', 'Layer filesystems unmounted since the start, by mode: normal, or lazy (busy, detached and freed when the last user goes).',
        'mode', new Map([['normal', c.unmounts], ['lazy', c.lazyUnmounts]])),
      one('metadata_cache_hits_total', 'Metadata lookups of the FUSE layers answered from the cache, positive or negative.', 'counter', cache.hits),
      one('metadata_cache_misses_total', 'Metadata lookups of the FUSE layers that had to ask the layer store.', 'counter', cache.misses),
      one('metadata_cache_evictions_total', 'Metadata cache entries dropped to make room.', 'counter', cache.evictions),
      one('metadata_cache_entries', 'Entries in the metadata cache now.', 'gauge', cache.size),
      one('metadata_cache_max_entries', 'The bound of the metadata cache, in entries (metadata-cache-entries in the config; 0: none).', 'gauge', cache.maxEntries),
      one('metadata_cache_bytes', 'Bytes held by the metadata cache now (as estimated: keys, values and bookkeeping).', 'gauge', cache.bytes),
      one('metadata_cache_max_bytes', 'The bound of the metadata cache, in bytes (metadata-cache-bytes in the config).', 'gauge', cache.maxBytes),
      one('layers_passthrough', 'Layer filesystems mounted now whose file reads go straight to the store (FUSE passthrough).', 'gauge', c.passthrough),
      one('layers_xattr_free', 'Layer filesystems mounted now that were found to hold no xattr and no opaque directory: neither the kernel nor the store is asked for xattrs.', 'gauge', c.xattrFree),
      labelled('fuse_passthrough_fallbacks_total', 'Reads that fell back from passthrough to being served: per mount (reason kernel or disabled) or per file (the errno the kernel refused it with).',
        'reason', fallbacks),
      one('fuse_requests_waiting_for_store', 'FUSE requests waiting for the layer store now.', 'gauge', c.waitingForStore),
      one('fuse_store_threads', 'Threads of the store pool now.', 'gauge', pool.threads),
      one('fuse_store_stuck_threads', 'Store pool threads in one store call for more than a second (a stalled store).', 'gauge', pool.stuck),
      histogram('store_call_duration_seconds', 'Time the layer store took to answer a call of the FUSE server, by call (lookup, list, stat, readlink, getxattr, open, read, close, statfs); a call past its deadline is counted when it comes back.',
        'call', STORE_BUCKETS, storeCalls),
      byTwo('store_call_errors_total', 'Calls on the layer store that failed, by call and errno name (a name the layer lacks is not a failure).', 'call', 'errno', storeErrors),
      labelled('store_call_deadlines_total', 'Calls on the layer store not answered within store-timeout, answered EIO while the store still held them, by call.', 'call', storeDeadlines),
      one('store_reopens_total', 'Layer directories that stopped answering (ENOTCONN, ESTALE: a CernVM-FS mount that crashed and came back) and were opened again.', 'counter', storeReopens),
    ];
  }

  // prom-client's types declare a family's type as a numeric enum and require its collect hook;
  // its JSON has the type's name and no hook, which is what is built here.
  const json = (): MetricsJson => render() as unknown as MetricsJson;
  const collect = throttle(async () => {
    // Counted before the collection, so that the count includes the collection that reports it.
    collections++;
    return json();
  }, intervalMs);
  const registry = async (): Promise<Registry> => (await import('prom-client')).AggregatorRegistry.aggregate([json()]);
  return { registry, observer, collect, answered: () => answered };
}
