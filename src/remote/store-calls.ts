// The daemon's calls into the layer store, made on the native addon's pool of threads (the one
// the FUSE server uses for its store calls), never on libuv's. libuv has four threads for every
// fs call, timer-less DNS lookup and zlib job of the process: four lstat()s stuck on a stalled
// CernVM-FS mount were enough to leave an ordinary Prepare, a Remove and the SQLite-free Stat
// waiting behind them. The native pool grows past a thread stuck longer than its threshold, so a
// stalled store holds only the threads of the calls it stalls.
//
// Every call has a deadline, after which its caller hears StoreUnanswered('timeout') while the
// thread goes on waiting for the store; and at most `maxInFlight` calls (late ones included) may
// be in the pool at once, so a store that stalls everything holds a bounded number of threads:
// past that, a call fails at once with StoreUnanswered('busy').
import { getSystemErrorName } from 'node:util';
import type { LayerStore } from '../layers/store.js';
import { NC, native, submitJob } from '../sys/native.js';
import type { Usage } from '../snapshotter/types.js';

export interface StoreCallsOptions {
  /** A store call not answered after this long is given up (its thread is left to the store). */
  deadlineMs: number;
  /** Store calls that may be in the pool at once, those past their deadline included. */
  maxInFlight: number;
}

/** The store did not answer in time, or too many of its calls are still unanswered. */
export class StoreUnanswered extends Error {
  constructor(readonly why: 'timeout' | 'busy', message: string) {
    super(message);
    this.name = 'StoreUnanswered';
  }
}

/** What StoreLayers asks of the store. */
export interface LayerQueries {
  /** `<root>/.layers/<xx>/<hex>/layerfs`. */
  layerPath(digest: string): string;
  /**
   * Whether the layer's directory is there, with no symlink on the way below the store root
   * (a link could point a layer at another part of the host). Missing answers false; a store
   * error or StoreUnanswered is thrown.
   */
  has(digest: string): Promise<boolean>;
  /** Bytes on disk and inodes of the layer tree, like du (hardlinks once). */
  usage(digest: string): Promise<Usage>;
  /** Calls made and not answered yet, those past their deadline included. */
  readonly pending?: number;
}

// Record layout of the native answers (native/cvmfs_sys.c put_record / put_attr).
const REC_HEAD = 16;
const ATTR_INO = 0;
const ATTR_BLOCKS = 16;
const ATTR_MODE = 60;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
/** Entries one listing call may return, its subdirectories' included: a few hundred KiB of answer. */
const LIST_BUDGET = 4096;
/** Directories named to one listing call to be listed along with it. */
const LIST_NEXT = 64;

const ABSENT = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EXDEV']);

interface Answer { res: number; out: Buffer | undefined }

export class PooledLayerStore implements LayerQueries {
  private inFlight = 0;

  constructor(private readonly store: LayerStore, private readonly opts: StoreCallsOptions) {}

  /** Store calls in the pool now, late ones included. */
  get pending(): number {
    return this.inFlight;
  }

  layerPath(digest: string): string {
    return this.store.layerPath(digest);
  }

  async has(digest: string): Promise<boolean> {
    const rel = this.relative(digest);
    const a = await this.call(`looking up ${this.store.layerPath(digest)}`, NC.OP_OPENROOT, [Buffer.from(this.store.root), Buffer.from(rel)], 0, closeLate);
    if (a.res >= 0) {
      native.closeFd(a.res);
      return true;
    }
    const code = errnoName(a.res);
    if (ABSENT.has(code)) return false;
    throw Object.assign(new Error(`${code} looking up ${this.store.layerPath(digest)}`), { code });
  }

  async usage(digest: string): Promise<Usage> {
    const where = this.store.layerPath(digest);
    const opened = await this.call(`opening ${where}`, NC.OP_OPENROOT, [Buffer.from(this.store.root), Buffer.from(this.relative(digest))], 0, closeLate);
    if (opened.res < 0) throw Object.assign(new Error(`${errnoName(opened.res)} opening ${where}`), { code: errnoName(opened.res) });
    const rootFd = opened.res;
    // The descriptor is closed when no call of ours uses it any more, late ones included.
    let users = 1;
    const release = (): void => { if (--users === 0) native.closeFd(rootFd); };
    try {
      const seen = new Set<string>();
      let size = 0;
      const count = (buf: Buffer, at: number): void => {
        const ino = buf.readBigUInt64LE(at + REC_HEAD + ATTR_INO).toString();
        if (seen.has(ino)) return;
        seen.add(ino);
        size += Number(buf.readBigUInt64LE(at + REC_HEAD + ATTR_BLOCKS)) * 512;
      };
      if (opened.out) count(opened.out, 0);
      const pending: string[] = [''];
      const listed = new Set<string>();
      while (pending.length > 0) {
        const dir = pending.shift() as string;
        if (listed.has(dir)) continue;
        const next: string[] = [];
        for (let k = 0; k < pending.length && next.length < LIST_NEXT; k++) if (!listed.has(pending[k] as string)) next.push(pending[k] as string);
        users++;
        let a: Answer;
        try {
          a = await this.call(`listing ${dir || '.'} in ${where}`, NC.OP_LIST,
            [Buffer.from(dir, 'latin1'), undefined, next.length > 0 ? Buffer.from(next.join('\n'), 'latin1') : undefined], LIST_BUDGET, release, rootFd);
        } catch (err) {
          // A call past its deadline releases the descriptor when it comes back; one never made, now.
          if (!(err instanceof StoreUnanswered && err.why === 'timeout')) release();
          throw err;
        }
        release();
        if (a.res < 0 || !a.out) throw Object.assign(new Error(`${errnoName(a.res)} listing ${dir || '.'} in ${where}`), { code: errnoName(a.res) });
        for (const block of listingBlocks(a.out)) {
          listed.add(block.rel);
          count(a.out, block.self);
          for (const e of block.entries) {
            if (a.out.readInt32LE(e.at + 4) !== 0) throw new Error(`${errnoName(a.out.readInt32LE(e.at + 4))} on ${e.name} in ${where}`);
            count(a.out, e.at);
            const mode = a.out.readUInt32LE(e.at + REC_HEAD + ATTR_MODE);
            if ((mode & S_IFMT) === S_IFDIR) pending.push(block.rel === '' ? e.name : `${block.rel}/${e.name}`);
          }
        }
      }
      return { size, inodes: seen.size };
    } finally {
      release();
    }
  }

  private relative(digest: string): string {
    return this.store.layerPath(digest).slice(this.store.root.length + 1);
  }

  /**
   * One job on the native pool: its answer, or StoreUnanswered after the deadline. An answer
   * that comes later goes to `late`, to release what it holds.
   */
  private call(what: string, op: number, s: (Buffer | undefined)[], i1: number, late: (a: Answer) => void, i0 = 0): Promise<Answer> {
    if (this.inFlight >= this.opts.maxInFlight) {
      return Promise.reject(new StoreUnanswered('busy', `${this.inFlight} calls into the layer store are still unanswered (at most ${this.opts.maxInFlight}); not ${what}`));
    }
    return new Promise<Answer>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new StoreUnanswered('timeout', `the layer store did not answer within ${this.opts.deadlineMs} ms ${what}`));
      }, this.opts.deadlineMs);
      this.inFlight++;
      const r = submitJob(op, (res, out) => {
        this.inFlight--;
        if (settled) {
          late({ res, out });
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolve({ res, out });
      }, i0, i1, 0, s[0], s[1], s[2]);
      if (r < 0) {
        this.inFlight--;
        settled = true;
        clearTimeout(timer);
        reject(Object.assign(new Error(`${errnoName(r)} queueing a store call ${what}`), { code: errnoName(r) }));
      }
    });
  }
}

/** ENOENT for -2: the name of a negative errno from the native side. */
function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno < 0 ? negErrno : -negErrno);
  } catch {
    return `errno ${Math.abs(negErrno)}`;
  }
}

/** A layer directory opened after its deadline: closed, nobody waits for it. */
function closeLate(a: Answer): void {
  if (a.res >= 0) native.closeFd(a.res);
}

interface Block { rel: string; self: number; entries: { name: string; at: number }[] }

/**
 * The directories of an OP_LIST answer: u32 blocks, u32 0, then per directory u32 count,
 * u16 relLen, 10 bytes of 0, rel padded to 8, the directory's own record, count records.
 * A record: u32 length, i32 -errno, u16 name length, u8 flags, u8 0, u32 xattr length,
 * the 88-byte attr, the name, the xattrs, padding.
 */
function listingBlocks(buf: Buffer): Block[] {
  const blocks = buf.readUInt32LE(0);
  const out: Block[] = [];
  let at = 8;
  for (let i = 0; i < blocks; i++) {
    if (at + 16 > buf.length) throw new RangeError(`listing block ${i} runs past the store's answer`);
    const count = buf.readUInt32LE(at);
    const relLen = buf.readUInt16LE(at + 4);
    const rel = buf.toString('latin1', at + 16, at + 16 + relLen);
    let p = at + 16 + ((relLen + 7) & ~7);
    const self = p;
    p += recordLength(buf, p);
    const entries: { name: string; at: number }[] = [];
    for (let k = 0; k < count; k++) {
      const len = recordLength(buf, p);
      const nameLen = buf.readUInt16LE(p + 8);
      const nameAt = p + REC_HEAD + 88;
      entries.push({ name: buf.toString('latin1', nameAt, nameAt + nameLen), at: p });
      p += len;
    }
    out.push({ rel, self, entries });
    at = p;
  }
  return out;
}

function recordLength(buf: Buffer, at: number): number {
  if (at + REC_HEAD + 88 > buf.length) throw new RangeError(`store record at ${at} runs past the answer (${buf.length} bytes)`);
  const len = buf.readUInt32LE(at);
  if (len < REC_HEAD + 88 || at + len > buf.length) throw new RangeError(`malformed store record at ${at}`);
  return len;
}
