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
import { decodeListAnswer, entryOf, listingEntry, readRecord, type EntryInfo, type ListedDir, type Listing } from './records.js';
import { join, type StoreAccess } from './store-access.js';
import { isHiddenName } from './whiteout.js';

/** A symlink's target bytes, as kept in the cache. */
export interface LinkTarget {
  readonly target: Buffer;
}

export type LayerMeta = Listing | EntryInfo | LinkTarget;
export type LayerCache = MetadataCache<LayerMeta>;

export interface LayerFsTuning {
  /**
   * A cold lookup in a directory no bigger than this (st_size, bytes) lists the whole directory
   * instead: the next lookups there (a program searching its path) are then answered at once.
   */
  listDirBytes: number;
  /** Entries of subdirectories listed along with a directory (0: none). */
  prefetchEntries: number;
}

/** errno 0 and a value, or a positive errno. */
export type Answer<T> = (errno: number, value: T) => void;
type Waiter = Answer<unknown>;

const ENTRY_BYTES = 88 + 160;

export class LayerFs {
  private readonly store: StoreAccess;
  private readonly cache: LayerCache;
  /** Prefix of this layer's keys in the shared caches. */
  readonly namespace: string;
  private readonly log: Logger;
  private readonly t: LayerFsTuning;
  private readonly waiting = new Map<string, Waiter[]>();
  private statfsCache: { at: number; out: Buffer } | undefined;

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

  /** The listing of dir if it is cached now; never asks the store. */
  cachedListing(dir: string): Listing | undefined {
    const a = this.cache.get(this.key('d', dir));
    return a?.kind === 'value' ? a.value as Listing : undefined;
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
    const dk = this.key('d', dir);
    const size = dirInfo ? dirInfo.buf.readUInt32LE(dirInfo.at + Attr.SIZE) + dirInfo.buf.readUInt32LE(dirInfo.at + Attr.SIZE + 4) * 0x1_0000_0000 : Infinity;
    // A listing on its way answers this too; a small directory is listed whole.
    if (this.waiting.has(dk) || size <= this.t.listDirBytes) {
      this.listing(dir, (errno, l) => {
        if (errno !== 0) return cb(errno, null);
        if (l) return this.fromListing(l, dir, name, cb);
        this.lookupOne(dir, name, cb);
      });
      return;
    }
    this.lookupOne(dir, name, cb);
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

  /** The translated listing of a directory the kernel knows. */
  listing(dir: string, cb: Answer<Listing | undefined>): void {
    const cached = this.cachedListing(dir);
    if (cached) return cb(0, cached);
    const dk = this.key('d', dir);
    if (!this.first(dk, cb as Waiter)) return;
    this.store.list(dir, this.t.prefetchEntries, (res, out) => {
      if (res < 0 || !out) return this.finish(dk, this.failure(res, 'list', dir), undefined);
      let dirs: ListedDir[];
      try {
        dirs = decodeListAnswer(out);
      } catch (err) {
        this.log.error({ err, dir }, 'the store pool answered a listing that does not decode');
        return this.finish(dk, E.EIO, undefined);
      }
      const first = dirs[0];
      if (!first) return this.finish(dk, E.EIO, undefined);
      // The subdirectories that came along go in first: the one asked for is then the freshest.
      for (let i = dirs.length - 1; i >= 1; i--) {
        const d = dirs[i] as ListedDir;
        const k = this.key('d', join(dir, d.rel));
        if (!this.cache.has(k)) this.cache.setValue(k, d.listing, d.listing.bytes);
      }
      this.cache.setValue(dk, first.listing, first.listing.bytes);
      this.finish(dk, 0, first.listing);
    });
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
  private failure(res: number, op: string, path: string): number {
    const code = errnoName(res);
    // ETIMEDOUT was logged where the deadline passed.
    if (res !== -E.ETIMEDOUT) {
      this.log.warn({ op, path: `/${path}`, code }, code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ESTALE' || code === 'ENXIO' || code === 'EXDEV'
        ? 'the layer changed in the store while mounted; answered EIO'
        : 'the layer store failed; answered EIO');
    }
    return E.EIO;
  }
}

