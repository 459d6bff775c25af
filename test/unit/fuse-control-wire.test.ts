// The FUSE server's control contract: what it refuses before anything reaches the mounter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotterError } from '../../src/errors.js';
import {
  BadRequest, LineSplitter, METHODS, RULES, absolutePath, checkLayerDir, encodeLine, isBelow, parseEnvelope, pathList, scopeParam,
} from '../../src/fuse/server/wire.js';

const HEX = 'ab'.repeat(32);

test('requests must be one JSON object with an integer id and a known method', () => {
  assert.deepEqual(parseEnvelope('{"id":1,"method":"hello"}'), { id: 1, method: 'hello', params: {} });
  for (const bad of ['', 'nope', '[]', '{"id":"1","method":"hello"}', '{"id":1,"method":"rm"}', '{"id":1,"method":"mount","params":[]}',
    '{"id":1,"method":"constructor"}', '{"id":1,"method":"__proto__"}', '{"id":1,"method":"toString"}']) {
    assert.throws(() => parseEnvelope(bad), BadRequest, bad);
  }
  assert.deepEqual([...METHODS].sort(), ['handover', 'handoverTo', 'hello', 'metrics', 'mount', 'reconcile', 'shutdown', 'unmount']);
});

test('the wire form is the one older servers speak: a line of {id, method, params}', () => {
  // A daemon upgraded in place talks to the server that outlived the old one; these bytes must not change.
  assert.equal(encodeLine({ id: 3, method: 'mount', params: { layerDir: '/s/l', mountpoint: '/r/m', digest: 'sha256:x' } }),
    '{"id":3,"method":"mount","params":{"layerDir":"/s/l","mountpoint":"/r/m","digest":"sha256:x"}}\n');
  assert.equal(encodeLine({ id: 4, method: 'hello', params: { scope: { root: '/r', store: '/s' } } }), '{"id":4,"method":"hello","params":{"scope":{"root":"/r","store":"/s"}}}\n');
});

test('each request kind checks its parameters against the server\'s scope', () => {
  const scope = { root: '/r', store: '/s' };
  const layerDir = `/s/.layers/ab/${HEX}/layerfs`;
  // Without a scope nothing is mounted, unmounted or reconciled: FailedPrecondition, not a guess.
  for (const m of ['mount', 'unmount', 'reconcile'] as const) {
    assert.throws(() => RULES[m].check({ layerDir, mountpoint: '/r/m', prefix: '/r', keep: [] }, undefined),
      (e: unknown) => e instanceof SnapshotterError && e.kind === 'FailedPrecondition' && /no scope yet/.test(e.message), m);
  }
  assert.deepEqual(RULES.mount.check({ layerDir, mountpoint: '/r/snapshots/1/fs' }, scope), { layerDir, mountpoint: '/r/snapshots/1/fs', digest: `sha256:${HEX}` });
  assert.deepEqual(RULES.mount.onDisk?.({ layerDir, mountpoint: '/r/m', digest: `sha256:${HEX}` }), [{ key: 'mountpoint', path: '/r/m', orRoot: false }]);
  assert.throws(() => RULES.mount.check({ layerDir, mountpoint: '/elsewhere/m' }, scope), /not below the daemon's root \/r/);
  assert.throws(() => RULES.mount.check({ layerDir, mountpoint: '/r' }, scope), BadRequest, 'the root itself is no mountpoint');
  assert.throws(() => RULES.mount.check({ layerDir: `/other/.layers/ab/${HEX}/layerfs`, mountpoint: '/r/m' }, scope), /not a layer of the store/);
  assert.throws(() => RULES.mount.check({ layerDir, mountpoint: '/r/m', digest: `sha256:${'cd'.repeat(32)}` }, scope), /does not match/);
  assert.deepEqual(RULES.unmount.check({ mountpoint: '/r/m' }, scope), { mountpoint: '/r/m' });
  assert.throws(() => RULES.unmount.check({ mountpoint: '/etc' }, scope), BadRequest);
  assert.deepEqual(RULES.reconcile.check({ prefix: '/r', keep: ['/r/a'] }, scope), { prefix: '/r', keep: ['/r/a'] });
  assert.equal(RULES.reconcile.onDisk?.({ prefix: '/r', keep: [] })[0]?.orRoot, true, 'a reconcile may name the root itself');
  assert.throws(() => RULES.reconcile.check({ prefix: '/', keep: [] }, scope), /not the daemon's root/);
  assert.throws(() => RULES.reconcile.check({ prefix: '/r', keep: ['/x'] }, scope), /not below \/r/);
  assert.deepEqual(RULES.hello.check({}, undefined), {});
  assert.deepEqual(RULES.hello.check({ scope }, undefined), { scope });
  assert.throws(() => RULES.hello.check({ scope: { root: 'r' } }, undefined), BadRequest);
  // Only hello and reconcile answer with the whole mount list.
  assert.deepEqual(METHODS.filter((m) => RULES[m].withMounts).sort(), ['hello', 'reconcile']);
});

test('paths must be absolute, in normal form, without NUL, and of bounded length', () => {
  assert.equal(absolutePath({ p: '/a/b' }, 'p'), '/a/b');
  for (const bad of ['a/b', '/a/../b', '/a//b', '/a/./b', '/a/', '/a\0b', 7, '/' + 'x'.repeat(5000)]) {
    assert.throws(() => absolutePath({ p: bad }, 'p'), BadRequest, String(bad));
  }
  assert.throws(() => pathList({ k: ['/a', 'b'] }, 'k'), BadRequest);
  assert.deepEqual(pathList({ k: ['/a', '/b'] }, 'k'), ['/a', '/b']);
});

test('a layer directory must be a layer of the store, in DUCC\'s layout, matching the digest if given', () => {
  const good = `/cvmfs/s/.layers/ab/${HEX}/layerfs`;
  assert.equal(checkLayerDir(good, '/cvmfs/s', undefined), `sha256:${HEX}`);
  assert.equal(checkLayerDir(good, '/cvmfs/s', `sha256:${HEX}`), `sha256:${HEX}`);
  assert.throws(() => checkLayerDir(good, '/cvmfs/s', `sha256:${'cd'.repeat(32)}`), /does not match/);
  for (const bad of [
    `/cvmfs/other/.layers/ab/${HEX}/layerfs`, `/cvmfs/s/.layers/cd/${HEX}/layerfs`, `/cvmfs/s/.layers/ab/${HEX}`,
    `/cvmfs/s/.layers/ab/${HEX}/layerfs/etc`, `/cvmfs/s/.layers/AB/${HEX.toUpperCase()}/layerfs`, '/etc', '/cvmfs/s',
  ]) assert.throws(() => checkLayerDir(bad, '/cvmfs/s', undefined), BadRequest, bad);
});

test('below means strictly below', () => {
  assert.equal(isBelow('/r/a', '/r'), true);
  assert.equal(isBelow('/r', '/r'), false);
  assert.equal(isBelow('/rr/a', '/r'), false);
  assert.equal(isBelow('/x', '/'), true);
});

test('a scope is two absolute paths', () => {
  assert.deepEqual(scopeParam({ scope: { root: '/r', store: '/s' } }), { root: '/r', store: '/s' });
  assert.equal(scopeParam({}), undefined);
  assert.throws(() => scopeParam({ scope: { root: 'r', store: '/s' } }), BadRequest);
  assert.throws(() => scopeParam({ scope: 'x' }), BadRequest);
});

test('lines are split as they come, and one longer than the bound is refused', () => {
  const s = new LineSplitter(10);
  assert.deepEqual(s.push('ab'), []);
  assert.deepEqual(s.push('c\nde\n\nf'), ['abc', 'de']);
  assert.throws(() => s.push('x'.repeat(20)), BadRequest);
  assert.deepEqual(s.push('g\n'), ['g'], 'the splitter starts over after a refusal');
});
