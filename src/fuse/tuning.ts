// How a layer mount is made and how long the kernel may trust its answers. Layers are
// immutable, so every timeout is long.
import type { LayerOpsTuning } from './layer-ops.js';

export interface LayerFsTuning extends LayerOpsTuning {
  /** Let every user (the container's) use the mount; needs root or user_allow_other. */
  allowOther: boolean;
  /** Kernel read-ahead for the mount in KiB (see readahead.ts); 0 leaves the kernel default. */
  readAheadKb: number;
  /** Reads kept pending on each mount's /dev/fuse; each holds a thread of the pool. */
  readersPerMount: number;
}

export const DEFAULT_TUNING: Readonly<LayerFsTuning> = {
  entryTimeoutSec: 86400,
  attrTimeoutSec: 86400,
  negativeTimeoutSec: 86400,
  maxPages: 256,
  maxBackground: 64,
  openFiles: 256,
  allowOther: true,
  readAheadKb: 2048,
  readersPerMount: 1,
};

/** The filesystem type shows as `fuse.<subtype>` in /proc/self/mountinfo. */
export const LAYER_FS_SUBTYPE = 'cvmfs-layer';
export const LAYER_FS_NAME = 'cvmfs-snapshotter';

/** Pool threads kept free for the store I/O the requests need. */
export const RESERVED_THREADS = 4;

/**
 * libuv's pool size, fixed when the process first used the pool: the UV_THREADPOOL_SIZE it was
 * started with (clamped as libuv does), or libuv's default of 4.
 */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10);
  if (!Number.isFinite(n) || n <= 0) return 4;
  return Math.min(n, 1024);
}
