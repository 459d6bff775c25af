// The mount lifecycle of layer filesystems: the one place that mounts and unmounts them. The
// snapshotter sees only the LayerMounter interface; how a layer is served stays here. Reconcile
// (reconcile.ts) and handover (handover.ts) work on the same table of served mounts.
import fs from 'node:fs';
import path from 'node:path';
import { SnapshotterError, FailedPrecondition, NotFound } from '../../errors.js';
import type { Logger } from '../../log.js';
import { MetadataCache, type CacheStats } from '../../cache/index.js';
import { native, bytes } from '../../sys/native.js';
import { isMountpoint, mountFuse } from '../../sys/mount.js';
import type { LayerCache } from '../layer-fs.js';
import { isFuseType, overlaysUsing, readMountInfoAbout, type MountInfo } from '../mountinfo.js';
import { NO_OBSERVER, type FuseObserver } from '../observer.js';
import type { FileBudget } from '../open-files.js';
import { PagedListings } from '../paged-listings.js';
import { setReadAheadKb } from '../readahead.js';
import { openLayerRoot, type LayerLocation } from '../store-access.js';
import { knownXattrFree } from '../xattr-census.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_TUNING, LAYER_FS_NAME, LAYER_FS_SUBTYPE, type LayerFsTuning } from '../tuning.js';
import { abortConnection, kernelUnmount, probeMount, type MountHealth, type UnmountOutcome } from '../unmount.js';
import { HIDDEN_XATTRS } from '../xattr-filter.js';
import { checkCapacity, openFileLimit } from './capacity.js';
import { adoptMount, drainForHandover, type HandedMount, type HandoverHost } from './handover.js';
import { reconcileMounts, type ReconcileHost, type ReconcileReport } from './reconcile.js';
import { finishServed, layerDirOf, serveLayer, startCensus, type ServeContext, type Served } from './served.js';
import { MountTable, canonicalMountpoint, errorText, withDeadline, type MounterCounters } from './table.js';

export type { UnmountOutcome } from '../unmount.js';
export type { MounterCounters } from './table.js';
export type { ReconcileReport } from './reconcile.js';
export type { HandedMount } from './handover.js';

export interface MountFailure {
  readonly mountpoint: string;
  readonly error: string;
}

export interface CloseReport {
  readonly unmounted: string[];
  /** Busy at shutdown: detached, and freed by the kernel when the last user goes. */
  readonly lazilyUnmounted: string[];
  readonly failed: MountFailure[];
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
  /** Byte budget of the metadata cache shared by all layers. */
  cacheBytes?: number;
  /** An extra bound on the cache's entries. */
  cacheEntries?: number;
  /** A cache to share instead; cacheBytes and cacheEntries are then ignored. */
  cache?: LayerCache;
  /**
   * The layer store's root. It is opened as configured (a link there is the operator's
   * choice); below it, in a layer's path, no link is ever followed. Layers elsewhere are
   * opened from / with no link followed at all.
   */
  store?: string;
  tuning?: Partial<LayerFsTuning>;
  /** How long a liveness probe of a foreign mount may take before it counts as hung. */
  probeTimeoutMs?: number;
  /** How long the kernel may take to send FUSE_INIT after the mount syscall. */
  mountTimeoutMs?: number;
  /** Told about every answered request and the bytes served (metrics). */
  observer?: FuseObserver;
  /** At most this many layers (0: as many as the descriptor limit allows). */
  maxLayers?: number;
}

export class FuseLayerMounter implements LayerMounter, ReconcileHost, HandoverHost {
  readonly log: Logger;
  readonly table = new MountTable();
  readonly probeTimeoutMs: number;
  private readonly ctx: ServeContext;
  private readonly cache: LayerCache;
  private store: string | undefined;
  private readonly mountTimeoutMs: number;
  private readonly maxLayers: number;
  private readonly fdLimit: number;
  private readonly released = new WeakSet<Served>();
  private readonly outcomes = new WeakMap<Served, UnmountOutcome>();

  constructor(opts: FuseLayerMounterOptions) {
    this.log = opts.log;
    this.cache = opts.cache ?? new MetadataCache({ maxBytes: opts.cacheBytes ?? DEFAULT_CACHE_BYTES, ...(opts.cacheEntries ? { maxEntries: opts.cacheEntries } : {}) });
    const tuning = { ...DEFAULT_TUNING, ...opts.tuning };
    const budget: FileBudget = { open: 0, max: tuning.openFiles };
    // Listings being paged through get a budget as large as the cache's own (see paged-listings.ts).
    this.ctx = { cache: this.cache, tuning, observer: opts.observer ?? NO_OBSERVER, budget, paging: new PagedListings(this.cache.maxBytes) };
    this.store = opts.store === undefined ? undefined : path.resolve(opts.store);
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
    this.mountTimeoutMs = opts.mountTimeoutMs ?? 10_000;
    this.maxLayers = opts.maxLayers ?? 0;
    this.fdLimit = openFileLimit();
    native.poolConfig(tuning.poolThreads, 1000);
    native.setBusyPoll(tuning.busyPollUs);
    native.setHiddenXattrs(HIDDEN_XATTRS.map(bytes));
  }

  /** The layer store, once known (a server learns it from the first daemon that says hello). */
  setStore(store: string): void {
    this.store = path.resolve(store);
  }

  get serveContext(): ServeContext {
    return this.ctx;
  }

  async mount(layerDir: string, mountpoint: string, log?: Logger): Promise<void> {
    const loc = this.locate(layerDir);
    await fs.promises.mkdir(path.dirname(path.resolve(mountpoint)), { recursive: true });
    const mp = await canonicalMountpoint(mountpoint);
    this.table.aliases.set(path.resolve(mountpoint), mp);
    const l = (log ?? this.log).child({ mountpoint: mp, layer: layerDirOf(loc) });
    await this.table.locked(mp, () => this.mountLocked(loc, mp, l));
  }

  async unmount(mountpoint: string): Promise<UnmountOutcome | 'not-mounted'> {
    const mp = this.table.canonical(mountpoint) ?? await canonicalMountpoint(mountpoint);
    return this.table.locked(mp, () => this.unmountLocked(mp));
  }

  isMounted(mountpoint: string): boolean {
    const r = path.resolve(mountpoint);
    return this.table.served.has(this.table.aliases.get(r) ?? r);
  }

  mountpoints(): string[] {
    return [...this.table.served.keys()];
  }

  /** Changes with every mount added or gone: a client's copy of mountpoints() is current while it matches. */
  get mountsVersion(): number {
    return this.table.version;
  }

  reconcile(prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport> {
    return reconcileMounts(this, prefix, keep);
  }

  async close(): Promise<CloseReport> {
    const report: CloseReport = { unmounted: [], lazilyUnmounted: [], failed: [] };
    // Deepest first, in case a layer was ever mounted inside another's mountpoint.
    const points = [...this.table.served.keys()].sort((a, b) => b.length - a.length);
    for (const mp of points) {
      try {
        const outcome = await this.table.locked(mp, () => this.unmountLocked(mp));
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

  /** Stops serving every mount WITHOUT unmounting; see handover.ts. */
  drainForHandover(timeoutMs = 10_000): Promise<HandedMount[]> {
    return drainForHandover(this, timeoutMs);
  }

  /** Serves a mount a predecessor handed over; its fd is numbered as in this process. */
  adopt(m: HandedMount, log?: Logger): Promise<void> {
    return adoptMount(this, m, log);
  }

  counters(): MounterCounters {
    return this.table.counters();
  }

  cacheStats(): CacheStats {
    return this.cache.stats();
  }

  // ---- shared with reconcile and handover ---------------------------------------------------

  /** Where a layer directory is: below the configured store, or anywhere with no link followed. */
  locate(layerDir: string): LayerLocation {
    if (typeof layerDir !== 'string' || !path.isAbsolute(layerDir) || layerDir.includes('\0')) {
      throw new SnapshotterError('InvalidArgument', `layer directory ${JSON.stringify(layerDir)} must be an absolute path`);
    }
    const dir = path.resolve(layerDir);
    if (this.store !== undefined && (dir === this.store || dir.startsWith(this.store + '/'))) {
      return { trusted: this.store, relative: dir.slice(this.store.length + 1) };
    }
    return { trusted: '/', relative: dir.slice(1) };
  }

  /** Our side of a mount the kernel no longer has (or has only lazily, for its last users). */
  async release(s: Served, outcome: UnmountOutcome | 'not-mounted'): Promise<void> {
    // Our own unmount and the end of the connection it causes both lead here: once is enough.
    if (this.released.has(s)) return;
    this.released.add(s);
    this.table.forget(s);
    // The kernel ends the connection when the last user of the filesystem goes. A lazily
    // detached mount still has users; so may a plain unmount, when an overlay holds the
    // filesystem as a lower layer. The layer is served for them until then.
    const gone = outcome === 'lazy' ? false : await withDeadline(s.channel.gone, 2000, 'the end of the FUSE connection').then(() => true, () => false);
    if (gone) {
      finishServed(s);
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
  serveUntilGone(s: Served): void {
    this.table.draining.add(s);
    void s.channel.gone.then(() => finishServed(s)).finally(() => this.table.draining.delete(s));
  }

  /** Follows a mount we serve: someone else's umount ends its connection. */
  watchGone(s: Served): void {
    void s.channel.gone.then(() => {
      if (this.table.served.get(s.mountpoint) === s) void this.release(s, 'unmounted');
    });
  }

  async unmountLocked(mp: string): Promise<UnmountOutcome | 'not-mounted'> {
    const s = this.table.served.get(mp);
    if (s && await this.unmountServed(s)) return this.outcomes.get(s) ?? 'unmounted';
    let outcome: UnmountOutcome | 'not-mounted' = 'not-mounted';
    // Mounts can be stacked on one point (a stale one under a fresh one): take them all.
    for (let i = 0; i < 8; i++) {
      const all = await readMountInfoAbout(this.table.namesOf(mp));
      const here = all.filter((m) => m.mountPoint === mp);
      if (here.length === 0) break;
      if (!here.every((m) => isFuseType(m.fsType))) throw new FailedPrecondition(`${mp} holds a mount that is not FUSE; not unmounting it`);
      // An overlay holds its own clone of each lower mount, so a plain umount here would
      // succeed while the overlay keeps using the filesystem: that is "busy" too.
      const users = overlaysUsing(all, this.table.namesOf(mp));
      if (users.length > 0) {
        (s?.log ?? this.log).warn({ mountpoint: mp, overlays: users.map((u) => u.mountPoint) }, 'layer still stacked by an overlay; detaching lazily');
      }
      const o = await this.kernelUnmountCounted(mp, users.length > 0);
      if (outcome !== 'lazy') outcome = o;
    }
    if (s) await this.release(s, outcome);
    return outcome;
  }

  /**
   * The common case, without reading mountinfo (which costs a line per mount of the node): our
   * own mount, unmounted; if the kernel does not end its connection at once, someone (an
   * overlay stacking it, a process in it) still uses it: that is a lazy unmount, and the layer
   * is served until they go. False when something else is mounted there too (then the general
   * path sorts it out).
   */
  private async unmountServed(s: Served): Promise<boolean> {
    const mp = s.mountpoint;
    let outcome: UnmountOutcome;
    try {
      outcome = await kernelUnmount(mp);
    } catch {
      return false;
    }
    if (await isMountpoint(mp).catch(() => true)) {
      // A mount below ours: count ours, and let the general path take the rest.
      this.countOutcome(outcome);
      return false;
    }
    const gone = outcome === 'unmounted' && await withDeadline(s.channel.gone, 2000, 'the end of the FUSE connection').then(() => true, () => false);
    if (!gone && outcome === 'unmounted') {
      outcome = 'lazy';
      s.log.warn({ mountpoint: mp }, 'layer still in use (stacked by an overlay, or a process in it); detached lazily');
    }
    this.countOutcome(outcome);
    this.outcomes.set(s, outcome);
    await this.release(s, outcome);
    return true;
  }

  private countOutcome(o: UnmountOutcome): void {
    if (o === 'lazy') this.table.count.lazyUnmounts++;
    else this.table.count.unmounts++;
  }

  /** A foreign mount whose server does not answer: free whoever waits on it before unmounting. */
  async abortIfHung(m: MountInfo, health: MountHealth): Promise<void> {
    if (health !== 'unresponsive') return;
    const aborted = await abortConnection(m.majorMinor);
    this.log.warn({ mountpoint: m.mountPoint, connection: m.majorMinor, aborted }, 'FUSE mount does not answer; aborting its connection');
  }

  async kernelUnmountCounted(mp: string, lazyOnly = false): Promise<UnmountOutcome> {
    try {
      const o = await kernelUnmount(mp, { lazyOnly });
      if (o === 'lazy') this.table.count.lazyUnmounts++;
      else this.table.count.unmounts++;
      return o;
    } catch (err) {
      this.table.count.failedUnmounts++;
      this.log.error({ mountpoint: mp, err }, 'unmount failed');
      throw err;
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  private async mountLocked(loc: LayerLocation, mp: string, log: Logger): Promise<void> {
    const layerDir = layerDirOf(loc);
    const existing = this.table.served.get(mp);
    if (existing) {
      if (layerDirOf(existing.location) === layerDir) return;
      throw new FailedPrecondition(`${mp} already serves layer ${layerDirOf(existing.location)}, not ${layerDir}`);
    }
    await this.clearInTheWay(mp);
    await fs.promises.mkdir(mp, { recursive: true });
    checkCapacity({ layers: this.table.served.size + this.table.draining.size, openFiles: this.ctx.budget.open }, this.fdLimit, this.maxLayers, mp);

    let root: Awaited<ReturnType<typeof openLayerRoot>>;
    try {
      root = await openLayerRoot(loc, knownXattrFree(layerDir));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFound(`layer directory ${layerDir} is not there: ${errorText(err)}`);
      if (code === 'ELOOP' || code === 'EXDEV') throw new FailedPrecondition(`layer directory ${layerDir} is reached through a symlink, which is never followed: ${errorText(err)}`);
      throw new SnapshotterError('Unavailable', `the layer store failed to open ${layerDir}: ${errorText(err)}`, { cause: err });
    }
    let devFd: number;
    try {
      devFd = fs.openSync('/dev/fuse', fs.constants.O_RDWR);
    } catch (err) {
      native.closeFd(root.fd);
      throw new SnapshotterError('Internal', `opening /dev/fuse: ${errorText(err)}`, { cause: err });
    }
    try {
      await mountFuse(mp, devFd, { source: LAYER_FS_NAME, subtype: LAYER_FS_SUBTYPE, allowOther: this.ctx.tuning.allowOther });
    } catch (err) {
      native.closeFd(devFd);
      native.closeFd(root.fd);
      throw new SnapshotterError('Internal', `mounting layer ${layerDir} at ${mp}: ${errorText(err)}`, { cause: err });
    }
    const s = serveLayer(this.ctx, { devFd, rootFd: root.fd, rootInfo: root.root, location: loc, mountpoint: mp, log });
    try {
      await withDeadline(s.channel.start(true), this.mountTimeoutMs, `FUSE_INIT for ${mp}`);
    } catch (err) {
      // The mount exists but never came to life: leave nothing behind.
      await kernelUnmount(mp).catch((e: unknown) => log.error({ err: e }, 'could not remove a half-made mount'));
      finishServed(s);
      throw new SnapshotterError('Internal', `mounting layer ${layerDir} at ${mp}: ${errorText(err)}`, { cause: err });
    }
    this.table.add(s);
    this.table.count.mounts++;
    this.watchGone(s);
    startCensus(s, this.ctx.tuning);
    if (!s.bridge.passthrough && this.ctx.tuning.readAheadKb > 0) {
      const dev = (await readMountInfoAbout([mp])).find((m) => m.mountPoint === mp)?.majorMinor;
      // Only speed is at stake: a kernel without the knob still serves the layer.
      if (dev) await setReadAheadKb(dev, this.ctx.tuning.readAheadKb).catch((err: unknown) => log.debug({ err }, 'could not raise read-ahead'));
    }
    log.info({ reads: s.bridge.passthrough ? 'passthrough' : 'served' }, 'mounted layer');
  }

  /** A mount already at mp that is not ours: stale ones go; a live one is not ours to take. */
  private async clearInTheWay(mp: string): Promise<void> {
    // Nearly always nothing is there: asked without reading mountinfo (see isMountpoint).
    if (!await isMountpoint(mp).catch(() => true)) return;
    const here = (await readMountInfoAbout([mp])).filter((m) => m.mountPoint === mp);
    if (here.length === 0) return;
    const foreignFuse = here.every((m) => isFuseType(m.fsType));
    const health = await probeMount(mp, this.probeTimeoutMs);
    if (!foreignFuse || health.health === 'alive') {
      const top = here[here.length - 1] as MountInfo;
      throw new FailedPrecondition(`${mp} already has a live ${top.fsType} mount from ${top.source}; unmount it first`);
    }
    for (const m of here) await this.abortIfHung(m, health.health);
    while ((await readMountInfoAbout([mp])).some((m) => m.mountPoint === mp)) {
      await this.kernelUnmountCounted(mp);
    }
    this.table.count.staleCleared++;
    this.log.info({ mountpoint: mp, health: health.health, detail: health.detail }, 'cleared stale FUSE mount');
  }
}

