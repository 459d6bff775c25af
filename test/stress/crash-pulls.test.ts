// Crash safety under load: SIGKILL the daemon at random points of 50 lazy and 50 ordinary pulls
// (test/helpers/crash-pulls.ts says what each cycle does and checks). The seed is printed;
// CVMFS_STRESS_SEED=<seed> replays the same kill points, and CVMFS_CRASH_CYCLES=<n> runs n of
// each kind instead of 50.
import { after, before, describe, test } from 'node:test';
import { CrashRig, type PullKind } from '../helpers/crash-pulls.js';
import { Rng, seedFrom, STRESS_SEED_ENV as SEED_ENV } from '../helpers/rng.js';

const CYCLES = Number(process.env.CVMFS_CRASH_CYCLES ?? 50);

describe('SIGKILL at random points of 50 lazy and 50 ordinary pulls', () => {
  let rig: CrashRig;
  const seed = seedFrom(SEED_ENV);

  before(async () => {
    process.stderr.write(`# crash-pulls: ${SEED_ENV}=${seed}\n`);
    rig = await CrashRig.create('stress-crash', { poolSize: 4, maxPresent: 2 }, (s) => process.stderr.write(`# ${s}\n`));
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
        const r = await rig.cycle(kind, rng);
        t.diagnostic(`#${r.cycle} ${r.kind} ${r.pulled}${r.removed ? ` (removed ${r.removed})` : ''}: killed after ${r.rpcsBeforeKill} calls (aimed ${r.killAfterRpcs}+${r.killDelayMs} ms, last ${r.lastRpc}); work ${r.workOutcome}; `
          + `${r.deadAfterKill} dead mounts, ${r.staleClearedAtStart} cleared and ${r.orphansRemovedAtStart} orphans removed at start, ${r.collectedAfterRestart} collected after; `
          + `restart ${r.restartMs} ms, reconnect ${r.reconnectMs} ms, cycle ${r.cycleMs} ms${r.transientMismatches.length ? `; passing: ${r.transientMismatches.join('; ')}` : ''}`);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n(replay with ${SEED_ENV}=${seed})\ndaemon log tail:\n${await rig.logTail()}`, { cause: err });
      }
    }
    t.diagnostic(`totals: ${JSON.stringify(rig.totals)}; ${Date.now() - t0} ms`);
    t.diagnostic(await rig.finish());
  });
});
