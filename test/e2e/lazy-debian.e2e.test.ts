// Lazy pulls of a realistic image end to end: a Debian bookworm with python3 (debootstrap), split
// into three layers, pushed to a private registry, ingested into a DUCC-layout store, and pulled
// through containerd 1.6's CRI into the daemon. containerd downloads no layer, runc runs python3
// from the FUSE layers; removing the image unmounts everything and a new pull is lazy again; a
// running container keeps reading across daemon restarts (SIGKILL, SIGTERM) and a FUSE server
// handover; a SIGKILLed FUSE server's dead mounts are cleared by the next daemon start.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backendSnapshots } from '../helpers/backend.js';
import type { Containerd } from '../helpers/containerd.js';
import { defaultDaemonConfig, type Daemon } from '../helpers/daemon.js';
import { debianPythonTarball, rootfsTarballLayer } from '../helpers/debian.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage } from '../helpers/image.js';
import {
  CRI_NAMESPACE, contentDigests, fuseMountsUnder, ingest, isAsleep, lazyRunArgs, pullLazy, remoteLabel, statMounts,
} from '../helpers/lazy.js';
import { describeMount } from '../helpers/mounts.js';
import { waitUntil } from '../helpers/wait.js';
import { runCli } from '../helpers/cli.js';

const NS = { namespace: CRI_NAMESPACE };
/** `ctr tasks exec` takes only the --fifo-dir of the harness's run flags. */
const fifoFlags = (ctd: Containerd): string[] => {
  const i = ctd.runFlags.indexOf('--fifo-dir');
  return i < 0 ? [] : ctd.runFlags.slice(i, i + 2);
};

describe('lazy pull of a Debian image with python3 (containerd CRI + runc + registry + FUSE)', () => {
  let h: Harness;
  let daemon: Daemon;
  let ctd: Containerd;
  let image: BuiltImage;

  const run = async (name: string, ...cmd: string[]): Promise<string> =>
    ctd.ctr([...lazyRunArgs(ctd), '--rm', image.ref, name, ...cmd], { ...NS, timeoutMs: 60_000 });
  const tasks = async (): Promise<Map<string, { pid: number; status: string }>> => new Map(
    (await ctd.ctr(['tasks', 'ls'], NS)).split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 3)
      .map((f) => [f[0] ?? '', { pid: Number(f[1]), status: f[2] ?? '' }]));
  const taskStatus = async (name: string): Promise<string | undefined> => (await tasks()).get(name)?.status;
  const taskPid = async (name: string): Promise<number> => {
    const pid = (await tasks()).get(name)?.pid;
    if (pid === undefined) throw new Error(`no task ${name}`);
    return pid;
  };
  const fuseMounts = (): string => fuseMountsUnder(daemon.root).map(describeMount).join('\n') || '(none)';
  const waitNoFuseMounts = (what: string): Promise<number> =>
    waitUntil(() => fuseMountsUnder(daemon.root).length === 0, { what: `${what}: no FUSE mount under ${daemon.root}`, timeoutMs: 10_000, process: daemon.process })
      .catch((err: unknown) => { throw new Error(`${(err as Error).message}\nstill mounted:\n${fuseMounts()}`); });
  /** containerd's view of which layers it downloaded: the layer blobs in its content store. */
  const downloadedLayers = async (): Promise<string[]> => {
    const content = await contentDigests(ctd);
    return image.layers.map((l) => l.digest).filter((d) => content.has(d));
  };
  const assertAllRemote = async (): Promise<void> => {
    for (const [i, chainId] of image.chainIds.entries()) {
      assert.equal(await remoteLabel(ctd, chainId), image.layers[i]?.digest, `layer ${i} (${chainId}) is a remote snapshot of its layer digest`);
    }
  };

  before(async () => {
    h = await Harness.create('e2e-lazy-deb');
    const debian = await debianPythonTarball();
    if (debian.built) process.stderr.write(`# built ${debian.tarball} with debootstrap in ${debian.buildMs} ms\n`);
    const registry = await h.startRegistry();
    const t0 = Date.now();
    image = await h.buildImage({
      registry,
      name: 'e2e/debian-python',
      tag: 'bookworm',
      layers: [
        rootfsTarballLayer(debian.tarball, 'debootstrap bookworm minbase + python3-minimal'),
        {
          comment: 'a file in /etc',
          raw: async (d) => {
            await mkdir(join(d, 'etc', 'lazy-e2e'), { recursive: true });
            await writeFile(join(d, 'etc', 'lazy-e2e', 'hello.txt'), 'hello from layer 2\n');
          },
        },
        {
          comment: 'a python program',
          raw: async (d) => {
            await mkdir(join(d, 'opt', 'app'), { recursive: true });
            await writeFile(join(d, 'opt', 'app', 'app.py'), 'import sys\nprint(open("/etc/lazy-e2e/hello.txt").read().strip(), sys.version_info[0])\n');
            await chmod(join(d, 'opt', 'app', 'app.py'), 0o755);
          },
        },
      ],
      config: { cmd: ['python3'] },
    });
    const t1 = Date.now();
    const store = await h.scope.mkdir('store');
    await ingest(store, image.ref);
    const t2 = Date.now();
    process.stderr.write(`# image built and pushed in ${t1 - t0} ms, ingested in ${t2 - t1} ms\n`);
    daemon = await h.startDaemon({ logLevel: 'debug', configToml: defaultDaemonConfig(store) });
    ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true });
  });
  after(() => h.teardown());

  test('pull downloads the manifest and config but no layer, and python3 runs from the FUSE layers', async (t) => {
    assert.ok(image.layers.length >= 3, 'a multi-layer image');
    const t0 = Date.now();
    const pulled = await pullLazy(ctd, image.ref);
    t.diagnostic(`pull: ${Date.now() - t0} ms (${pulled.stdout.trim()})`);

    const content = await contentDigests(ctd);
    assert.ok(content.has(image.manifestDigest), `the manifest ${image.manifestDigest} is in the content store`);
    assert.ok(content.has(image.configDigest), `the config ${image.configDigest} is in the content store`);
    assert.deepEqual(await downloadedLayers(), [], 'no layer blob is in the content store');
    await assertAllRemote();
    assert.deepEqual(fuseMountsUnder(daemon.root), [], 'a pull alone mounts nothing');

    const t1 = Date.now();
    assert.equal((await run('lazy-py-1', 'python3', '-c', 'print(1)')).trim(), '1');
    t.diagnostic(`ctr run --rm python3 -c 'print(1)': ${Date.now() - t1} ms`);
    assert.equal((await run('lazy-py-2', '/usr/bin/python3', '/opt/app/app.py')).trim(), 'hello from layer 2 3', 'files of every layer are visible');
    await waitNoFuseMounts('after the containers were removed');
  });

  test('after the image is removed and GC runs, nothing is mounted or listed, and a new pull is lazy again', async (t) => {
    // CRI records the image under its tag, its repo digest and its config digest; all must go.
    const names = (await ctd.ctr(['images', 'ls', '--quiet'], NS)).split('\n').map((l) => l.trim())
      .filter((n) => n === image.ref || n === image.configDigest || n.endsWith(`@${image.manifestDigest}`));
    assert.ok(names.includes(image.ref), `the image is listed: ${names.join(', ')}`);
    await ctd.ctr(['images', 'rm', ...names], NS);
    const t0 = Date.now();
    await ctd.gc(CRI_NAMESPACE);
    t.diagnostic(`images rm + gc: ${Date.now() - t0} ms`);

    assert.deepEqual(fuseMountsUnder(daemon.root), [], 'no FUSE mount of the daemon remains');
    const left = (await backendSnapshots(daemon.socket)).filter((s) => image.chainIds.some((c) => s.name.includes(c)));
    assert.deepEqual(left, [], 'the daemon lists no snapshot of the image');
    assert.deepEqual((await ctd.ctr(['snapshots', '--snapshotter', 'cvmfs-snapshotter', 'ls'], NS)).trim().split('\n').slice(1), [], 'containerd lists no snapshot');

    const t1 = Date.now();
    await pullLazy(ctd, image.ref);
    t.diagnostic(`second pull: ${Date.now() - t1} ms`);
    assert.deepEqual(await downloadedLayers(), [], 'the second pull downloads no layer either');
    await assertAllRemote();
    assert.equal((await run('lazy-py-3', 'python3', '-c', 'print(1)')).trim(), '1');
    await waitNoFuseMounts('after the container was removed');
  });

  test('a container keeps reading its layers while the daemon is SIGKILLed, restarted, and its FUSE server upgraded', async (t) => {
    // The container reads a file and lists a directory of its layers every 20 ms; a failed
    // read ends it, so RUNNING afterwards means no read failed.
    const loop = 'while :; do cat /etc/lazy-e2e/hello.txt >/dev/null && ls /usr/lib >/dev/null || exit 3; sleep 0.02; done';
    await ctd.ctr([...lazyRunArgs(ctd), '-d', image.ref, 'lazy-old', 'sh', '-c', loop], NS);
    await waitUntil(async () => await taskStatus('lazy-old') === 'RUNNING', { what: 'the reading container to run', timeoutMs: 20_000 });
    const before = fuseMountsUnder(daemon.root);
    assert.equal(before.length, image.layers.length, `one FUSE mount per layer while the container runs:\n${fuseMounts()}`);
    const server = await daemon.fuseServerPid();
    assert.ok(server !== undefined && server !== daemon.pid, 'the layers are served by a FUSE server process of their own');
    const probe = async (what: string): Promise<void> => {
      const r = await ctd.ctrResult(['tasks', 'exec', ...fifoFlags(ctd), '--exec-id', `probe-${Date.now()}`, 'lazy-old', 'cat', '/etc/lazy-e2e/hello.txt'], { ...NS, timeoutMs: 20_000 });
      assert.equal(r.code, 0, `${what}: the old container reads a file: ${r.stderr}`);
      assert.equal(await taskStatus('lazy-old'), 'RUNNING', `${what}: the reading loop never failed`);
    };
    const allAlive = async (what: string): Promise<void> => {
      const health = await statMounts(fuseMountsUnder(daemon.root));
      assert.deepEqual(health.filter((m) => m.error !== undefined).map((m) => `${describeMount(m.mount)}: ${m.error ?? ''}`), [], `${what}: every layer mount answers`);
      assert.equal(health.length, image.layers.length, `${what}: the running container's layers are mounted:\n${fuseMounts()}`);
    };
    const reconnect = async (): Promise<void> => {
      // containerd's connection to the proxy sits in reconnect backoff for about a second after a restart.
      await waitUntil(async () => (await ctd.ctrResult(['snapshots', '--snapshotter', 'cvmfs-snapshotter', 'ls'], NS)).code === 0,
        { what: 'containerd to reach the restarted daemon', timeoutMs: 15_000, intervalMs: 100 });
    };

    assert.equal((await daemon.kill('SIGKILL')).signal, 'SIGKILL');
    await allAlive('with the daemon SIGKILLed');
    await probe('with the daemon SIGKILLed');
    await daemon.restart();
    await reconnect();
    assert.equal(await daemon.fuseServerPid(), server, 'the restarted daemon uses the same FUSE server');
    await allAlive('after the restart');
    await probe('after SIGKILL and restart');

    await daemon.restart(); // SIGTERM, then start
    await reconnect();
    await allAlive('after a SIGTERM restart');
    await probe('after a SIGTERM restart');

    const up = await runCli(['fuse-server', '--handover', '--socket', daemon.fuseSocket], { timeoutMs: 60_000 });
    assert.equal(up.code, 0, `fuse-server --handover: ${up.stderr}`);
    const successor = await daemon.fuseServerPid();
    assert.ok(successor !== undefined && successor !== server, `a new FUSE server serves the layers (${up.stdout.trim()})`);
    t.diagnostic(up.stdout.trim());
    await allAlive('after the FUSE server handed over');
    await probe('after the FUSE server handed over');
    assert.equal((await run('lazy-new', 'python3', '-c', 'print(1)')).trim(), '1', 'a new container of the same image runs');

    await ctd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', 'lazy-old'], NS);
    await waitUntil(async () => await taskStatus('lazy-old') === 'STOPPED', { what: 'the old container to stop', timeoutMs: 20_000 });
    await ctd.ctr(['tasks', 'delete', 'lazy-old'], NS);
    await ctd.ctr(['containers', 'delete', 'lazy-old'], NS);
    await waitNoFuseMounts('after the old container was deleted');
  });

  test('a SIGKILLed FUSE server leaves dead mounts; the restarted daemon clears them and new containers run', async (t) => {
    await ctd.ctr([...lazyRunArgs(ctd), '-d', image.ref, 'lazy-sleep', 'sleep', '1000'], NS);
    await waitUntil(async () => await taskStatus('lazy-sleep') === 'RUNNING', { what: 'the container to run', timeoutMs: 20_000 });
    const pid = await taskPid('lazy-sleep');
    await waitUntil(() => isAsleep(pid), { what: `the container's sleep (pid ${pid}) to be asleep`, timeoutMs: 20_000 });
    const server = await daemon.fuseServerPid();
    assert.ok(server !== undefined);
    process.kill(server, 'SIGKILL');
    await waitUntil(async () => await daemon.fuseServerPid() === undefined, { what: 'the FUSE server to die', timeoutMs: 10_000 });
    const dead = (await statMounts(fuseMountsUnder(daemon.root))).filter((m) => m.error !== undefined);
    t.diagnostic(`after SIGKILL of the FUSE server: ${dead.length} mounts answer ${[...new Set(dead.map((d) => d.error))].join(', ')}`);
    assert.ok(dead.length > 0, 'the killed FUSE server leaves dead mounts behind (else this test shows nothing)');

    await daemon.restart();
    const health = await statMounts(fuseMountsUnder(daemon.root));
    assert.deepEqual(health.filter((m) => m.error !== undefined).map((m) => `${describeMount(m.mount)}: ${m.error ?? ''}`), [], 'no dead mount is left');
    assert.equal(health.length, image.layers.length, `the running container's layers are mounted again:\n${fuseMounts()}`);
    await waitUntil(async () => (await ctd.ctrResult(['snapshots', '--snapshotter', 'cvmfs-snapshotter', 'ls'], NS)).code === 0,
      { what: 'containerd to reach the restarted daemon', timeoutMs: 15_000, intervalMs: 100 });
    assert.equal((await run('lazy-new2', 'python3', '-c', 'print(1)')).trim(), '1', 'a new container of the same image runs');

    await ctd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', 'lazy-sleep'], NS);
    await waitUntil(async () => await taskStatus('lazy-sleep') === 'STOPPED', { what: 'the old container to stop', timeoutMs: 20_000 });
    await ctd.ctr(['tasks', 'delete', 'lazy-sleep'], NS);
    await ctd.ctr(['containers', 'delete', 'lazy-sleep'], NS);
    await waitNoFuseMounts('after the old container was deleted');
    assert.deepEqual(h.mounts(), [], 'nothing is mounted under the test directory');
  });
});
