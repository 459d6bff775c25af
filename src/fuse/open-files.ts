// The files of one layer that are open in the store, and the kernel's handles on them.
//
// With FUSE passthrough a file is opened in the store once, registered with the kernel
// (FUSE_DEV_IOC_BACKING_OPEN), and our descriptor closed at once: the kernel holds the file and
// reads it itself, so every later OPEN of that node is answered from memory with the same
// backing id and no read ever comes here. Without passthrough (an old kernel, a store the
// kernel refuses to stack on) the descriptor is kept and READs are served from it on the pool.
//
// A file kept here is dropped when the table is over its budget (least recently used first) or
// when the kernel forgets its node; a descriptor is closed only once no handle of the kernel
// and no read in flight uses it, so a read never meets a descriptor number reused by another file.
// A backing id is closed only once no handle uses it either: the kernel looks the id up when the
// task that opened the file resumes after our reply, which on a busy node can be well after the
// reply was written (closed earlier, that open() fails with EIO). A handover passes the ids and
// the handles on to the successor (exportPassthrough/adoptPassthrough) instead of closing them.
import type { Logger } from '../log.js';
import { native } from '../sys/native.js';
import { errnoName } from './kernel/errno.js';
import type { Node } from './node-table.js';
import type { StoreAccess } from './store-access.js';

export interface OpenFile {
  /** undefined: a file a predecessor handed over whose node it no longer knew (retired). */
  readonly node: Node | undefined;
  /** The kernel's backing id (passthrough), or -1. */
  backingId: number;
  /** Our descriptor for served reads, or -1. */
  fd: number;
  /** Kernel handles (OPEN replies) not released yet. */
  handles: number;
  /** READs in flight on fd. */
  readers: number;
  /** Out of the table: closed when the last handle and the last read are gone. */
  retired: boolean;
}

/**
 * The passthrough files of a connection, as a handover passes them on: the next handle number,
 * and per backing id the node id it was registered for and the kernel's handles on it.
 */
export interface PassthroughState {
  readonly nextFh: number;
  readonly files: readonly (readonly [nodeId: number, backingId: number, handles: readonly number[]])[];
}

/** Shared by every layer of a process: how many store files are held open, and how many may be. */
export interface FileBudget {
  open: number;
  readonly max: number;
}

export class OpenFiles {
  private readonly devFd: number;
  private readonly store: StoreAccess;
  private readonly budget: FileBudget;
  private readonly log: Logger;
  /** In least-recently-used order. */
  private readonly byNode = new Map<Node, OpenFile>();
  private readonly byHandle = new Map<number, OpenFile>();
  private nextFh = 1;

  /** FUSE_DEV_IOC_BACKING_CLOSE; a parameter so that the unit tests can watch it. */
  private readonly backingClose: (devFd: number, id: number) => number;

  constructor(devFd: number, store: StoreAccess, budget: FileBudget, log: Logger, backingClose = native.backingClose) {
    this.devFd = devFd;
    this.backingClose = backingClose;
    this.store = store;
    this.budget = budget;
    this.log = log;
  }

  get size(): number {
    return this.byNode.size;
  }

  /** The file kept for node, marked as just used. */
  get(node: Node): OpenFile | undefined {
    const f = this.byNode.get(node);
    if (f) {
      this.byNode.delete(node);
      this.byNode.set(node, f);
    }
    return f;
  }

  /** Keeps a newly opened file: a backing id, or a descriptor to serve reads from. */
  add(node: Node, backingId: number, fd: number): OpenFile {
    const old = this.byNode.get(node);
    if (old) this.retire(old);
    const f: OpenFile = { node, backingId, fd, handles: 0, readers: 0, retired: false };
    this.byNode.set(node, f);
    this.budget.open++;
    while (this.budget.open > this.budget.max && this.byNode.size > 1) {
      const oldest = this.byNode.values().next().value as OpenFile;
      this.retire(oldest);
    }
    return f;
  }

  /** A new kernel handle on f; the number goes in the OPEN reply. */
  newHandle(f: OpenFile): number {
    const fh = this.nextFh++;
    f.handles++;
    this.byHandle.set(fh, f);
    return fh;
  }

  /** The OPEN reply carrying fh never reached the kernel, or the kernel released it. */
  release(fh: number): void {
    const f = this.byHandle.get(fh);
    if (!f) return;
    this.byHandle.delete(fh);
    f.handles--;
    this.maybeClose(f);
  }

  fromHandle(fh: number): OpenFile | undefined {
    return this.byHandle.get(fh);
  }

  beginRead(f: OpenFile): void {
    f.readers++;
  }

  endRead(f: OpenFile): void {
    f.readers--;
    this.maybeClose(f);
  }

  /** The node is gone from the kernel, or its file failed: stop keeping it. */
  drop(node: Node): void {
    const f = this.byNode.get(node);
    if (f) this.retire(f);
  }

  /** The connection ended: let go of everything. */
  closeAll(): void {
    this.retireAll();
    for (const f of this.byHandle.values()) {
      f.handles = 0;
      this.maybeClose(f);
    }
    this.byHandle.clear();
  }

  /** Keeps nothing any more (the store's root died): each file goes once its handles and reads do. */
  retireAll(): void {
    for (const f of [...this.byNode.values()]) this.retire(f);
  }

  /**
   * Before a handover: the backing ids this connection holds and the handles on them, for the
   * successor to adopt; nothing is closed here. Served descriptors are not passed on: they stay
   * with their readers and close with this process, and the successor opens the file again at
   * the next READ.
   */
  exportPassthrough(): PassthroughState {
    const files = new Map<OpenFile, number[]>();
    for (const f of this.byNode.values()) if (f.backingId >= 0) files.set(f, []);
    for (const [fh, f] of this.byHandle) {
      if (f.backingId < 0) continue;
      const list = files.get(f) ?? [];
      list.push(fh);
      files.set(f, list);
    }
    const out: [number, number, number[]][] = [];
    for (const [f, fhs] of files) out.push([f.node?.id ?? 0, f.backingId, fhs]);
    return { nextFh: this.nextFh, files: out };
  }

  /**
   * Takes over a predecessor's backing ids (see exportPassthrough): each is kept for its node
   * again, or, when the node is gone or taken, held only until its last handle is released.
   * Returns how many entries were malformed and left alone (their ids stay with the connection
   * until it ends).
   */
  adoptPassthrough(state: PassthroughState, nodeOf: (id: number) => Node | undefined): number {
    let bad = 0;
    if (Number.isSafeInteger(state.nextFh) && state.nextFh > this.nextFh) this.nextFh = state.nextFh;
    for (const entry of Array.isArray(state.files) ? state.files : []) {
      const [nodeId, backingId, fhs] = Array.isArray(entry) ? entry : [];
      if (!Number.isSafeInteger(nodeId) || !Number.isSafeInteger(backingId) || (backingId as number) <= 0 || !Array.isArray(fhs)
        || fhs.some((fh) => !Number.isSafeInteger(fh) || fh <= 0 || this.byHandle.has(fh))) {
        bad++;
        continue;
      }
      const node = nodeOf(nodeId as number);
      const keep = node !== undefined && !this.byNode.has(node);
      const f: OpenFile = { node: keep ? node : undefined, backingId: backingId as number, fd: -1, handles: fhs.length, readers: 0, retired: !keep };
      for (const fh of fhs) {
        this.byHandle.set(fh, f);
        if (fh >= this.nextFh) this.nextFh = fh + 1;
      }
      if (keep) {
        this.byNode.set(node, f);
        this.budget.open++;
      } else {
        this.maybeClose(f);
      }
    }
    while (this.budget.open > this.budget.max && this.byNode.size > 1) this.retire(this.byNode.values().next().value as OpenFile);
    return bad;
  }

  private retire(f: OpenFile): void {
    if (f.retired) return;
    f.retired = true;
    if (f.node && this.byNode.get(f.node) === f) this.byNode.delete(f.node);
    this.budget.open--;
    this.maybeClose(f);
  }

  private closeBacking(f: OpenFile): void {
    const r = this.backingClose(this.devFd, f.backingId);
    if (r < 0) this.log.debug({ errno: errnoName(r), backingId: f.backingId }, 'closing a passthrough backing id failed');
    f.backingId = -1;
  }

  private maybeClose(f: OpenFile): void {
    if (!f.retired || f.readers > 0 || f.handles > 0) return;
    if (f.backingId >= 0) this.closeBacking(f);
    if (f.fd < 0) return;
    const fd = f.fd;
    f.fd = -1;
    this.store.close(fd);
  }
}
