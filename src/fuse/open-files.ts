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
import type { Logger } from '../log.js';
import { native } from '../sys/native.js';
import { errnoName } from './kernel/errno.js';
import type { Node } from './node-table.js';
import type { StoreAccess } from './store-access.js';

export interface OpenFile {
  readonly node: Node;
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

  constructor(devFd: number, store: StoreAccess, budget: FileBudget, log: Logger) {
    this.devFd = devFd;
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
    for (const f of [...this.byNode.values()]) this.retire(f);
    for (const f of this.byHandle.values()) {
      f.handles = 0;
      this.maybeClose(f);
    }
    this.byHandle.clear();
  }

  /**
   * Before a handover: backing ids are closed (the kernel's open files keep their own
   * references); served descriptors stay with their readers and close with this process.
   */
  releaseBackingIds(): void {
    for (const f of this.byNode.values()) {
      if (f.backingId >= 0) this.closeBacking(f);
    }
  }

  private retire(f: OpenFile): void {
    if (f.retired) return;
    f.retired = true;
    if (this.byNode.get(f.node) === f) this.byNode.delete(f.node);
    this.budget.open--;
    if (f.backingId >= 0) this.closeBacking(f);
    this.maybeClose(f);
  }

  private closeBacking(f: OpenFile): void {
    const r = native.backingClose(this.devFd, f.backingId);
    if (r < 0) this.log.debug({ errno: errnoName(r), backingId: f.backingId }, 'closing a passthrough backing id failed');
    f.backingId = -1;
  }

  private maybeClose(f: OpenFile): void {
    if (!f.retired || f.readers > 0 || f.handles > 0 || f.fd < 0) return;
    const fd = f.fd;
    f.fd = -1;
    this.store.close(fd);
  }
}
