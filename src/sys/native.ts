// The project's native addon (native/cvmfs_sys.c, built by node-gyp at `npm ci`): the system
// calls Node cannot make (openat2, statx, getdents64, the FUSE passthrough ioctls, mount(2)),
// /dev/fuse descriptors read on the event loop's own thread, and a small pool of threads of our
// own for store calls that may block. This module loads it once and routes its two callbacks:
// requests read from a channel go to that channel's listener, finished jobs to their callback.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
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
  /** How long, in microseconds, a FUSE channel is read again after an answer before the loop waits (0: off). */
  setBusyPoll(microseconds: number): void;
  setHiddenXattrs(names: Buffer[]): void;
  backingClose(devFd: number, id: number): number;
  closeFd(fd: number): number;
  /** A connected SOCK_SEQPACKET pair: message boundaries kept, as on /dev/fuse (tests speak FUSE over it). */
  seqpacketPair(): [number, number];
  /** A listening AF_UNIX SOCK_SEQPACKET socket at path (non-blocking, close-on-exec): fd or -errno. */
  unixListen(path: Buffer, backlog: number): number;
  /** A connection accepted within timeoutMs: fd or -errno (-ETIMEDOUT). */
  unixAccept(fd: number, timeoutMs: number): number;
  /** A SOCK_SEQPACKET connection to path (non-blocking, close-on-exec): fd or -errno. */
  unixConnect(path: Buffer, timeoutMs: number): number;
  /** One message with up to 250 descriptors (SCM_RIGHTS): bytes sent or -errno (-ETIMEDOUT). */
  fdSend(fd: number, data: Buffer, fds: number[], timeoutMs: number): number;
  /** One message and its descriptors (close-on-exec), or -errno; an empty message: the peer closed. */
  fdRecv(fd: number, maxBytes: number, maxFds: number, timeoutMs: number): [Buffer, number[]] | number;
  /** Replaces the process (same pid) by path run with argv; returns -errno only when that failed. */
  execv(path: Buffer, argv: Buffer[]): number;
  /** A collection of everything V8 can free, pages given back, then malloc_trim(0); synchronous. */
  reduceMemory(): void;
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

// ---- descriptor passing -------------------------------------------------------------------------
// Messages with descriptors (SCM_RIGHTS) over AF_UNIX SOCK_SEQPACKET sockets, between processes
// that are not parent and child. Each wait is cut into short polls with the event loop let go
// in between, so that a peer that stops answering costs a timeout, never a frozen process.

/** Most descriptors one message carries (the kernel allows 253). */
export const FD_PASS_MAX_FDS = 250;
/** Most bytes one message carries. */
export const FD_PASS_MAX_BYTES = 128 * 1024;
const SLICE_MS = 20;

// Node's table lacks ETOOMANYREFS (Linux 109), which fdRecv answers for too many descriptors.
const ERRNO_NAMES = new Map<number, string>([[109, 'ETOOMANYREFS'], ...Object.entries(osConstants.errno).map(([k, v]) => [v, k] as [number, string])]);

/** An Error for a -errno result, with its code set as Node's own errors have it. */
export function errnoError(res: number, what: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(-res) ?? `errno ${-res}`;
  const e: NodeJS.ErrnoException = new Error(`${what}: ${code}`);
  e.code = code;
  e.errno = res;
  return e;
}

const ETIMEDOUT = osConstants.errno.ETIMEDOUT;

/** Runs a native call in slices of SLICE_MS until it answers other than -ETIMEDOUT, or the deadline passes. */
async function sliced<T>(timeoutMs: number, what: string, call: (sliceMs: number) => T | number): Promise<T | number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const r = call(Math.max(0, Math.min(SLICE_MS, left)));
    if (r !== -ETIMEDOUT) return r;
    if (left <= 0) throw errnoError(-ETIMEDOUT, `${what} (waited ${timeoutMs} ms)`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Listens on a new SOCK_SEQPACKET socket at path; throws with the errno's code. */
export function listenSeqpacket(path: string, backlog = 1): number {
  const r = native.unixListen(Buffer.from(path), backlog);
  if (r < 0) throw errnoError(r, `listening on ${path}`);
  return r;
}

/** The next connection to a listening socket, within timeoutMs. */
export async function acceptSeqpacket(fd: number, timeoutMs: number): Promise<number> {
  const r = await sliced(timeoutMs, 'waiting for a connection', (ms) => native.unixAccept(fd, ms));
  if (r < 0) throw errnoError(r, 'accepting a connection');
  return r;
}

/** Connects to the SOCK_SEQPACKET socket at path. */
export function connectSeqpacket(path: string, timeoutMs: number): number {
  const r = native.unixConnect(Buffer.from(path), Math.max(1, Math.min(60_000, timeoutMs)));
  if (r < 0) throw errnoError(r, `connecting to ${path}`);
  return r;
}

/** Sends one message carrying fds (at most FD_PASS_MAX_FDS; they stay open here). */
export async function sendWithFds(fd: number, data: Buffer, fds: readonly number[], timeoutMs: number): Promise<void> {
  if (fds.length > FD_PASS_MAX_FDS) throw new RangeError(`a message carries at most ${FD_PASS_MAX_FDS} descriptors, not ${fds.length}`);
  const list = [...fds];
  const r = await sliced(timeoutMs, 'sending a message', (ms) => native.fdSend(fd, data, list, ms));
  if (r < 0) throw errnoError(r, 'sending a message');
  if (r !== data.length) throw new Error(`sending a message: ${r} of ${data.length} bytes went`);
}

/** One received message: its bytes and the descriptors it carried (now open here, close-on-exec). */
export interface ReceivedMessage {
  readonly data: Buffer;
  readonly fds: number[];
}

/**
 * The next message, or 'closed' once the peer closed its end. A message longer than maxBytes or
 * with more than maxFds descriptors is refused (an error) and its descriptors are closed.
 */
export async function receiveWithFds(fd: number, maxBytes: number, maxFds: number, timeoutMs: number): Promise<ReceivedMessage | 'closed'> {
  const r = await sliced(timeoutMs, 'waiting for a message', (ms) => native.fdRecv(fd, maxBytes, maxFds, ms));
  if (typeof r === 'number') throw errnoError(r, 'receiving a message');
  const [data, fds] = r;
  if (data.length === 0 && fds.length === 0) return 'closed';
  return { data, fds };
}
