// The mount lifecycle of layer filesystems: the one place that mounts and unmounts them.
// The snapshotter sees only the LayerMounter interface; how a layer is served stays here.
import fs from 'node:fs';
import path from 'node:path';
import { SnapshotterError, FailedPrecondition, NotFound } from '../errors.js';
import type { Logger } from '../log.js';
import { MetadataCache, type CacheStats } from '../cache/index.js';
import { LayerTree, type LayerCache } from './layer-tree.js';
import { DEFAULT_TUNING, LAYER_FS_NAME, LAYER_FS_SUBTYPE, RESERVED_THREADS, threadPoolSize, type LayerFsTuning } from './tuning.js';
import { LayerOps, type NodeTableState } from './layer-ops.js';
import { FuseSession } from './kernel/session.js';
import { mountFuseDevice } from './kernel/dev-mount.js';
import { fuseMountsUnder, isFuseType, overlaysUsing, readMountInfo, type MountInfo } from './mountinfo.js';
import { abortConnection, kernelUnmount, probeMount, type MountHealth, type UnmountOutcome } from './unmount.js';
import { setReadAheadKb } from './readahead.js';
import { NO_OBSERVER, type FuseObserver } from './observer.js';

export type { UnmountOutcome } from './unmount.js';

export interface MountFailure {
  readonly mountpoint: string;
  readonly error: string;
}

export interface ReconcileReport {
  /** Mounts of this process that are wanted and stay. */
  readonly kept: string[];
  /** Unwanted mounts removed, normally or lazily. */
  readonly unmounted: string[];
  /** Of those and of the wanted ones, those whose server was gone (ENOTCONN) or hung. */
  readonly staleCleared: string[];
  /** Wanted mountpoints that are not mounted now: the caller mounts them. */
  readonly missing: string[];
  readonly failed: MountFailure[];
}

export interface CloseReport {
  readonly unmounted: string[];
  /** Busy at shutdown: detached, and freed by the kernel when the last user goes. */
  readonly lazilyUnmounted: string[];
  readonly failed: MountFailure[];
}

export interface MounterCounters {
  mounts: number;
  /** Unmounts of any mount, ours or stale, that completed normally. */
  unmounts: number;
  lazyUnmounts: number;
  staleCleared: number;
  failedUnmounts: number;
  /** Mounts this process serves now. */
  active: number;
}

export interface LayerMounter {
  /**
   * Serves layerDir read-only at mountpoint (created if needed). Idempotent for the same layer;
   * a stale mount in the way is cleared first; a live foreign one is a FailedPrecondition.
   */
  mount(layerDir: string, mountpoint: string, log?: Logger): Promise<void>;
  /** Unmounts, lazily if busy; 'not-mounted' when nothing was there. Throws if even that fails. */
  unmount(mountpoint: string): Promise<UnmountOutcome | 'not-mounted'>;
  /** Whether this process serves a layer at mountpoint. */
  isMounted(mountpoint: string): boolean;
  /** The mountpoints this process serves, canonical. */
  mountpoints(): string[];
  /** Makes the FUSE mounts under prefix be exactly the wanted ones this process serves. */
  reconcile(prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport>;
  /** Unmounts everything this process mounted. */
  close(): Promise<CloseReport>;
  counters(): MounterCounters;
  cacheStats(): CacheStats;
}

export interface FuseLayerMounterOptions {
  log: Logger;
  /** Bound of the metadata cache shared by all layers (entries, positive and negative). */
  cacheEntries?: number;
  /** A cache to share instead; cacheEntries is then ignored. */
  cache?: LayerCache;
  tuning?: Partial<LayerFsTuning>;
  /** How long a liveness probe of a foreign mount may take before it counts as hung. */
  probeTimeoutMs?: number;
  /** How long the kernel may take to send FUSE_INIT after the mount syscall. */
  mountTimeoutMs?: number;
  /** Told about every answered request and the bytes served (metrics). */
  observer?: FuseObserver;
  /** The libuv pool size of this process; by default what UV_THREADPOOL_SIZE says. */
  poolThreads?: number;
}

export const DEFAULT_CACHE_ENTRIES = 200_000;
/** /dev/fuse is character device 10:229 (glibc's dev_t encoding). */
const FUSE_DEVICE = (10 << 8) | 229;

/** A live mount handed from one FUSE server process to the next. */
export interface HandedMount {
  readonly mountpoint: string;
  readonly layerDir: string;
  /** The /dev/fuse descriptor, in the process that holds it. */
  readonly fd: number;
  readonly nodes: NodeTableState;
  /** Lazily unmounted: no longer at its mountpoint, but still used by someone. */
  readonly detached: boolean;
}

interface Served {
  readonly mountpoint: string;
  readonly layerDir: string;
  readonly fd: number;
  readonly session: FuseSession;
  readonly ops: LayerOps;
  readonly tree: LayerTree;
  readonly log: Logger;
}

export class FuseLayerMounter implements LayerMounter {
  private readonly log: Logger;
  private readonly cache: LayerCache;
  private readonly tuning: LayerFsTuning;
  private readonly observer: FuseObserver;
  private readonly poolThreads: number;
  /** Mounts detached lazily that still serve their last users. */
  private readonly draining = new Set<Served>();
  private readonly probeTimeoutMs: number;
  private readonly mountTimeoutMs: number;
  /** Keyed by canonical mountpoint. */
  private readonly served = new Map<string, Served>();
  /** Requested (resolved) path → canonical path, so callers may use either. */
  private readonly aliases = new Map<string, string>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly count = { mounts: 0, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0 };
  private seq = 0;

  constructor(opts: FuseLayerMounterOptions) {
    this.log = opts.log;
    this.cache = opts.cache ?? new MetadataCache({ maxEntries: opts.cacheEntries ?? DEFAULT_CACHE_ENTRIES });
    this.tuning = { ...DEFAULT_TUNING, ...opts.tuning };
    this.observer = opts.observer ?? NO_OBSERVER;
    this.poolThreads = opts.poolThreads ?? threadPoolSize();
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
    this.mountTimeoutMs = opts.mountTimeoutMs ?? 10_000;
  }

  async mount(layerDir: string, mountpoint: string, log?: Logger): Promise<void> {
    const root = await canonicalLayerDir(layerDir);
    await fs.promises.mkdir(path.dirname(path.resolve(mountpoint)), { recursive: true });
    const mp = await canonicalMountpoint(mountpoint);
    this.aliases.set(path.resolve(mountpoint), mp);
    await this.locked(mp, () => this.mountLocked(root, mp, (log ?? this.log).child({ mountpoint: mp, layer: root })));
  }

  async unmount(mountpoint: string): Promise<UnmountOutcome | 'not-mounted'> {
    const mp = this.aliases.get(path.resolve(mountpoint)) ?? await canonicalMountpoint(mountpoint);
    return this.locked(mp, () => this.unmountLocked(mp));
  }

  isMounted(mountpoint: string): boolean {
    const r = path.resolve(mountpoint);
    return this.served.has(this.aliases.get(r) ?? r);
  }

  mountpoints(): string[] {
    return [...this.served.keys()];
  }

  async reconcile(prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport> {
    const root = await canonicalMountpoint(prefix);
    const wanted = new Set<string>();
    for (const k of keep) wanted.add(this.aliases.get(path.resolve(k)) ?? await canonicalMountpoint(k));
    const report: ReconcileReport = { kept: [], unmounted: [], staleCleared: [], missing: [], failed: [] };

    // One entry per mountpoint: unmountLocked takes every mount stacked on a point at once.
    const present = [...new Map(fuseMountsUnder(await readMountInfo(), root).map((m) => [m.mountPoint, m] as const)).values()];
    const presentPoints = new Set(present.map((m) => m.mountPoint));
    // Ours but gone from the kernel (someone ran umount): release our side.
    for (const [mp, s] of this.served) {
      if ((mp === root || mp.startsWith(root + '/')) && !presentPoints.has(mp)) await this.release(s, 'unmounted');
    }

    for (const m of present) {
      const mp = m.mountPoint;
      await this.locked(mp, async () => {
        const ours = this.served.has(mp);
        if (ours && wanted.has(mp)) {
          report.kept.push(mp);
          return;
        }
        // Not ours: left by an earlier daemon (dead after SIGKILL) or by someone else.
        const health = ours ? undefined : await probeMount(mp, this.probeTimeoutMs);
        const stale = health !== undefined && health.health !== 'alive';
        try {
          if (health) await this.abortIfHung(m, health.health);
          await this.unmountLocked(mp);
          if (stale) {
            this.count.staleCleared++;
            report.staleCleared.push(mp);
            this.log.info({ mountpoint: mp, health: health.health, detail: health.detail }, 'cleared stale FUSE mount');
          }
          if (!wanted.has(mp)) report.unmounted.push(mp);
        } catch (err) {
          report.failed.push({ mountpoint: mp, error: errorText(err) });
        }
      });
    }
    for (const mp of wanted) if (!this.served.has(mp)) report.missing.push(mp);
    this.log.info({ prefix: root, ...summarize(report) }, 'reconciled FUSE mounts');
    return report;
  }

  async close(): Promise<CloseReport> {
    const report: CloseReport = { unmounted: [], lazilyUnmounted: [], failed: [] };
    // Deepest first, in case a layer was ever mounted inside another's mountpoint.
    const points = [...this.served.keys()].sort((a, b) => b.length - a.length);
    for (const mp of points) {
      try {
        const outcome = await this.locked(mp, () => this.unmountLocked(mp));
        if (outcome === 'lazy') report.lazilyUnmounted.push(mp);
        else report.unmounted.push(mp);
      } catch (err) {
        report.failed.push({ mountpoint: mp, error: errorText(err) });
      }
    }
    if (report.lazilyUnmounted.length > 0) this.log.warn({ mountpoints: report.lazilyUnmounted }, 'layer mounts busy at shutdown were detached lazily');
    if (report.failed.length > 0) this.log.error({ failed: report.failed }, 'could not unmount layer mounts');
    return report;
  }

  /**
   * Stops serving every mount WITHOUT unmounting, and returns what a successor needs to serve
   * them on: the descriptors (still open here) and the node tables. Every request this process
   * has read is answered first. Pending reads cannot be cancelled, so each mount is poked with
   * a statfs until its pending read has come back; a poke that a real request beat to that read
   * stays queued in the kernel and is answered by the successor.
   */
  async drainForHandover(timeoutMs = 10_000): Promise<HandedMount[]> {
    const all = [...this.served.values()].map((s) => ({ s, detached: false }))
      .concat([...this.draining].map((s) => ({ s, detached: true })));
    for (const { s } of all) s.session.stop();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const waiting = all.filter(({ s }) => s.session.pendingReads > 0);
      if (waiting.length === 0 || Date.now() > deadline) {
        for (const { s } of waiting) s.log.warn('a read was still pending on this mount at handover');
        break;
      }
      for (const { s, detached } of waiting) if (!detached) fs.statfs(s.mountpoint, () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await withDeadline(Promise.all(all.map(({ s }) => s.session.quiesced())), Math.max(1000, deadline - Date.now()), 'answering the requests read before the handover')
      .catch((err: unknown) => this.log.warn({ err }, 'handing over with requests still being answered'));
    const handed = all.map(({ s, detached }) => ({ mountpoint: s.mountpoint, layerDir: s.layerDir, fd: s.fd, nodes: s.ops.exportNodes(), detached }));
    this.served.clear();
    this.draining.clear();
    this.aliases.clear();
    return handed;
  }

  /** Serves mounts a predecessor handed over; fd is the descriptor as numbered in this process. */
  adopt(m: HandedMount, log?: Logger): void {
    const st = fs.fstatSync(m.fd);
    if (!st.isCharacterDevice() || st.rdev !== FUSE_DEVICE) {
      throw new Error(`handover: descriptor ${m.fd} for ${m.mountpoint} is not /dev/fuse`);
    }
    const l = (log ?? this.log).child({ mountpoint: m.mountpoint, layer: m.layerDir });
    const tree = new LayerTree({ root: m.layerDir, cache: this.cache, namespace: `${++this.seq}\0`, log: l });
    const ops = new LayerOps(tree, l, this.tuning, m.nodes);
    const session = new FuseSession(m.fd, ops, { log: l, observer: this.observer, readers: this.tuning.readersPerMount });
    void session.start(false);
    const s: Served = { mountpoint: m.mountpoint, layerDir: m.layerDir, fd: m.fd, session, ops, tree, log: l };
    if (m.detached) {
      this.serveUntilGone(s);
    } else {
      this.served.set(m.mountpoint, s);
      // The mount may go meanwhile (someone runs umount): the kernel ends the connection then.
      void session.gone.then(() => { if (this.served.get(m.mountpoint) === s) void this.release(s, 'unmounted'); });
    }
    l.info({ nodes: ops.nodeCount }, 'took over layer mount');
  }

  counters(): MounterCounters {
    return { ...this.count, active: this.served.size };
  }

  cacheStats(): CacheStats {
    return this.cache.stats();
  }

  // ---- internals ------------------------------------------------------------------------------

  private async mountLocked(root: string, mp: string, log: Logger): Promise<void> {
    const existing = this.served.get(mp);
    if (existing) {
      if (existing.layerDir === root) return;
      throw new FailedPrecondition(`${mp} already serves layer ${existing.layerDir}, not ${root}`);
    }
    await this.clearInTheWay(mp);
    await fs.promises.mkdir(mp, { recursive: true });

    const readers = this.tuning.readersPerMount;
    const busy = [...this.served.values(), ...this.draining].length * readers;
    if (busy + readers > this.poolThreads - RESERVED_THREADS) {
      throw new SnapshotterError('ResourceExhausted',
        `cannot serve another layer at ${mp}: ${this.served.size} mounts already hold ${busy} of ${this.poolThreads} pool threads `
        + `(${RESERVED_THREADS} stay free for I/O); start the FUSE server with a larger UV_THREADPOOL_SIZE (at most 1024)`);
    }
    const tree = new LayerTree({ root, cache: this.cache, namespace: `${++this.seq}\0`, log });
    const ops = new LayerOps(tree, log, this.tuning);
    let fd: number;
    try {
      fd = await mountFuseDevice(mp, { source: LAYER_FS_NAME, subtype: LAYER_FS_SUBTYPE, allowOther: this.tuning.allowOther });
    } catch (err) {
      await tree.close();
      throw new SnapshotterError('Internal', `mounting layer ${root} at ${mp}: ${errorText(err)}`, { cause: err });
    }
    const session = new FuseSession(fd, ops, { log, observer: this.observer, readers });
    try {
      await withDeadline(session.start(true), this.mountTimeoutMs, `FUSE_INIT for ${mp}`);
    } catch (err) {
      // The mount exists but never came to life: leave nothing behind.
      await kernelUnmount(mp).catch((e: unknown) => log.error({ err: e }, 'could not remove a half-made mount'));
      await this.finish({ fd, session, ops, tree });
      throw new SnapshotterError('Internal', `mounting layer ${root} at ${mp}: ${errorText(err)}`, { cause: err });
    }
    this.served.set(mp, { mountpoint: mp, layerDir: root, fd, session, ops, tree, log });
    this.count.mounts++;
    if (this.tuning.readAheadKb > 0) {
      const dev = (await readMountInfo()).find((m) => m.mountPoint === mp)?.majorMinor;
      // Only speed is at stake: a kernel without the knob still serves the layer.
      if (dev) await setReadAheadKb(dev, this.tuning.readAheadKb).catch((err: unknown) => log.debug({ err }, 'could not raise read-ahead'));
    }
    log.info('mounted layer');
  }

  /** A mount already at mp that is not ours: stale ones go; a live one is not ours to take. */
  private async clearInTheWay(mp: string): Promise<void> {
    const here = (await readMountInfo()).filter((m) => m.mountPoint === mp);
    if (here.length === 0) return;
    const foreignFuse = here.every((m) => isFuse(m));
    const health = await probeMount(mp, this.probeTimeoutMs);
    if (!foreignFuse || health.health === 'alive') {
      const top = here[here.length - 1] as MountInfo;
      throw new FailedPrecondition(`${mp} already has a live ${top.fsType} mount from ${top.source}; unmount it first`);
    }
    for (const m of here) await this.abortIfHung(m, health.health);
    while ((await readMountInfo()).some((m) => m.mountPoint === mp)) {
      await this.kernelUnmountCounted(mp);
    }
    this.count.staleCleared++;
    this.log.info({ mountpoint: mp, health: health.health, detail: health.detail }, 'cleared stale FUSE mount');
  }

  private async unmountLocked(mp: string): Promise<UnmountOutcome | 'not-mounted'> {
    const s = this.served.get(mp);
    let outcome: UnmountOutcome | 'not-mounted' = 'not-mounted';
    // Mounts can be stacked on one point (a stale one under a fresh one): take them all.
    for (let i = 0; i < 8; i++) {
      const all = await readMountInfo();
      const here = all.filter((m) => m.mountPoint === mp);
      if (here.length === 0) break;
      if (!here.every(isFuse)) throw new FailedPrecondition(`${mp} holds a mount that is not FUSE; not unmounting it`);
      // An overlay holds its own clone of each lower mount, so a plain umount here would
      // succeed while the overlay keeps using the filesystem: that is "busy" too.
      const users = overlaysUsing(all, this.namesOf(mp));
      if (users.length > 0) {
        (s?.log ?? this.log).warn({ mountpoint: mp, overlays: users.map((u) => u.mountPoint) }, 'layer still stacked by an overlay; detaching lazily');
      }
      const o = await this.kernelUnmountCounted(mp, users.length > 0);
      if (outcome !== 'lazy') outcome = o;
    }
    if (s) await this.release(s, outcome);
    return outcome;
  }

  /** A foreign mount whose server does not answer: free whoever waits on it before unmounting. */
  private async abortIfHung(m: MountInfo, health: MountHealth): Promise<void> {
    if (health !== 'unresponsive') return;
    const aborted = await abortConnection(m.majorMinor);
    this.log.warn({ mountpoint: m.mountPoint, connection: m.majorMinor, aborted }, 'FUSE mount does not answer; aborting its connection');
  }

  /** The canonical mountpoint and every path a caller used for it (overlays name it either way). */
  private namesOf(mp: string): string[] {
    const names = [mp];
    for (const [alias, canon] of this.aliases) if (canon === mp && alias !== mp) names.push(alias);
    return names;
  }

  private async kernelUnmountCounted(mp: string, lazyOnly = false): Promise<UnmountOutcome> {
    try {
      const o = await kernelUnmount(mp, { lazyOnly });
      if (o === 'lazy') this.count.lazyUnmounts++;
      else this.count.unmounts++;
      return o;
    } catch (err) {
      this.count.failedUnmounts++;
      this.log.error({ mountpoint: mp, err }, 'unmount failed');
      throw err;
    }
  }

  /** Our side of a mount the kernel no longer has (or has only lazily, for its last users). */
  private async release(s: Served, outcome: UnmountOutcome | 'not-mounted'): Promise<void> {
    this.served.delete(s.mountpoint);
    for (const [alias, canon] of this.aliases) if (canon === s.mountpoint) this.aliases.delete(alias);
    // The kernel ends the connection when the last user of the filesystem goes. A lazily
    // detached mount still has users; so may a plain unmount, when an overlay holds the
    // filesystem as a lower layer (overlayfs keeps its own reference; seen with containerd's
    // temporary mounts left by a containerd killed mid-unpack). The session serves them until then.
    const gone = outcome === 'lazy' ? false : await withDeadline(s.session.gone, 2000, 'the end of the FUSE connection').then(() => true, () => false);
    if (gone) {
      await this.finish(s);
    } else {
      if (outcome !== 'lazy') s.log.warn('the layer is unmounted but its filesystem is still in use; serving it until the last user goes');
      this.serveUntilGone(s);
    }
    s.log.info({ outcome }, 'unmounted layer');
  }

  /**
   * A mount no longer at its mountpoint whose filesystem still has users: served until the
   * kernel ends the connection (not until a handover's stop(), which passes it on instead).
   */
  private serveUntilGone(s: Served): void {
    this.draining.add(s);
    void s.session.gone.then(() => this.finish(s)).finally(() => this.draining.delete(s));
  }

  /** Closes a connection's descriptor and what its layer holds open. */
  private async finish({ fd, session, ops, tree }: Pick<Served, 'fd' | 'session' | 'ops' | 'tree'>): Promise<void> {
    session.stop();
    await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    await ops.closeFiles();
    await tree.close();
  }

  /** Serializes work per mountpoint, so a mount and an unmount of one point never interleave. */
  private async locked<T>(mp: string, fn: () => Promise<T>): Promise<T> {
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
}

function isFuse(m: MountInfo): boolean {
  return isFuseType(m.fsType);
}

async function canonicalLayerDir(layerDir: string): Promise<string> {
  let root: string;
  try {
    root = await fs.promises.realpath(layerDir);
  } catch (err) {
    throw new NotFound(`layer directory ${layerDir} is not there: ${errorText(err)}`);
  }
  const st = await fs.promises.lstat(root);
  if (!st.isDirectory()) throw new NotFound(`layer directory ${layerDir} is not a directory`);
  return root;
}

/**
 * mountinfo names mountpoints by their canonical path. The mountpoint itself is never resolved
 * (it may be a dead mount that fails every stat); its parent is.
 */
async function canonicalMountpoint(p: string): Promise<string> {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(await fs.promises.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not arrive within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function summarize(r: ReconcileReport): Record<string, number> {
  return { kept: r.kept.length, unmounted: r.unmounted.length, staleCleared: r.staleCleared.length, missing: r.missing.length, failed: r.failed.length };
}
