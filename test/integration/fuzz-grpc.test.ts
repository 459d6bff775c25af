// Hostile gRPC input, the quick run: 1,200 random and mutated requests one at a time, then 300
// with eight in flight, against the real daemon (the long run is
// test/stress/fuzz-grpc.stress.test.ts, with the same tests). CVMFS_FUZZ_SEED repeats a run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FuzzBench, METHODS, SEED_ENV, summary, type FuzzPhase } from '../helpers/fuzz/suite.js';
import { seedFrom } from '../helpers/rng.js';

const LABEL = 'fuzz';
const TITLE = 'hostile gRPC input (quick run)';
const PHASES: readonly FuzzPhase[] = [
  { count: Number(process.env.CVMFS_FUZZ_COUNT ?? 1200), concurrency: 1 },
  { count: 300, concurrency: 8 },
];

describe(TITLE, () => {
  const seed = seedFrom(SEED_ENV);
  let bench: FuzzBench;

  before(async () => { bench = await FuzzBench.create(LABEL); });
  after(async () => { await bench?.teardown(); });

  test('the witness of the world notices a read, a change and a new file (so the checks below can fail)', () => {
    const w = bench.probeWitnesses();
    assert.ok(w.afterRead.some((l) => l.startsWith(`${w.canary}: read`)), `a read of ${w.canary} went unnoticed: ${w.afterRead.join('; ')}`);
    assert.ok(w.afterCreate.some((l) => l.includes('new-file: created')), `a new file in the store went unnoticed: ${w.afterCreate.join('; ')}`);
    assert.ok(w.afterRewrite.some((l) => l.startsWith(`${w.canary}: mtimeNs changed`)), `a rewrite of ${w.canary} went unnoticed: ${w.afterRewrite.join('; ')}`);
  });

  test('baseline of the world, taken while the daemon idles', () => {
    bench.baseline();
  });

  PHASES.forEach((phase, i) => {
    const phaseSeed = (seed + i) >>> 0;
    test(`${phase.count} fuzzed requests, ${phase.concurrency} at a time, each answered properly (seed ${phaseSeed}; ${SEED_ENV}=${seed} repeats the run)`, async (t) => {
      const r = await bench.runPhase(phase, phaseSeed, (line) => t.diagnostic(line));
      t.diagnostic(summary(r));
      assert.deepEqual(r.problems, [], `${r.problemCount} answers were not proper (${SEED_ENV}=${seed} repeats the run)`);
      // (A short phase may miss a rare method by chance; a long one cannot, in practice.)
      if (phase.count >= 1000) for (const m of METHODS) assert.ok((r.byMethod[m] ?? 0) > 0, `no ${m} request was sent`);
      assert.equal(r.sent, phase.count);
    });
  });

  test('the daemon is the same process and still serves', async () => {
    const { daemon } = bench;
    assert.equal(daemon.process.running, true, `the daemon exited: ${JSON.stringify(daemon.process.exitStatus)}\n${daemon.process.logTail()}`);
    assert.equal(daemon.pid, bench.pidAtStart);
    assert.equal(await bench.ordinaryCycle('fz/after/ok'), 'ACTIVE');
  });

  test('every snapshot kept is within containerd\'s rules, and remote only for a layer of the store', async () => {
    const { problems, served } = await bench.auditSnapshots();
    assert.deepEqual(problems, []);
    for (const d of served) assert.ok(bench.world.digests.present.includes(d as string), `served ${String(d)} from the store`);
  });

  test('after Cleanup the root holds the database and one directory per snapshot, nothing else', async () => {
    assert.deepEqual(await bench.cleanupAndAuditRoot(), []);
  });

  test('nothing outside the root and the store was created, changed or read, and the store is unchanged', () => {
    assert.deepEqual(bench.world.outside.changes(), []);
    assert.deepEqual(bench.world.storeWitness.changes(), []);
  });

  test('the daemon logged no error', () => {
    assert.deepEqual(bench.loggedErrors().slice(0, 5), []);
  });
});
