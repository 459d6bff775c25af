// A bounded LRU for filesystem metadata, bounded in BYTES: a directory listing of 100,000
// entries and a negative lookup of one name must not count the same. Layers are immutable, so
// an answer never goes stale: the only reason to drop one is room. Negative answers ("no such
// file") are first-class entries, because overlayfs and programs searching paths ask for absent
// names all the time. Every entry's cost is its key plus what the caller says its value costs.
import { LRUCache } from 'lru-cache';

/** What the cache knows about a key: a value, or a remembered "it is not there" with its reason. */
export type CacheAnswer<V> =
  | { readonly kind: 'value'; readonly value: V }
  | { readonly kind: 'absent'; readonly reason: string };

export function valueAnswer<V>(value: V): CacheAnswer<V> {
  return { kind: 'value', value };
}

/** `reason` is what the caller will answer with, typically an errno code such as 'ENOENT'. */
export function absentAnswer<V>(reason: string): CacheAnswer<V> {
  return { kind: 'absent', reason };
}

export interface CacheStats {
  /** Lookups answered from the cache, positive or negative. */
  hits: number;
  /** Of the hits, those that were negative answers. */
  negativeHits: number;
  misses: number;
  /** Entries dropped for room. */
  evictions: number;
  /** Entries held now. */
  size: number;
  /** Bytes held now (keys and values, as estimated). */
  bytes: number;
  maxBytes: number;
  /** The bound on entries, if any; 0 for none. */
  maxEntries: number;
}

export interface MetadataCacheOptions {
  /** Upper bound on the bytes held (keys and values together). */
  maxBytes: number;
  /** An extra bound on the number of entries; none by default. */
  maxEntries?: number;
  /** How long dropped namespaces wait for others to share one pass over the keys (default 50 ms). */
  dropDelayMs?: number;
}

/** What one entry costs beyond its key and value: the LRU's node and the answer object. */
const ENTRY_OVERHEAD = 96;

export class MetadataCache<V extends object> {
  private readonly lru: LRUCache<string, CacheAnswer<V>>;
  private hits = 0;
  private negativeHits = 0;
  private misses = 0;
  private evictions = 0;
  /** Namespaces whose keys go on the next turn of the event loop (dropNamespace). */
  private readonly dropping = new Set<string>();
  readonly maxBytes: number;
  readonly maxEntries: number;
  private readonly dropDelayMs: number;

  constructor(opts: MetadataCacheOptions) {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 4096) {
      throw new RangeError(`cache maxBytes must be an integer of at least 4096, got ${String(opts.maxBytes)}`);
    }
    if (opts.maxEntries !== undefined && (!Number.isSafeInteger(opts.maxEntries) || opts.maxEntries < 1)) {
      throw new RangeError(`cache maxEntries must be a positive integer, got ${String(opts.maxEntries)}`);
    }
    this.maxBytes = opts.maxBytes;
    this.maxEntries = opts.maxEntries ?? 0;
    if (opts.dropDelayMs !== undefined && (!Number.isSafeInteger(opts.dropDelayMs) || opts.dropDelayMs < 0)) {
      throw new RangeError(`cache dropDelayMs must be a whole number of milliseconds, got ${String(opts.dropDelayMs)}`);
    }
    this.dropDelayMs = opts.dropDelayMs ?? 50;
    this.lru = new LRUCache<string, CacheAnswer<V>>({
      maxSize: opts.maxBytes,
      // A value too big for the whole budget is simply not kept.
      maxEntrySize: opts.maxBytes,
      ...(opts.maxEntries ? { max: opts.maxEntries } : {}),
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  /** Looks a key up and counts the hit or miss. */
  get(key: string): CacheAnswer<V> | undefined {
    const a = this.lru.get(key);
    if (a === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    if (a.kind === 'absent') this.negativeHits++;
    return a;
  }

  /** Looks a key up without counting and without refreshing its recency. */
  peek(key: string): CacheAnswer<V> | undefined {
    return this.lru.peek(key);
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  /** Keeps a value whose own cost (beyond its key) is valueBytes. */
  setValue(key: string, value: V, valueBytes: number): void {
    this.set(key, valueAnswer(value), valueBytes);
  }

  setAbsent(key: string, reason: string): void {
    this.set(key, absentAnswer(reason), 0);
  }

  set(key: string, answer: CacheAnswer<V>, valueBytes: number): void {
    const size = Math.max(1, Math.ceil(key.length + valueBytes + ENTRY_OVERHEAD));
    if (size > this.maxBytes) {
      this.lru.delete(key);
      return;
    }
    this.lru.set(key, answer, { size });
  }

  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  clear(): void {
    this.lru.clear();
  }

  /**
   * Drops every key of a namespace, ns being a key's text up to and including its first NUL
   * (a layer's keys, once it is unmounted: nothing will ask for them again, and until the LRU
   * reached them they would hold memory a remount of the same layer fills again). Done
   * dropDelayMs later, in one pass over the keys for every namespace dropped meanwhile, so that
   * unmounting thousands of layers one after the other (5,000 took 1.4 s) costs a few dozen
   * passes, not thousands.
   */
  dropNamespace(ns: string): void {
    if (!ns.endsWith('\0') || ns.indexOf('\0') !== ns.length - 1) throw new RangeError('a cache namespace ends with its only NUL');
    if (this.dropping.size === 0) setTimeout(() => this.dropPending(), this.dropDelayMs).unref();
    this.dropping.add(ns);
  }

  private dropPending(): void {
    const gone: string[] = [];
    for (const k of this.lru.keys()) {
      const end = k.indexOf('\0');
      if (end >= 0 && this.dropping.has(k.slice(0, end + 1))) gone.push(k);
    }
    this.dropping.clear();
    for (const k of gone) this.lru.delete(k);
  }

  stats(): CacheStats {
    return {
      hits: this.hits,
      negativeHits: this.negativeHits,
      misses: this.misses,
      evictions: this.evictions,
      size: this.lru.size,
      bytes: this.lru.calculatedSize,
      maxBytes: this.maxBytes,
      maxEntries: this.maxEntries,
    };
  }

  resetStats(): void {
    this.hits = 0;
    this.negativeHits = 0;
    this.misses = 0;
    this.evictions = 0;
  }
}
