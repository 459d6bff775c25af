// The bridge between the kernel's requests and one layer: it owns the node table and the open
// files, decodes each request's arguments, asks the layer (layer-fs.ts) and encodes the answer.
// An answer the layer has in memory is written before handle() returns, on the thread that
// read the request; one that needs the store is written when the store pool comes back, and
// until then the request is pending here, where an INTERRUPT finds it and answers EINTR.
// A LOOKUP or READDIRPLUS reply that the kernel did not take (the request was interrupted
// meanwhile) takes back the node references it carried.
import type { Logger } from '../log.js';
import { E, errnoName } from './kernel/errno.js';
import {
  ATTR_OUT_SIZE, ATTR_SIZE, ENTRY_OUT_SIZE, FUSE_OUR_MINOR, InitFlag, InitFlag2, OPEN_OUT_SIZE, OUT_HEADER_SIZE, Op,
  OpenFlag, STATFS_OUT_SIZE, WRITE_OPS, attrIno, direntSize, readCString, readU64, writeAttrOut, writeDirent,
  writeEntryOut, writeOpenOut, type InitIn, type InitOut, type Validity,
} from './kernel/protocol.js';
import type { FuseChannel, FuseHandler, FuseRequest } from './kernel/transport.js';
import type { LayerFs } from './layer-fs.js';
import { NodeTable, type Node, type NodeTableState } from './node-table.js';
import { OpenFiles, type FileBudget, type OpenFile } from './open-files.js';
import type { PagedListings } from './paged-listings.js';
import type { FuseObserver } from './observer.js';
import { isDirAttr, isLinkAttr, isRegAttr, listingEntry, type EntryInfo, type Listing } from './records.js';
import type { LayerFsTuning } from './tuning.js';
import { OVERLAY_OPAQUE_XATTR } from './whiteout.js';
import { isHiddenXattr } from './xattr-filter.js';

export interface BridgeOptions {
  fs: LayerFs;
  log: Logger;
  tuning: LayerFsTuning;
  observer: FuseObserver;
  /** The /dev/fuse descriptor (passthrough registers backing files on it). */
  devFd: number;
  budget: FileBudget;
  paging: PagedListings;
  rootInfo: EntryInfo;
  /** A predecessor's node table (handover). */
  nodes?: NodeTableState;
  /** Set for a connection taken over: what its INIT settled. */
  passthrough?: boolean;
}

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const O_CREAT = 0o100;
const OPAQUE_VALUE = Buffer.from('y');

export class Bridge implements FuseHandler {
  readonly nodes: NodeTable;
  readonly files: OpenFiles;
  private readonly fs: LayerFs;
  private readonly log: Logger;
  private readonly t: LayerFsTuning;
  private readonly observer: FuseObserver;
  private readonly devFd: number;
  private readonly v: Validity;
  private readonly negative: Validity;
  /** Requests waiting for the store, by unique. */
  private readonly pending = new Map<number, FuseRequest>();
  /** Listings the kernel is paging through (see paged-listings.ts), shared by the process's layers. */
  private readonly paging: PagedListings;
  /** OPENs waiting for the same node's file to be opened. */
  private readonly opening = new Map<Node, ((errno: number, f: OpenFile | undefined) => void)[]>();
  /** Reads go straight to the store's files (settled by INIT). */
  passthrough: boolean;
  /**
   * The layer has no xattr at all and no opaque directory (xattr-census.ts): GETXATTR answers
   * ENOSYS, and the kernel stops asking this connection; LISTXATTR answers the empty list. One
   * flag with the store's (StoreAccess.bare), which then stops reading them too.
   */
  get xattrFree(): boolean {
    return this.fs.access.bare;
  }
  private fallbackLogged = false;

  constructor(o: BridgeOptions) {
    this.fs = o.fs;
    this.log = o.log;
    this.t = o.tuning;
    this.observer = o.observer;
    this.devFd = o.devFd;
    this.v = { entrySec: o.tuning.entryTimeoutSec, attrSec: o.tuning.attrTimeoutSec };
    this.negative = { entrySec: o.tuning.negativeTimeoutSec, attrSec: 0 };
    this.nodes = new NodeTable(o.rootInfo);
    if (o.nodes) this.nodes.importState(o.nodes);
    this.files = new OpenFiles(o.devFd, o.fs.access, o.budget, o.log);
    this.paging = o.paging;
    this.nodes.onDrop = (n) => this.files.drop(n);
    this.passthrough = o.passthrough ?? false;
  }

  /** Requests waiting for the store now. */
  get waiting(): number {
    return this.pending.size;
  }

  init(offer: InitIn): InitOut {
    const ext = (offer.flags & InitFlag.INIT_EXT) !== 0;
    const offered = ext && (offer.flags2 & InitFlag2.PASSTHROUGH) !== 0;
    this.passthrough = this.t.passthrough && offered;
    let want = InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES
      | InitFlag.CACHE_SYMLINKS | InitFlag.NO_OPENDIR_SUPPORT;
    // Without passthrough, files are opened without a message and read by node: the kernel
    // then keeps their pages across opens.
    if (!this.passthrough) want |= InitFlag.NO_OPEN_SUPPORT;
    if (!this.passthrough) {
      const reason = this.t.passthrough ? 'kernel' : 'disabled';
      this.observer.passthroughFallback(reason);
      if (this.t.passthrough) this.log.warn({ minor: offer.minor }, 'the kernel does not offer FUSE passthrough (Linux 6.9 or later has it); this layer\'s reads are served by this process');
    }
    return {
      minor: Math.min(offer.minor, FUSE_OUR_MINOR),
      maxReadahead: offer.maxReadahead,
      flags: (offer.flags & want) | (ext ? InitFlag.INIT_EXT : 0),
      flags2: this.passthrough ? InitFlag2.PASSTHROUGH : 0,
      maxBackground: this.t.maxBackground,
      congestionThreshold: Math.max(1, Math.floor(this.t.maxBackground * 3 / 4)),
      maxWrite: 4096,
      maxPages: this.t.maxPages,
      // Backing files must sit on a filesystem that stacks on nothing (ext4, xfs, a CernVM-FS
      // FUSE mount); 1 leaves room for the container's overlayfs on top of this mount.
      maxStackDepth: this.passthrough ? 1 : 0,
    };
  }

  handle(req: FuseRequest, ch: FuseChannel): void {
    const op = req.opcode;
    if (op === Op.FORGET) {
      this.nodes.unrefId(req.nodeid, readU64(req.body, 0));
      return ch.noReply(req);
    }
    if (op === Op.BATCH_FORGET) return this.batchForget(req, ch);
    if (WRITE_OPS.has(op)) {
      ch.replyError(req, E.EROFS);
      return;
    }
    const node = this.nodes.get(req.nodeid);
    if (!node) {
      ch.replyError(req, E.ESTALE);
      return;
    }
    switch (op) {
      case Op.LOOKUP: this.lookup(req, ch, node); break;
      case Op.GETATTR: this.getattr(req, ch, node); break;
      case Op.READLINK: this.readlink(req, ch, node); break;
      case Op.OPEN: this.open(req, ch, node); break;
      case Op.READ: this.read(req, ch, node); break;
      case Op.RELEASE:
        this.files.release(readU64(req.body, 0));
        ch.replyOk(req);
        break;
      case Op.READDIRPLUS: this.readdir(req, ch, node, true); break;
      case Op.READDIR: this.readdir(req, ch, node, false); break;
      case Op.GETXATTR: this.getxattr(req, ch, node); break;
      case Op.LISTXATTR: this.listxattr(req, ch, node); break;
      case Op.STATFS: this.statfs(req, ch); break;
      // OPENDIR: ENOSYS turns on zero-message opendir, and the kernel then keeps listings.
      case Op.RELEASEDIR:
      case Op.DESTROY:
        ch.replyOk(req);
        break;
      // flush, fsync, access, locks, ioctl, lseek, statx, ...: the kernel's own handling is right
      // for an immutable tree, and ENOSYS tells it to stop asking.
      default:
        ch.replyError(req, E.ENOSYS);
    }
    if (!req.done && !req.op.noReply) this.pending.set(req.key, req);
  }

  interrupt(key: number, ch: FuseChannel): void {
    const req = this.pending.get(key);
    if (!req || req.done) return;
    this.pending.delete(key);
    this.log.debug({ op: req.op.name }, 'request interrupted while waiting for the store; answered EINTR');
    ch.replyError(req, E.EINTR);
  }

  /** Answers every request still waiting for the store (a handover that cannot wait longer). */
  answerPending(ch: FuseChannel, errno: number): void {
    for (const req of [...this.pending.values()]) this.fail(req, ch, errno);
  }

  ended(): void {
    this.pending.clear();
    this.paging.dropLayer(this.fs.namespace);
    this.fs.forgetCached();
    this.files.closeAll();
  }

  exportNodes(): NodeTableState {
    return this.nodes.exportState();
  }

  // ---- answering ----------------------------------------------------------------------------

  /**
   * A continuation that runs when the store answers: if it throws (a bug), the request is still
   * answered (EIO) instead of waiting for ever, and the error is logged with what was asked.
   */
  private guarded<A extends unknown[]>(req: FuseRequest, ch: FuseChannel, fn: (...a: A) => void): (...a: A) => void {
    return (...a: A) => {
      try {
        fn(...a);
      } catch (err) {
        this.log.error({ err, op: req.op.name }, 'answering a FUSE request failed; answered EIO');
        this.fail(req, ch, E.EIO);
      }
    };
  }

  private fail(req: FuseRequest, ch: FuseChannel, errno: number): void {
    this.pending.delete(req.key);
    if (!req.done) ch.replyError(req, errno);
  }

  private answer(req: FuseRequest, ch: FuseChannel, buf: Buffer, len: number): number {
    this.pending.delete(req.key);
    if (req.done) return -E.ENOENT;
    return ch.replyBuf(req, buf, len);
  }

  /** Runs fn with the node's entry, asking the store first for a node taken over without one. */
  private withInfo(req: FuseRequest, ch: FuseChannel, node: Node, fn: (info: EntryInfo) => void): void {
    if (node.info) return fn(node.info);
    this.fs.stat(this.nodes.pathOf(node), this.guarded(req, ch, (errno, e) => {
      if (req.done) return;
      if (errno !== 0 || !e) return this.fail(req, ch, errno || E.EIO);
      node.info = e;
      fn(e);
    }));
  }

  /** What the kernel is told of a node the store just described as e: the node's own entry if it kept it. */
  private kept(n: Node, e: EntryInfo): EntryInfo {
    if (n.info === undefined || n.info === e) return e;
    this.log.warn({ path: `/${this.nodes.pathOf(n)}` }, 'the layer changed in the store while mounted: another type of file under a known name; the kernel keeps the one it knows');
    return n.info;
  }

  // ---- requests -----------------------------------------------------------------------------

  private lookup(req: FuseRequest, ch: FuseChannel, parent: Node): void {
    const raw = readCString(req.body);
    const name = raw ? raw.toString('latin1', 0, raw.length) : '';
    if (name.length > 255) return this.fail(req, ch, E.ENAMETOOLONG);
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return this.fail(req, ch, E.EINVAL);
    if (parent.info && !isDirAttr(parent.info.buf, parent.info.at)) return this.fail(req, ch, E.ENOTDIR);
    this.fs.lookup(this.nodes.pathOf(parent), parent.info, name, this.guarded(req, ch, (errno, e) => {
      if (req.done) return;
      if (errno !== 0) return this.fail(req, ch, errno);
      const b = ch.scratch(ENTRY_OUT_SIZE);
      if (e === null) {
        // A negative entry the kernel may cache: layers never gain names.
        writeEntryOut(b, OUT_HEADER_SIZE, 0, undefined, 0, this.negative);
        this.answer(req, ch, b, ENTRY_OUT_SIZE);
        return;
      }
      const n = this.nodes.ref(parent, name, e);
      const shown = this.kept(n, e);
      writeEntryOut(b, OUT_HEADER_SIZE, n.id, shown.buf, shown.at, this.v);
      if (this.answer(req, ch, b, ENTRY_OUT_SIZE) < 0) this.nodes.unref(n, 1);
    }));
  }

  private getattr(req: FuseRequest, ch: FuseChannel, node: Node): void {
    this.withInfo(req, ch, node, (info) => {
      const b = ch.scratch(ATTR_OUT_SIZE);
      writeAttrOut(b, OUT_HEADER_SIZE, info.buf, info.at, this.v.attrSec);
      this.answer(req, ch, b, ATTR_OUT_SIZE);
    });
  }

  private readlink(req: FuseRequest, ch: FuseChannel, node: Node): void {
    this.withInfo(req, ch, node, (info) => {
      if (!isLinkAttr(info.buf, info.at) || info.whiteout) return this.fail(req, ch, E.EINVAL);
      this.fs.readlink(this.nodes.pathOf(node), this.guarded(req, ch, (errno, target) => {
        if (req.done) return;
        if (errno !== 0 || !target) return this.fail(req, ch, errno || E.EIO);
        const b = ch.scratch(target.length);
        target.copy(b, OUT_HEADER_SIZE);
        this.answer(req, ch, b, target.length);
      }));
    });
  }

  private statfs(req: FuseRequest, ch: FuseChannel): void {
    this.fs.statfs(this.guarded(req, ch, (errno, out) => {
      if (req.done) return;
      if (errno !== 0 || !out) return this.fail(req, ch, errno || E.EIO);
      const b = ch.scratch(STATFS_OUT_SIZE);
      out.copy(b, OUT_HEADER_SIZE, 0, STATFS_OUT_SIZE);
      this.answer(req, ch, b, STATFS_OUT_SIZE);
    }));
  }

  private readdir(req: FuseRequest, ch: FuseChannel, dir: Node, plus: boolean): void {
    const offset = readU64(req.body, 8);
    // As for READ: no reply may be larger than the kernel takes (nor than the reply buffer).
    const size = Math.min(req.body.readUInt32LE(16), this.t.maxPages * 4096);
    this.withInfo(req, ch, dir, (info) => {
      if (!isDirAttr(info.buf, info.at) || info.whiteout) return this.fail(req, ch, E.ENOTDIR);
      const path = this.nodes.pathOf(dir);
      const kept = this.paging.get(this.fs.namespace + path);
      if (kept) {
        info.opaque = kept.self.opaque;
        return this.encodeListing(req, ch, dir, info, kept, offset, size, plus);
      }
      this.fs.listing(path, this.guarded(req, ch, (errno, l) => {
        if (req.done) return;
        if (errno !== 0 || !l) return this.fail(req, ch, errno || E.EIO);
        this.paging.set(this.fs.namespace + path, l);
        info.opaque = l.self.opaque;
        this.encodeListing(req, ch, dir, info, l, offset, size, plus);
      }), true);
    });
  }

  /** Entries from cookie `offset` on: 0 and 1 are the dots, 2 + i the listing's i-th name. */
  private encodeListing(req: FuseRequest, ch: FuseChannel, dir: Node, info: EntryInfo, l: Listing, offset: number, size: number, plus: boolean): void {
    const b = ch.scratch(size);
    const total = l.names.length + 2;
    const refs: Node[] = [];
    let used = 0;
    for (let i = offset; i < total; i++) {
      let name: string;
      let attr: Buffer;
      let at: number;
      let nodeid = 0;
      if (i < 2) {
        name = i === 0 ? '.' : '..';
        attr = info.buf;
        at = info.at;
      } else {
        const j = i - 2;
        name = l.names[j] as string;
        attr = l.attrs;
        at = j * ATTR_SIZE;
      }
      const sz = direntSize(name.length, plus);
      if (used + sz > size) break;
      // A listed entry the kernel may keep as a dentry counts as a lookup; the dots and
      // entries of unknown type (a failed stat) never do.
      if (plus && i >= 2 && attr.readUInt32LE(at + 60) !== 0) {
        const listed = listingEntry(l, i - 2);
        const n = this.nodes.ref(dir, name, listed);
        refs.push(n);
        nodeid = n.id;
        const shown = this.kept(n, listed);
        attr = shown.buf;
        at = shown.at;
      }
      used += writeDirent(b, OUT_HEADER_SIZE + used, name, name.length, attr, at, i + 1, plus ? { nodeid, v: this.v } : undefined);
    }
    if (used === 0 && offset < total) return this.fail(req, ch, E.EINVAL);
    if (this.answer(req, ch, b, used) < 0) for (const n of refs) this.nodes.unref(n, 1);
  }

  private getxattr(req: FuseRequest, ch: FuseChannel, node: Node): void {
    if (this.xattrFree) return this.fail(req, ch, E.ENOSYS);
    const size = req.body.readUInt32LE(0);
    const raw = readCString(req.body, 8);
    const name = raw ? raw.toString('latin1', 0, raw.length) : '';
    this.withInfo(req, ch, node, (info) => {
      if (info.whiteout) return this.fail(req, ch, E.ENODATA);
      const stored = (): void => {
        const x = info.xattrs;
        if (x === 'error') {
          this.log.warn({ path: `/${this.nodes.pathOf(node)}` }, 'the store failed to list this entry\'s xattrs; answered EIO');
          return this.fail(req, ch, E.EIO);
        }
        const v = x.get(name);
        if (v === undefined || isHiddenXattr(name)) return this.fail(req, ch, E.ENODATA);
        if (v !== null) return this.sized(req, ch, v, size);
        this.fs.xattr(this.nodes.pathOf(node), name, this.guarded(req, ch, (errno, value) => {
          if (req.done) return;
          if (errno !== 0 || !value) return this.fail(req, ch, errno || E.EIO);
          this.sized(req, ch, value, size);
        }));
      };
      // overlayfs asks every lower directory whether it is opaque.
      if (name !== OVERLAY_OPAQUE_XATTR || !isDirAttr(info.buf, info.at)) return stored();
      this.withOpaque(req, ch, node, info, (opaque) => (opaque ? this.sized(req, ch, OPAQUE_VALUE, size) : stored()));
    });
  }

  private listxattr(req: FuseRequest, ch: FuseChannel, node: Node): void {
    // No ENOSYS here: after it the kernel fails every listxattr() on the mount with EOPNOTSUPP,
    // where a plain directory lists nothing (getfattr -d, tar --xattrs and rsync -X would say
    // so). overlayfs lists xattrs only at copy-up, so the fast answer is the empty list.
    if (this.xattrFree) return this.sized(req, ch, Buffer.alloc(0), req.body.readUInt32LE(0));
    const size = req.body.readUInt32LE(0);
    this.withInfo(req, ch, node, (info) => {
      if (info.whiteout) return this.sized(req, ch, Buffer.alloc(0), size);
      const x = info.xattrs;
      if (x === 'error') return this.fail(req, ch, E.EIO);
      const answer = (opaque: boolean): void => {
        let names = '';
        for (const k of x.keys()) if (!isHiddenXattr(k)) names += `${k}\0`;
        if (opaque && !x.has(OVERLAY_OPAQUE_XATTR)) names += `${OVERLAY_OPAQUE_XATTR}\0`;
        this.sized(req, ch, Buffer.from(names, 'latin1'), size);
      };
      if (!isDirAttr(info.buf, info.at)) return answer(false);
      this.withOpaque(req, ch, node, info, answer);
    });
  }

  /** Whether a directory holds the AUFS opaque marker: known from its own listing. */
  private withOpaque(req: FuseRequest, ch: FuseChannel, node: Node, info: EntryInfo, fn: (opaque: boolean) => void): void {
    if (info.opaque !== undefined) return fn(info.opaque);
    this.fs.listing(this.nodes.pathOf(node), this.guarded(req, ch, (errno, l) => {
      if (req.done) return;
      if (errno !== 0 || !l) return this.fail(req, ch, errno || E.EIO);
      info.opaque = l.self.opaque ?? false;
      fn(info.opaque);
    }));
  }

  /** The size-probe protocol of getxattr/listxattr: size 0 asks for the length only. */
  private sized(req: FuseRequest, ch: FuseChannel, value: Buffer, size: number): void {
    if (size === 0) {
      const b = ch.scratch(8);
      b.writeUInt32LE(value.length, OUT_HEADER_SIZE);
      b.writeUInt32LE(0, OUT_HEADER_SIZE + 4);
      this.answer(req, ch, b, 8);
      return;
    }
    if (value.length > size) return this.fail(req, ch, E.ERANGE);
    const b = ch.scratch(value.length);
    value.copy(b, OUT_HEADER_SIZE);
    this.answer(req, ch, b, value.length);
  }

  // ---- files --------------------------------------------------------------------------------

  private open(req: FuseRequest, ch: FuseChannel, node: Node): void {
    const flags = req.body.readUInt32LE(0);
    if ((flags & O_ACCMODE) !== 0 || (flags & (O_TRUNC | O_CREAT)) !== 0) return this.fail(req, ch, E.EROFS);
    if (!this.passthrough) {
      // Zero-message opens were asked for: this tells the kernel to stop sending OPEN.
      return this.fail(req, ch, E.ENOSYS);
    }
    this.withInfo(req, ch, node, (info) => {
      if (isDirAttr(info.buf, info.at)) return this.fail(req, ch, E.EISDIR);
      if (!isRegAttr(info.buf, info.at) || info.whiteout) return this.fail(req, ch, E.ENXIO);
      this.fileOf(node, info, this.guarded(req, ch, (errno, f) => {
        if (req.done) return;
        if (errno !== 0 || !f) return this.fail(req, ch, errno || E.EIO);
        const fh = this.files.newHandle(f);
        const b = ch.scratch(OPEN_OUT_SIZE);
        if (f.backingId >= 0) writeOpenOut(b, OUT_HEADER_SIZE, fh, OpenFlag.PASSTHROUGH, f.backingId);
        else writeOpenOut(b, OUT_HEADER_SIZE, fh, OpenFlag.KEEP_CACHE, 0);
        if (this.answer(req, ch, b, OPEN_OUT_SIZE) < 0) this.files.release(fh);
      }));
    });
  }

  /** The node's store file: kept, or opened now (once for every OPEN that asks meanwhile). */
  private fileOf(node: Node, info: EntryInfo, cb: (errno: number, f: OpenFile | undefined) => void): void {
    const kept = this.files.get(node);
    if (kept) return cb(0, kept);
    const waiters = this.opening.get(node);
    if (waiters) {
      waiters.push(cb);
      return;
    }
    const all = [cb];
    this.opening.set(node, all);
    const done = (errno: number, f: OpenFile | undefined): void => {
      this.opening.delete(node);
      for (const w of all) w(errno, f);
    };
    this.fs.openBacking(this.nodes.pathOf(node), attrIno(info.buf, info.at), this.devFd, (errno, o) => {
      if (errno !== 0) return done(errno, undefined);
      if (o.backingId >= 0) return done(0, this.files.add(node, o.backingId, -1));
      this.observer.passthroughFallback(errnoName(o.refused));
      if (!this.fallbackLogged) {
        this.fallbackLogged = true;
        this.log.warn({ errno: errnoName(o.refused), path: `/${this.nodes.pathOf(node)}` },
          'the kernel refused FUSE passthrough for a file of this layer (a store stacked on another filesystem?); its reads are served by this process');
      }
      done(0, this.files.add(node, -1, o.fd));
    });
  }

  private read(req: FuseRequest, ch: FuseChannel, node: Node): void {
    const fh = readU64(req.body, 0);
    const off = readU64(req.body, 8);
    const size = Math.min(req.body.readUInt32LE(16), this.t.maxPages * 4096);
    const known = fh !== 0 ? this.files.fromHandle(fh) : undefined;
    const go = (f: OpenFile): void => {
      if (f.fd < 0) {
        // Opened for passthrough, yet the kernel asks us: serve it from a descriptor of its own.
        this.files.drop(node);
        return this.withInfo(req, ch, node, (info) => this.fileOfServed(req, ch, node, info, go));
      }
      this.files.beginRead(f);
      this.fs.access.pread(f.fd, size, off, `/${this.nodes.pathOf(node)}`, this.guarded(req, ch, (res, out) => {
        this.files.endRead(f);
        if (req.done) return;
        if (res < 0 || !out) {
          // A store that failed may come back: the next read opens the file again.
          this.files.drop(node);
          this.fs.access.failed('read', res);
          this.log.warn({ path: `/${this.nodes.pathOf(node)}`, code: errnoName(res) }, 'reading the layer store failed; answered EIO');
          return this.fail(req, ch, E.EIO);
        }
        this.observer.bytesServed(res);
        this.answer(req, ch, out, res);
      }));
    };
    if (known) return go(known);
    this.withInfo(req, ch, node, (info) => {
      if (!isRegAttr(info.buf, info.at) || info.whiteout) return this.fail(req, ch, isDirAttr(info.buf, info.at) ? E.EISDIR : E.EIO);
      this.fileOfServed(req, ch, node, info, go);
    });
  }

  private fileOfServed(req: FuseRequest, ch: FuseChannel, node: Node, info: EntryInfo, go: (f: OpenFile) => void): void {
    const kept = this.files.get(node);
    if (kept && kept.fd >= 0) return go(kept);
    if (kept) this.files.drop(node);
    this.fs.openFile(this.nodes.pathOf(node), attrIno(info.buf, info.at), this.guarded(req, ch, (errno, fd) => {
      if (req.done) {
        if (errno === 0) this.fs.access.close(fd);
        return;
      }
      if (errno !== 0) return this.fail(req, ch, errno);
      go(this.files.add(node, -1, fd));
    }));
  }

  private batchForget(req: FuseRequest, ch: FuseChannel): void {
    const count = req.body.readUInt32LE(0);
    for (let i = 0; i < count; i++) {
      const at = 8 + i * 16;
      if (at + 16 > req.body.length) {
        this.log.error({ count, bytes: req.body.length }, 'malformed BATCH_FORGET: fewer entries than it says; the rest is ignored');
        break;
      }
      this.nodes.unrefId(readU64(req.body, at), readU64(req.body, at + 8));
    }
    ch.noReply(req);
  }
}
