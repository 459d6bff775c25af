import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { classifyName, translateListing, whiteoutStat } from '../../src/fuse/whiteout.js';
import type { LayerAttr } from '../../src/fuse/stat.js';

test('names: plain, whiteout, opaque marker, AUFS metadata', () => {
  assert.deepEqual(classifyName('etc'), { kind: 'plain' });
  assert.deepEqual(classifyName('.bashrc'), { kind: 'plain' });
  assert.deepEqual(classifyName('.wh.passwd'), { kind: 'whiteout', target: 'passwd' });
  assert.deepEqual(classifyName('.wh..hidden'), { kind: 'whiteout', target: '.hidden' });
  assert.deepEqual(classifyName('.wh..wh..opq'), { kind: 'opaque-marker' });
  assert.deepEqual(classifyName('.wh..wh.plnk'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh.'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh..'), { kind: 'hidden' });
  assert.deepEqual(classifyName('.wh...'), { kind: 'hidden' });
});

test('a listing shows whiteouts under their own names and hides every .wh. entry', () => {
  const t = translateListing(['a', '.wh.b', 'c', '.wh..wh..opq', '.wh..wh.plnk']);
  assert.deepEqual(t.entries.map((e) => e.name), ['a', 'c', 'b']);
  assert.deepEqual(t.entries.find((e) => e.name === 'b'), { name: 'b', source: '.wh.b', whiteout: true });
  assert.equal(t.opaqueMarker, true);
  assert.ok(t.entries.every((e) => !e.name.startsWith('.wh.')));
});

test('a real entry wins over a whiteout of the same name in the same layer', () => {
  const t = translateListing(['.wh.x', 'x']);
  assert.deepEqual(t.entries, [{ name: 'x', source: 'x', whiteout: false }]);
  assert.equal(t.opaqueMarker, false);
});

test('overlayfs-style entries are plain names and pass through', () => {
  const t = translateListing(['gone-already-a-chardev', 'dir']);
  assert.deepEqual(t.entries.map((e) => e.whiteout), [false, false]);
});

test('the whiteout is a 0/0 character device with no permission bits, owned like its marker', () => {
  const marker: LayerAttr = { mode: constants.S_IFREG | 0o644, uid: 7, gid: 8, size: 0, nlink: 1, ino: 42n, rdev: 0, blksize: 4096, blocks: 0, atimeNs: 1n, mtimeNs: 2n, ctimeNs: 3n };
  const w = whiteoutStat(marker);
  assert.equal(w.mode, constants.S_IFCHR);
  assert.equal(w.rdev, 0);
  assert.equal(w.uid, 7);
  assert.equal(w.ino, 42n);
  assert.equal(w.mtimeNs, 2n);
});
