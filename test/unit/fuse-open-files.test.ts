// The open-file table of one layer: when a passthrough backing id and a served descriptor may
// be closed, and what a handover passes on. The kernel looks a backing id up only when the task
// that opened the file resumes after our OPEN reply, so an id closed while the kernel still holds
// a handle can fail an open() that the server already answered.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { OpenFiles, type FileBudget } from '../../src/fuse/open-files.js';
import { NodeTable, type Node } from '../../src/fuse/node-table.js';
import { NO_XATTRS, type EntryInfo } from '../../src/fuse/records.js';
import type { StoreAccess } from '../../src/fuse/store-access.js';
import { silentLogger } from '../../src/log.js';

function info(mode: number): EntryInfo {
  const buf = Buffer.alloc(88);
  buf.writeUInt32LE(mode, 60);
  return { buf, at: 0, whiteout: false, opaque: undefined, xattrs: NO_XATTRS };
}
const DIR = info(0o040755);
const FILE = info(0o100644);

/** Every backing id closed, and every store descriptor closed, in order. */
const closedIds: number[] = [];
const closedFds: number[] = [];
const backingClose = (_devFd: number, id: number): number => { closedIds.push(id); return 0; };
afterEach(() => { closedIds.length = 0; closedFds.length = 0; });

const store = { close: (fd: number) => { closedFds.push(fd); } } as unknown as StoreAccess;

function table(max = 100): { files: OpenFiles; nodes: NodeTable; budget: FileBudget; file: (name: string) => Node } {
  const budget: FileBudget = { open: 0, max };
  const nodes = new NodeTable(DIR);
  return { files: new OpenFiles(-1, store, budget, silentLogger(), backingClose), nodes, budget, file: (name) => nodes.ref(nodes.root, name, FILE) };
}

test('a passthrough file dropped from the table keeps its backing id until the kernel releases its last handle', () => {
  const { files, file, budget } = table();
  const n = file('a');
  const f = files.add(n, 7, -1);
  const h1 = files.newHandle(f);
  const h2 = files.newHandle(f);
  files.drop(n);
  assert.deepEqual(closedIds, [], 'closed while the kernel holds handles on it');
  assert.equal(budget.open, 0, 'a dropped file no longer counts against the budget');
  files.release(h1);
  assert.deepEqual(closedIds, []);
  files.release(h2);
  assert.deepEqual(closedIds, [7], 'closed once, when the last handle went');
});

test('eviction by the budget follows the same rule: an id in use outlives its place in the table', () => {
  const { files, file } = table(1);
  const a = files.add(file('a'), 11, -1);
  const h = files.newHandle(a);
  files.add(file('b'), 12, -1);
  assert.deepEqual(closedIds, [], 'the evicted file still has a handle');
  files.release(h);
  assert.deepEqual(closedIds, [11]);
});

test('a served descriptor waits for its handles and its reads; the connection ending closes everything', () => {
  const { files, file } = table();
  const n = file('s');
  const f = files.add(n, -1, 40);
  const h = files.newHandle(f);
  files.beginRead(f);
  files.drop(n);
  files.release(h);
  assert.deepEqual(closedFds, [], 'closed under a read in flight');
  files.endRead(f);
  assert.deepEqual(closedFds, [40]);

  const p = files.add(file('p'), 21, -1);
  files.newHandle(p);
  files.closeAll();
  assert.deepEqual(closedIds, [21], 'a dead connection keeps nothing');
});

test('handover: the ids and handles pass to the successor unclosed, which closes each when the kernel is done with it', () => {
  const old = table();
  const kept = old.file('kept');
  const busy = old.file('busy');
  const k = old.files.add(kept, 31, -1);
  const b = old.files.add(busy, 32, -1);
  const hk = old.files.newHandle(k);
  const hb = old.files.newHandle(b);
  old.files.drop(busy);
  old.files.add(old.file('served'), -1, 50);
  const state = old.files.exportPassthrough();
  assert.deepEqual(closedIds, [], 'the predecessor closed ids the kernel may still look up');
  assert.deepEqual(new Set(state.files.map((e) => e[1])), new Set([31, 32]), 'served descriptors are not passed on');

  // The successor's node table as a handover builds it.
  const next = table();
  next.nodes.importState(old.nodes.exportState());
  const bad = next.files.adoptPassthrough(JSON.parse(JSON.stringify(state)) as typeof state, (id) => next.nodes.get(id));
  assert.equal(bad, 0);
  const again = next.nodes.get(kept.id) as Node;
  assert.equal(next.files.get(again)?.backingId, 31, 'the kept file is kept again, with its id');
  assert.equal(next.budget.open, 2, 'both adopted files are kept (the dropped one is kept again for its node)');
  const fresh = next.files.newHandle(next.files.get(again) as ReturnType<OpenFiles['get']> & object);
  assert.ok(fresh > Math.max(hk, hb), 'new handles do not collide with the adopted ones');
  next.files.release(hb);
  next.files.release(hk);
  next.files.release(fresh);
  assert.deepEqual(closedIds, [], 'kept files keep their ids after their handles go');
  next.files.closeAll();
  assert.deepEqual(new Set(closedIds), new Set([31, 32]));
});

test('handover: malformed entries are counted and left alone; a handle whose node is gone closes its id at release', () => {
  const { files } = table();
  const bad = files.adoptPassthrough({
    nextFh: 9,
    files: [[999, 41, [3]], [2, -1, [4]], [2, 42, ['x' as unknown as number]], 'junk' as unknown as [number, number, number[]]],
  }, () => undefined);
  assert.equal(bad, 3);
  assert.deepEqual(closedIds, []);
  files.release(3);
  assert.deepEqual(closedIds, [41]);
});
