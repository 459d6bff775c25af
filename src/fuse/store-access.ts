// One layer's way into the store: its root directory, held as a descriptor opened without
// following any link below the trusted store root, and every call below it made by the native
// pool relative to that descriptor (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: a directory of
// the store swapped for a symlink, before the mount or under it, leads nowhere).
//
// The store is not trusted to answer: a layer has at most `maxInFlight` calls on the pool at a
// time (more wait here, in order), so a stalled store holds a few threads and never the pool;
// a call that passes its deadline is answered ETIMEDOUT to its caller and logged, whatever the
// thread that made it is still waiting for. A root that died under us (a CernVM-FS mount that
// crashed and came back, ENOTCONN/ESTALE) is opened again, the same safe way, and the call retried once.
import type { Logger } from '../log.js';
import { NC, bytes, native, submitJob } from '../sys/native.js';
import { E, errnoName } from './kernel/errno.js';
import { NO_OBSERVER, type FuseObserver, type StoreCall } from './observer.js';
import { readRecord, entryOf, type EntryInfo } from './records.js';

export interface StoreAccessOptions {
  log: Logger;
  /** Pool calls this layer may have running at once. */
  maxInFlight: number;
  /** A call not answered after this long is answered ETIMEDOUT. */
  deadlineMs: number;
  /** Told of every call's time on the pool, of deadlines passed and of reopened roots. */
  observer?: FuseObserver;
}

/** Where a layer lives: a prefix opened as given (the configured store), and a path below it where no link is followed. */
export interface LayerLocation {
  readonly trusted: string;
  readonly relative: string;
}

export type StoreCallback = (res: number, out: Buffer | undefined) => void;

interface Job {
  readonly op: number;
  readonly kind: StoreCall;
  readonly what: string;
  readonly usesRoot: boolean;
  readonly i1: number;
  readonly d2: number;
  readonly s0: Buffer | undefined;
  readonly s1: Buffer | undefined;
  readonly s2: Buffer | undefined;
  readonly fd: number;
  readonly cb: StoreCallback;
  /** Told of an answer that came back after the deadline, to release what it holds. */
  readonly late: StoreCallback | undefined;
  readonly queuedAt: number;
  /** When it was handed to the pool (the last time, if it was retried). */
  submittedAt: number;
  settled: boolean;
  retried: boolean;
}

/** OP_LIST's d2 bit for a listing by name (1 is the layer being bare). */
const LIST_NAME_ONLY = 2;

const live = new Set<StoreAccess>();
let sweeper: NodeJS.Timeout | undefined;

function sweep(): void {
  const now = performance.now();
  for (const s of live) s.expire(now);
}

function track(s: StoreAccess, on: boolean): void {
  if (on) live.add(s);
  else live.delete(s);
  if (live.size > 0 && !sweeper) {
    sweeper = setInterval(sweep, 500);
    sweeper.unref();
  } else if (live.size === 0 && sweeper) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/**
 * Opens a layer's root; resolves with the descriptor and the root's own entry. bare: the layer
 * is known to hold no xattr (StoreAccess.bare), so the root's are not read.
 */
export function openLayerRoot(loc: LayerLocation, bare = false): Promise<{ fd: number; root: EntryInfo }> {
  return new Promise((resolve, reject) => {
    const r = submitJob(NC.OP_OPENROOT, (res, out) => {
      if (res < 0 || !out) {
        reject(Object.assign(new Error(`opening layer directory ${loc.relative || '.'} under ${loc.trusted}: ${errnoName(res)}`
          + (res === -E.ELOOP || res === -E.EXDEV ? ' (a symlink in the way: the store is not used through links)' : '')), { code: errnoName(res) }));
        return;
      }
      resolve({ fd: res, root: entryOf(out, readRecord(out, 0)) });
    }, 0, 0, bare ? 1 : 0, bytes(loc.trusted), bytes(loc.relative));
    if (r < 0) reject(Object.assign(new Error(`opening layer directory: ${errnoName(r)}`), { code: errnoName(r) }));
  });
}

export class StoreAccess {
  private rootFd: number;
  private readonly loc: LayerLocation;
  private readonly log: Logger;
  private readonly max: number;
  private readonly deadlineMs: number;
  private readonly observer: FuseObserver;
  private running = 0;
  private readonly queue: Job[] = [];
  private readonly active = new Set<Job>();
  private reopening: Job[] | undefined;
  private closed = false;
  /** Told when the root was found dead: whatever was opened below it is dead too. */
  onRootDied: (() => void) | undefined;
  /**
   * The layer holds no xattr and no opaque directory (its census said so, xattr-census.ts):
   * lookups, stats and listings stop reading them, a listxattr per entry saved.
   */
  bare = false;

  constructor(rootFd: number, loc: LayerLocation, opts: StoreAccessOptions) {
    this.rootFd = rootFd;
    this.loc = loc;
    this.log = opts.log;
    this.max = Math.max(1, opts.maxInFlight);
    this.deadlineMs = opts.deadlineMs;
    this.observer = opts.observer ?? NO_OBSERVER;
  }

  get location(): LayerLocation {
    return this.loc;
  }

  /** A call's answer was a failure of the store (not a deadline: that is counted where it passed). */
  failed(call: StoreCall, errno: number): void {
    if (errno !== -E.ETIMEDOUT) this.observer.storeError(call, errno);
  }

  /** How many times the root was found dead and opened again. */
  reopens = 0;

  /** Calls started and not answered (running or waiting for a slot). */
  get pending(): number {
    return this.active.size;
  }

  // ---- calls --------------------------------------------------------------------------------

  /** The entry `name` in directory `dir` (relative paths, '' for the root), or its AUFS whiteout. */
  lookup(dir: string, name: string, cb: StoreCallback): void {
    this.start(NC.OP_LOOKUP, 'lookup', `lookup ${join(dir, name)}`, true, cb, { s0: bytes(dir), s1: bytes(name), d2: this.bareFlag });
  }

  /**
   * The directory, and up to `prefetch` entries' worth of its subdirectories and of the
   * directories named in `next` (paths in the layer), breadth first.
   */
  list(dir: string, prefetch: number, next: readonly string[], cb: StoreCallback): void {
    const s2 = next.length > 0 ? bytes(next.join('\n')) : undefined;
    this.start(NC.OP_LIST, 'list', `list ${dir || '/'}`, true, cb, { s0: bytes(dir), i1: prefetch, d2: this.bareFlag, ...(s2 ? { s2 } : {}) });
  }

  /**
   * The directory's names, each with only its type and inode number (no stat, no xattrs): one
   * getdents pass, for lookups that need to know which names exist. Never for the kernel.
   */
  listNames(dir: string, cb: StoreCallback): void {
    this.start(NC.OP_LIST, 'list', `list names ${dir || '/'}`, true, cb, { s0: bytes(dir), d2: this.bareFlag | LIST_NAME_ONLY });
  }

  /** The native calls' d2 for a lookup, stat or listing: 1 when the layer is bare. */
  private get bareFlag(): number {
    return this.bare ? 1 : 0;
  }

  stat(path: string, cb: StoreCallback): void {
    this.start(NC.OP_STAT, 'stat', `stat ${path || '/'}`, true, cb, { s0: bytes(path), d2: this.bareFlag });
  }

  readlink(path: string, cb: StoreCallback): void {
    this.start(NC.OP_READLINK, 'readlink', `readlink ${path}`, true, cb, { s0: bytes(path) });
  }

  getxattr(path: string, name: string, cb: StoreCallback): void {
    this.start(NC.OP_GETXATTR, 'getxattr', `getxattr ${path || '/'} ${name}`, true, cb, { s0: bytes(path), s1: bytes(name) });
  }

  /** A descriptor of the regular file at path, checked to still be the inode the kernel knows (0: any). */
  open(path: string, ino: number, cb: StoreCallback): void {
    this.start(NC.OP_OPEN, 'open', `open ${path}`, true, cb, { s0: bytes(path), d2: ino, i1: -1, late: (res) => {
      if (res >= 0) this.close(res);
    } });
  }

  /**
   * The regular file at path registered with the kernel as a passthrough backing file on devFd,
   * in one pool call (open, check, register, close). Answers the backing id with out[0..4) = 1,
   * or, when the kernel refused to register it, the open descriptor with out[0..4) = 0 and the
   * refusal's errno at out[4..8).
   */
  openBacking(path: string, ino: number, devFd: number, cb: StoreCallback): void {
    this.start(NC.OP_OPEN, 'open', `open ${path}`, true, cb, { s0: bytes(path), d2: ino, i1: devFd, late: (res, out) => {
      if (res < 0 || !out) return;
      if (out.readInt32LE(0) === 1) native.backingClose(devFd, res);
      else this.close(res);
    } });
  }

  /** Reads len bytes at off into a buffer whose first 16 bytes are left for a reply header. */
  pread(fd: number, len: number, off: number, what: string, cb: StoreCallback): void {
    this.start(NC.OP_PREAD, 'read', `read ${what}`, false, cb, { fd, i1: len, d2: off });
  }

  /** Closes a store descriptor on the pool: closing a file of a FUSE store waits for its server. */
  close(fd: number): void {
    this.start(NC.OP_CLOSE, 'close', 'close', false, (res) => {
      if (res < 0) this.log.debug({ errno: errnoName(res) }, 'closing a store file failed');
    }, { fd });
  }

  statfs(cb: StoreCallback): void {
    this.start(NC.OP_STATFS, 'statfs', 'statfs', true, cb, {});
  }

  /** Stops using the root; calls still running finish, and their answers go nowhere. */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const j of this.queue.splice(0)) this.settle(j, -E.EIO, undefined);
    const fd = this.rootFd;
    this.rootFd = -1;
    if (fd >= 0) this.closeRootFd(fd);
    if (this.active.size === 0) track(this, false);
  }

  // ---- machinery ----------------------------------------------------------------------------

  private start(op: number, kind: StoreCall, what: string, usesRoot: boolean, cb: StoreCallback, a: { s0?: Buffer; s1?: Buffer; s2?: Buffer; fd?: number; i1?: number; d2?: number; late?: StoreCallback }): void {
    const job: Job = {
      op, kind, what, usesRoot, cb, late: a.late, i1: a.i1 ?? 0, d2: a.d2 ?? 0, s0: a.s0, s1: a.s1, s2: a.s2, fd: a.fd ?? -1,
      queuedAt: performance.now(), submittedAt: 0, settled: false, retried: false,
    };
    if (this.closed && usesRoot) {
      cb(-E.EIO, undefined);
      return;
    }
    this.active.add(job);
    track(this, true);
    if (this.reopening && usesRoot) this.reopening.push(job);
    else if (this.running < this.max) this.submit(job);
    else this.queue.push(job);
  }

  private submit(job: Job): void {
    this.running++;
    job.submittedAt = performance.now();
    const i0 = job.usesRoot ? this.rootFd : job.fd;
    const r = submitJob(job.op, (res, out) => this.done(job, res, out), i0, job.i1, job.d2, job.s0, job.s1, job.s2);
    if (r < 0) {
      this.running--;
      this.settle(job, r, undefined);
      this.next();
    }
  }

  private done(job: Job, res: number, out: Buffer | undefined): void {
    this.running--;
    this.observer.storeCall(job.kind, (performance.now() - job.submittedAt) / 1000);
    if (job.settled) {
      this.log.info({ call: job.what, seconds: ((performance.now() - job.queuedAt) / 1000).toFixed(1) }, 'a store call that passed its deadline came back');
      job.late?.(res, out);
    } else if (job.usesRoot && !job.retried && (res === -E.ENOTCONN || res === -E.ESTALE || res === -E.EBADF) && !this.closed) {
      // The root itself died (a store that crashed and came back, or was swapped): open it
      // again, the same way as at mount, and retry this call once.
      job.retried = true;
      this.reopenRoot(job);
    } else {
      this.settle(job, res, out);
    }
    this.next();
  }

  private next(): void {
    while (this.running < this.max && this.queue.length > 0 && !this.reopening) {
      this.submit(this.queue.shift() as Job);
    }
    if (this.active.size === 0 && this.closed) track(this, false);
  }

  private settle(job: Job, res: number, out: Buffer | undefined): void {
    if (job.settled) return;
    job.settled = true;
    this.active.delete(job);
    try {
      job.cb(res, out);
    } catch (err) {
      this.log.error({ err, call: job.what }, 'a store call\'s callback threw');
    }
  }

  /** Answers ETIMEDOUT for every call past its deadline; their threads may stay blocked. */
  expire(now: number): void {
    for (const job of this.active) {
      if (job.settled || now - job.queuedAt < this.deadlineMs) continue;
      const idx = this.queue.indexOf(job);
      if (idx >= 0) this.queue.splice(idx, 1);
      this.log.warn({ call: job.what, deadlineSeconds: this.deadlineMs / 1000, waiting: idx >= 0 }, 'the layer store did not answer within the deadline; answered EIO');
      job.settled = true;
      this.active.delete(job);
      this.observer.storeDeadline(job.kind);
      try {
        job.cb(-E.ETIMEDOUT, undefined);
      } catch (err) {
        this.log.error({ err, call: job.what }, 'a store call\'s callback threw');
      }
    }
    if (this.active.size === 0 && (this.closed || this.queue.length === 0)) track(this, false);
  }

  private reopenRoot(first: Job): void {
    if (this.reopening) {
      this.reopening.push(first);
      return;
    }
    // No back-off: only a call that met the dead root tries again, one reopen at a time, and
    // a store that is back (cvmfs remounted) must be used at once.
    const waiting: Job[] = [first];
    this.reopening = waiting;
    this.log.warn({ store: this.loc.trusted, layer: this.loc.relative }, 'the layer directory stopped answering (ENOTCONN/ESTALE); opening it again');
    this.reopens++;
    this.observer.storeReopen();
    this.onRootDied?.();
    openLayerRoot(this.loc, this.bare).then(({ fd }) => {
      if (this.closed) {
        this.closeRootFd(fd);
        return;
      }
      const old = this.rootFd;
      this.rootFd = fd;
      if (old >= 0) this.closeRootFd(old);
      this.log.info({ store: this.loc.trusted }, 'the layer directory is back');
      this.reopening = undefined;
      for (const j of waiting) if (!j.settled) this.queue.unshift(j);
      this.next();
    }, (err: unknown) => {
      this.log.error({ err }, 'the layer directory cannot be opened again; answering EIO until it can');
      this.reopening = undefined;
      for (const j of waiting) this.settle(j, -E.EIO, undefined);
      this.next();
    });
  }

  private closeRootFd(fd: number): void {
    // An O_PATH descriptor: closing it never waits on the store, but the last reference to a
    // detached store mount may tear it down, so the pool does it.
    submitJob(NC.OP_CLOSE, () => undefined, fd);
  }
}

export function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}
