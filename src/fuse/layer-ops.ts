// The FUSE requests of one read-only layer, answered from a LayerTree. Node ids name paths;
// they are handed out by LOOKUP and READDIRPLUS, counted, and dropped when the kernel forgets
// them. Files and directories are opened without a message (NO_OPEN/NO_OPENDIR): the kernel
// then keeps file pages and directory listings cached, and reads name the node, not a handle.
import type { Logger } from '../log.js';
import { FsError, codeOf, isExpectedCode, negErrno } from './errno.js';
import { joinLayerPath } from './layer-path.js';
import type { DirReply, LayerTree } from './layer-tree.js';
import {
  ENTRY_OUT_SIZE, FUSE_OUR_MINOR, FUSE_ROOT_ID, InitFlag, OUT_HEADER_SIZE, Op, direntSize, encodeAttrOut,
  encodeEntryOut, encodeStatfsOut, encodeXattrSize, opName, readCString, readReadIn, writeDirent,
  type InHeader, type InitIn, type InitOut, type Validity,
} from './kernel/protocol.js';
import { ENOSYS, type Reply, type RequestHandler } from './kernel/session.js';

export interface LayerOpsTuning {
  entryTimeoutSec: number;
  attrTimeoutSec: number;
  negativeTimeoutSec: number;
  /** Largest READ the kernel may send, in pages. */
  maxPages: number;
  /** Asynchronous requests (read-ahead) the kernel may keep in flight. */
  maxBackground: number;
  /** Store files kept open per layer for reads. */
  openFiles: number;
}

/** One node the kernel knows: its path and how many lookups it has not forgotten yet. */
export interface NodeRecord {
  readonly id: bigint;
  readonly path: string;
  nlookup: number;
}

export interface NodeTableState {
  readonly next: string;
  readonly nodes: readonly (readonly [id: string, path: string, nlookup: number])[];
}

const pos = (code: string): number => -negErrno(code);
const EROFS = pos('EROFS');
const ESTALE = pos('ESTALE');
const EIO = pos('EIO');
const ENOTDIR = pos('ENOTDIR');

const WRITES = new Set<number>([
  Op.SETATTR, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME, Op.RENAME2, Op.LINK, Op.WRITE,
  Op.SETXATTR, Op.REMOVEXATTR, Op.CREATE, Op.FALLOCATE, Op.TMPFILE, Op.COPY_FILE_RANGE,
]);
const DIR_CACHE = 64;
const STORE_CHANGED = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'ENXIO', 'ELOOP']);
const NAME_ANSWERS = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

export class LayerOps implements RequestHandler {
  private readonly tree: LayerTree;
  private readonly log: Logger;
  private readonly t: LayerOpsTuning;
  private readonly v: Validity;
  private readonly negative: Validity;
  private readonly nodes = new Map<bigint, NodeRecord>();
  private readonly byPath = new Map<string, NodeRecord>();
  private nextId = FUSE_ROOT_ID + 1n;
  /** Open store files by node, most recently used last. */
  private readonly files = new Map<bigint, Promise<number>>();
  /** The last listing of a directory, reused while the kernel pages through it. */
  private readonly dirs = new Map<bigint, DirReply>();

  constructor(tree: LayerTree, log: Logger, tuning: LayerOpsTuning, state?: NodeTableState) {
    this.tree = tree;
    this.log = log;
    this.t = tuning;
    this.v = { entrySec: tuning.entryTimeoutSec, attrSec: tuning.attrTimeoutSec };
    this.negative = { entrySec: tuning.negativeTimeoutSec, attrSec: 0 };
    const root: NodeRecord = { id: FUSE_ROOT_ID, path: '/', nlookup: 1 };
    this.nodes.set(root.id, root);
    this.byPath.set('/', root);
    if (state) this.importNodes(state);
  }

  /** Nodes the kernel holds now (root included). */
  get nodeCount(): number {
    return this.nodes.size;
  }

  init(offer: InitIn): InitOut {
    const want = InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.NO_OPEN_SUPPORT | InitFlag.NO_OPENDIR_SUPPORT
      | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS;
    return {
      minor: Math.min(offer.minor, FUSE_OUR_MINOR),
      maxReadahead: offer.maxReadahead,
      flags: offer.flags & want,
      maxBackground: this.t.maxBackground,
      congestionThreshold: Math.max(1, Math.floor(this.t.maxBackground * 3 / 4)),
      maxWrite: 4096,
      maxPages: this.t.maxPages,
    };
  }

  handle(h: InHeader, body: Buffer, reply: Reply): void {
    const op = h.opcode;
    if (op === Op.FORGET) return this.forget(h.nodeid, Number(body.readBigUInt64LE(0)));
    if (op === Op.BATCH_FORGET) return this.batchForget(body);
    if (op === Op.INTERRUPT) return; // every answer comes soon; the kernel waits for it
    if (WRITES.has(op)) return reply.error(EROFS);
    const node = this.nodes.get(h.nodeid);
    if (!node) return reply.error(ESTALE);
    switch (op) {
      case Op.LOOKUP: return this.serve(h, node, reply, () => this.lookup(node, readCString(body).toString('latin1')));
      case Op.GETATTR: return this.serve(h, node, reply, async () => encodeAttrOut(await this.tree.getattr(node.path), this.v.attrSec));
      case Op.READLINK: return this.serve(h, node, reply, async () => Buffer.from(await this.tree.readlink(node.path), 'latin1'));
      case Op.READ: return this.read(h, node, readReadIn(body), reply);
      case Op.READDIRPLUS: return this.serve(h, node, reply, () => this.readdir(node, readReadIn(body), true));
      case Op.READDIR: return this.serve(h, node, reply, () => this.readdir(node, readReadIn(body), false));
      case Op.STATFS: return this.serve(h, node, reply, async () => encodeStatfsOut(await this.tree.statfs()));
      case Op.GETXATTR: return this.getxattr(h, node, body, reply);
      case Op.LISTXATTR: return this.listxattr(h, node, body, reply);
      case Op.RELEASE:
      case Op.RELEASEDIR:
      case Op.DESTROY:
        return reply.ok();
      // Zero-message opens; flush, fsync, access, locks, ioctl, lseek: the kernel's own
      // handling is right for an immutable read-only tree, and ENOSYS tells it to stop asking.
      default:
        return reply.error(ENOSYS);
    }
  }

  ended(): void {
    void this.closeFiles();
  }

  /** Forgets every node and closes what is open; the tree's cache entries go with close(). */
  async closeFiles(): Promise<void> {
    const fhs = [...this.files.values()];
    this.files.clear();
    this.dirs.clear();
    for (const p of fhs) {
      const fh = await p.catch(() => undefined);
      if (fh !== undefined) await this.tree.release(fh).catch(() => undefined);
    }
  }

  exportNodes(): NodeTableState {
    return { next: this.nextId.toString(), nodes: [...this.nodes.values()].map((n) => [n.id.toString(), n.path, n.nlookup] as const) };
  }

  // ---- requests -------------------------------------------------------------------------------

  private async lookup(parent: NodeRecord, name: string): Promise<Buffer> {
    const p = joinLayerPath(parent.path, name);
    try {
      const n = await this.tree.node(p);
      return encodeEntryOut(this.ref(n.path).id, n.stat, this.v);
    } catch (err) {
      // A negative entry the kernel may cache: layers never gain names.
      if (codeOf(err) === 'ENOENT') return encodeEntryOut(0n, undefined, this.negative);
      throw err;
    }
  }

  private async readdir(dir: NodeRecord, req: { offset: number; size: number }, plus: boolean): Promise<Buffer> {
    let listing = req.offset > 0 ? this.dirs.get(dir.id) : undefined;
    if (!listing) {
      listing = await this.tree.readdir(dir.path);
      this.dirs.delete(dir.id);
      this.dirs.set(dir.id, listing);
      if (this.dirs.size > DIR_CACHE) this.dirs.delete(this.dirs.keys().next().value as bigint);
    }
    const out = Buffer.allocUnsafe(req.size);
    let used = 0;
    for (let i = req.offset; i < listing.names.length; i++) {
      const name = listing.names[i] as string;
      const attr = listing.stats[i];
      if (attr === undefined) break;
      const nameBuf = Buffer.from(name, 'latin1');
      const size = direntSize(nameBuf.length, plus);
      if (used + size > req.size) break;
      const dots = name === '.' || name === '..';
      // A listed entry the kernel may keep as a dentry counts as a lookup; dots never do.
      const nodeid = plus && !dots && attr.mode !== 0 ? this.ref(joinLayerPath(dir.path, name)).id : 0n;
      used += writeDirent(out, used, nameBuf, attr.ino, i + 1, attr.mode, plus ? { nodeid, attr, v: this.v } : undefined);
    }
    if (used === 0 && req.offset < listing.names.length && req.size < ENTRY_OUT_SIZE) throw new FsError('EINVAL', 'the kernel\'s buffer cannot hold one entry');
    return out.subarray(0, used);
  }

  private read(h: InHeader, node: NodeRecord, req: { offset: number; size: number }, reply: Reply): void {
    const started = this.fileHandle(node);
    const out = Buffer.allocUnsafe(OUT_HEADER_SIZE + req.size);
    started
      .then((fh) => this.tree.read(fh, out.subarray(OUT_HEADER_SIZE), req.size, req.offset))
      .then((n) => reply.okInPlace(out, n), (err: unknown) => {
        // A store that failed may come back: the next read opens the file again.
        this.dropFile(node.id);
        this.fail(h, node, err, reply);
      });
  }

  private getxattr(h: InHeader, node: NodeRecord, body: Buffer, reply: Reply): void {
    const size = body.readUInt32LE(0);
    const name = readCString(body, 8).toString();
    this.serve(h, node, reply, async () => {
      const value = await this.tree.getxattr(node.path, name);
      if (value === null) throw new FsError('ENODATA');
      return sized(value, size);
    });
  }

  private listxattr(h: InHeader, node: NodeRecord, body: Buffer, reply: Reply): void {
    const size = body.readUInt32LE(0);
    this.serve(h, node, reply, async () => {
      const names = await this.tree.listxattr(node.path);
      return sized(Buffer.from(names.map((n) => `${n}\0`).join('')), size);
    });
  }

  // ---- nodes ----------------------------------------------------------------------------------

  private ref(path: string): NodeRecord {
    let n = this.byPath.get(path);
    if (!n) {
      n = { id: this.nextId++, path, nlookup: 0 };
      this.nodes.set(n.id, n);
      this.byPath.set(path, n);
    }
    n.nlookup++;
    return n;
  }

  private forget(id: bigint, count: number): void {
    const n = this.nodes.get(id);
    if (!n || id === FUSE_ROOT_ID) return;
    n.nlookup -= count;
    if (n.nlookup > 0) return;
    this.nodes.delete(id);
    if (this.byPath.get(n.path) === n) this.byPath.delete(n.path);
    this.dirs.delete(id);
    this.dropFile(id);
  }

  private batchForget(body: Buffer): void {
    const count = body.readUInt32LE(0);
    for (let i = 0; i < count; i++) {
      const at = 8 + i * 16;
      if (at + 16 > body.length) break;
      this.forget(body.readBigUInt64LE(at), Number(body.readBigUInt64LE(at + 8)));
    }
  }

  private importNodes(state: NodeTableState): void {
    this.nextId = BigInt(state.next);
    for (const [id, path, nlookup] of state.nodes) {
      const n: NodeRecord = { id: BigInt(id), path, nlookup };
      this.nodes.set(n.id, n);
      this.byPath.set(path, n);
    }
  }

  // ---- open files -----------------------------------------------------------------------------

  private fileHandle(node: NodeRecord): Promise<number> {
    let p = this.files.get(node.id);
    if (p) {
      this.files.delete(node.id);
      this.files.set(node.id, p);
      return p;
    }
    p = this.tree.open(node.path, 0);
    this.files.set(node.id, p);
    p.catch(() => { if (this.files.get(node.id) === p) this.files.delete(node.id); });
    while (this.files.size > this.t.openFiles) this.dropFile(this.files.keys().next().value as bigint);
    return p;
  }

  private dropFile(id: bigint): void {
    const p = this.files.get(id);
    if (!p) return;
    this.files.delete(id);
    // Reads already holding this handle finish first: the tree closes it when they are done.
    void p.then((fh) => this.tree.release(fh), () => undefined).catch(() => undefined);
  }

  // ---- answering ------------------------------------------------------------------------------

  private serve(h: InHeader, node: NodeRecord, reply: Reply, work: () => Promise<Buffer>): void {
    let p: Promise<Buffer>;
    try {
      p = work();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then((b) => reply.ok(b), (err: unknown) => this.fail(h, node, err, reply));
  }

  private fail(h: InHeader, node: NodeRecord, err: unknown, reply: Reply): void {
    const code = codeOf(err);
    // The kernel asks about a node it was told exists, after checking its permissions itself:
    // if the store now says the node is missing, of another type, or forbidden, the store has
    // changed or failed under the mount, and a program in a container should see EIO.
    // A LOOKUP's ENOENT/ENOTDIR/ELOOP are answers about the name; its EACCES is the store's.
    const storeFailed = STORE_CHANGED.has(code) && !(h.opcode === Op.LOOKUP && NAME_ANSWERS.has(code));
    if (isExpectedCode(code) && !storeFailed) {
      this.log.trace({ op: opName(h.opcode), path: node.path, code }, 'layer op answered with an error');
      reply.error(code === 'ENOTDIR' ? ENOTDIR : pos(code));
      return;
    }
    // The store's own trouble (ENOTCONN from a dead cvmfs, EMFILE here) means nothing to a
    // program in a container: it sees EIO, and the log keeps the real cause.
    this.log.warn({ op: opName(h.opcode), path: node.path, code, err }, 'layer op failed');
    reply.error(EIO);
  }
}

/** The size-probe protocol of getxattr/listxattr: size 0 asks for the length only. */
function sized(value: Buffer, size: number): Buffer {
  if (size === 0) return encodeXattrSize(value.length);
  if (value.length > size) throw new FsError('ERANGE');
  return value;
}
