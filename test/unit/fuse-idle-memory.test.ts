// When the FUSE server gives memory back: only after a quiet spell (no request answered, no
// store call in flight) and only when its RSS grew since the last reduction settled, once per
// such growth. The clock, the counters and the reduction are the test's own; the reduction
// itself is exercised by test/integration/fuse-server-idle-memory.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.js';
import { IdleMemory } from '../../src/fuse/server/idle-memory.js';

const MiB = 1024 * 1024;

function harness(): { m: IdleMemory; s: { now: number; answered: number; busy: boolean; rss: number; reduced: number } } {
  const s = { now: 0, answered: 0, busy: false, rss: 50 * MiB, reduced: 0 };
  const m = new IdleMemory({
    answered: () => s.answered, busy: () => s.busy, rss: () => s.rss,
    reduce: () => { s.reduced++; s.rss = 52 * MiB; },
    log: silentLogger(), idleMs: 5000, growthBytes: 4 * MiB, now: () => s.now,
  });
  return { m, s };
}

/** Ticks once a second for ms, with requests answered on each tick while busy() says so. */
function run(m: IdleMemory, s: { now: number; answered: number }, ms: number, answering = false): number {
  let ran = 0;
  for (let t = 0; t < ms; t += 1000) {
    s.now += 1000;
    if (answering) s.answered++;
    if (m.tick()) ran++;
  }
  return ran;
}

test('no reduction while requests are answered, however big the server grew', () => {
  const { m, s } = harness();
  s.rss = 90 * MiB;
  assert.equal(run(m, s, 60_000, true), 0);
  assert.equal(s.reduced, 0);
});

test('no reduction while a store call is in flight (a walk of a layer answered no request yet)', () => {
  const { m, s } = harness();
  s.rss = 90 * MiB;
  s.busy = true;
  assert.equal(run(m, s, 60_000), 0);
});

test('a quiet spell after growth: one reduction, after the idle time, and no second one without new growth', () => {
  const { m, s } = harness();
  run(m, s, 3000, true);
  s.rss = 70 * MiB;
  assert.equal(run(m, s, 4000), 0, 'not before 5 s of quiet');
  assert.equal(run(m, s, 2000), 1);
  assert.equal(run(m, s, 60_000), 0, 'the RSS is where the reduction left it');
  // Growth under the threshold since that reduction settled: nothing to do.
  s.rss = 54 * MiB;
  run(m, s, 2000, true);
  assert.equal(run(m, s, 30_000), 0);
  // Grown again: once more.
  s.rss = 60 * MiB;
  run(m, s, 2000, true);
  assert.equal(run(m, s, 30_000), 1);
  assert.equal(s.reduced, 2);
  assert.equal(m.reductions, 2);
});

test('a server that is idle from its start, at the size it started with, is left alone', () => {
  const { m, s } = harness();
  assert.equal(run(m, s, 120_000), 0);
});
