// The FUSE side's metrics, in a registry of their own: the FUSE server process owns it and hands
// its contents over the control socket to the daemon's HTTP endpoint, as one source among others
// (see merge.ts), at most one collection per second.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CacheStats } from '../cache/index.js';
import type { FuseObserver, MounterCounters } from '../fuse/index.js';
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
  readonly registry: Registry;
  /**
   * The registry's contents, collected at most once per FUSE_METRICS_INTERVAL_MS however often
   * this is called (a scraper must not make the server that serves every layer busy); callers
   * within the interval get the last collection.
   */
  collect(): Promise<MetricsJson>;
  /** Give this to the FUSE layer; it is called on every request, so it only increments. */
  readonly observer: FuseObserver;
}

// FUSE requests take tens of microseconds when answered from memory and up to seconds when
// the store is a cold CernVM-FS mount.
const REQUEST_BUCKETS = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1, 2.5];

/** A prom-client counter that mirrors a count kept elsewhere: set to it on every scrape. */
function mirror(counter: Counter, value: number, labels?: Record<string, string>): void {
  if (labels) {
    counter.remove(labels);
    counter.inc(labels, value);
  } else {
    counter.reset();
    counter.inc(value);
  }
}

export function createFuseMetrics(mounter: MounterStats, intervalMs = FUSE_METRICS_INTERVAL_MS): FuseMetrics {
  const registry = new Registry();
  const registers = [registry];

  const collections = new Counter({
    name: `${PREFIX}fuse_metrics_collections_total`,
    help: `Collections of the FUSE server's metrics; at most one per ${intervalMs / 1000} s, however often they are scraped.`,
    registers,
  });

  const duration = new Histogram({
    name: `${PREFIX}fuse_request_duration_seconds`,
    help: 'Time to answer a FUSE request, by operation; its _count is the number of requests answered.',
    labelNames: ['op'],
    buckets: REQUEST_BUCKETS,
    registers,
  });
  const errors = new Counter({
    name: `${PREFIX}fuse_request_errors_total`,
    help: 'FUSE requests answered with an error, by operation and errno name (ENOENT for a missing name is normal).',
    labelNames: ['op', 'errno'],
    registers,
  });
  const bytes = new Counter({
    name: `${PREFIX}fuse_read_bytes_total`,
    help: 'File bytes handed to the kernel by FUSE READ requests.',
    registers,
  });

  new Gauge({
    name: `${PREFIX}layers_mounted`,
    help: 'Layer filesystems mounted and served now.',
    registers,
    collect() { this.set(mounter.counters().active); },
  });
  new Counter({
    name: `${PREFIX}layer_mounts_total`,
    help: 'Layer filesystems mounted since the start.',
    registers,
    collect() { mirror(this, mounter.counters().mounts); },
  });
  new Counter({
    name: `${PREFIX}layer_unmounts_total`,
    help: 'Layer filesystems unmounted since the start, by mode: normal, or lazy (busy, detached and freed when the last user goes).',
    labelNames: ['mode'],
    registers,
    collect() {
      const c = mounter.counters();
      mirror(this, c.unmounts, { mode: 'normal' });
      mirror(this, c.lazyUnmounts, { mode: 'lazy' });
    },
  });

  new Counter({
    name: `${PREFIX}metadata_cache_hits_total`,
    help: 'Metadata lookups of the FUSE layers answered from the cache, positive or negative.',
    registers,
    collect() { mirror(this, mounter.cacheStats().hits); },
  });
  new Counter({
    name: `${PREFIX}metadata_cache_misses_total`,
    help: 'Metadata lookups of the FUSE layers that had to ask the layer store.',
    registers,
    collect() { mirror(this, mounter.cacheStats().misses); },
  });
  new Counter({
    name: `${PREFIX}metadata_cache_evictions_total`,
    help: 'Metadata cache entries dropped to make room.',
    registers,
    collect() { mirror(this, mounter.cacheStats().evictions); },
  });
  new Gauge({
    name: `${PREFIX}metadata_cache_entries`,
    help: 'Entries in the metadata cache now.',
    registers,
    collect() { this.set(mounter.cacheStats().size); },
  });
  new Gauge({
    name: `${PREFIX}metadata_cache_max_entries`,
    help: 'The bound of the metadata cache, in entries (metadata-cache-entries in the config; 0: none).',
    registers,
    collect() { this.set(mounter.cacheStats().maxEntries); },
  });
  new Gauge({
    name: `${PREFIX}metadata_cache_bytes`,
    help: 'Bytes held by the metadata cache now (as estimated: keys, values and bookkeeping).',
    registers,
    collect() { this.set(mounter.cacheStats().bytes); },
  });
  new Gauge({
    name: `${PREFIX}metadata_cache_max_bytes`,
    help: 'The bound of the metadata cache, in bytes (metadata-cache-bytes in the config).',
    registers,
    collect() { this.set(mounter.cacheStats().maxBytes); },
  });
  new Gauge({
    name: `${PREFIX}layers_passthrough`,
    help: 'Layer filesystems mounted now whose file reads go straight to the store (FUSE passthrough).',
    registers,
    collect() { this.set(mounter.counters().passthrough); },
  });
  const fallbacks = new Counter({
    name: `${PREFIX}fuse_passthrough_fallbacks_total`,
    help: 'Reads that fell back from passthrough to being served: per mount (reason kernel or disabled) or per file (the errno the kernel refused it with).',
    labelNames: ['reason'],
    registers,
  });
  new Gauge({
    name: `${PREFIX}fuse_requests_waiting_for_store`,
    help: 'FUSE requests waiting for the layer store now.',
    registers,
    collect() { this.set(mounter.counters().waitingForStore); },
  });
  new Gauge({
    name: `${PREFIX}fuse_store_threads`,
    help: 'Threads of the store pool now.',
    registers,
    collect() { this.set(mounter.pool().threads); },
  });
  new Gauge({
    name: `${PREFIX}fuse_store_stuck_threads`,
    help: 'Store pool threads in one store call for more than a second (a stalled store).',
    registers,
    collect() { this.set(mounter.pool().stuck); },
  });

  // Per-request work is an increment on a child found once per operation name.
  const durations = new Map<string, ReturnType<typeof duration.labels>>();
  const observer: FuseObserver = {
    op(name, seconds, errno) {
      let d = durations.get(name);
      if (!d) {
        d = duration.labels({ op: name });
        durations.set(name, d);
      }
      d.observe(seconds);
      if (errno !== 0) errors.inc({ op: name, errno: errnoLabel(errno) });
    },
    bytesServed(n) {
      if (n > 0) bytes.inc(n);
    },
    passthroughFallback(reason) {
      fallbacks.inc({ reason: /^[A-Za-z0-9_]{1,24}$/.test(reason) ? reason : 'other' });
    },
  };
  const collect = throttle(async () => {
    // Counted before the collection, so that the count includes the collection that reports it.
    collections.inc();
    return registry.getMetricsAsJSON();
  }, intervalMs);
  return { registry, observer, collect };
}
