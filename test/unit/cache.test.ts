import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetadataCache, absentAnswer, valueAnswer } from '../../src/cache/index.js';

interface V { n: number }

test('a miss, then a hit: both counted', () => {
  const c = new MetadataCache<V>({ maxBytes: 1 << 20 });
  assert.equal(c.get('a'), undefined);
  c.setValue('a', { n: 1 }, 8);
  assert.deepEqual(c.get('a'), valueAnswer({ n: 1 }));
  const s = c.stats();
  assert.equal(s.hits, 1);
  assert.equal(s.misses, 1);
  assert.equal(s.negativeHits, 0);
  assert.equal(s.size, 1);
});

test('a negative answer is held apart from a value and keeps its reason', () => {
  const c = new MetadataCache<V>({ maxBytes: 1 << 20 });
  c.setAbsent('x', 'ENODATA');
  const a = c.get('x');
  assert.deepEqual(a, absentAnswer('ENODATA'));
  assert.equal(c.stats().negativeHits, 1);
  assert.equal(c.stats().hits, 1);
});

test('the bound is in bytes: one big value pushes out many small ones, least recently used first', () => {
  const c = new MetadataCache<V>({ maxBytes: 16 * 1024 });
  for (let i = 0; i < 40; i++) c.setValue(`k${i}`, { n: i }, 100);
  assert.equal(c.stats().size, 40, '40 small entries fit');
  c.get('k0'); // k0 is now the most recently used
  c.setValue('big', { n: -1 }, 10 * 1024);
  const s = c.stats();
  assert.ok(s.bytes <= s.maxBytes, `${s.bytes} bytes held, bound ${s.maxBytes}`);
  assert.ok(s.evictions > 0);
  assert.notEqual(c.peek('big'), undefined);
  assert.notEqual(c.peek('k0'), undefined, 'the recently used entry stayed');
  assert.equal(c.peek('k1'), undefined, 'the oldest went first');
});

test('keys count: long keys fill the budget as surely as long values', () => {
  const c = new MetadataCache<V>({ maxBytes: 64 * 1024 });
  const deep = 'd/'.repeat(1000);
  for (let i = 0; i < 1000; i++) c.setAbsent(`${deep}${i}`, 'ENOENT');
  const s = c.stats();
  assert.ok(s.bytes <= s.maxBytes);
  assert.ok(s.size < 40, `${s.size} entries of 2 KB keys in 64 KB`);
});

test('a value bigger than the whole budget is not kept, and does not empty the cache', () => {
  const c = new MetadataCache<V>({ maxBytes: 8 * 1024 });
  c.setValue('small', { n: 1 }, 10);
  c.setValue('huge', { n: 2 }, 1 << 20);
  assert.equal(c.peek('huge'), undefined);
  assert.notEqual(c.peek('small'), undefined);
});

test('an extra bound on entries holds too', () => {
  const c = new MetadataCache<V>({ maxBytes: 1 << 20, maxEntries: 3 });
  for (let i = 0; i < 10; i++) c.setAbsent(`n${i}`, 'ENOENT');
  assert.equal(c.stats().size, 3);
  assert.equal(c.stats().maxEntries, 3);
});

test('peek neither counts nor refreshes', () => {
  const c = new MetadataCache<V>({ maxBytes: 4096, maxEntries: 2 });
  c.setValue('a', { n: 1 }, 1);
  c.setValue('b', { n: 2 }, 1);
  c.peek('a');
  c.setValue('c', { n: 3 }, 1);
  assert.equal(c.peek('a'), undefined, 'a was the oldest despite the peek');
  assert.equal(c.stats().hits + c.stats().misses, 0);
});

test('the bounds must be sane', () => {
  assert.throws(() => new MetadataCache<V>({ maxBytes: 0 }), RangeError);
  assert.throws(() => new MetadataCache<V>({ maxBytes: 1.5e6 + 0.5 }), RangeError);
  assert.throws(() => new MetadataCache<V>({ maxBytes: 1 << 20, maxEntries: 0 }), RangeError);
});

test('dropping a namespace frees its keys after the drop delay, and only its keys', async () => {
  const c = new MetadataCache<V>({ maxBytes: 1 << 20, dropDelayMs: 20 });
  for (let i = 0; i < 100; i++) {
    c.setValue(`1\0d/dir${i}`, { n: i }, 100);
    c.setAbsent(`2\0e/miss${i}`, 'ENOENT');
    c.setValue(`12\0d/dir${i}`, { n: i }, 100);
  }
  const before = c.stats().bytes;
  c.dropNamespace('1\0');
  c.dropNamespace('2\0');
  assert.equal(c.stats().size, 300, 'nothing goes before the delay');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const s = c.stats();
  assert.equal(s.size, 100, "only namespace 12's keys are left");
  assert.ok(s.bytes < before / 2, `${s.bytes} bytes held after the drop, ${before} before`);
  assert.equal(s.evictions, 0, 'a drop is not an eviction');
  assert.deepEqual(c.peek('12\0d/dir7'), valueAnswer({ n: 7 }));
  assert.equal(c.peek('1\0d/dir7'), undefined);
  assert.throws(() => c.dropNamespace('1'), RangeError);
  assert.throws(() => c.dropNamespace('1\0x\0'), RangeError);
});
