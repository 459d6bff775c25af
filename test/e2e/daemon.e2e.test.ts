// The daemon as containerd's snapshotter: a private containerd 1.6 with the daemon as proxy plugin,
// runc, and a private registry serving an image built here.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { backendSnapshots } from '../helpers/backend.js';
import { PROXY_SNAPSHOTTER, type Containerd } from '../helpers/containerd.js';
import { parseSnapshotTable, type SnapshotRow } from '../helpers/ctr-output.js';
import type { Daemon } from '../helpers/daemon.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage } from '../helpers/image.js';
import { addFile, busyboxRootfs, removePath } from '../helpers/rootfs.js';
import { waitUntil } from '../helpers/wait.js';

const SN = ['--snapshotter', PROXY_SNAPSHOTTER];

describe('daemon end to end (containerd + runc + registry)', () => {
  let h: Harness;
  let daemon: Daemon;
  let ctd: Containerd;
  let image: BuiltImage;

  const snapshots = async (): Promise<SnapshotRow[]> =>
    parseSnapshotTable(await ctd.ctr(['snapshots', ...SN, 'ls'])).sort((a, b) => a.key.localeCompare(b.key));
  const run = async (name: string, ...cmd: string[]): Promise<string> =>
    ctd.ctr(['run', ...ctd.runFlags, '--rm', ...SN, image.ref, name, ...cmd]);
  const snapshotDirs = async (): Promise<string[]> => readdir(join(daemon.root, 'snapshots')).catch(() => []);

  before(async () => {
    h = await Harness.create('e2e-daemon');
    const registry = await h.startRegistry();
    daemon = await h.startDaemon({ logLevel: 'debug' });
    ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry] });
    image = await h.buildImage({
      registry,
      name: 'e2e/busybox',
      layers: [
        busyboxRootfs,
        (r) => addFile(r, 'etc/e2e/hello.txt', 'hello from layer 2\n'),
        async (r) => { await removePath(r, 'bin/wc'); await addFile(r, 'etc/e2e/third', '3\n', { mode: 0o600 }); },
      ],
    });
  });
  after(() => h.teardown());

  test('ctr pulls the image into the daemon and runs a container from it', async (t) => {
    const t0 = Date.now();
    await ctd.ctr(['images', 'pull', ...ctd.pullFlags, ...SN, image.ref]);
    t.diagnostic(`pull: ${Date.now() - t0} ms`);

    const rows = await snapshots();
    assert.equal(rows.filter((r) => r.kind === 'Committed').length, image.layers.length, `one committed snapshot per layer:\n${JSON.stringify(rows, null, 1)}`);
    assert.equal(rows.filter((r) => r.parent === '').length, 1, 'one bottom layer');
    const backend = await backendSnapshots(daemon.socket);
    assert.equal(backend.filter((s) => s.kind === 'COMMITTED').length, image.layers.length, `the daemon holds the layers:\n${JSON.stringify(backend, null, 1)}`);

    const t1 = Date.now();
    assert.equal((await run('e2e-run-1', 'echo', 'ok')).trim(), 'ok');
    t.diagnostic(`ctr run --rm: ${Date.now() - t1} ms`);
    assert.equal((await run('e2e-run-2', 'cat', '/etc/e2e/hello.txt')).trim(), 'hello from layer 2');
    assert.equal((await run('e2e-run-3', 'sh', '-c', 'test -e /bin/wc && echo present || echo gone; stat -c %a /etc/e2e/third')).trim(), 'gone\n600');
    assert.deepEqual(h.mounts(), [], 'no mount left after the containers were removed');
  });

  test('after SIGKILL and a restart the daemon lists every snapshot and runs a new container', async (t) => {
    await ctd.gc(); // the containers of the previous test are gone from the daemon too
    const rows = await snapshots();
    const parents = new Set(rows.map((r) => r.parent));
    const top = rows.find((r) => r.kind === 'Committed' && !parents.has(r.key));
    assert.ok(top, 'the image has a top layer snapshot');
    await ctd.ctr(['snapshots', ...SN, 'prepare', 'e2e-active', top.key]);
    const before = await snapshots();
    assert.ok(before.some((r) => r.key === 'e2e-active' && r.kind === 'Active'));
    const backendBefore = (await backendSnapshots(daemon.socket)).map((s) => s.name).sort();
    assert.equal(backendBefore.length, image.layers.length + 1, `the daemon holds the layers and the active snapshot: ${backendBefore.join(', ')}`);

    const status = await daemon.kill('SIGKILL');
    assert.equal(status.signal, 'SIGKILL');
    await daemon.restart();
    t.diagnostic(`daemon restart until its socket accepted: ${daemon.startupMs} ms`);

    // containerd's connection to the proxy sits in reconnect backoff for about a second after a SIGKILL.
    const waited = await waitUntil(async () => (await ctd.ctrResult(['snapshots', ...SN, 'ls'])).code === 0,
      { what: 'containerd to reach the restarted daemon', timeoutMs: 15_000, intervalMs: 100 });
    t.diagnostic(`containerd reconnected after ${waited} ms`);
    assert.deepEqual(await snapshots(), before);
    assert.deepEqual((await backendSnapshots(daemon.socket)).map((s) => s.name).sort(), backendBefore);

    const mounts = await ctd.ctr(['snapshots', ...SN, 'mounts', '/mnt', 'e2e-active']);
    assert.match(mounts, /mount -t overlay/, 'the active snapshot still has its overlay mounts');
    assert.equal((await run('e2e-after-restart', 'echo', 'ok')).trim(), 'ok');
    await ctd.ctr(['snapshots', ...SN, 'rm', 'e2e-active']);
  });

  test('a SIGTERM restart deletes nothing', async (t) => {
    await ctd.gc(); // settle removals of the previous test, which GC would otherwise do at any moment
    const before = await snapshots();
    const dirsBefore = (await snapshotDirs()).sort();
    assert.ok(dirsBefore.length >= image.layers.length);
    await daemon.restart(); // SIGTERM; stop() fails the test if the daemon does not exit cleanly
    t.diagnostic(`daemon restart until its socket accepted: ${daemon.startupMs} ms`);
    await waitUntil(async () => (await ctd.ctrResult(['snapshots', ...SN, 'ls'])).code === 0,
      { what: 'containerd to reach the restarted daemon', timeoutMs: 15_000, intervalMs: 50 });
    assert.deepEqual(await snapshots(), before);
    assert.deepEqual((await snapshotDirs()).sort(), dirsBefore);
  });

  test('removing the image lets the garbage collector remove its snapshots and directories', async (t) => {
    assert.ok((await snapshotDirs()).length > 0, 'the daemon has snapshot directories before');
    const t0 = Date.now();
    // --sync waits for containerd's garbage collection, which removes the backend snapshots and runs Cleanup.
    await ctd.ctr(['images', 'rm', '--sync', image.ref]);
    t.diagnostic(`images rm --sync: ${Date.now() - t0} ms`);
    assert.deepEqual(await snapshots(), [], 'containerd lists no snapshot');
    assert.deepEqual(await backendSnapshots(daemon.socket), [], 'the daemon holds no snapshot');
    assert.deepEqual(await snapshotDirs(), [], `${daemon.root}/snapshots is empty`);
  });
});
