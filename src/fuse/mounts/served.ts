// One layer being served: its /dev/fuse connection, the bridge that answers it, and its way
// into the store. Made for a fresh mount or for a connection taken over from another process.
import path from 'node:path';
import type { Logger } from '../../log.js';
import { native } from '../../sys/native.js';
import { Bridge } from '../bridge.js';
import { FuseChannel } from '../kernel/transport.js';
import { LayerFs, type LayerCache } from '../layer-fs.js';
import type { NodeTableState } from '../node-table.js';
import type { FuseObserver } from '../observer.js';
import type { FileBudget } from '../open-files.js';
import type { PagedListings } from '../paged-listings.js';
import type { EntryInfo } from '../records.js';
import { StoreAccess, type LayerLocation } from '../store-access.js';
import type { LayerFsTuning } from '../tuning.js';
import { XattrCensus } from '../xattr-census.js';

export interface Served {
  readonly mountpoint: string;
  readonly census: XattrCensus;
  readonly location: LayerLocation;
  readonly devFd: number;
  readonly channel: FuseChannel;
  readonly bridge: Bridge;
  readonly store: StoreAccess;
  readonly log: Logger;
}

/** What every served layer of a process shares. */
export interface ServeContext {
  readonly cache: LayerCache;
  readonly tuning: LayerFsTuning;
  readonly observer: FuseObserver;
  readonly budget: FileBudget;
  readonly paging: PagedListings;
}

export interface ServeArgs {
  devFd: number;
  /** -1 when the root could not be opened (a handover while the store is away): opened at first use. */
  rootFd: number;
  rootInfo: EntryInfo | undefined;
  location: LayerLocation;
  mountpoint: string;
  log: Logger;
  nodes?: NodeTableState;
  passthrough?: boolean;
  /** What a predecessor learnt: the layer has no xattr (see xattr-census.ts). */
  xattrFree?: boolean;
}

let seq = 0;

export function layerDirOf(loc: LayerLocation): string {
  return loc.relative === '' ? loc.trusted : path.join(loc.trusted, loc.relative);
}

export function serveLayer(ctx: ServeContext, a: ServeArgs): Served {
  const store = new StoreAccess(a.rootFd, a.location, {
    log: a.log, maxInFlight: ctx.tuning.storeCallsPerLayer, deadlineMs: ctx.tuning.storeDeadlineMs, observer: ctx.observer,
  });
  const fs = new LayerFs(store, ctx.cache, `${++seq}\0`, a.log, { listDirBytes: ctx.tuning.listDirBytes, prefetchEntries: ctx.tuning.prefetchEntries });
  const rootInfo: EntryInfo = a.rootInfo ?? { buf: Buffer.alloc(88), at: 0, whiteout: false, opaque: undefined, xattrs: new Map() };
  const bridge = new Bridge({
    fs, log: a.log, tuning: ctx.tuning, observer: ctx.observer, devFd: a.devFd, budget: ctx.budget, paging: ctx.paging, rootInfo,
    ...(a.nodes ? { nodes: a.nodes } : {}), ...(a.passthrough !== undefined ? { passthrough: a.passthrough } : {}),
  });
  if (!a.rootInfo) bridge.nodes.root.info = undefined;
  // Files opened below a root that died belong to the dead store: they are opened again.
  store.onRootDied = () => bridge.files.retireAll();
  const channel = new FuseChannel(a.devFd, bridge, { log: a.log, observer: ctx.observer });
  const census = new XattrCensus({ list: (dir, cb) => fs.walkListing(dir, cb), keeping: () => fs.walkKeeping() },
    layerDirOf(a.location), ctx.tuning.censusEntries, a.log);
  // Known free of xattrs: the kernel is told to stop asking for them (Bridge.xattrFree), and the
  // store is not asked for them either.
  if (a.xattrFree) store.bare = true;
  return { mountpoint: a.mountpoint, location: a.location, devFd: a.devFd, channel, bridge, store, log: a.log, census };
}

/**
 * The census starts a moment after the mount, so that the container's own start (runc, the
 * first files of its entrypoint) goes first, and then runs beside it. Measured on the bench's
 * first container (`find /usr`, 2 cores): started at once, the find took 210 ms instead of 358
 * but `ctr run` took 100 ms longer; after 300 ms, 269 ms and no slower start; after 1 s the walk
 * came too late to help.
 */
const CENSUS_DELAY_MS = 300;

/** Learns in the background whether the layer has any xattr, and reads it ahead; see xattr-census.ts. */
export function startCensus(s: Served, tuning: LayerFsTuning): void {
  if (tuning.censusEntries <= 0) return;
  // A predecessor (a handover) may have told us already.
  const given = s.bridge.xattrFree ? 'none' : undefined;
  if (s.census.knownVerdict() === 'none') s.store.bare = true;
  const t = setTimeout(() => {
    void s.census.run(given).then((r) => {
      if (r === 'none' && !s.bridge.xattrFree) {
        s.store.bare = true;
        s.log.debug('the layer has no xattr: the kernel is told to stop asking for them');
      }
    }, (err: unknown) => s.log.warn({ err }, 'the xattr census failed'));
  }, CENSUS_DELAY_MS);
  t.unref();
}

/** Lets go of a layer whose connection ended (or never came to life): descriptors and files. */
export function finishServed(s: Served): void {
  s.census.stop();
  s.channel.stop();
  native.closeFd(s.devFd);
  s.bridge.files.closeAll();
  s.store.shutdown();
}
