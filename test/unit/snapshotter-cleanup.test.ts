// Cleanup (containerd's GC calls it after every collection) runs while other calls create
// snapshots. It must remove only what no record owns and no call is still making.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import { silentLogger } from '../../src/log.js';

test('Cleanup running alongside Prepare and Remove neither fails a Prepare nor removes a live snapshot directory', async () => {
  const root = await mkdtemp(join(tmpdir(), 'sn-cleanup-'));
  const sn = await Snapshotter.open({ root, log: silentLogger() });
  try {
    let stop = false;
    const cleaners = Array.from({ length: 4 }, async () => {
      while (!stop) {
        await sn.cleanup();
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    const failures: string[] = [];
    const ROUNDS = 80;
    const PER_ROUND = 5;
    try {
      for (let r = 0; r < ROUNDS; r++) {
        await Promise.all(Array.from({ length: PER_ROUND }, async (_, i) => {
          try {
            await sn.prepare(`r${r}-${i}`, '', {});
            // Every other one goes again, so removals interleave with the creations too.
            if (i % 2 === 1) await sn.remove(`r${r}-${i}`);
          } catch (err) {
            failures.push(`r${r}-${i}: ${(err as Error).message}`);
          }
        }));
      }
    } finally {
      stop = true;
      await Promise.all(cleaners);
    }
    assert.deepEqual(failures, [], 'no call failed');
    const live = sn.list([]).map((i) => i.name);
    assert.equal(live.length, ROUNDS * Math.ceil(PER_ROUND / 2));
    const dirs = (await readdir(join(root, 'snapshots'))).sort();
    assert.equal(dirs.length, live.length, `one directory per live snapshot; directories: ${dirs.length}, snapshots: ${live.length}`);
    for (const d of dirs) assert.match(d, /^[1-9][0-9]*$/, 'only snapshot directories are left');
  } finally {
    await sn.close();
    await rm(root, { recursive: true, force: true });
  }
});
