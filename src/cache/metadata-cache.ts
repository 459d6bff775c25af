// A bounded LRU for filesystem metadata. Layers are immutable, so an answer never goes stale:
// the only reason to drop one is room. Negative answers ("no such file", "no such xattr") are
// kept as first-class entries because overlayfs asks for absent trusted.overlay.* xattrs and
// absent names on every lookup, and those questions would otherwise always miss.
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
  maxEntries: number;
}

export interface MetadataCacheOptions {
  /** Upper bound on the number of entries, positive and negative together. */
  maxEntries: number;
}

export class MetadataCache<V extends object> {
  private readonly lru: LRUCache<string, CacheAnswer<V>>;
  // Concurrent misses for one key share a single load, so a burst of kernel requests for the
  // same path costs one syscall and counts one miss per caller.
  private readonly inflight = new Map<string, Promise<CacheAnswer<V>>>();
  private hits = 0;
  private negativeHits = 0;
  private misses = 0;
  private evictions = 0;
  readonly maxEntries: number;

  constructor(opts: MetadataCacheOptions) {
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) {
      throw new RangeError(`cache maxEntries must be a positive integer, got ${String(opts.maxEntries)}`);
    }
    this.maxEntries = opts.maxEntries;
    this.lru = new LRUCache<string, CacheAnswer<V>>({
      max: opts.maxEntries,
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

  setValue(key: string, value: V): void {
    this.lru.set(key, valueAnswer(value));
  }

  setAbsent(key: string, reason: string): void {
    this.lru.set(key, absentAnswer(reason));
  }

  set(key: string, answer: CacheAnswer<V>): void {
    this.lru.set(key, answer);
  }

  /**
   * Answers from the cache, or runs `load` once for all concurrent callers and stores its answer.
   * A load that throws stores nothing: a transient failure (EIO) must not be remembered.
   */
  async resolve(key: string, load: () => Promise<CacheAnswer<V>>): Promise<CacheAnswer<V>> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    const p = load().then(
      (answer) => {
        this.inflight.delete(key);
        this.lru.set(key, answer);
        return answer;
      },
      (err: unknown) => {
        this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /** Drops every entry whose key starts with `prefix`; returns how many went. */
  deletePrefix(prefix: string): number {
    let n = 0;
    for (const k of [...this.lru.keys()]) {
      if (k.startsWith(prefix) && this.lru.delete(k)) n++;
    }
    return n;
  }

  clear(): void {
    this.lru.clear();
  }

  stats(): CacheStats {
    return {
      hits: this.hits,
      negativeHits: this.negativeHits,
      misses: this.misses,
      evictions: this.evictions,
      size: this.lru.size,
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
