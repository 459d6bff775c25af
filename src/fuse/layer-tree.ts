// The translated, read-only view of one layer directory: what the FUSE ops answer, without FUSE.
// It owns three concerns the ops must not get wrong:
//  - no host symlink is ever followed: every ancestor of a path is checked (by lstat) to be a real
//    directory before the path itself is touched, the path itself is lstat'ed, opened with
//    O_NOFOLLOW, and its xattrs are read through an O_PATH|O_NOFOLLOW descriptor;
//  - AUFS whiteouts become overlayfs whiteouts (see whiteout.ts);
//  - every metadata answer, negative ones included, goes through the shared LRU.
// Paths are "binary strings": one char per byte (latin1), as the kernel sends names, so names
// that are not UTF-8 survive the round trip; they become bytes again only at the host call.
// A store that changes under a mount (a file gone, replaced, or the store unmounted) is a
// failure of the store, answered EIO and never cached: see checkRoot() and open().
// Residual risk: a store that is modified while mounted could swap a checked directory for a
// symlink between the check and the use. Layer stores are immutable, and Node has no openat2.
import fs from 'node:fs';
import { getAttribute, listAttributes } from 'fs-xattr';
import type { Logger } from '../log.js';
import { MetadataCache, absentAnswer, valueAnswer, type CacheAnswer } from '../cache/index.js';
import { FsError, codeOf, isDefinitiveCode } from './errno.js';
import { joinLayerPath, layerPathComponents, splitParent } from './layer-path.js';
import { toLayerAttr, toLayerStatfs, type LayerAttr, type LayerStatfs } from './stat.js';
import {
  OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, isDirectoryMode, isHiddenName, isRegularMode, isSymlinkMode,
  translateListing, whiteoutMarkerFor, whiteoutStat, type ListedEntry,
} from './whiteout.js';
import { defaultXattrFilter, type XattrFilter } from './xattr-filter.js';

/** A directory as the kernel sees it after translation. */
export interface DirListing {
  readonly entries: readonly ListedEntry[];
  readonly byName: ReadonlyMap<string, ListedEntry>;
  readonly opaqueMarker: boolean;
}

/** What the metadata cache holds for a layer; the key's kind letter says which variant. */
export type LayerMeta =
  | { readonly t: 'stat'; readonly stat: LayerAttr }
  | { readonly t: 'dir'; readonly listing: DirListing }
  | { readonly t: 'link'; readonly target: string }
  | { readonly t: 'xattr'; readonly value: Buffer }
  | { readonly t: 'xattrs'; readonly names: readonly string[] };

export type LayerCache = MetadataCache<LayerMeta>;

export interface LayerTreeOptions {
  /** Absolute, canonical (symlink-free) host directory holding the layer. */
  root: string;
  cache: LayerCache;
  /** Unique per tree: keys are `${namespace}${kind}:${path}`. */
  namespace: string;
  log: Logger;
  /** How many lstat calls one readdir may have in flight while it prefetches attributes. */
  readdirConcurrency?: number;
  xattrFilter?: XattrFilter;
}

export interface TranslatedNode {
  /** The path in normal form ("/a/b"). */
  readonly path: string;
  readonly whiteout: boolean;
  readonly stat: LayerAttr;
}

export interface DirReply {
  readonly names: string[];
  readonly stats: LayerAttr[];
}

// Linux O_PATH; Node does not export it. Same value on x86_64 and arm64.
const O_PATH = 0o10000000;
const O_ACCMODE = 3;
const OPAQUE_VALUE = Buffer.from('y');
/** Mode 0 becomes DT_UNKNOWN in the directory entry; ino must not be 0, or libc skips the entry. */
const UNKNOWN_STAT: LayerAttr = { mode: 0, uid: 0, gid: 0, size: 0, nlink: 1, ino: 0xffffffffn, rdev: 0, blksize: 0, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };

export class LayerTree {
  readonly root: string;
  private readonly cache: LayerCache;
  private readonly ns: string;
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly showXattr: XattrFilter;
  private readonly handles = new Map<number, number>();
  private readonly rootBytes: Buffer;
  private nextHandle = 1;

  constructor(opts: LayerTreeOptions) {
    this.root = opts.root.endsWith('/') && opts.root !== '/' ? opts.root.slice(0, -1) : opts.root;
    this.rootBytes = Buffer.from(this.root);
    this.cache = opts.cache;
    this.ns = opts.namespace;
    this.log = opts.log;
    this.concurrency = opts.readdirConcurrency ?? 32;
    this.showXattr = opts.xattrFilter ?? defaultXattrFilter;
  }

  /** Open file handles right now; tests and shutdown look at it. */
  get openHandles(): number {
    return this.handles.size;
  }

  // ---- metadata -------------------------------------------------------------------------------

  async getattr(p: string): Promise<LayerAttr> {
    return (await this.node(p)).stat;
  }

  /** The translated node at p: a real entry, or a whiteout standing in for `.wh.<name>`. */
  async node(p: string): Promise<TranslatedNode> {
    const comps = layerPathComponents(p);
    if (comps.length === 0) return { path: '/', whiteout: false, stat: await this.realStat('/') };
    for (const c of comps) if (isHiddenName(c)) throw new FsError('ENOENT');
    const path = '/' + comps.join('/');
    const [parent, name] = splitParent(path);
    await this.checkAncestors(comps);

    // A listed parent answers absent names without a syscall: the common negative lookup.
    const listed = this.peekListing(parent);
    if (listed) {
      const e = listed.byName.get(name);
      if (!e) throw new FsError('ENOENT');
      if (e.whiteout) return { path, whiteout: true, stat: whiteoutStat(await this.realStat(joinLayerPath(parent, e.source))) };
      return { path, whiteout: false, stat: await this.realStat(path) };
    }

    const own = await this.rawStat(path);
    if (own.kind === 'value') return { path, whiteout: false, stat: statOf(own.value) };
    if (own.reason !== 'ENOENT') throw new FsError(own.reason);
    const marker = await this.rawStat(joinLayerPath(parent, whiteoutMarkerFor(name)));
    if (marker.kind === 'value') return { path, whiteout: true, stat: whiteoutStat(statOf(marker.value)) };
    throw new FsError('ENOENT');
  }

  async readdir(p: string): Promise<DirReply> {
    const path = await this.requireDir(p);
    const dirStat = await this.realStat(path);
    const listing = await this.listing(path);
    const names: string[] = ['.', '..'];
    const stats: LayerAttr[] = [dirStat, dirStat];
    for (const e of listing.entries) {
      let a: CacheAnswer<LayerMeta>;
      try {
        a = await this.rawStat(joinLayerPath(path, e.source));
      } catch (err) {
        // One broken entry must not hide its siblings: list it with an unknown type, and the
        // kernel's lookup of it reports the error to whoever looks.
        this.log.warn({ err, dir: path, name: e.source }, 'lstat of a listed entry failed');
        names.push(e.name);
        stats.push(UNKNOWN_STAT);
        continue;
      }
      if (a.kind !== 'value') continue; // vanished between readdir and lstat: not listed
      names.push(e.name);
      stats.push(e.whiteout ? whiteoutStat(statOf(a.value)) : statOf(a.value));
    }
    return { names, stats };
  }

  async readlink(p: string): Promise<string> {
    const n = await this.node(p);
    if (n.whiteout || !isSymlinkMode(n.stat.mode)) throw new FsError('EINVAL');
    const path = n.path;
    const a = await this.cache.resolve(this.key('l', path), async () => {
      const target = (await fs.promises.readlink(this.host(path), { encoding: 'buffer' })).toString('latin1');
      return valueAnswer<LayerMeta>({ t: 'link', target });
    });
    if (a.kind === 'absent') throw new FsError(a.reason);
    if (a.value.t !== 'link') throw wrongKind(a.value);
    return a.value.target;
  }

  /** The value of one xattr, or null when there is none (ENODATA). */
  async getxattr(p: string, name: string): Promise<Buffer | null> {
    const n = await this.node(p);
    if (n.whiteout) return null;
    const path = n.path;
    if (name === OVERLAY_OPAQUE_XATTR && isDirectoryMode(n.stat.mode) && await this.opaqueByMarker(path)) {
      return OPAQUE_VALUE;
    }
    if (!this.showXattr(name)) return null;
    const a = await this.cache.resolve(this.key('x', `${path}\0${name}`), async () => {
      try {
        const value = await this.withPathFd(path, (proc) => getAttribute(proc, name));
        return valueAnswer<LayerMeta>({ t: 'xattr', value });
      } catch (err) {
        const code = codeOf(err);
        // A store without xattr support simply has none.
        if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return absentAnswer<LayerMeta>('ENODATA');
        throw err;
      }
    });
    if (a.kind === 'absent') return null;
    if (a.value.t !== 'xattr') throw wrongKind(a.value);
    return a.value.value;
  }

  async listxattr(p: string): Promise<string[]> {
    const n = await this.node(p);
    if (n.whiteout) return [];
    const path = n.path;
    const a = await this.cache.resolve(this.key('X', path), async () => {
      try {
        const all = await this.withPathFd(path, (proc) => listAttributes(proc));
        return valueAnswer<LayerMeta>({ t: 'xattrs', names: all.filter(this.showXattr) });
      } catch (err) {
        const code = codeOf(err);
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return valueAnswer<LayerMeta>({ t: 'xattrs', names: [] });
        throw err;
      }
    });
    if (a.kind === 'absent') throw new FsError(a.reason);
    if (a.value.t !== 'xattrs') throw wrongKind(a.value);
    const names = [...a.value.names];
    if (isDirectoryMode(n.stat.mode) && !names.includes(OVERLAY_OPAQUE_XATTR) && await this.opaqueByMarker(path)) {
      names.push(OVERLAY_OPAQUE_XATTR);
    }
    return names;
  }

  async statfs(): Promise<LayerStatfs> {
    return toLayerStatfs(await fs.promises.statfs(this.root));
  }

  // ---- data -----------------------------------------------------------------------------------

  /** Opens a regular file for reading and returns a handle (never 0). */
  async open(p: string, flags: number): Promise<number> {
    const { O_RDONLY, O_TRUNC, O_CREAT, O_NOFOLLOW } = fs.constants;
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & (O_TRUNC | O_CREAT)) !== 0) throw new FsError('EROFS');
    const n = await this.node(p);
    if (isDirectoryMode(n.stat.mode)) throw new FsError('EISDIR');
    // Devices and fifos are opened by the kernel itself; a request here is for something odd.
    if (n.whiteout || !isRegularMode(n.stat.mode)) throw new FsError('ENXIO');
    // O_NONBLOCK: a fifo put where the file was must not hang the open.
    const fd = await openFd(this.host(n.path), O_RDONLY | O_NOFOLLOW | fs.constants.O_NONBLOCK);
    const now = await fstatFd(fd).catch(async (err: unknown) => { await closeFd(fd).catch(() => undefined); throw err; });
    if (!now.isFile() || now.ino !== n.stat.ino) {
      await closeFd(fd).catch(() => undefined);
      throw new FsError('EIO', `${n.path} changed in the store while mounted (now ${now.isFile() ? 'another file' : 'not a regular file'})`);
    }
    const fh = this.allocHandle();
    this.handles.set(fh, fd);
    return fh;
  }

  /** Fills buf[0, len) from pos; a short count means end of file, as FUSE expects. */
  async read(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const fd = this.handles.get(fh);
    if (fd === undefined) throw new FsError('EBADF');
    let done = 0;
    while (done < len) {
      const n = await readFd(fd, buf, done, len - done, pos + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async release(fh: number): Promise<void> {
    const fd = this.handles.get(fh);
    if (fd === undefined) return;
    this.handles.delete(fh);
    await closeFd(fd);
  }

  /** Closes what is still open and forgets this layer's cache entries. */
  async close(): Promise<void> {
    const fds = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(fds.map((fd) => closeFd(fd).catch(() => undefined)));
    this.cache.deletePrefix(this.ns);
  }

  // ---- internals ------------------------------------------------------------------------------

  private key(kind: string, p: string): string {
    return `${this.ns}${kind}:${p}`;
  }

  private host(p: string): Buffer {
    return p === '/' ? this.rootBytes : Buffer.concat([this.rootBytes, Buffer.from(p, 'latin1')]);
  }

  /**
   * An absent name is only an answer while the layer directory is there: an unmounted or
   * vanished store makes every name absent, and that must be EIO, not a cached ENOENT. (Not
   * its identity: a store mounted again legitimately comes back with a new device number.)
   */
  private async checkRoot(): Promise<void> {
    let st: fs.BigIntStats;
    try {
      st = await lstatHost(this.rootBytes);
    } catch (err) {
      throw new FsError('EIO', `the layer directory ${this.root} is gone from the store (${codeOf(err)})`);
    }
    if (!st.isDirectory()) throw new FsError('EIO', `the layer directory ${this.root} is no longer a directory`);
  }

  /** lstat of a layer path whose ancestors are known to be real directories; cached either way. */
  private rawStat(p: string): Promise<CacheAnswer<LayerMeta>> {
    return this.cache.resolve(this.key('s', p), async () => {
      try {
        return valueAnswer<LayerMeta>({ t: 'stat', stat: toLayerAttr(await lstatHost(this.host(p))) });
      } catch (err) {
        const code = codeOf(err);
        if (!isDefinitiveCode(code)) throw err;
        await this.checkRoot();
        return absentAnswer<LayerMeta>(code);
      }
    });
  }

  private async realStat(p: string): Promise<LayerAttr> {
    const a = await this.rawStat(p);
    if (a.kind === 'absent') throw new FsError(a.reason);
    return statOf(a.value);
  }

  /** Every proper ancestor must be a real directory: a symlink there would be followed by lstat. */
  private async checkAncestors(comps: readonly string[]): Promise<void> {
    let prefix = '';
    for (let i = 0; i < comps.length - 1; i++) {
      prefix += '/' + comps[i];
      const a = await this.rawStat(prefix);
      if (a.kind === 'absent') throw new FsError(a.reason === 'ENOENT' ? 'ENOENT' : 'ENOTDIR');
      const mode = statOf(a.value).mode;
      if (isSymlinkMode(mode)) throw new FsError('ELOOP', `symlink in the middle of ${comps.join('/')}`);
      if (!isDirectoryMode(mode)) throw new FsError('ENOTDIR');
    }
  }

  private async requireDir(p: string): Promise<string> {
    const n = await this.node(p);
    if (n.whiteout || !isDirectoryMode(n.stat.mode)) throw new FsError('ENOTDIR');
    return n.path;
  }

  private peekListing(dir: string): DirListing | undefined {
    const a = this.cache.peek(this.key('d', dir));
    return a?.kind === 'value' && a.value.t === 'dir' ? a.value.listing : undefined;
  }

  /** The translated listing of a directory known to be real; fills the attribute cache too. */
  private async listing(dir: string): Promise<DirListing> {
    const a = await this.cache.resolve(this.key('d', dir), async () => {
      const raw = (await fs.promises.readdir(this.host(dir), { encoding: 'buffer' })).map((b) => b.toString('latin1'));
      const t = translateListing(raw);
      // The kernel stats nearly every listed entry next (ls -l, find, overlayfs lookups), so
      // the lstat calls run now, in parallel on the thread pool, instead of one round trip each.
      await forEachLimit(t.entries, this.concurrency, async (e) => {
        await this.rawStat(joinLayerPath(dir, e.source)).catch((err: unknown) => {
          this.log.debug({ err, dir, name: e.source }, 'lstat during readdir failed');
        });
      });
      const byName = new Map(t.entries.map((e) => [e.name, e] as const));
      return valueAnswer<LayerMeta>({ t: 'dir', listing: { entries: t.entries, byName, opaqueMarker: t.opaqueMarker } });
    });
    if (a.kind === 'absent') throw new FsError(a.reason);
    if (a.value.t !== 'dir') throw wrongKind(a.value);
    return a.value.listing;
  }

  /** A directory holding `.wh..wh..opq` is opaque; asked by overlayfs on every lower lookup. */
  private async opaqueByMarker(dir: string): Promise<boolean> {
    const listed = this.peekListing(dir);
    if (listed) return listed.opaqueMarker;
    return (await this.rawStat(joinLayerPath(dir, OPAQUE_MARKER))).kind === 'value';
  }

  /**
   * Runs fn on /proc/self/fd/N of an O_PATH|O_NOFOLLOW descriptor: the xattr library only has
   * path calls that follow symlinks, and through the descriptor they act on the entry itself.
   */
  private async withPathFd<T>(p: string, fn: (procPath: string) => Promise<T>): Promise<T> {
    const fd = await openFd(this.host(p), O_PATH | fs.constants.O_NOFOLLOW);
    try {
      return await fn(`/proc/self/fd/${fd}`);
    } finally {
      await closeFd(fd).catch(() => undefined);
    }
  }

  private allocHandle(): number {
    for (;;) {
      const fh = this.nextHandle;
      this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
      if (!this.handles.has(fh)) return fh;
    }
  }
}

function statOf(m: LayerMeta): LayerAttr {
  if (m.t !== 'stat') throw wrongKind(m);
  return m.stat;
}

function wrongKind(m: LayerMeta): Error {
  return new Error(`metadata cache holds a ${m.t} entry where another kind was expected`);
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// Callback fs calls wrapped by hand: the raw-descriptor API is the cheapest path per request,
// and fs.promises would wrap every descriptor in a FileHandle.
function fstatFd(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}

function openFd(p: string | Buffer, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(p, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function readFd(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function lstatHost(p: Buffer): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.lstat(p, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}
