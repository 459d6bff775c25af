// 20 containers started at once from 10 images that share their base layer: the base and half of
// the top layers are served lazily from the store (each mounted once, however many containers
// use it), the other tops are downloaded by containerd (test/helpers/container-load.ts). All run
// and see their files; then they are stopped and removed with their images, and nothing is left:
// no mount, record, directory or file descriptor (of the daemon, or of the FUSE server it runs
// beside it), and their memory stays within a bound.
// Two rounds: the first warms the daemon up, the second is measured against it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ContainerLoad } from '../helpers/container-load.js';
import { describeUsage, fdKinds, serverUsage, type ServerUsage } from '../helpers/root-check.js';

const IMAGES = 10;
const CONTAINERS_PER_IMAGE = 2;
const LAZY_TOPS = 5;
/**
 * Resident memory that the daemon, and a FUSE server it runs beside it, may each never exceed.
 * Measured (README, Guarantees): each about 75 MiB at start; with 20 containers running the
 * daemon 85 to 95 MiB, the FUSE server about 80 MiB.
 */
const SERVER_RSS_BOUND_KB = 224 * 1024;
/**
 * How much more a process may hold after round 2 than after round 1, both once everything was
 * removed. Measured: the daemon +5 to +7 MiB (V8's heap and malloc's arenas still growing
 * towards their plateau), the FUSE server -2 MiB.
 */
const RSS_ROUND_GROWTH_BOUND_KB = 24 * 1024;
/** Descriptors that may differ between two idle moments without a leak (none measured). */
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

describe(`${IMAGES * CONTAINERS_PER_IMAGE} containers at once from images that share layers`, () => {
  let load: ContainerLoad;

  before(async () => {
    load = await ContainerLoad.create('stress-load-ctrs', { images: IMAGES, containersPerImage: CONTAINERS_PER_IMAGE, lazyTops: LAZY_TOPS },
      (s) => process.stderr.write(`# ${s}\n`));
  });
  after(() => load?.teardown());

  test('start, check, stop and remove twice; the second round leaks nothing', async (t) => {
    const socket = load.daemon.socket;
    const say = (r: number, x: RoundReport): void => t.diagnostic(`round ${r}: ${IMAGES} concurrent pulls in ${x.pullMs} ms, `
      + `${IMAGES * CONTAINERS_PER_IMAGE} containers started at once in ${x.startMs} ms, stopped and removed in ${x.stopMs} ms; `
      + `${x.fuseMounts} FUSE mounts; with every container running: ${describeUsage(x.peak)}`);
    const u0 = await serverUsage(socket);
    const r1 = await round(load);
    say(1, r1);
    const u1 = await serverUsage(socket);
    const kinds1 = new Map(await Promise.all(u1.map(async (u) => [u.pid, await fdKinds(u.pid)] as const)));
    const r2 = await round(load);
    say(2, r2);
    const u2 = await serverUsage(socket);
    t.diagnostic(`at start: ${describeUsage(u0)}; after round 1: ${describeUsage(u1)}; after round 2: ${describeUsage(u2)}`);
    assert.deepEqual(u2.map((u) => u.pid), u1.map((u) => u.pid), 'the same processes served both rounds');
    for (const a of u1) {
      const b = u2.find((x) => x.pid === a.pid) as ServerUsage;
      const start = u0.find((x) => x.pid === a.pid);
      assert.ok(b.fds - a.fds <= FD_SLACK,
        `the ${a.role} holds ${b.fds - a.fds} more descriptors after round 2 than after round 1 (allowed ${FD_SLACK}): before ${JSON.stringify([...(kinds1.get(a.pid) ?? [])])}, after ${JSON.stringify([...await fdKinds(a.pid)])}`);
      if (start) assert.ok(a.fds - start.fds <= FD_SLACK, `the ${a.role} holds ${a.fds - start.fds} more descriptors after round 1 than at start (allowed ${FD_SLACK})`);
      assert.ok(b.rssKb - a.rssKb <= RSS_ROUND_GROWTH_BOUND_KB, `the ${a.role}'s RSS grew by ${b.rssKb - a.rssKb} KiB in round 2 (bound RSS_ROUND_GROWTH_BOUND_KB = ${RSS_ROUND_GROWTH_BOUND_KB})`);
    }
    for (const u of [...u1, ...u2, ...r1.peak, ...r2.peak]) {
      assert.ok(u.rssKb <= SERVER_RSS_BOUND_KB, `the ${u.role}'s RSS reached ${u.rssKb} KiB (bound SERVER_RSS_BOUND_KB = ${SERVER_RSS_BOUND_KB})`);
    }
  });
});
