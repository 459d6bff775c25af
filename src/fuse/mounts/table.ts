// The mounts a process serves, by canonical mountpoint, with the paths callers used for them,
// a lock per mountpoint (a mount and an unmount of one point never interleave) and counters.
import path from 'node:path';
import fs from 'node:fs';
import type { Served } from './served.js';

export interface MounterCounters {
  mounts: number;
  /** Unmounts of any mount, ours or stale, that completed normally. */
  unmounts: number;
  lazyUnmounts: number;
  staleCleared: number;
  failedUnmounts: number;
  /** Mounts this process serves now. */
  active: number;
  /** Of those, the ones whose reads go straight to the store (FUSE passthrough). */
  passthrough: number;
  /** Of those, the ones known to hold no xattr (xattr-census.ts): neither the kernel nor the store is asked for any. */
  xattrFree: number;
  /** Requests waiting for the store now, over every layer. */
  waitingForStore: number;
}

export class MountTable {
  /** Keyed by canonical mountpoint; changed only through add() and forget(). */
  readonly served = new Map<string, Served>();
  /** Counts the changes of the mount list, so that a client can tell when its copy is stale. */
  version = 0;
  /** Mounts detached lazily that still serve their last users. */
  readonly draining = new Set<Served>();
  /** Requested (resolved) path → canonical path, so callers may use either. */
  readonly aliases = new Map<string, string>();
  readonly count = { mounts: 0, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0 };
  private readonly locks = new Map<string, Promise<unknown>>();

  canonical(p: string): string | undefined {
    return this.aliases.get(path.resolve(p));
  }

  /** Serializes work per mountpoint. */
  async locked<T>(mp: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(mp) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(mp, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(mp) === tail) this.locks.delete(mp);
    }
  }

  /** The canonical mountpoint and every path a caller used for it (overlays name it either way). */
  namesOf(mp: string): string[] {
    const names = [mp];
    for (const [alias, canon] of this.aliases) if (canon === mp && alias !== mp) names.push(alias);
    return names;
  }

  add(s: Served): void {
    this.served.set(s.mountpoint, s);
    this.version++;
  }

  forget(s: Served): void {
    if (this.served.get(s.mountpoint) === s) {
      this.served.delete(s.mountpoint);
      this.version++;
    }
    for (const [alias, canon] of this.aliases) if (canon === s.mountpoint) this.aliases.delete(alias);
  }

  counters(): MounterCounters {
    let passthrough = 0;
    let xattrFree = 0;
    let waiting = 0;
    for (const s of this.served.values()) {
      if (s.bridge.passthrough) passthrough++;
      if (s.bridge.xattrFree) xattrFree++;
      waiting += s.bridge.waiting;
    }
    return { ...this.count, active: this.served.size, passthrough, xattrFree, waitingForStore: waiting };
  }
}

/**
 * mountinfo names mountpoints by their canonical path. The mountpoint itself is never resolved
 * (it may be a dead mount that fails every stat); its parent is.
 */
export async function canonicalMountpoint(p: string): Promise<string> {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(await fs.promises.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not arrive within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
