// The fuzz suite against a real daemon, shared by the quick run in `npm test` and the long one
// in `npm run test:stress`: the same checks, different numbers of requests.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SnapshotsClient } from '../../../src/server/client.js';
import { defaultDaemonConfig, parseJsonLines, startDaemon, type Daemon } from '../daemon.js';
import { Scope } from '../scope.js';
import { METHODS } from './raw-client.js';
import { seedFrom } from '../rng.js';
import { auditRoot, auditSnapshots, listAll, runFuzz, type FuzzReport } from './run.js';
import { makeWorld, type FuzzWorld } from './world.js';

export interface FuzzPhase {
  /** Requests in this phase. */
  count: number;
  /** In flight at once; only 1 is exactly repeatable. */
  concurrency: number;
}

export const SEED_ENV = 'CVMFS_FUZZ_SEED';

function summary(r: FuzzReport): string {
  const fmt = (t: Record<string, number>): string => Object.entries(t).sort().map(([k, v]) => `${k} ${v}`).join(', ');
  return `seed ${r.seed}: ${r.sent} requests in ${(r.elapsedMs / 1000).toFixed(1)} s\n  by kind: ${fmt(r.byHow)}\n  by method: ${fmt(r.byMethod)}\n  by code: ${fmt(r.byCode)}`;
}

export function fuzzSuite(label: string, phases: readonly FuzzPhase[]): void {
  const seed = seedFrom(SEED_ENV);
  let scope: Scope;
  let world: FuzzWorld;
  let daemon: Daemon;
  let pid = 0;

  before(async () => {
    scope = await Scope.create(label);
    world = await makeWorld(scope);
    daemon = await startDaemon(scope, { root: world.root, configToml: defaultDaemonConfig(world.store), logLevel: 'info' });
    pid = daemon.pid;
  });
  after(async () => { await scope?.teardown(); });

  test('the witness of the world notices a read, a change and a new file (so the checks below can fail)', () => {
    world.outside.record();
    world.storeWitness.record();
    const canary = world.sentinels[0] as string;
    readFileSync(canary);
    const read = world.outside.changes();
    assert.ok(read.some((l) => l.startsWith(`${canary}: read`)), `a read of ${canary} went unnoticed: ${read.join('; ')}`);
    writeFileSync(join(world.store, 'new-file'), 'x');
    assert.ok(world.storeWitness.changes().some((l) => l.includes('new-file: created')));
    writeFileSync(canary, readFileSync(canary));
    assert.ok(world.outside.changes().some((l) => l.startsWith(`${canary}: mtimeNs changed`)));
  });

  test('baseline of the world, taken while the daemon idles', () => {
    world.outside.record();
    world.storeWitness.record();
  });

  phases.forEach((phase, i) => {
    const phaseSeed = (seed + i) >>> 0;
    test(`${phase.count} fuzzed requests, ${phase.concurrency} at a time (seed ${phaseSeed}; ${SEED_ENV}=${seed} repeats the run)`, async (t) => {
      const r = await runFuzz({
        socket: daemon.socket, root: world.root, seed: phaseSeed, count: phase.count, concurrency: phase.concurrency,
        store: world.digests, progress: (line) => t.diagnostic(line),
      });
      t.diagnostic(summary(r));
      assert.deepEqual(r.problems, [], `${r.problemCount} answers were not proper (${SEED_ENV}=${seed} repeats the run)`);
      // (A short phase may miss a rare method by chance; a long one cannot, in practice.)
      if (phase.count >= 1000) for (const m of METHODS) assert.ok((r.byMethod[m] ?? 0) > 0, `no ${m} request was sent`);
      assert.equal(r.sent, phase.count);
    });
  });

  test('the daemon is the same process and still serves', async () => {
    assert.equal(daemon.process.running, true, `the daemon exited: ${JSON.stringify(daemon.process.exitStatus)}\n${daemon.process.logTail()}`);
    assert.equal(daemon.pid, pid);
    const c = new SnapshotsClient(daemon.socket);
    try {
      await c.prepare('fz/after/ok');
      assert.equal((await c.stat('fz/after/ok')).info.kind, 'ACTIVE');
      await c.remove('fz/after/ok');
    } finally {
      c.close();
    }
  });

  test('every snapshot kept is within containerd\'s rules, and remote only for a layer of the store', async () => {
    const infos = await listAll(daemon.socket);
    assert.deepEqual(auditSnapshots(infos, world.digests), []);
    const served = daemon.logRecords().filter((r) => r.msg === 'layer served from the store').map((r) => r.digest);
    for (const d of served) assert.ok(world.digests.present.includes(d as string), `served ${String(d)} from the store`);
  });

  test('after Cleanup the root holds the database and one directory per snapshot, nothing else', async () => {
    const c = new SnapshotsClient(daemon.socket);
    try { await c.cleanup(); } finally { c.close(); }
    assert.deepEqual(auditRoot(world.root, (await listAll(daemon.socket)).length), []);
  });

  test('nothing outside the root and the store was created, changed or read, and the store is unchanged', () => {
    assert.deepEqual(world.outside.changes(), []);
    assert.deepEqual(world.storeWitness.changes(), []);
  });

  test('the daemon logged no error', () => {
    const errors = parseJsonLines(daemon.process.log()).filter((r) => typeof r.level === 'number' && r.level >= 50);
    assert.deepEqual(errors.slice(0, 5), []);
  });
}
