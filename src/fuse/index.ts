// What the rest of the daemon may use from the FUSE layer.
export { FuseLayerMounter } from './mounts/lifecycle.js';
export type {
  LayerMounter, FuseLayerMounterOptions, ReconcileReport, CloseReport, MounterCounters, MountFailure, UnmountOutcome,
} from './mounts/lifecycle.js';
export { DEFAULT_TUNING, DEFAULT_CACHE_BYTES, LAYER_FS_SUBTYPE } from './tuning.js';
export type { LayerFsTuning } from './tuning.js';
export { readMountInfo, fuseMountsUnder, parseMountInfo } from './mountinfo.js';
export type { MountInfo } from './mountinfo.js';
export { probeMount } from './unmount.js';
export type { MountHealth } from './unmount.js';
export type { FuseObserver } from './observer.js';
export { NO_OBSERVER } from './observer.js';
