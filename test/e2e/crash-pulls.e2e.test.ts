// The fast version of test/stress/crash-pulls.test.ts: SIGKILL the daemon at random points of two
// lazy and two ordinary pulls, and after each restart check that the records match the disk,
// nothing committed is lost, no dead FUSE mount is left, and a pull and a container run.
// The seed is printed; CVMFS_STRESS_SEED=<seed> replays it.
import { after, before, describe, test } from 'node:test';
import { CrashRig, type PullKind } from '../helpers/crash-pulls.js';
import { Rng, seedFrom, STRESS_SEED_ENV as SEED_ENV } from '../helpers/rng.js';

describe('SIGKILL during pulls (fast)', () => {
  let rig: CrashRig;
  const seed = seedFrom(SEED_ENV);

  before(async () => {
    rig = await CrashRig.create('e2e-crash', { poolSize: 2, maxPresent: 1 });
  });
  after(() => rig?.teardown());

  test('two lazy and two ordinary pulls killed at random points; the daemon comes back whole each time', async (t) => {
    t.diagnostic(`${SEED_ENV}=${seed}`);
    const rng = new Rng(seed);
    for (const kind of ['lazy', 'ordinary', 'lazy', 'ordinary'] as PullKind[]) {
      try {
        const r = await rig.cycle(kind, rng);
        t.diagnostic(`#${r.cycle} ${r.kind} ${r.pulled}: killed after ${r.rpcsBeforeKill} calls (last ${r.lastRpc}); work ${r.workOutcome}; `
          + `${r.deadAfterKill} dead mounts, ${r.staleClearedAtStart} cleared and ${r.orphansRemovedAtStart} orphans removed at start`);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n(replay with ${SEED_ENV}=${seed})\ndaemon log tail:\n${await rig.logTail()}`, { cause: err });
      }
    }
    t.diagnostic(await rig.finish());
  });
});
