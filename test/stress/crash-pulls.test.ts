// Crash safety under load: SIGKILL the daemon at random points of 50 lazy and 50 ordinary pulls
// (test/helpers/crash-pulls.ts says what each cycle does; this file asserts what it sees). The
// seed is printed; CVMFS_STRESS_SEED=<seed> replays the same kill points, and
// CVMFS_CRASH_CYCLES=<n> runs n of each kind instead of 50.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CrashRig, type MountObservation, type PullKind } from '../helpers/crash-pulls.js';
import { Rng, seedFrom, STRESS_SEED_ENV as SEED_ENV } from '../helpers/rng.js';

const CYCLES = Number(process.env.CVMFS_CRASH_CYCLES ?? 50);
/** Descriptors that a process living through every kill (a FUSE server) may hold more at the end. */
const FD_SLACK = 2;

function assertMounts(m: MountObservation, what: string): void {
  assert.deepEqual(m.notAlive, [], `${what}: every FUSE mount under the root answers`);
  assert.deepEqual(m.mounted, m.needed, `${what}: the FUSE mounts are the layers that active snapshots stand on`);
  assert.deepEqual(m.other, [], `${what}: nothing else is mounted under the root`);
}

describe('SIGKILL at random points of 50 lazy and 50 ordinary pulls', () => {
  let rig: CrashRig;
  const seed = seedFrom(SEED_ENV);

  before(async () => {
    process.stderr.write(`# crash-pulls: ${SEED_ENV}=${seed}\n`);
    rig = await CrashRig.create('stress-crash', { poolSize: 4, maxPresent: 2 }, (s) => process.stderr.write(`# ${s}\n`));
    assert.equal(rig.holderMounts, rig.pinned.image.layers.length, 'the holder snapshot mounts the pinned image\'s layers');
  });
  after(() => rig?.teardown());

  test(`${CYCLES} + ${CYCLES} kills; after each restart the records match the disk, nothing committed is lost, no dead mount, pull and run work`, async (t) => {
    t.diagnostic(`${SEED_ENV}=${seed}`);
    const rng = new Rng(seed);
    const kinds: PullKind[] = [...Array<PullKind>(CYCLES).fill('lazy'), ...Array<PullKind>(CYCLES).fill('ordinary')];
    // A seeded shuffle, so lazy and ordinary cycles interleave.
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [kinds[i], kinds[j]] = [kinds[j] as PullKind, kinds[i] as PullKind];
    }
    const t0 = Date.now();
    for (const kind of kinds) {
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
        const { settled, report: rp } = await rig.settle(k, s, r);
        assert.deepEqual(settled.mismatches, [], `cycle ${n}: records and disk match once containerd is idle`);
        assertMounts(settled.mounts, `cycle ${n}, at its end`);
        assert.deepEqual(settled.missingLayers, [], `cycle ${n}: the daemon holds every layer of every present image`);
        t.diagnostic(`#${rp.cycle} ${rp.kind} ${rp.pulled}${rp.removed ? ` (removed ${rp.removed})` : ''}: killed after ${rp.rpcsBeforeKill} calls (aimed ${rp.killAfterRpcs}+${rp.killDelayMs} ms, last ${rp.lastRpc}); work ${rp.workOutcome}; `
          + `${rp.deadAfterKill} dead mounts, ${rp.staleClearedAtStart} cleared and ${rp.orphansRemovedAtStart} orphans removed at start, ${rp.collectedAfterRestart} collected after; `
          + `restart ${rp.restartMs} ms, reconnect ${rp.reconnectMs} ms, cycle ${rp.cycleMs} ms${rp.transientMismatches.length ? `; passing: ${rp.transientMismatches.join('; ')}` : ''}`);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n(replay with ${SEED_ENV}=${seed})\ndaemon log tail:\n${await rig.logTail()}`, { cause: err });
      }
    }
    t.diagnostic(`totals: ${JSON.stringify(rig.totals)}; ${Date.now() - t0} ms`);
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
