// The FUSE server's control contract: what it refuses before anything reaches the mounter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadRequest, LineSplitter, absolutePath, checkLayerDir, isBelow, parseRequest, pathList, scopeParam,
} from '../../src/fuse/server/wire.js';

const HEX = 'ab'.repeat(32);

test('requests must be one JSON object with an integer id and a known method', () => {
  assert.deepEqual(parseRequest('{"id":1,"method":"hello"}'), { id: 1, method: 'hello', params: {} });
  for (const bad of ['', 'nope', '[]', '{"id":"1","method":"hello"}', '{"id":1,"method":"rm"}', '{"id":1,"method":"mount","params":[]}']) {
    assert.throws(() => parseRequest(bad), BadRequest, bad);
  }
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
