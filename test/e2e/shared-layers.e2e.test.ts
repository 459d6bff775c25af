// The fast version of test/stress/load-containers.test.ts: 8 containers started at once from 4
// images that share their base layer (3 tops in the store, 1 downloaded): every lazy layer is
// mounted once and serves all the containers on it, and after they and their images are removed
// nothing is left: no mount, record, directory or file descriptor.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ContainerLoad } from '../helpers/container-load.js';
import { describeUsage, serverUsage } from '../helpers/root-check.js';

/** Descriptors that may differ between two idle moments without a leak. */
const FD_SLACK = 2;

describe('containers at once from images that share layers (fast)', () => {
  let load: ContainerLoad;

  before(async () => {
    load = await ContainerLoad.create('e2e-shared', { images: 4, containersPerImage: 2, lazyTops: 3 });
  });
  after(() => load?.teardown());

  test('8 containers run from 4 FUSE mounts and 1 downloaded layer; removing them leaks nothing', async (t) => {
    const u0 = await serverUsage(load.daemon.socket);
    const r = await load.round();
    const u1 = await serverUsage(load.daemon.socket);
    t.diagnostic(`pulls ${r.pullMs} ms, start ${r.startMs} ms, stop and remove ${r.stopMs} ms; before: ${describeUsage(u0)}; running: ${describeUsage(r.peak)}; after: ${describeUsage(u1)}`);
    for (const a of u0) {
      const b = u1.find((x) => x.pid === a.pid);
      assert.ok(b, `the ${a.role} (pid ${a.pid}) still runs`);
      assert.ok(b.fds - a.fds <= FD_SLACK, `the ${a.role} holds ${b.fds - a.fds} more descriptors than before (allowed ${FD_SLACK})`);
    }
  });
});
