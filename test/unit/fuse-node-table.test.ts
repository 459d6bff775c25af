// The node table the kernel's node ids point into: counted references, forgetting, paths by
// walking up, and the wire form a handover passes to the next process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeTable } from '../../src/fuse/node-table.js';
import { NO_XATTRS, type EntryInfo } from '../../src/fuse/records.js';

function info(mode: number): EntryInfo {
  const buf = Buffer.alloc(88);
  buf.writeUInt32LE(mode, 60);
  return { buf, at: 0, whiteout: false, opaque: undefined, xattrs: NO_XATTRS };
}
const DIR = info(0o040755);
const FILE = info(0o100644);

test('one id per name while the kernel holds it, counted once per reply', () => {
  const t = new NodeTable(DIR);
  const usr = t.ref(t.root, 'usr', DIR);
  const again = t.ref(t.root, 'usr', DIR);
  assert.equal(again, usr);
  assert.equal(usr.nlookup, 2);
  assert.notEqual(usr.id, t.root.id);
  const bin = t.ref(usr, 'bin', DIR);
  const tool = t.ref(bin, 'tool', FILE);
  assert.equal(t.pathOf(tool), 'usr/bin/tool');
  assert.equal(t.pathOf(t.root), '');
  assert.equal(t.get(tool.id), tool);
});

test('FORGET drops a node once its count is spent; its id is never handed out again', () => {
  const t = new NodeTable(DIR);
  const a = t.ref(t.root, 'a', FILE);
  t.ref(t.root, 'a', FILE);
  const dropped: number[] = [];
  t.onDrop = (n) => dropped.push(n.id);
  t.unrefId(a.id, 1);
  assert.equal(t.get(a.id), a, 'one reference left');
  t.unrefId(a.id, 1);
  assert.equal(t.get(a.id), undefined);
  assert.deepEqual(dropped, [a.id]);
  const b = t.ref(t.root, 'a', FILE);
  assert.ok(b.id > a.id, 'a new id for the same name');
  t.unrefId(t.root.id, 100);
  assert.equal(t.get(t.root.id), t.root, 'the root is never forgotten');
});

test('the table survives export and import with the kernel\'s ids, parents made where missing', () => {
  const t = new NodeTable(DIR);
  const usr = t.ref(t.root, 'usr', DIR);
  const lib = t.ref(usr, 'lib', DIR);
  const so = t.ref(lib, 'libc.so.6', FILE);
  const odd = t.ref(t.root, '\xff name', FILE);
  t.unrefId(lib.id, 1); // the kernel forgot lib, but holds libc.so.6 below it
  const state = t.exportState();
  const u = new NodeTable();
  u.importState(JSON.parse(JSON.stringify(state)) as typeof state);
  assert.equal(u.pathOf(u.get(so.id)!), 'usr/lib/libc.so.6');
  assert.equal(u.get(so.id)!.nlookup, 1);
  assert.equal(u.pathOf(u.get(odd.id)!), '\xff name');
  assert.equal(u.get(usr.id)!.nlookup, 1);
  const next = u.ref(u.root, 'new', FILE);
  assert.ok(next.id > so.id, 'ids go on from the predecessor\'s');
});

test('a malformed handover state is refused', () => {
  const u = new NodeTable();
  assert.throws(() => u.importState({ next: 'x', nodes: [] }), /next node id/);
  assert.throws(() => u.importState({ next: '10', nodes: [['5', 'relative', 1]] }), /malformed node/);
  assert.throws(() => u.importState({ next: '10', nodes: [['5', '/a/../b', 1]] }), /bad node path/);
});
