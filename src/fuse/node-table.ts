// The nodes the kernel knows, as go-fuse keeps them: a tree of (parent, name) with a lookup
// count each. A node id is handed out by a LOOKUP or READDIRPLUS reply, counted once per
// reply that reached the kernel, and dropped when the kernel forgets as many; ids are never
// reused (generation 0). A node keeps what the kernel was told about it (its attributes and
// xattrs), so GETATTR and GETXATTR, which overlayfs sends for every entry of every new
// container, are answered from memory. Paths are computed by walking up, not stored, so a deep
// tree costs one name per node.
import { FUSE_ROOT_ID, attrMode } from './kernel/protocol.js';
import { isDirAttr, type EntryInfo } from './records.js';
import { join } from './store-access.js';

export interface Node {
  readonly id: number;
  readonly parent: Node | undefined;
  /** Binary string; '' for the root. */
  readonly name: string;
  nlookup: number;
  kids: Map<string, Node> | undefined;
  info: EntryInfo | undefined;
  /** Kept for directories, whose paths are asked for often. */
  path: string | undefined;
}

/** The wire form of a node table, as a handover passes it (and as earlier versions did). */
export interface NodeTableState {
  readonly next: string;
  /** [id, path ("/" for the root, "/usr/lib" ...), nlookup] */
  readonly nodes: readonly (readonly [id: string, path: string, nlookup: number])[];
}

const S_IFMT = 0o170000;

function sameType(a: EntryInfo, b: EntryInfo): boolean {
  return ((attrMode(a.buf, a.at) ^ attrMode(b.buf, b.at)) & S_IFMT) === 0;
}

export class NodeTable {
  readonly root: Node;
  private readonly byId = new Map<number, Node>();
  private nextId = FUSE_ROOT_ID + 1;
  /** Called when a node is dropped (its open file, if any, goes with it). */
  onDrop: ((n: Node) => void) | undefined;

  constructor(rootInfo?: EntryInfo) {
    this.root = { id: FUSE_ROOT_ID, parent: undefined, name: '', nlookup: 1, kids: undefined, info: rootInfo, path: '' };
    this.byId.set(this.root.id, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Node | undefined {
    return this.byId.get(id);
  }

  /** The child `name` of parent, counted once more; created if the kernel does not hold it yet. */
  ref(parent: Node, name: string, info: EntryInfo): Node {
    let n = parent.kids?.get(name);
    if (n === undefined || n.info?.whiteout !== info.whiteout) {
      if (n !== undefined) this.detach(n);
      n = { id: this.nextId++, parent, name, nlookup: 0, kids: undefined, info, path: undefined };
      (parent.kids ??= new Map()).set(name, n);
      this.byId.set(n.id, n);
    } else if (n.info === undefined || sameType(n.info, info)) {
      n.info = info;
    }
    // Otherwise the store holds another type of file under this name now: the layer changed
    // under the mount (a directory swapped for a symlink), and the node keeps what the kernel
    // was told; whatever is asked below it meets the store's change and fails there.
    n.nlookup++;
    return n;
  }

  /** The kernel forgot count lookups of a node (FORGET), or a reply carrying it never arrived. */
  unref(n: Node, count: number): void {
    if (n.id === FUSE_ROOT_ID) return;
    n.nlookup -= count;
    if (n.nlookup > 0) return;
    this.detach(n);
  }

  unrefId(id: number, count: number): void {
    const n = this.byId.get(id);
    if (n) this.unref(n, count);
  }

  /** Relative path of a node ('' for the root). */
  pathOf(n: Node): string {
    if (n.path !== undefined) return n.path;
    const parts: string[] = [];
    let at: Node | undefined = n;
    while (at && at.parent) {
      if (at.path !== undefined) break;
      parts.push(at.name);
      at = at.parent;
    }
    let p = at?.path ?? '';
    for (let i = parts.length - 1; i >= 0; i--) p = join(p, parts[i] as string);
    if (n.info && isDirAttr(n.info.buf, n.info.at)) n.path = p;
    return p;
  }

  exportState(): NodeTableState {
    const nodes: (readonly [string, string, number])[] = [];
    for (const n of this.byId.values()) nodes.push([String(n.id), `/${this.pathOf(n)}`, n.nlookup] as const);
    return { next: String(this.nextId), nodes };
  }

  /** Takes over the nodes of another process; their attributes are asked for again when needed. */
  importState(state: NodeTableState): void {
    const next = Number(state.next);
    if (!Number.isSafeInteger(next) || next <= FUSE_ROOT_ID) throw new Error(`handover: bad next node id ${state.next}`);
    this.nextId = Math.max(this.nextId, next);
    // Parents first: a path is created from the root down, with placeholder parents the kernel
    // does not hold (count 0) where the state has none.
    const sorted = [...state.nodes].sort((a, b) => a[1].length - b[1].length);
    for (const [idText, p, nlookup] of sorted) {
      const id = Number(idText);
      if (!Number.isSafeInteger(id) || id < FUSE_ROOT_ID || typeof p !== 'string' || !p.startsWith('/') || !Number.isSafeInteger(nlookup) || nlookup < 0) {
        throw new Error(`handover: malformed node ${JSON.stringify([idText, p, nlookup])}`);
      }
      if (id === FUSE_ROOT_ID) continue;
      const comps = p.slice(1).split('/');
      if (comps.some((c) => c === '' || c === '.' || c === '..')) throw new Error(`handover: bad node path ${JSON.stringify(p)}`);
      let parent = this.root;
      for (let i = 0; i < comps.length - 1; i++) {
        const c = comps[i] as string;
        let k = parent.kids?.get(c);
        if (!k) {
          k = { id: this.nextId++, parent, name: c, nlookup: 0, kids: undefined, info: undefined, path: undefined };
          (parent.kids ??= new Map()).set(c, k);
        }
        parent = k;
      }
      const name = comps[comps.length - 1] as string;
      const existing = parent.kids?.get(name);
      const n: Node = { id, parent, name, nlookup, kids: existing?.kids, info: undefined, path: undefined };
      if (existing) for (const k of existing.kids?.values() ?? []) (k as { parent: Node | undefined }).parent = n;
      (parent.kids ??= new Map()).set(name, n);
      this.byId.set(id, n);
    }
  }

  private detach(n: Node): void {
    if (this.byId.get(n.id) === n) this.byId.delete(n.id);
    if (n.parent?.kids?.get(n.name) === n) {
      n.parent.kids.delete(n.name);
      if (n.parent.kids.size === 0) n.parent.kids = undefined;
    }
    this.onDrop?.(n);
  }
}
