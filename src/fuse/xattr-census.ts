// Whether a layer has any extended attribute at all. overlayfs asks every lower directory of
// every new container for trusted.overlay.origin (and opaque ones for trusted.overlay.opaque),
// and FUSE caches no xattr: one request per directory per container start. The kernel stops
// asking a connection for good once it answers GETXATTR with ENOSYS, which is right only for
// a layer with nothing to lose: no xattr on any entry (file capabilities, user.*, ...) and no
// opaque directory. That is learnt by listing the whole layer once, in the background, on
// the pool, one directory at a time, up to a budget of entries; a layer that is too big, or
// whose store fails, keeps answering GETXATTR as before.
//
// The walk is also the layer's metadata read ahead: its listings are the layer's own
// (LayerFs.walkListing), kept in the cache while the cache has room, so the first container's
// walk of a directory tree finds it listed. A layer mounted again (another snapshot, a restart
// of the daemon, and through server/census-file.ts a later FUSE server) takes the verdict an
// earlier mount learnt at once, and is walked only to read it ahead, as long as there is room.
// A layer known to have none is not asked for xattrs by the server either (StoreAccess.bare).
import type { Logger } from '../log.js';
import { isDirAttr, type ListedDir } from './records.js';
import { join } from './store-access.js';

/** The layer's listings, as the walk reads them. */
export interface CensusLister {
  /** The listing of dir and of what came along with it; errno 0 or the failure. */
  list(dir: string, cb: (errno: number, dirs: readonly ListedDir[]) => void): void;
  /** Whether what the walk reads is still kept (the cache has room for it). */
  keeping(): boolean;
}

export type CensusResult = 'none' | 'some' | 'too-big' | 'failed' | 'stopped';

/** Censuses of all layers share this: a node mounting many layers at once must not walk them all at once. */
const MAX_RUNNING = 2;
let running = 0;
const waiting: (() => void)[] = [];

function acquire(): Promise<void> {
  if (running < MAX_RUNNING) {
    running++;
    return Promise.resolve();
  }
  return new Promise((resolve) => waiting.push(() => { running++; resolve(); }));
}

function release(): void {
  running--;
  waiting.shift()?.();
}

/** Results by layer directory, for a layer mounted again (a daemon restart, another snapshot). */
const known = new Map<string, CensusResult>();
const listeners = new Set<() => void>();

function remember(layerDir: string, v: CensusResult): void {
  if (known.get(layerDir) === v) return;
  known.set(layerDir, v);
  if (isLasting(v)) for (const l of listeners) l();
}

/**
 * A verdict that holds whatever the census's budget: the layer (immutable) has an xattr or an
 * opaque directory, or it has none. 'too-big' depends on layer-walk-entries, which may change.
 */
export type LastingVerdict = 'none' | 'some';

export function isLasting(v: unknown): v is LastingVerdict {
  return v === 'none' || v === 'some';
}

/** The lasting verdicts learnt so far, by layer directory, oldest first. */
export function lastingVerdicts(): [string, LastingVerdict][] {
  const out: [string, LastingVerdict][] = [];
  for (const [dir, v] of known) if (isLasting(v)) out.push([dir, v]);
  return out;
}

/** Verdicts an earlier process learnt (census-file.ts); what this one learnt itself stays. */
export function adoptVerdicts(entries: Iterable<readonly [string, LastingVerdict]>): void {
  for (const [dir, v] of entries) if (!known.has(dir)) known.set(dir, v);
}

/** Whether the layer directory is known, in this process, to hold no xattr and no opaque directory. */
export function knownXattrFree(layerDir: string): boolean {
  return known.get(layerDir) === 'none';
}

/** Calls cb whenever a lasting verdict is learnt; returns what stops it. */
export function onLastingVerdict(cb: () => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

export class XattrCensus {
  private stopped = false;
  /** The outcome, once the census has run. */
  result: CensusResult | undefined;

  get finished(): boolean {
    return this.result !== undefined;
  }

  constructor(private readonly lister: CensusLister, private readonly layerDir: string, private readonly budget: number, private readonly log: Logger) {}

  /** What an earlier mount of the same layer directory learnt, if it learnt anything. */
  knownVerdict(): CensusResult | undefined {
    const v = known.get(this.layerDir);
    return v === 'none' || v === 'some' || v === 'too-big' ? v : undefined;
  }

  /** Lets a census that is waiting or walking give up (the layer was unmounted). */
  stop(): void {
    this.stopped = true;
  }

  /** given: a verdict learnt elsewhere (a predecessor that handed the layer over). */
  async run(given?: CensusResult): Promise<CensusResult> {
    const before = given ?? this.knownVerdict();
    // Nothing to learn, and nowhere to keep what a walk would read ahead.
    if (before && !this.lister.keeping()) {
      remember(this.layerDir, before);
      return (this.result = before);
    }
    await acquire();
    try {
      const started = performance.now();
      const walked = await this.walk(before);
      const r = before ?? walked;
      if (before) remember(this.layerDir, before);
      else if (walked !== 'stopped' && walked !== 'failed') remember(this.layerDir, walked);
      this.log.debug({ census: walked, known: before, seconds: ((performance.now() - started) / 1000).toFixed(2) }, 'xattr census of the layer');
      return (this.result = r);
    } finally {
      release();
    }
  }

  /**
   * Lists the layer breadth first. It goes on after the verdict is clear only to read the layer
   * ahead, while the cache keeps what it reads.
   */
  private async walk(before: CensusResult | undefined): Promise<CensusResult> {
    const queue: string[] = [''];
    // Directories that came along with an earlier listing are not listed again.
    const done = new Set<string>();
    let entries = 0;
    let some = before === 'some';
    for (let q = 0; q < queue.length; q++) {
      if (this.stopped) return 'stopped';
      if ((some || before) && !this.lister.keeping()) return some ? 'some' : 'stopped';
      const dir = queue[q] as string;
      if (done.has(dir)) continue;
      const out = await new Promise<readonly ListedDir[] | number>((resolve) => {
        // Subdirectories come along, as for any listing: fewer calls for the same walk.
        this.lister.list(dir, (errno, dirs) => resolve(errno !== 0 ? errno : dirs));
      });
      if (typeof out === 'number') {
        this.log.debug({ dir: `/${dir}`, errno: out }, 'xattr census stopped: the store failed');
        return some ? 'some' : 'failed';
      }
      for (const { rel: path, listing } of out) {
        done.add(path);
        if (listing.self.opaque || (typeof listing.self.xattrs !== 'string' && listing.self.xattrs.size > 0) || listing.self.xattrs === 'error') some = true;
        if (listing.xattrs.size > 0) some = true;
        entries += listing.names.length;
        if (entries > this.budget) return some ? 'some' : 'too-big';
        for (let i = 0; i < listing.names.length; i++) {
          if (!isDirAttr(listing.attrs, i * 88)) continue;
          queue.push(join(path, listing.names[i] as string));
        }
      }
    }
    return some ? 'some' : 'none';
  }
}
