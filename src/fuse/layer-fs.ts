// The semantics of one read-only layer, by path: what a name is, what a directory lists, what a
// link says, with every answer kept in the shared byte-bounded cache (layers are immutable, so
// an answer never goes stale). An answer in the cache comes back at once, on the caller's
// stack; anything else is one call of the store pool, and concurrent askers of the same thing
// share it. Paths are relative binary strings ('' is the root, 'usr/lib'): one char per byte,
// as the kernel names things, so names that are not UTF-8 survive.
//
// What counts as the store failing: the kernel only asks about names and nodes it was told
// exist, after checking modes itself (default_permissions). So a node that is now missing, of
// another type or forbidden means the store changed or failed under the mount: EIO, logged with
// the layer, never remembered. An absent NAME is an answer (ENOENT), and is remembered.
import type { Logger } from '../log.js';
import type { MetadataCache } from '../cache/index.js';
import { E, errnoName } from './kernel/errno.js';
import { ATTR_SIZE, Attr } from './kernel/protocol.js';
import { decodeListAnswer, decodeListAnswerWithFrontier, entryOf, isDirAttr, listingEntry, readRecord, type EntryInfo, type ListedDir, type Listing } from './records.js';
import { join, type StoreAccess } from './store-access.js';
import type { StoreCall } from './observer.js';
import { isHiddenName } from './whiteout.js';

/** A symlink's target bytes, as kept in the cache. */
export interface LinkTarget {
  readonly target: Buffer;
}

export type LayerMeta = Listing | EntryInfo | LinkTarget;
export type LayerCache = MetadataCache<LayerMeta>;

export interface LayerFsTuning {
  /**
   * A cold lookup in a directory no bigger than this (st_size, bytes) reads the directory's
   * names: the next lookups of names it lacks (a program searching its path) are then answered
   * at once.
   */
  listDirBytes: number;
  /** Entries of subdirectories listed along with a directory (0: none). */
  prefetchEntries: number;
}

/** errno 0 and a value, or a positive errno. */
export type Answer<T> = (errno: number, value: T) => void;
type Waiter = Answer<unknown>;

const ENTRY_BYTES = 88 + 160;
/** Siblings named to a listing for prefetch; the entry budget decides how many are listed. */
const MAX_SIBLINGS = 256;

export class LayerFs {
  private readonly store: StoreAccess;
  private readonly cache: LayerCache;
  /** Prefix of this layer's keys in the shared caches. */
  readonly namespace: string;
  private readonly log: Logger;
  private readonly t: LayerFsTuning;
  private readonly waiting = new Map<string, Waiter[]>();
  private statfsCache: { at: number; out: Buffer } | undefined;
  /** Read-ahead of a walk: directories the last listing reached and did not list, in walk order. */
  private frontier: string[] = [];
  /** Keys of listings read ahead and not asked for yet. */
  private readonly ahead = new Set<string>();
  /**
   * Listings a READDIR asked for. A directory read below one of them is a walk (find, du, a
   * container's first look at /usr), and what it reaches next is read ahead; a directory read
   * alone (python's listdir of each directory on its path) is read alone: reading its
   * subdirectories too would make a program that only looks there wait for the disk.
   */
  private readonly readByKernel = new WeakSet<Listing>();
  private aheadRunning = false;

  constructor(store: StoreAccess, cache: LayerCache, ns: string, log: Logger, tuning: LayerFsTuning) {
    this.store = store;
    this.cache = cache;
    this.namespace = ns;
    this.log = log;
    this.t = tuning;
  }

  get access(): StoreAccess {
    return this.store;
  }

  /** The layer is unmounted: what the cache holds of it goes (its namespace is never used again). */
  forgetCached(): void {
    this.cache.dropNamespace(this.namespace);
  }

  /** The listing of dir if it is cached now; never asks the store. */
  cachedListing(dir: string): Listing | undefined {
    const a = this.cache.get(this.key('d', dir));
    return a?.kind === 'value' ? a.value as Listing : undefined;
  }

  /**
   * Listings for a background walk of the whole layer (the xattr census): dir's, and those of
   * the subdirectories that come along with it. What the store gives is kept in the cache, a
   * read-ahead of the whole layer for the first container, but only while the cache is less
   * than half full: a walk of a big layer never pushes out what was asked for.
   */
  walkListing(dir: string, cb: Answer<readonly ListedDir[]>): void {
    const dk = this.key('d', dir);
    const kept = this.cache.peek(dk);
    if (kept?.kind === 'value') return cb(0, [{ rel: dir, listing: kept.value as Listing }]);
    if (this.waiting.has(dk)) {
      // A READDIR of it is on its way: that one store call answers both.
      this.listing(dir, (errno, l) => cb(errno, l ? [{ rel: dir, listing: l }] : []));
      return;
    }
    this.store.list(dir, Math.max(this.t.prefetchEntries, 1), [], (res, out) => {
      if (res < 0 || !out) return cb(this.failure(res < 0 ? res : -E.EIO, 'list', dir), []);
      let dirs: ListedDir[];
      try {
        dirs = decodeListAnswer(out);
      } catch (err) {
        this.log.error({ err, dir }, 'the store pool answered a listing that does not decode');
        return cb(E.EIO, []);
      }
      for (const d of dirs) {
        if (!this.walkKeeping(d.listing.bytes)) break;
        const k = this.key('d', d.rel);
        if (!this.cache.has(k)) this.cache.setValue(k, d.listing, d.listing.bytes);
      }
      cb(0, dirs);
    });
  }

  /** Whether walkListing keeps what it reads (bytes more of it): while the cache is under half full. */
  walkKeeping(bytes = 0): boolean {
    const { bytes: held, maxBytes } = this.cache.stats();
    return held + bytes <= maxBytes / 2;
  }

  /** The entry `name` of directory dir, or null when the layer has no such name. */
  lookup(dir: string, dirInfo: EntryInfo | undefined, name: string, cb: Answer<EntryInfo | null>): void {
    // `.wh.` names are the store's bookkeeping: never shown, never looked up.
    if (isHiddenName(name)) return cb(0, null);
    const listed = this.cachedListing(dir);
    if (listed) return this.fromListing(listed, dir, name, cb);
    const path = join(dir, name);
    const ek = this.key('e', path);
    const cached = this.cache.get(ek);
    if (cached) return cb(0, cached.kind === 'value' ? cached.value as EntryInfo : null);
    // A listing on its way answers this too.
    if (this.waiting.has(this.key('d', dir))) {
      this.listing(dir, (errno, l) => {
        if (errno !== 0) return cb(errno, null);
        if (l) return this.fromListing(l, dir, name, cb);
        this.lookupOne(dir, name, cb);
      });
      return;
    }
    const size = dirInfo ? dirInfo.buf.readUInt32LE(dirInfo.at + Attr.SIZE) + dirInfo.buf.readUInt32LE(dirInfo.at + Attr.SIZE + 4) * 0x1_0000_0000 : Infinity;
    // A program searching its path (ld.so, python, a shell) asks a small directory for many
    // names it does not hold: its names, read once, answer those at once. A name it holds is
    // then looked up alone: stat'ing every entry to answer one lookup would read inodes (on
    // CernVM-FS, ask cvmfs2) for entries nobody asked about.
    const nk = this.key('n', dir);
    const names = this.cache.get(nk);
    if (names?.kind === 'value') return this.fromNames(names.value as Listing, dir, name, cb);
    if (size <= this.t.listDirBytes) {
      return this.names(dir, nk, (errno, l) => (errno !== 0 || !l ? cb(errno || E.EIO, null) : this.fromNames(l, dir, name, cb)));
    }
    this.lookupOne(dir, name, cb);
  }

  /** A name dir's names lack is not there; one they hold is looked up alone. */
  private fromNames(names: Listing, dir: string, name: string, cb: Answer<EntryInfo | null>): void {
    if (!names.byName.has(name)) return cb(0, null);
    this.lookupOne(dir, name, cb);
  }

  /**
   * Lists dir by name (StoreAccess.listNames) into key nk, apart from its full listing ('d'):
   * its entries have no attributes, so it only ever answers which names exist.
   */
  private names(dir: string, nk: string, cb: Answer<Listing | undefined>): void {
    if (!this.first(nk, cb as Waiter)) return;
    this.store.listNames(dir, (res, out) => {
      if (res < 0 || !out) return this.finish(nk, this.failure(res < 0 ? res : -E.EIO, 'list', dir), undefined);
      let listing: Listing | undefined;
      try {
        listing = decodeListAnswer(out)[0]?.listing;
      } catch (err) {
        this.log.error({ err, dir }, 'the store pool answered a listing that does not decode');
      }
      if (!listing) return this.finish(nk, E.EIO, undefined);
      this.cache.setValue(nk, listing, listing.bytes);
      this.finish(nk, 0, listing);
    });
  }

  private lookupOne(dir: string, name: string, cb: Answer<EntryInfo | null>): void {
    const path = join(dir, name);
    const ek = this.key('e', path);
    if (!this.first(ek, cb as Waiter)) return;
    this.store.lookup(dir, name, (res, out) => {
      if (res < 0 || !out) return this.finish(ek, this.failure(res, 'lookup', path), null);
      const r = readRecord(out, 0);
      if (r.err === -E.ENOENT) {
        this.cache.setAbsent(ek, 'ENOENT');
        return this.finish(ek, 0, null);
      }
      if (r.err !== 0) return this.finish(ek, this.failure(r.err, 'lookup', path), null);
      const e = entryOf(out, r);
      this.cache.setValue(ek, e, ENTRY_BYTES);
      this.finish(ek, 0, e);
    });
  }

  private fromListing(l: Listing, dir: string, name: string, cb: Answer<EntryInfo | null>): void {
    const i = l.byName.get(name);
    if (i === undefined) return cb(0, null);
    // An entry whose stat failed is listed with mode 0: looking it up is the store's failure.
    if (l.attrs.readUInt32LE(i * ATTR_SIZE + Attr.MODE) === 0) return cb(this.failure(l.errors.get(i) ?? -E.EIO, 'lookup', join(dir, name)), null);
    cb(0, listingEntry(l, i));
  }

  /**
   * The translated listing of a directory the kernel knows. `walk`: asked by a READDIR; when
   * the parent was read that way too, a program is walking the tree, and the listings it will
   * ask for next come along and are read ahead.
   */
  listing(dir: string, cb: Answer<Listing | undefined>, walk = false): void {
    const cached = this.cachedListing(dir);
    const dk = this.key('d', dir);
    if (cached) {
      if (walk) this.readByKernel.add(cached);
      // A listing that came ahead was used: the walk goes on, so read further ahead.
      if (walk && this.ahead.delete(dk)) this.readAhead();
      return cb(0, cached);
    }
    const done: Answer<Listing | undefined> = walk ? (errno, l) => {
      if (l) this.readByKernel.add(l);
      cb(errno, l);
    } : cb;
    if (!this.first(dk, done as Waiter)) return;
    const deep = walk && this.inWalk(dir);
    this.store.list(dir, deep ? this.t.prefetchEntries : 0, deep ? this.nextSiblings(dir) : [], (res, out) => {
      if (res < 0 || !out) return this.finish(dk, this.failure(res, 'list', dir), undefined);
      let dirs: ListedDir[];
      let frontier: string[];
      try {
        ({ dirs, frontier } = decodeListAnswerWithFrontier(out));
      } catch (err) {
        this.log.error({ err, dir }, 'the store pool answered a listing that does not decode');
        return this.finish(dk, E.EIO, undefined);
      }
      const first = dirs[0];
      if (!first) return this.finish(dk, E.EIO, undefined);
      this.keepAhead(dirs.slice(1));
      this.cache.setValue(dk, first.listing, first.listing.bytes);
      this.finish(dk, 0, first.listing);
      if (deep) {
        this.frontier = frontier;
        this.readAhead();
      }
    });
  }

  /** Whether dir's parent was read by a READDIR: then reading dir is a step of a walk. */
  private inWalk(dir: string): boolean {
    if (dir === '') return false;
    const slash = dir.lastIndexOf('/');
    const parent = this.cache.peek(this.key('d', slash < 0 ? '' : dir.slice(0, slash)));
    return parent?.kind === 'value' && this.readByKernel.has(parent.value as Listing);
  }

  /** Listings that came along with another: cached (after the one asked for) and noted as ahead. */
  private keepAhead(dirs: readonly ListedDir[]): void {
    for (let i = dirs.length - 1; i >= 0; i--) {
      const d = dirs[i] as ListedDir;
      const k = this.key('d', d.rel);
      if (this.cache.has(k)) continue;
      this.cache.setValue(k, d.listing, d.listing.bytes);
      this.ahead.add(k);
    }
    // Notes of listings the cache dropped meanwhile are dropped too, so the set stays small.
    if (this.ahead.size > 4096) for (const k of this.ahead) if (!this.cache.has(k)) this.ahead.delete(k);
  }

  /**
   * Lists the next directories of a walk while the program works on the ones it has: one call
   * at a time per layer, and only as long as what came ahead is being used.
   */
  private readAhead(): void {
    if (this.aheadRunning || this.t.prefetchEntries <= 0) return;
    const todo = this.frontier.filter((p) => !this.cache.has(this.key('d', p)) && !this.waiting.has(this.key('d', p)));
    this.frontier = [];
    const dir = todo[0];
    if (dir === undefined) return;
    const dk = this.key('d', dir);
    this.aheadRunning = true;
    // A READDIR of that very directory meanwhile waits for this call instead of making its own.
    const mine: Waiter = () => undefined;
    this.first(dk, mine);
    this.store.list(dir, this.t.prefetchEntries, todo.slice(1, 1 + MAX_SIBLINGS), (res, out) => {
      this.aheadRunning = false;
      let first: Listing | undefined;
      if (res >= 0 && out) {
        try {
          const { dirs, frontier } = decodeListAnswerWithFrontier(out);
          this.keepAhead(dirs);
          first = dirs[0]?.listing;
          this.frontier = frontier;
        } catch (err) {
          this.log.error({ err, dir }, 'the store pool answered a listing that does not decode');
        }
      }
      if (first) return this.finish(dk, 0, first);
      // A failure is left to the real requests: those that waited for this call ask again.
      const waiters = this.waiting.get(dk) ?? [];
      this.waiting.delete(dk);
      for (const w of waiters) if (w !== mine) this.listing(dir, w as Answer<Listing | undefined>);
    });
  }

  /**
   * The directories after dir in its parent's listing that are not listed yet: a walk (find,
   * du, a container's first look at /usr) goes there next, in the order the listing gives.
   */
  private nextSiblings(dir: string): string[] {
    if (this.t.prefetchEntries <= 0 || dir === '') return [];
    const slash = dir.lastIndexOf('/');
    const parent = slash < 0 ? '' : dir.slice(0, slash);
    const l = this.cache.peek(this.key('d', parent));
    if (l?.kind !== 'value') return [];
    const listing = l.value as Listing;
    const at = listing.byName.get(dir.slice(slash + 1));
    if (at === undefined) return [];
    const out: string[] = [];
    for (let i = at + 1; i < listing.names.length && out.length < MAX_SIBLINGS; i++) {
      const name = listing.names[i] as string;
      if (!isDirAttr(listing.attrs, i * ATTR_SIZE) || name.includes('\n')) continue;
      const p = join(parent, name);
      if (!this.cache.has(this.key('d', p))) out.push(p);
    }
    return out;
  }

  /** The entry at path, from the store (nodes taken over from another process, the root). */
  stat(path: string, cb: Answer<EntryInfo | undefined>): void {
    this.store.stat(path, (res, out) => {
      if (res < 0 || !out) return cb(this.failure(res, 'stat', path), undefined);
      const r = readRecord(out, 0);
      if (r.err !== 0) return cb(this.failure(r.err, 'stat', path), undefined);
      cb(0, entryOf(out, r));
    });
  }

  readlink(path: string, cb: Answer<Buffer | undefined>): void {
    const lk = this.key('l', path);
    const cached = this.cache.get(lk);
    if (cached?.kind === 'value') return cb(0, (cached.value as LinkTarget).target);
    if (!this.first(lk, cb as Waiter)) return;
    this.store.readlink(path, (res, out) => {
      if (res < 0) return this.finish(lk, this.failure(res, 'readlink', path), undefined);
      const target = Buffer.from((out ?? Buffer.alloc(0)).subarray(0, res));
      this.cache.setValue(lk, { target }, target.length + 64);
      this.finish(lk, 0, target);
    });
  }

  /** One xattr value of an entry whose xattrs were too big to take along with it. */
  xattr(path: string, name: string, cb: Answer<Buffer | undefined>): void {
    this.store.getxattr(path, name, (res, out) => {
      if (res === -E.ENODATA || res === -E.ENOTSUP || res === -E.EOPNOTSUPP) return cb(E.ENODATA, undefined);
      if (res < 0) return cb(this.failure(res, 'getxattr', path), undefined);
      cb(0, Buffer.from((out ?? Buffer.alloc(0)).subarray(0, res)));
    });
  }

  /** fuse_kstatfs of the store, asked at most once a second. */
  statfs(cb: Answer<Buffer | undefined>): void {
    const now = performance.now();
    if (this.statfsCache && now - this.statfsCache.at < 1000) return cb(0, this.statfsCache.out);
    this.store.statfs((res, out) => {
      if (res < 0 || !out) return cb(this.failure(res, 'statfs', ''), undefined);
      this.statfsCache = { at: performance.now(), out };
      cb(0, out);
    });
  }

  /**
   * A regular file the kernel knows by inode ino, registered as a passthrough backing file on
   * devFd: its backing id, or, when the kernel refused it, a descriptor to serve it from and
   * the refusal's errno.
   */
  openBacking(path: string, ino: number, devFd: number, cb: Answer<{ backingId: number; fd: number; refused: number }>): void {
    this.store.openBacking(path, ino, devFd, (res, out) => {
      if (res < 0 || !out) return cb(this.failure(res < 0 ? res : -E.EIO, 'open', path), { backingId: -1, fd: -1, refused: 0 });
      if (out.readInt32LE(0) === 1) cb(0, { backingId: res, fd: -1, refused: 0 });
      else cb(0, { backingId: -1, fd: res, refused: -out.readInt32LE(4) });
    });
  }

  /** A descriptor of a regular file the kernel knows by inode ino. */
  openFile(path: string, ino: number, cb: Answer<number>): void {
    this.store.open(path, ino, (res) => {
      if (res < 0) return cb(this.failure(res, 'open', path), -1);
      cb(0, res);
    });
  }

  // ---- helpers ------------------------------------------------------------------------------

  private key(kind: string, path: string): string {
    return `${this.namespace}${kind}${path}`;
  }

  /** Registers a waiter for key; true when it is the first, which must do the work and finish(). */
  private first(key: string, cb: Waiter): boolean {
    const w = this.waiting.get(key);
    if (w) {
      w.push(cb);
      return false;
    }
    this.waiting.set(key, [cb]);
    return true;
  }

  private finish(key: string, errno: number, value: unknown): void {
    const w = this.waiting.get(key) ?? [];
    this.waiting.delete(key);
    for (const cb of w) {
      try {
        cb(errno, value);
      } catch (err) {
        this.log.error({ err }, 'a layer answer\'s callback threw');
      }
    }
  }

  /** Logs the store's failure and gives the errno a program in a container sees: EIO. */
  private failure(res: number, op: StoreCall, path: string): number {
    const code = errnoName(res);
    this.store.failed(op, res);
    // ETIMEDOUT was logged where the deadline passed.
    if (res !== -E.ETIMEDOUT) {
      this.log.warn({ op, path: `/${path}`, code }, code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ESTALE' || code === 'ENXIO' || code === 'EXDEV'
        ? 'the layer changed in the store while mounted; answered EIO'
        : 'the layer store failed; answered EIO');
    }
    return E.EIO;
  }
}

