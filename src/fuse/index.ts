// What the rest of the daemon may use from the FUSE layer.
export { FuseLayerMounter } from './mounts/lifecycle.js';
export type {
  LayerMounter, FuseLayerMounterOptions, ReconcileReport, CloseReport, MounterCounters, MountFailure, UnmountOutcome,
} from './mounts/lifecycle.js';
import type { LayerMounter } from './mounts/lifecycle.js';
/**
 * A mounter's mount calls, whoever serves the mounts: this process (FuseLayerMounter) or the FUSE
 * server (its client, RemoteLayerMounter). Letting go of a mounter is not among them, because it
 * means two different things: an in-process mounter's close() unmounts every layer, while the
 * client disconnect()s and leaves the server and its mounts running (a daemon restart). Whoever
 * made the mounter lets go of it.
 */
export type LayerMounts = Omit<LayerMounter, 'close'>;
export { DEFAULT_TUNING, DEFAULT_CACHE_BYTES, LAYER_FS_SUBTYPE, MAX_BUSY_POLL_US } from './tuning.js';
export type { LayerFsTuning } from './tuning.js';
export { readMountInfo, fuseMountsUnder, parseMountInfo } from './mountinfo.js';
export type { MountInfo } from './mountinfo.js';
export { probeMount } from './unmount.js';
export type { MountHealth } from './unmount.js';
export type { FuseObserver, StoreCall } from './observer.js';
export { NO_OBSERVER } from './observer.js';
