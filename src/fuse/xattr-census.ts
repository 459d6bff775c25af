// Whether a layer has any extended attribute at all. overlayfs asks every lower directory of
// every new container for trusted.overlay.origin (and opaque ones for trusted.overlay.opaque),
// and FUSE caches no xattr: one request per directory per container start. The kernel stops
// asking a connection for good once it answers GETXATTR with ENOSYS, which is right only for
// a layer with nothing to lose: no xattr on any entry (file capabilities, user.*, ...) and no
// opaque directory. That is learnt by listing the whole layer once, in the background, on
// the pool, one directory at a time, up to a budget of entries; a layer that is too big, or
// whose store fails, keeps answering GETXATTR as before.
import type { Logger } from '../log.js';
import { decodeListAnswer, isDirAttr } from './records.js';
import { join, type StoreAccess } from './store-access.js';

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

export class XattrCensus {
  private stopped = false;
  /** The outcome, once the census has run. */
  result: CensusResult | undefined;

  get finished(): boolean {
    return this.result !== undefined;
  }

  constructor(private readonly store: StoreAccess, private readonly layerDir: string, private readonly budget: number, private readonly log: Logger) {}

  /** Lets a census that is waiting or walking give up (the layer was unmounted). */
  stop(): void {
    this.stopped = true;
  }

  async run(): Promise<CensusResult> {
    const before = known.get(this.layerDir);
    if (before === 'none' || before === 'some' || before === 'too-big') return (this.result = before);
    await acquire();
    try {
      const started = performance.now();
      const r = await this.walk();
      if (r !== 'stopped' && r !== 'failed') known.set(this.layerDir, r);
      this.log.debug({ census: r, seconds: ((performance.now() - started) / 1000).toFixed(2) }, 'xattr census of the layer');
      return (this.result = r);
    } finally {
      release();
    }
  }

  private async walk(): Promise<CensusResult> {
    const queue: string[] = [''];
    // Directories that came along with an earlier listing are not listed again.
    const done = new Set<string>();
    let entries = 0;
    for (let q = 0; q < queue.length; q++) {
      if (this.stopped) return 'stopped';
      const dir = queue[q] as string;
      if (done.has(dir)) continue;
      const out = await new Promise<Buffer | number>((resolve) => {
        // Subdirectories come along, as for any listing: fewer calls for the same walk.
        this.store.list(dir, 512, [], (res, buf) => resolve(res < 0 || !buf ? res : buf));
      });
      if (typeof out === 'number') {
        this.log.debug({ dir: `/${dir}`, errno: out }, 'xattr census stopped: the store failed');
        return 'failed';
      }
      for (const { rel: path, listing } of decodeListAnswer(out)) {
        done.add(path);
        if (listing.self.opaque || (typeof listing.self.xattrs !== 'string' && listing.self.xattrs.size > 0) || listing.self.xattrs === 'error') return 'some';
        if (listing.xattrs.size > 0) return 'some';
        entries += listing.names.length;
        if (entries > this.budget) return 'too-big';
        for (let i = 0; i < listing.names.length; i++) {
          if (!isDirAttr(listing.attrs, i * 88)) continue;
          queue.push(join(path, listing.names[i] as string));
        }
      }
    }
    return 'none';
  }
}
