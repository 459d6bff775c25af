import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetadataCache, absentAnswer, valueAnswer } from '../../src/cache/index.js';

interface V { n: number }

test('a miss, then a hit: both counted', () => {
  const c = new MetadataCache<V>({ maxEntries: 10 });
  assert.equal(c.get('a'), undefined);
  c.setValue('a', { n: 1 });
  assert.deepEqual(c.get('a'), valueAnswer({ n: 1 }));
  const s = c.stats();
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 1);
  assert.equal(s.negativeHits, 0);
  assert.equal(s.size, 1);
});

test('a negative answer is held apart from a value and keeps its reason', () => {
  const c = new MetadataCache<V>({ maxEntries: 10 });
  c.setAbsent('x', 'ENODATA');
  const a = c.get('x');
  assert.deepEqual(a, absentAnswer('ENODATA'));
  assert.equal(a?.kind, 'absent');
  assert.equal(c.stats().negativeHits, 1);
  assert.equal(c.stats().hits, 1);
});

test('the bound holds: the least recently used entry goes first and is counted as an eviction', () => {
  const c = new MetadataCache<V>({ maxEntries: 2 });
  c.setValue('a', { n: 1 });
  c.setValue('b', { n: 2 });
  c.get('a'); // a is now more recent than b
  c.setAbsent('c', 'ENOENT');
  assert.equal(c.peek('b'), undefined);
  assert.notEqual(c.peek('a'), undefined);
  assert.notEqual(c.peek('c'), undefined);
  assert.equal(c.stats().size, 2);
  assert.equal(c.stats().evictions, 1);
});

test('peek neither counts nor refreshes', () => {
  const c = new MetadataCache<V>({ maxEntries: 2 });
  c.setValue('a', { n: 1 });
  c.setValue('b', { n: 2 });
  c.peek('a');
  c.setValue('c', { n: 3 });
  assert.equal(c.peek('a'), undefined, 'a was the oldest despite the peek');
  assert.equal(c.stats().hits + c.stats().misses, 0);
});

test('resolve loads once for concurrent callers and remembers the answer, negative ones too', async () => {
  const c = new MetadataCache<V>({ maxEntries: 10 });
  let loads = 0;
  const load = async () => {
    loads++;
    await new Promise((r) => setTimeout(r, 5));
    return absentAnswer<V>('ENOENT');
  };
  const answers = await Promise.all([c.resolve('k', load), c.resolve('k', load), c.resolve('k', load)]);
  assert.equal(loads, 1);
  for (const a of answers) assert.deepEqual(a, absentAnswer('ENOENT'));
  assert.deepEqual(await c.resolve('k', load), absentAnswer('ENOENT'));
  assert.equal(loads, 1);
  assert.equal(c.stats().misses, 3);
  assert.equal(c.stats().hits, 1);
});

test('a load that throws is not remembered: a transient EIO is asked again', async () => {
  const c = new MetadataCache<V>({ maxEntries: 10 });
  let calls = 0;
  const flaky = async () => {
    calls++;
    if (calls === 1) throw Object.assign(new Error('io'), { code: 'EIO' });
    return valueAnswer<V>({ n: 7 });
  };
  await assert.rejects(c.resolve('k', flaky), /io/);
  assert.deepEqual(await c.resolve('k', flaky), valueAnswer({ n: 7 }));
  assert.equal(calls, 2);
});

test('deletePrefix drops one namespace and leaves the others', () => {
  const c = new MetadataCache<V>({ maxEntries: 10 });
  c.setValue('1\0s:/a', { n: 1 });
  c.setValue('1\0s:/b', { n: 1 });
  c.setValue('12\0s:/a', { n: 1 });
  assert.equal(c.deletePrefix('1\0'), 2);
  assert.equal(c.stats().size, 1);
});

test('the bound must be a positive integer', () => {
  assert.throws(() => new MetadataCache<V>({ maxEntries: 0 }), RangeError);
  assert.throws(() => new MetadataCache<V>({ maxEntries: 1.5 }), RangeError);
});
