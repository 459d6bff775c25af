// The FUSE server gives memory back when it idles. Its heap grows while it serves (a walk of a
// big layer, a burst of container starts) and V8 keeps what it grew to: a memory-reducing
// collection comes by itself only ~8 s after a mark-compact, and only when one armed its
// timer, so a server often sat at its busy size. Once no request has been answered and no store
// call has run for a while, and the RSS stands well above where the last reduction left it,
// this runs one reduction (native reduceMemory: V8's low-memory collection, then malloc_trim).
// It costs a synchronous collection of ~10-60 ms, paid at most once per quiet spell after growth.
import type { Logger } from '../../log.js';

export interface IdleMemoryOptions {
  /** FUSE requests answered so far. */
  answered(): number;
  /** Whether work is under way that answered() does not count (store calls in flight). */
  busy(): boolean;
  /** The process's resident set, bytes. */
  rss(): number;
  /** The reduction itself. */
  reduce(): void;
  log: Logger;
  /** Quiet this long before a reduction (ms). */
  idleMs?: number;
  /** Only when the RSS grew at least this much since the last reduction settled (bytes). */
  growthBytes?: number;
  /** How often the server is looked at (ms). */
  tickMs?: number;
  now?: () => number;
}

export const IDLE_MEMORY_DEFAULTS = { idleMs: 5000, growthBytes: 4 * 1024 * 1024, tickMs: 1000 } as const;

export class IdleMemory {
  private readonly o: IdleMemoryOptions;
  private readonly idleMs: number;
  private readonly growth: number;
  private readonly now: () => number;
  private seen = -1;
  private quietSince: number;
  /** The RSS a reduction left (read a tick after it, once freed pages are given back). */
  private floor: number;
  private settling = false;
  private timer: NodeJS.Timeout | undefined;
  /** Reductions run so far. */
  reductions = 0;

  constructor(o: IdleMemoryOptions) {
    this.o = o;
    this.idleMs = o.idleMs ?? IDLE_MEMORY_DEFAULTS.idleMs;
    this.growth = o.growthBytes ?? IDLE_MEMORY_DEFAULTS.growthBytes;
    this.now = o.now ?? (() => performance.now());
    this.quietSince = this.now();
    this.floor = o.rss();
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.o.tickMs ?? IDLE_MEMORY_DEFAULTS.tickMs);
    // Never what keeps the process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look; returns whether it ran a reduction. */
  tick(): boolean {
    const now = this.now();
    if (this.settling) {
      this.settling = false;
      this.floor = this.o.rss();
    }
    const answered = this.o.answered();
    if (answered !== this.seen || this.o.busy()) {
      this.seen = answered;
      this.quietSince = now;
      return false;
    }
    if (now - this.quietSince < this.idleMs) return false;
    const before = this.o.rss();
    if (before < this.floor + this.growth) return false;
    const t0 = performance.now();
    this.o.reduce();
    const ms = performance.now() - t0;
    this.reductions++;
    this.settling = true;
    this.o.log.debug({ rssBefore: before, rssAfter: this.o.rss(), ms: Number(ms.toFixed(1)) }, 'idle: gave memory back to the system');
    return true;
  }
}
