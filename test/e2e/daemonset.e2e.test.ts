// The Kubernetes path, run here: the image built offline by deploy/kubernetes/build-image.sh (twice:
// an upgrade needs a second build), run with podman exactly as deploy/kubernetes/daemonset.yaml's
// pod spec says (test/helpers/pod.ts reads the manifest: privileged containers, hostPath volumes
// with their propagation, the ConfigMap, the args, the probes, the grace period; hostPath
// directories are moved under a private directory on both sides), and a containerd on the "host"
// that uses the socket the pod serves. A CRI pull stays lazy and a container runs; a rolling update
// as the manifest's strategy orders it (the new pod first, then the old one deleted) never fails a
// container that reads its files every 20 ms; deleting the last pod leaves nothing mounted.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, type ExecResult } from '../../src/sys/exec.js';
import type { Containerd } from '../helpers/containerd.js';
import { debianPythonTarball, rootfsTarballLayer } from '../helpers/debian.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage } from '../helpers/image.js';
import { CRI_NAMESPACE, contentDigests, fuseMountsUnder, ingest, lazyRunArgs, pullLazy, remoteLabel, statMounts } from '../helpers/lazy.js';
import { describeMount } from '../helpers/mounts.js';
import { repoRoot } from '../helpers/paths.js';
import { makeShared, Pod, Podman, readDaemonSet, Relocation, type DaemonSetManifest } from '../helpers/pod.js';
import { waitUntil } from '../helpers/wait.js';

const SCRIPT = join(repoRoot, 'deploy', 'kubernetes', 'build-image.sh');
const MANIFEST = join(repoRoot, 'deploy', 'kubernetes', 'daemonset.yaml');
const APP = '/opt/cvmfs-snapshotter';
const NS = { namespace: CRI_NAMESPACE };

async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const t of ['debootstrap', 'buildah', 'podman', 'runc', 'conmon']) {
    if ((await exec('sh', ['-c', `command -v ${t}`])).code !== 0) missing.push(t);
  }
  return missing;
}
const missing = await missingTools();
const skip = process.getuid?.() !== 0 ? 'needs root (debootstrap, buildah and podman with private storage, FUSE mounts)'
  : missing.length > 0 ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

const show = (r: ExecResult): string => `exit ${String(r.code)}${r.signal ? ` (${r.signal})` : ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

interface Build { archive: string; tag: string; printed: string; compressed: number; unpacked: number; seconds: number }

/** build-image.sh, with buildah's storage and layer cache kept in storage between the two builds. */
async function buildImage(storage: string, out: string, tag?: string): Promise<Build> {
  const r = await exec(SCRIPT, ['--output', out, ...(tag ? ['--tag', tag] : [])],
    { timeoutMs: 40 * 60_000, env: { ...process.env, CVMFS_IMAGE_STORAGE: storage } });
  assert.equal(r.code, 0, `build-image.sh failed\n${show(r)}`);
  const size = /^size: compressed (\d+) bytes \([\d.]+ MiB\), unpacked (\d+) bytes \([\d.]+ MiB\)$/m.exec(r.stdout);
  const printedTag = /^tag: (\S+)$/m.exec(r.stdout)?.[1] ?? '';
  return {
    archive: out, tag: printedTag, printed: r.stdout,
    compressed: Number(size?.[1] ?? NaN), unpacked: Number(size?.[2] ?? NaN), seconds: Number(/^built in (\d+) s$/m.exec(r.stdout)?.[1] ?? NaN),
  };
}

/** One line per read of the reading container: "ok <ns>" or "fail <ns> <why>". */
const READER = [
  'while :; do',
  '  if out=$(cat /etc/daemonset-e2e/hello.txt 2>&1 && ls /usr/lib/python3* >/dev/null 2>&1); then',
  '    [ "$out" = "hello from layer 2" ] && echo "ok $(date +%s%N)" || echo "fail $(date +%s%N) wrong bytes: $out";',
  '  else echo "fail $(date +%s%N) $out"; fi',
  '  sleep 0.02',
  'done >>/out/reads.log',
].join('\n');

describe('the DaemonSet, run as its manifest says, with a rolling update under a reading container', { skip }, () => {
  let h: Harness;
  let manifest: DaemonSetManifest;
  let rel: Relocation;
  let podman: Podman;
  let ctd: Containerd;
  let image: BuiltImage;
  let first: Build;
  let second: Build;
  let root: string;
  let socket: string;
  const pods: Pod[] = [];

  const planPod = async (name: string, tag?: string): Promise<Pod> => {
    const pod = await Pod.plan({ scope: h.scope, podman, manifest, relocation: rel, name, ...(tag ? { image: tag } : {}) });
    pods.push(pod);
    return pod;
  };
  const waitReady = (pod: Pod, what: string): Promise<number> => waitUntil(async () => (await pod.probe('daemon', 'readinessProbe')).pass,
    { what: `${what}: pod ${pod.name} to turn ready`, timeoutMs: 120_000, intervalMs: 500 })
    .catch(async (err: unknown) => {
      const logs = await Promise.all(pod.containers.map(async (c) => `--- ${c.name}\n${(await pod.logs(c.spec.name)).split('\n').slice(-15).join('\n')}`));
      throw new Error(`${(err as Error).message}\n${logs.join('\n')}`);
    });
  const layerMounts = (): string => fuseMountsUnder(root).map(describeMount).join('\n') || '(none)';

  before(async () => {
    h = await Harness.create('e2e-ds');
    manifest = readDaemonSet(MANIFEST);
    // Two builds of the image, as an upgrade has: the one the manifest names, and a next one. The
    // second reuses the first one's layer cache (the sources are the same), as a CI would; its
    // image differs by its tag label, and the pods run the processes it holds.
    const images = await h.scope.mkdir('images');
    const storage = await h.scope.mkdir('buildah');
    first = await buildImage(storage, join(images, 'first.oci.tar'));
    second = await buildImage(storage, join(images, 'second.oci.tar'), `${first.tag.split(':')[0] ?? ''}:next`);

    const host = await h.scope.mkdir('host');
    h.scope.defer('the shared host directory', await makeShared(host));
    rel = new Relocation(host, manifest.pod);
    podman = new Podman(await h.scope.mkdir('podman'));
    h.scope.defer('podman containers', () => podman.removeAll());
    await podman.load(first.archive);
    await podman.load(second.archive);

    // The node's layer store, in DUCC's layout, at the relocated /cvmfs the ConfigMap names.
    const registry = await h.startRegistry();
    const debian = await debianPythonTarball();
    image = await h.buildImage({
      registry, name: 'e2e/ds-python', tag: 'bookworm',
      layers: [
        rootfsTarballLayer(debian.tarball, 'debootstrap bookworm minbase + python3-minimal'),
        {
          comment: 'a file in /etc',
          raw: async (d) => {
            await mkdir(join(d, 'etc', 'daemonset-e2e'), { recursive: true });
            await writeFile(join(d, 'etc', 'daemonset-e2e', 'hello.txt'), 'hello from layer 2\n');
          },
        },
      ],
      config: { cmd: ['python3'] },
    });
    const config = manifest.configMaps.get('cvmfs-snapshotter')?.['config.toml'] ?? '';
    const storeIn = /^absolute-mountpoint = "([^"]+)"$/m.exec(config)?.[1];
    assert.ok(storeIn, 'the ConfigMap names the store (absolute-mountpoint)');
    const store = rel.path(storeIn);
    await mkdir(store, { recursive: true });
    await ingest(store, image.ref);

    const daemonArgs = manifest.pod.containers.find((c) => c.name === 'daemon')?.args ?? [];
    const arg = (flag: string): string => rel.path(daemonArgs[daemonArgs.indexOf(flag) + 1] ?? '');
    root = arg('--root');
    socket = arg('--address');
    ctd = await h.startContainerd({ snapshotterSocket: socket, registries: [registry], criEnabled: true });
  });
  after(async () => {
    if (h) await h.teardown();
  });

  test('build-image.sh builds the image the manifest names, offline, prints its size, and holds no compiler or tests', async (t) => {
    t.diagnostic(`image ${first.tag}: compressed ${(first.compressed / 1048576).toFixed(1)} MiB, unpacked ${(first.unpacked / 1048576).toFixed(1)} MiB, built in ${first.seconds} s; second build ${second.seconds} s`);
    for (const c of manifest.pod.containers) assert.equal(c.image, first.tag, `container ${c.name} runs the image the script tags by default`);
    const id = async (tag: string): Promise<string> => (await podman.ok(['image', 'inspect', '--format', '{{.Id}}', tag])).trim();
    assert.notEqual(await id(first.tag), await id(second.tag), 'the second build is an image of its own');
    assert.equal(first.compressed, (await stat(first.archive)).size, `the printed compressed size is the archive's:\n${first.printed}`);
    assert.ok(first.unpacked > first.compressed, `unpacked (${first.unpacked}) exceeds compressed (${first.compressed})`);
    assert.equal(second.tag, `${first.tag.split(':')[0] ?? ''}:next`, '--tag names the second build');
    const mounted = (await podman.ok(['image', 'mount', first.tag])).trim();
    try {
      const present = (p: string): boolean => existsSync(join(mounted, p));
      for (const dir of ['usr/bin', 'usr/local/bin', 'bin']) {
        const names = existsSync(join(mounted, dir)) ? await readdir(join(mounted, dir)) : [];
        const compilers = names.filter((n) => /^(gcc|g\+\+|cc|c\+\+|cpp|clang|make|x86_64-linux-gnu-(gcc|g\+\+|cpp))(-\d+)?$/.test(n));
        assert.deepEqual(compilers, [], `no compiler or make in /${dir}`);
      }
      for (const p of ['usr/local/bin/npm', 'usr/local/include/node/node.h']) assert.ok(!present(p), `no /${p} (build stage only)`);
      for (const p of ['dist/test', 'dist/bench', 'dist/demo', 'test', 'src', 'bench', 'native', 'node_modules/typescript', 'node_modules/dependency-cruiser']) {
        assert.ok(!present(`${APP.slice(1)}/${p}`), `no ${APP}/${p} in the image`);
      }
      for (const p of ['bin/cvmfs-snapshotter', 'dist/src/cli/main.js', 'build/Release/cvmfs_sys.node', 'proto', 'package.json']) {
        assert.ok(present(`${APP.slice(1)}/${p}`), `${APP}/${p} is in the image`);
      }
      assert.ok(present('usr/bin/zstd'), 'zstd (ingest of zstd layers on Node 20) is in the image');
    } finally {
      await podman.run(['image', 'unmount', first.tag]);
    }
  });

  test('the pod runs as the manifest says, turns ready, and the host containerd pulls lazily through its socket and runs a container', async (t) => {
    assert.deepEqual(manifest.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      'the update strategy starts the new pod before the old one goes');
    const pod = await planPod('cvmfs-snapshotter-a');
    await pod.start();
    t.diagnostic(`ready ${await waitReady(pod, 'first start')} ms after start`);
    assert.ok((await pod.probe('daemon', 'livenessProbe')).pass, 'the liveness probe passes');
    for (const c of pod.containers) assert.ok((await pod.state(c.spec.name)).running, `container ${c.spec.name} runs`);

    await pullLazy(ctd, image.ref);
    const content = await contentDigests(ctd);
    assert.deepEqual(image.layers.map((l) => l.digest).filter((d) => content.has(d)), [], 'containerd downloaded no layer');
    for (const [i, chainId] of image.chainIds.entries()) {
      assert.equal(await remoteLabel(ctd, chainId), image.layers[i]?.digest, `layer ${i} is a remote snapshot`);
    }
    const out = await ctd.ctr([...lazyRunArgs(ctd), '--rm', image.ref, 'ds-first', 'python3', '-c', 'print(open("/etc/daemonset-e2e/hello.txt").read().strip())'],
      { ...NS, timeoutMs: 120_000 });
    assert.equal(out.trim(), 'hello from layer 2', 'a container runs from the pod\'s FUSE layers');
  });

  test('a rolling update to the second build never fails a container reading every 20 ms, and new containers start afterwards', async (t) => {
    const old = pods[0];
    assert.ok(old, 'the first pod runs');
    const out = await h.scope.mkdir('reader');
    await ctd.ctr([...lazyRunArgs(ctd), '-d', '--mount', `type=bind,src=${out},dst=/out,options=rbind:rw`, image.ref, 'ds-reader', 'sh', '-c', READER], NS);
    const reads = async (): Promise<string[]> => (existsSync(join(out, 'reads.log')) ? (await readFile(join(out, 'reads.log'), 'utf8')).split('\n').filter((l) => l !== '') : []);
    await waitUntil(async () => (await reads()).length >= 20, { what: 'the reader to read 20 times', timeoutMs: 60_000 });
    assert.equal(fuseMountsUnder(root).length, image.layers.length, `one FUSE mount per layer while the reader runs:\n${layerMounts()}`);

    // The new pod's containers may start in any order. Its daemon first: it waits for its own
    // pod's FUSE server, and meanwhile the old pod serves on, ready, and the new one is not ready.
    const next = await planPod('cvmfs-snapshotter-b', second.tag);
    const started = await reads();
    await next.startContainer('daemon');
    await waitUntil(async () => (await next.probe('daemon', 'livenessProbe')).pass, { what: 'the new daemon to answer its liveness probe', timeoutMs: 60_000, intervalMs: 250 });
    const early = await next.probe('daemon', 'readinessProbe');
    assert.equal(early.pass, false, `the new pod is not ready while only the old pod's FUSE server serves the mounts (${early.status} ${early.body})`);
    assert.ok((await old.probe('daemon', 'readinessProbe')).pass, 'the old pod stays ready until the new pod can take over');
    await next.startContainer('fuse-server');
    t.diagnostic(`new pod ready ${await waitReady(next, 'the update')} ms after its FUSE server started`);
    const stepped = await old.probe('daemon', 'readinessProbe');
    assert.equal(stepped.pass, false, `the old daemon stepped down for the new one (${stepped.status} ${stepped.body})`);
    for (const c of old.containers) assert.ok((await old.state(c.spec.name)).running, `the old pod's ${c.spec.name} still runs until the old pod is deleted`);

    assert.match(await old.logs('fuse-server'), /handed/i, 'the old FUSE server says it handed its mounts over');
    const gone = await old.delete();
    for (const [name, s] of gone) assert.equal(s.exitCode, 0, `the old pod's ${name} exited 0 on SIGTERM`);
    await waitUntil(async () => (await reads()).length >= started.length + 50, { what: 'the reader to go on reading after the old pod went', timeoutMs: 60_000 });

    const lines = await reads();
    const failed = lines.filter((l) => !l.startsWith('ok '));
    assert.deepEqual(failed.slice(0, 5), [], `no read failed (${failed.length} of ${lines.length})`);
    const times = lines.map((l) => Number(l.split(' ')[1]) / 1e6);
    const gaps = times.slice(1).map((x, i) => x - (times[i] as number)).sort((a, b) => a - b);
    t.diagnostic(`reads: ${lines.length}; gap between reads: median ${gaps[Math.floor(gaps.length / 2)]?.toFixed(1)} ms, longest ${gaps.at(-1)?.toFixed(1)} ms (the pod replacement)`);
    t.diagnostic(`image size: ${(first.compressed / 1048576).toFixed(1)} MiB compressed, ${(first.unpacked / 1048576).toFixed(1)} MiB unpacked`);

    const health = await statMounts(fuseMountsUnder(root));
    assert.deepEqual(health.filter((m) => m.error !== undefined).map((m) => `${describeMount(m.mount)}: ${m.error ?? ''}`), [], 'no layer mount is dead');
    assert.equal(health.length, image.layers.length, `the reader's layers are still mounted:\n${layerMounts()}`);
    assert.ok((await next.probe('daemon', 'readinessProbe')).pass, 'the new pod stays ready');
    const fresh = await ctd.ctr([...lazyRunArgs(ctd), '--rm', image.ref, 'ds-after', 'python3', '-c', 'print(1)'], { ...NS, timeoutMs: 120_000 });
    assert.equal(fresh.trim(), '1', 'a new container starts after the update');
  });

  test('deleting the last pod, once its containers are gone, leaves nothing mounted', async () => {
    await ctd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', 'ds-reader'], NS);
    await waitUntil(async () => !/ds-reader\s+\d+\s+RUNNING/.test(await ctd.ctr(['tasks', 'ls'], NS)), { what: 'the reader to stop', timeoutMs: 30_000 });
    await ctd.ctr(['tasks', 'delete', 'ds-reader'], NS);
    await ctd.ctr(['containers', 'delete', 'ds-reader'], NS);
    const last = pods.at(-1);
    assert.ok(last, 'a pod runs');
    const states = await last.delete();
    for (const [name, s] of states) assert.equal(s.exitCode, 0, `${name} exited 0 on SIGTERM`);
    assert.deepEqual(fuseMountsUnder(root).map(describeMount), [], 'no layer mount is left');
    assert.deepEqual(fuseMountsUnder(h.dir).map(describeMount), [], 'no FUSE mount is left anywhere under the test directory');
  });
});
