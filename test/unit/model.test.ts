import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mounts } from '../../src/snapshotter/mounts.js';
import { MAX_LABEL_BYTES, validateLabels } from '../../src/snapshotter/labels.js';
import { validateKey } from '../../src/snapshotter/snapshotter.js';
import { idOfDirName } from '../../src/snapshotter/paths.js';

test('an active snapshot without parents is a writable bind of its own directory', () => {
  assert.deepEqual(mounts({ kind: 'active', dir: '/r/1/fs', workDir: '/r/1/work', parentDirs: [] }),
    [{ type: 'bind', source: '/r/1/fs', options: ['rw', 'rbind'] }]);
});

test('a view of nothing is read-only; a view of one parent binds the parent read-only', () => {
  assert.deepEqual(mounts({ kind: 'view', dir: '/r/2/fs', workDir: '/r/2/work', parentDirs: [] })[0]?.options, ['ro', 'rbind']);
  assert.deepEqual(mounts({ kind: 'view', dir: '/r/2/fs', workDir: '/r/2/work', parentDirs: ['/r/1/fs'] }),
    [{ type: 'bind', source: '/r/1/fs', options: ['ro', 'rbind'] }]);
});

test('an active snapshot with parents is an overlay, closest parent first', () => {
  const [m] = mounts({ kind: 'active', dir: '/r/3/fs', workDir: '/r/3/work', parentDirs: ['/r/2/fs', '/r/1/fs'] });
  assert.equal(m?.type, 'overlay');
  assert.deepEqual(m?.options, ['index=off', 'workdir=/r/3/work', 'upperdir=/r/3/fs', 'lowerdir=/r/2/fs:/r/1/fs']);
});

test('a view of several parents is a read-only overlay: no upper directory', () => {
  const [m] = mounts({ kind: 'view', dir: '/r/3/fs', workDir: '/r/3/work', parentDirs: ['/r/2/fs', '/r/1/fs'] });
  assert.deepEqual(m?.options, ['index=off', 'lowerdir=/r/2/fs:/r/1/fs']);
});

test('labels: 4 KiB of key and value at most, and the message names the label and the snapshot', () => {
  assert.deepEqual(validateLabels({ a: 'x'.repeat(MAX_LABEL_BYTES - 1) }, 'k'), { a: 'x'.repeat(MAX_LABEL_BYTES - 1) });
  assert.throws(() => validateLabels({ big: 'x'.repeat(MAX_LABEL_BYTES) }, 'my/key'),
    (e: Error) => e.name === 'InvalidArgument' && e.message.includes('"big"') && e.message.includes('my/key'));
});

test('labels with empty values are dropped, as containerd does', () => {
  assert.deepEqual(validateLabels({ a: '', b: '1' }, 'k'), { b: '1' });
});

test('keys: opaque strings with slashes and spaces are fine; empty and NUL are not', () => {
  assert.equal(validateKey('default/3/extract-1 sha256:ab'), 'default/3/extract-1 sha256:ab');
  assert.throws(() => validateKey(''), /must not be empty/);
  assert.throws(() => validateKey('a\0b'), /NUL/);
});

test('only decimal ids name snapshot directories', () => {
  assert.equal(idOfDirName('12'), 12);
  for (const n of ['new-abc', '012', '-1', '1.5', '', 'rm-3']) assert.equal(idOfDirName(n), null, n);
});
