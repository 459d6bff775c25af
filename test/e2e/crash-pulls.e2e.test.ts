// The fast version of test/stress/crash-pulls.test.ts: SIGKILL the daemon at random points of two
// lazy and two ordinary pulls, and after each restart check that the records match the disk,
// nothing committed is lost, no dead FUSE mount is left, and a pull and a container run.
// The seed is printed; CVMFS_STRESS_SEED=<seed> replays it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CrashRig, type MountObservation, type PullKind } from '../helpers/crash-pulls.js';
import { Rng, seedFrom, STRESS_SEED_ENV as SEED_ENV } from '../helpers/rng.js';

/** Descriptors that a process living through every kill (a FUSE server) may hold more at the end. */
const FD_SLACK = 2;

function assertMounts(m: MountObservation, what: string): void {
  assert.deepEqual(m.notAlive, [], `${what}: every FUSE mount under the root answers`);
  assert.deepEqual(m.mounted, m.needed, `${what}: the FUSE mounts are the layers that active snapshots stand on`);
  assert.deepEqual(m.other, [], `${what}: nothing else is mounted under the root`);
}

describe('SIGKILL during pulls (fast)', () => {
  let rig: CrashRig;
  const seed = seedFrom(SEED_ENV);

  before(async () => {
    rig = await CrashRig.create('e2e-crash', { poolSize: 2, maxPresent: 1 });
    assert.equal(rig.holderMounts, rig.pinned.image.layers.length, 'the holder snapshot mounts the pinned image\'s layers');
  });
  after(() => rig?.teardown());

  test('two lazy and two ordinary pulls killed at random points; the daemon comes back whole each time', async (t) => {
    t.diagnostic(`${SEED_ENV}=${seed}`);
    const rng = new Rng(seed);
    for (const kind of ['lazy', 'ordinary', 'lazy', 'ordinary'] as PullKind[]) {
      try {
        const k = await rig.kill(kind, rng);
        const n = k.cycle;
        assert.equal(k.signal, 'SIGKILL', 'the daemon died of the SIGKILL');
        const s = await rig.restart(k);
        assertMounts(s.mounts, `cycle ${n}, after the restart`);
        assert.deepEqual(s.mismatches, [], `cycle ${n}: the records match the disk after the restart`);
        assert.deepEqual(s.lost, [], `cycle ${n}: every snapshot committed before the kill is listed, or was removed by a Remove call; `
          + `daemon log lines that name the lost ones:\n${s.lostLogLines.join('\n')}`);
        const r = await rig.recover(k, rng);
        assert.equal(r.run.output, r.run.expected, `cycle ${n}: the pull works again and container ${r.run.name} of ${r.run.ref} sees every layer`);
        const { settled, report } = await rig.settle(k, s, r);
        assert.deepEqual(settled.mismatches, [], `cycle ${n}: records and disk match once containerd is idle`);
        assertMounts(settled.mounts, `cycle ${n}, at its end`);
        assert.deepEqual(settled.missingLayers, [], `cycle ${n}: the daemon holds every layer of every present image`);
        t.diagnostic(`#${n} ${report.kind} ${report.pulled}: killed after ${report.rpcsBeforeKill} calls (last ${report.lastRpc}); work ${report.workOutcome}; `
          + `${report.deadAfterKill} dead mounts, ${report.staleClearedAtStart} cleared and ${report.orphansRemovedAtStart} orphans removed at start`);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n(replay with ${SEED_ENV}=${seed})\ndaemon log tail:\n${await rig.logTail()}`, { cause: err });
      }
    }
    const f = await rig.finish();
    assert.deepEqual(f.snapshots, [], 'the daemon holds no snapshot');
    assert.deepEqual(f.mismatches, [], 'records and disk match at the end');
    assert.deepEqual(f.records, [], 'no record is left');
    assert.deepEqual(f.mountpoints, [], 'nothing is mounted under the root');
    const grown = f.fdGrowth.filter((g) => g.grew > FD_SLACK);
    assert.deepEqual(grown, [], `a server process that lived through every kill holds more than ${FD_SLACK} descriptors more than at the start`);
    t.diagnostic(f.usage);
  });
});
