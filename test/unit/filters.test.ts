import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFilters, parseFilter } from '../../src/snapshotter/filters.js';
import type { Info } from '../../src/snapshotter/types.js';

const info = (name: string, kind: Info['kind'], parent: string, labels: Record<string, string> = {}): Info =>
  ({ name, kind, parent, labels, createdUs: 0, updatedUs: 0 });

const snaps = [
  info('p', 'committed', '', { 'containerd.io/gc.root': 'check-walk', l: '1' }),
  info('a-wl', 'active', 'p', { 'containerd.io/gc.root': 'check-walk', l: '2' }),
  info('v', 'view', 'p', { 'containerd.io/gc.root': 'check-walk' }),
  info('sha256:125f', 'committed', '', { 'containerd.io/snapshot.ref': 'sha256:125f', 'a.b': 'dotted' }),
];
const names = (filters: string[]) => snaps.filter(compileFilters(filters)).map((s) => s.name);

test('label equality with a quoted key, and a bare value holding a colon', () => {
  assert.deepEqual(names(['labels."containerd.io/snapshot.ref"==sha256:125f,parent==""']), ['sha256:125f']);
});

test('kind, name and parent selectors', () => {
  assert.deepEqual(names(['kind==active']), ['a-wl']);
  assert.deepEqual(names(['kind==committed,labels."containerd.io/gc.root"==check-walk']), ['p']);
  assert.deepEqual(names(['parent==p']), ['a-wl', 'v']);
  assert.deepEqual(names(['parent!=""']), ['a-wl', 'v']);
});

test('presence of a label, and several filter strings mean OR', () => {
  assert.deepEqual(names(['labels.l']), ['p', 'a-wl']);
  assert.deepEqual(names(['labels.l==2']), ['a-wl']);
  assert.deepEqual(names(['name==p', 'name==v']), ['p', 'v']);
  assert.deepEqual(names(['name==a-wl,labels.l']), ['a-wl']);
});

test('an unquoted label key with dots is joined back together', () => {
  assert.deepEqual(names(['labels.a.b==dotted']), ['sha256:125f']);
});

test('!= does not match a missing label, ~= is a regular expression', () => {
  assert.deepEqual(names(['labels.l!=1']), ['a-wl']);
  assert.deepEqual(names(['name~=^a-']), ['a-wl']);
});

test('no filters, or empty strings, match everything', () => {
  assert.equal(names([]).length, snaps.length);
  assert.equal(names(['']).length, snaps.length);
});

test('malformed filters are InvalidArgument errors that quote the filter', () => {
  for (const bad of ['labels."unterminated==x', 'name==', 'name==x,', '==x', 'name~=(']) {
    assert.throws(() => parseFilter(bad), (e: Error) => e.name === 'InvalidArgument' && e.message.includes(JSON.stringify(bad)), bad);
  }
});

test('~= is compiled for the linear-time engine, so patterns that backtrack exponentially answer at once', () => {
  // Checked first: with a backtracking engine the loop below would block this process for hours.
  const [sel] = parseFilter('name~=(a+)+$');
  assert.ok(sel?.regex?.flags.includes('l'), 'compiled for the linear-time engine');
  const long = [info(`fz/${'a'.repeat(40)}!`, 'active', '')];
  for (const evil of ['name~=(a+)+$', 'name~=^(a|a)*$', 'name~=(.*a){16}$', 'name~=(a|aa)+$', 'name~=^([a-z/]+)*$']) {
    assert.deepEqual(long.filter(compileFilters([evil])).map((s) => s.name), [], evil);
  }
});

test('~= refuses what cannot run in linear time with InvalidArgument: backreferences, lookaround, counted repetition over 16', () => {
  for (const bad of ['name~=(a)\\1', 'name~=(?<=a)b', 'name~=a{100000}', 'name~=(.*a){17}', 'name~=[0-9a-f]{64}']) {
    assert.throws(() => compileFilters([bad]), (e: Error) => e.name === 'InvalidArgument' && /linear time/.test(e.message), bad);
  }
  assert.deepEqual(names(['name~=^(v|p)$']), ['p', 'v']);
});
