// How a layer mount is made and served. Layers are immutable, so every kernel timeout is long.

export interface LayerFsTuning {
  entryTimeoutSec: number;
  attrTimeoutSec: number;
  negativeTimeoutSec: number;
  /** Largest READ the kernel may send, in pages. */
  maxPages: number;
  /** Asynchronous requests (read-ahead) the kernel may keep in flight. */
  maxBackground: number;
  /** Let every user (the container's) use the mount; needs root or user_allow_other. */
  allowOther: boolean;
  /** Kernel read-ahead for the mount in KiB (see readahead.ts); 0 leaves the kernel default. */
  readAheadKb: number;
  /** Ask the kernel for FUSE passthrough (reads go straight to the store's files). */
  passthrough: boolean;
  /** Store calls one layer may have on the pool at once; more wait, so a stalled store holds only these. */
  storeCallsPerLayer: number;
  /** A store call not answered in this long is answered EIO (CernVM-FS's own timeouts are minutes). */
  storeDeadlineMs: number;
  /** A cold lookup reads the directory's names when it is no bigger than this (st_size, bytes). */
  listDirBytes: number;
  /** Entries of subdirectories listed along with a directory, ahead of their own READDIR (0: none). */
  prefetchEntries: number;
  /**
   * Entries a background census may list to learn that a layer has no xattr at all (then the
   * kernel is told to stop asking for them); 0 turns the census off.
   */
  censusEntries: number;
  /** Store files held open (or registered for passthrough) by the whole process. */
  openFiles: number;
  /** Threads of the store pool, before stuck ones are replaced. */
  poolThreads: number;
  /**
   * Microseconds a layer's channel is read again after an answer, before the server waits for
   * the kernel to wake it (native/cvmfs_sys.c, busy_poll); 0: never. The whole process has one.
   */
  busyPollUs: number;
}

export const DEFAULT_TUNING: Readonly<LayerFsTuning> = {
  entryTimeoutSec: 86400,
  attrTimeoutSec: 86400,
  negativeTimeoutSec: 86400,
  maxPages: 256,
  maxBackground: 64,
  allowOther: true,
  readAheadKb: 2048,
  passthrough: true,
  storeCallsPerLayer: 4,
  storeDeadlineMs: 180_000,
  listDirBytes: 16 * 1024,
  prefetchEntries: 512,
  censusEntries: 200_000,
  openFiles: 4096,
  poolThreads: 32,
  busyPollUs: 20,
};

/** The largest busy poll the server takes (fuse-busy-poll-us, --busy-poll-us). */
export const MAX_BUSY_POLL_US = 1000;

/** The filesystem type shows as `fuse.<subtype>` in /proc/self/mountinfo. */
export const LAYER_FS_SUBTYPE = 'cvmfs-layer';
export const LAYER_FS_NAME = 'cvmfs-snapshotter';
/** The default byte budget of the metadata cache shared by all layers of a server. */
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
