// The remote room: binds the layer store to the FUSE server for the snapshotter (see DESIGN).
import type { LayerMounts } from '../fuse/index.js';
import { LayerStore } from '../layers/store.js';
import type { Logger } from '../log.js';
import { PooledLayerStore } from './store-calls.js';
import { StoreLayers } from './store-layers.js';

export { StoreLayers } from './store-layers.js';
export { PooledLayerStore, StoreUnanswered, type LayerQueries, type StoreCallsOptions } from './store-calls.js';

/**
 * Store calls the daemon may have unanswered at once. A healthy store answers a check in well
 * under a millisecond, so more than a few in flight means it is stalling; each one unanswered
 * holds a native pool thread until the store answers, and this bounds how many.
 */
export const DEFAULT_STORE_CALLS_IN_FLIGHT = 8;

export interface StoreLayersOptions {
  /** The layer store root (the repository's mountpoint). */
  storeRoot: string;
  mounter: LayerMounts;
  log: Logger;
  /** A store call not answered in this long makes the layer a download (or Usage Unavailable). */
  deadlineMs: number;
  maxInFlight?: number;
}

/** RemoteLayers for the daemon: store calls on the native pool with a deadline, mounts by the FUSE server. */
export function createStoreLayers(opts: StoreLayersOptions): StoreLayers {
  const store = new PooledLayerStore(new LayerStore(opts.storeRoot), {
    deadlineMs: opts.deadlineMs, maxInFlight: opts.maxInFlight ?? DEFAULT_STORE_CALLS_IN_FLIGHT,
  });
  return new StoreLayers(store, opts.mounter, opts.log);
}
