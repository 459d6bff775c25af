// The fast version of test/stress/load-containers.test.ts: 8 containers started at once from 4
// images that share their base layer (3 tops in the store, 1 downloaded): every lazy layer is
// mounted once and serves all the containers on it, and after they and their images are removed
// nothing is left: no mount, record, directory or file descriptor.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ContainerLoad } from '../helpers/container-load.js';
import { describeUsage, serverUsage, type ServerUsage } from '../helpers/root-check.js';

/** Descriptors that may differ between two idle moments without a leak. */
const FD_SLACK = 2;

/** What a round reports for diagnostics. */
interface RoundReport {
  pullMs: number;
  startMs: number;
  stopMs: number;
  peak: ServerUsage[];
  fuseMounts: number;
}

/**
 * One round: pull every image, start every container at once, check what each sees, remove
 * everything; asserts every step.
 */
async function round(load: ContainerLoad): Promise<RoundReport> {
  const p = await load.pullAll();
  // The shared base and the stored tops are remote snapshots; the other tops were downloaded.
  assert.equal(p.baseRemoteLabel, p.baseDigest, 'the shared base layer is served from the store');
  assert.equal(p.baseDownloaded, false, 'the base layer blob was not downloaded');
  for (const top of p.tops) assert.equal(top.downloaded, !top.inStore, `top layer of ${top.tag} is ${top.inStore ? 'lazy' : 'downloaded'}`);
  const s = await load.startAll();
  for (const c of s.status) assert.equal(c.status, 'RUNNING', `${c.name} runs`);
  const r = await load.observeRunning();
  // Each lazy layer is mounted once, however many containers stand on it.
  assert.deepEqual(r.notAlive, [], 'every FUSE mount answers');
  assert.equal(r.fuseMounts.length, r.expectedFuseMounts, `one FUSE mount for the base and one per stored top layer:\n${r.fuseMounts.join('\n')}`);
  for (const v of r.views) assert.equal(v.sees, v.expected, `${v.name} sees the base, its own top layer and all its files`);
  const e = await load.removeAll();
  assert.deepEqual(e.records, [], 'the daemon holds no snapshot');
  assert.deepEqual(e.snapshotDirs, [], 'no directory is left under snapshots/');
  assert.deepEqual(e.mountpoints, [], 'nothing is mounted under the root');
  assert.deepEqual(e.testMounts, [], 'nothing is mounted under the test directory');
  return { pullMs: p.pullMs, startMs: s.startMs, stopMs: e.stopMs, peak: r.peak, fuseMounts: r.fuseMounts.length };
}

describe('containers at once from images that share layers (fast)', () => {
  let load: ContainerLoad;

  before(async () => {
    load = await ContainerLoad.create('e2e-shared', { images: 4, containersPerImage: 2, lazyTops: 3 });
  });
  after(() => load?.teardown());

  test('8 containers run from 4 FUSE mounts and 1 downloaded layer; removing them leaks nothing', async (t) => {
    const u0 = await serverUsage(load.daemon.socket);
    const r = await round(load);
    const u1 = await serverUsage(load.daemon.socket);
    t.diagnostic(`pulls ${r.pullMs} ms, start ${r.startMs} ms, stop and remove ${r.stopMs} ms; before: ${describeUsage(u0)}; running: ${describeUsage(r.peak)}; after: ${describeUsage(u1)}`);
    for (const a of u0) {
      const b = u1.find((x) => x.pid === a.pid);
      assert.ok(b, `the ${a.role} (pid ${a.pid}) still runs`);
      assert.ok(b.fds - a.fds <= FD_SLACK, `the ${a.role} holds ${b.fds - a.fds} more descriptors than before (allowed ${FD_SLACK})`);
    }
  });
});
