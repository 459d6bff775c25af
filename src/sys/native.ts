// The project's native addon (native/cvmfs_sys.c, built by node-gyp at `npm ci`): the system
// calls Node cannot make (openat2, statx, getdents64, the FUSE passthrough ioctls, mount(2)),
// /dev/fuse descriptors read on the event loop's own thread, and a small pool of threads of our
// own for store calls that may block. This module loads it once and routes its two callbacks:
// requests read from a channel go to that channel's listener, finished jobs to their callback.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** An opaque handle of a watched /dev/fuse descriptor. */
export interface ChannelHandle { readonly __channel: unique symbol }

export interface NativeConstants {
  OP_LOOKUP: number; OP_STAT: number; OP_LIST: number; OP_READLINK: number; OP_OPEN: number; OP_PREAD: number;
  OP_CLOSE: number; OP_STATFS: number; OP_OPENROOT: number; OP_MOUNT: number; OP_UMOUNT: number; OP_GETXATTR: number;
  OP_SLEEP: number; OP_ISMOUNT: number;
  FLAG_OPAQUE: number; FLAG_XATTR_ERROR: number; FLAG_WHITEOUT: number;
  REC_HEAD: number; ATTR_SIZE: number; SLOT_COUNT: number;
  MS_RDONLY: number; MS_NOSUID: number; MS_NODEV: number; MNT_DETACH: number; MNT_FORCE: number; UMOUNT_NOFOLLOW: number;
}

interface Binding {
  setHandlers(onRequests: (token: number, count: number, err: number) => void, onComplete: (token: number, res: number, out: Buffer | undefined) => void): void;
  requestSlots(): [Buffer, Int32Array, number];
  channelStart(fd: number, token: number): ChannelHandle;
  channelStop(h: ChannelHandle): void;
  setBlocking(fd: number, blocking: boolean): number;
  write(fd: number, buf: Buffer, len: number): number;
  writev(fd: number, head: Buffer, body: Buffer): number;
  submit(op: number, token: number, i0?: number, i1?: number, d2?: number, s0?: Buffer, s1?: Buffer, s2?: Buffer, s3?: Buffer): number;
  poolConfig(maxThreads: number, stuckMs: number): void;
  poolStats(): [threads: number, idle: number, queued: number, stuck: number, inflight: number, done: number];
  setHiddenXattrs(names: Buffer[]): void;
  backingClose(devFd: number, id: number): number;
  closeFd(fd: number): number;
  /** A connected SOCK_SEQPACKET pair: message boundaries kept, as on /dev/fuse (tests speak FUSE over it). */
  seqpacketPair(): [number, number];
  constants: NativeConstants;
}

const ADDON = fileURLToPath(new URL('../../../build/Release/cvmfs_sys.node', import.meta.url));

function load(): Binding {
  if (!existsSync(ADDON)) {
    throw new Error(`the native addon ${ADDON} is missing: run npm ci (or npm rebuild) in the project, which builds it with node-gyp`);
  }
  return createRequire(import.meta.url)(ADDON) as Binding;
}

export const native: Binding = load();
export const NC: NativeConstants = native.constants;

/** Told about the requests read from one channel: count of them sit in the shared slots. */
export type ChannelListener = (count: number, err: number) => void;
/** A finished pool job: result >= 0 or -errno, and its output bytes if it has any. */
export type JobCallback = (result: number, out: Buffer | undefined) => void;

const channels = new Map<number, ChannelListener>();
const jobs = new Map<number, JobCallback>();
let nextToken = 1;

native.setHandlers(
  (token, count, err) => {
    const l = channels.get(token);
    if (l) l(count, err);
  },
  (token, res, out) => {
    const cb = jobs.get(token);
    if (!cb) return;
    jobs.delete(token);
    cb(res, out);
  },
);

const [slotBuffer, slotLengths, slotSize] = native.requestSlots();

/** Where the requests of the current onRequests call are: slot i is at i * size, lengths[i] long. */
export const requestSlots = { buffer: slotBuffer, lengths: slotLengths, size: slotSize } as const;

/** Watches a /dev/fuse descriptor (made non-blocking); the listener runs on the event loop. */
export function watchChannel(fd: number, listener: ChannelListener): { stop(): void } {
  const token = nextToken++;
  channels.set(token, listener);
  let h: ChannelHandle | undefined;
  try {
    h = native.channelStart(fd, token);
  } catch (err) {
    channels.delete(token);
    throw err;
  }
  return {
    stop: () => {
      if (h === undefined) return;
      native.channelStop(h);
      h = undefined;
      channels.delete(token);
    },
  };
}

/** Queues a job on the store pool; the callback runs on the event loop. Returns 0 or -errno. */
export function submitJob(
  op: number, cb: JobCallback, i0 = 0, i1 = 0, d2 = 0, s0?: Buffer, s1?: Buffer, s2?: Buffer, s3?: Buffer,
): number {
  const token = nextToken++;
  jobs.set(token, cb);
  const r = native.submit(op, token, i0, i1, d2, s0, s1, s2, s3);
  if (r < 0) jobs.delete(token);
  return r;
}

export interface PoolStats {
  threads: number;
  idle: number;
  queued: number;
  /** Threads in one call for longer than the stuck threshold. */
  stuck: number;
  inflight: number;
  done: number;
}

export function poolStats(): PoolStats {
  const [threads, idle, queued, stuck, inflight, done] = native.poolStats();
  return { threads, idle, queued, stuck, inflight, done };
}

/** A path or name as the bytes the kernel uses (binary strings: one char per byte). */
export function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}
