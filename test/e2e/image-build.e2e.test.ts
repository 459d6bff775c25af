// The Kubernetes image built here without Docker Hub: deploy/kubernetes/build-image.sh builds
// deploy/kubernetes/Dockerfile with buildah over a debootstrap'd Debian and node from the npm
// registry. The image is unpacked with umoci and run with chroot in a private mount and PID
// namespace (so everything started inside dies with it and no mount outlives it): the daemon
// starts and serves its sockets, its native addon and SQLite load, and nothing but what runs
// is in it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOk, type ExecResult } from '../../src/sys/exec.js';
import { repoRoot } from '../helpers/paths.js';
import { mountsUnder } from '../helpers/mounts.js';

const SCRIPT = join(repoRoot, 'deploy', 'kubernetes', 'build-image.sh');
const APP = '/opt/cvmfs-snapshotter';
const CLEAN_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const t of ['debootstrap', 'buildah', 'umoci', 'unshare', 'chroot']) {
    const r = await exec('sh', ['-c', `command -v ${t}`]);
    if (r.code !== 0) missing.push(t);
  }
  return missing;
}
const missing = await missingTools();
const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root (debootstrap, buildah vfs storage, chroot)'
  : missing.length > 0 ? `needs ${missing.join(', ')} (scripts/install-deps.sh installs them)` : false;

const version = (JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * Runs `script` (sh) with the image's rootfs as $R, in new mount and PID namespaces: /dev and
 * /proc are mounted there for the chroot, and when the script ends the namespace's processes end
 * with it and its mounts go away. A clean environment: nothing of this host leaks in.
 */
function inImage(rootfs: string, script: string, timeoutMs = 120_000): Promise<ExecResult> {
  const setup = `set -e; R=${rootfs}; mount --make-rprivate /; mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; `;
  return exec('env', ['-i', CLEAN_PATH, 'unshare', '--mount', '--pid', '--fork', '--kill-child', 'sh', '-c', setup + script], { timeoutMs });
}
const show = (r: ExecResult): string => `exit ${String(r.code)}${r.signal ? ` (${r.signal})` : ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('the Kubernetes image, built offline by deploy/kubernetes/build-image.sh', { skip }, () => {
  let work: string;
  let archive: string;
  let rootfs: string;
  let printed: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cvmfs-image-test-'));
    archive = join(work, `cvmfs-snapshotter-${version}.oci.tar`);
    // The Debian bases and node are cached (CVMFS_IMAGE_CACHE or /var/cache/cvmfs-snapshotter-image):
    // a cold run debootstraps twice and takes minutes; a warm one builds only the project.
    const r = await exec(SCRIPT, ['--output', archive], { timeoutMs: 40 * 60_000 });
    assert.equal(r.code, 0, `build-image.sh failed\n${show(r)}`);
    printed = r.stdout;
    const layout = join(work, 'layout');
    await mkdir(layout);
    await execOk('tar', ['-xf', archive, '-C', layout]);
    const bundle = join(work, 'bundle');
    await execOk('umoci', ['unpack', '--image', `${layout}:cvmfs-snapshotter:${version}`, bundle], { timeoutMs: 10 * 60_000 });
    rootfs = join(bundle, 'rootfs');
  });

  after(async () => {
    if (work === undefined) return;
    const left = mountsUnder(work);
    await rm(work, { recursive: true, force: true });
    assert.deepEqual(left.map((m) => m.mountPoint), [], 'no mount is left under the unpacked image');
  });

  test('the script writes an OCI archive tagged with the version and prints its path and sizes', async () => {
    assert.match(printed, new RegExp(`^image: ${archive.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), `the archive's path is printed:\n${printed}`);
    assert.match(printed, new RegExp(`^tag: cvmfs-snapshotter:${version.replace(/\./g, '\\.')}$`, 'm'), `the tag is printed:\n${printed}`);
    const size = /^size: compressed (\d+) bytes \([\d.]+ MiB\), unpacked (\d+) bytes \([\d.]+ MiB\)$/m.exec(printed);
    assert.ok(size, `the size is printed:\n${printed}`);
    const compressed = Number(size[1]);
    const unpacked = Number(size[2]);
    assert.equal(compressed, (await stat(archive)).size, 'the compressed size is the archive\'s');
    assert.ok(unpacked > compressed, `unpacked (${unpacked}) exceeds compressed (${compressed})`);
    const index = JSON.parse(await execOk('tar', ['-xOf', archive, 'index.json']).then((x) => x.stdout)) as
      { manifests: { annotations?: Record<string, string> }[] };
    assert.deepEqual(index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']), [`cvmfs-snapshotter:${version}`]);
    const config = JSON.parse(await readFile(join(work, 'bundle', 'config.json'), 'utf8')) as { process: { args: string[] } };
    assert.deepEqual(config.process.args, [`${APP}/bin/cvmfs-snapshotter`], 'the entrypoint is the daemon');
  });

  test('the daemon starts inside the image: --version and doctor --help answer', async () => {
    const v = await inImage(rootfs, `chroot "$R" ${APP}/bin/cvmfs-snapshotter --version`);
    assert.equal(v.code, 0, show(v));
    assert.equal(v.stdout.trim(), `cvmfs-snapshotter ${version}`);
    const d = await inImage(rootfs, `chroot "$R" ${APP}/bin/cvmfs-snapshotter doctor --help`);
    assert.equal(d.code, 0, show(d));
    assert.match(d.stdout, /^Usage: cvmfs-snapshotter doctor/m);
  });

  test('the native addon and better-sqlite3 load inside the image', async () => {
    const probe = [
      `const { createRequire } = await import('node:module');`,
      `const { native } = await import('${APP}/dist/src/sys/native.js');`,
      `const Db = createRequire('${APP}/package.json')('better-sqlite3');`,
      `const v = new Db(':memory:').prepare('select sqlite_version() as v').get().v;`,
      `process.stdout.write(JSON.stringify({ addon: typeof native.seqpacketPair, sqlite: v }));`,
    ].join(' ');
    const r = await inImage(rootfs, `chroot "$R" /usr/local/bin/node --input-type=module -e "${probe}"`);
    assert.equal(r.code, 0, show(r));
    const got = JSON.parse(r.stdout) as { addon: string; sqlite: string };
    assert.equal(got.addon, 'function', 'cvmfs_sys.node loaded');
    assert.match(got.sqlite, /^3\.\d+\.\d+$/, 'better-sqlite3 opened a database');
  });

  test('the daemon runs inside the image and serves its gRPC and FUSE server sockets', async () => {
    // The config a ConfigMap would give, with a store of its own; the default sockets under
    // /run/containerd-cvmfs-grpc are inside the unpacked rootfs, private to this test.
    await mkdir(join(rootfs, 'tmp', 'store'), { recursive: true });
    await mkdir(join(rootfs, 'tmp', 'config'), { recursive: true });
    await writeFile(join(rootfs, 'tmp', 'config', 'config.toml'), 'repository = "unpacked.cern.ch"\nabsolute-mountpoint = "/tmp/store"\n');
    const run = join(rootfs, 'run', 'containerd-cvmfs-grpc');
    const r = await inImage(rootfs, [
      `chroot "$R" ${APP}/bin/cvmfs-snapshotter --config /tmp/config/config.toml --root /tmp/root >"$R/tmp/daemon.log" 2>&1 &`,
      `i=0; while [ ! -S "$R/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock" ] || [ ! -S "$R/run/containerd-cvmfs-grpc/fuse-server.sock" ]; do`,
      `  i=$((i+1)); [ $i -le 600 ] || { echo "no sockets after 60 s"; cat "$R/tmp/daemon.log"; exit 1; }; sleep 0.1; done`,
      'echo serving',
    ].join('\n'));
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), 'serving');
    assert.ok(existsSync(join(run, 'fuse-server.sock.pid')), 'the daemon started the FUSE server');
  });

  test('the image holds no compiler, no tests, no TypeScript sources and no dev dependencies', async () => {
    const present = (p: string): boolean => existsSync(join(rootfs, p));
    for (const dir of ['usr/bin', 'usr/local/bin', 'bin']) {
      const names = existsSync(join(rootfs, dir)) ? await readdir(join(rootfs, dir)) : [];
      const compilers = names.filter((n) => /^(gcc|g\+\+|cc|c\+\+|cpp|clang|make|x86_64-linux-gnu-(gcc|g\+\+|cpp))(-\d+)?$/.test(n));
      assert.deepEqual(compilers, [], `no compiler or make in /${dir}`);
    }
    for (const p of ['usr/local/bin/npm', 'usr/local/include/node/node.h']) assert.ok(!present(p), `no /${p} (build stage only)`);
    for (const p of ['dist/test', 'dist/bench', 'dist/demo', 'test', 'src', 'bench', 'native', 'node_modules/typescript', 'node_modules/dependency-cruiser', 'node_modules/@types/better-sqlite3']) {
      assert.ok(!present(`${APP.slice(1)}/${p}`), `no ${APP}/${p} in the image`);
    }
    for (const p of ['bin/cvmfs-snapshotter', 'dist/src/cli/main.js', 'build/Release/cvmfs_sys.node', 'proto', 'package.json']) {
      assert.ok(present(`${APP.slice(1)}/${p}`), `${APP}/${p} is in the image`);
    }
    assert.ok(present('etc/containerd-cvmfs-grpc/config.toml'), 'the default config is in the image');
    assert.ok(present('usr/bin/zstd'), 'zstd (ingest of zstd layers on Node 20) is in the image');
  });
});
