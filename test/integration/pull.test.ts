// `pull` against a real containerd 1.6: what it says when containerd is missing, refuses
// connections, has no CRI, or has a CRI set up for another snapshotter or pointing at a daemon
// that is not running (tried again for a while first); and that a forced pull reports the time
// and which layers were fetched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execOk, type ExecResult } from '../../src/sys/exec.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { startContainerd } from '../helpers/containerd.js';


let scope: Scope;
let registry: Registry;
let image: BuiltImage;

function runPull(args: string[]): Promise<ExecResult> {
  return runCli(['pull', ...args], { timeoutMs: 120_000 });
}

before(async () => {
  scope = await Scope.create('pull');
  registry = await startRegistry(scope);
  image = await buildImage(scope, {
    registry,
    name: 'test/pull',
    tag: 'v1',
    layers: [
      async (root) => { await execOk('mkdir', ['-p', `${root}/a`]); await execOk('cp', ['/bin/busybox', `${root}/a/busybox`]); },
      async (root) => { await execOk('touch', [`${root}/a/second`]); },
    ],
  });
});

after(async () => { await scope.teardown(); });

test('no socket: containerd is not running', async () => {
  const r = await runPull(['--containerd', scope.path('nothing.sock'), image.ref]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach containerd: there is no socket at .*nothing\.sock\. Is containerd running\?/);
});

test('a socket nobody listens on: connection refused', async () => {
  const sock = scope.path('stale.sock');
  // A unix socket bound and then abandoned stays on disk, like containerd's after a crash.
  await execOk('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
  const r = await runPull(['--containerd', sock, image.ref]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach containerd at .*stale\.sock: connection refused/);
});

test('usage errors', async () => {
  assert.equal((await runPull([])).code, 2);
  assert.equal((await runPull(['a', 'b'])).code, 2);
  const help = await runPull(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: cvmfs-snapshotter pull \[--containerd SOCK\]/);
});

test('containerd without CRI, with CRI for another snapshotter, and with the daemon down', async () => {
  const noCri = await startContainerd(scope, { name: 'ctd-nocri', criEnabled: false });
  const a = await runPull(['--containerd', noCri.socket, image.ref]);
  assert.equal(a.code, 3);
  assert.match(a.stderr, /does not serve the CRI API \(runtime\.v1\): its "cri" plugin is disabled/);
  assert.match(a.stderr, /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\]\n\s+snapshotter = "cvmfs-snapshotter"\n\s+disable_snapshot_annotations = false/);
  await noCri.stop();

  const overlay = await startContainerd(scope, { name: 'ctd-overlay', criEnabled: true, criSnapshotter: 'overlayfs', registries: [registry] });
  const b = await runPull(['--containerd', overlay.socket, image.ref]);
  assert.equal(b.code, 3);
  assert.match(b.stderr, /containerd's CRI is not configured for cvmfs-snapshotter: its snapshotter is "overlayfs", not "cvmfs-snapshotter"/);
  assert.match(b.stderr, /snapshotter = "cvmfs-snapshotter"\n\s+disable_snapshot_annotations = false/);
  assert.match(b.stderr, /--force pulls anyway/);

  // Forced: a plain download, and --verbose sees every layer blob in containerd's content store.
  const c = await runPull(['--containerd', overlay.socket, '--force', '--verbose', image.ref]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, new RegExp(`^${image.ref.replace(/[.]/g, '\\.')} pulled in \\d+\\.\\d+ s \\(sha256:[0-9a-f]{64}\\)$`, 'm'));
  for (const l of image.layers) assert.match(c.stdout, new RegExp(`${l.digest} downloaded`));
  assert.match(c.stdout, /0 of 2 layers lazy/);
  await overlay.stop();

  const down = await startContainerd(scope, { name: 'ctd-down', criEnabled: true, snapshotterSocket: scope.path('no-daemon.sock'), registries: [registry] });
  const d = await runPull(['--containerd', down.socket, image.ref]);
  assert.equal(d.code, 1);
  assert.match(d.stderr, /containerd cannot reach the cvmfs-snapshotter daemon yet; trying again for up to 10 s/);
  assert.match(d.stderr, /containerd could not reach the cvmfs-snapshotter daemon while pulling .* \(tried for 10 s\)/);
  assert.match(d.stderr, /Is the daemon running, and does \[proxy_plugins\.cvmfs-snapshotter\] address name its socket\?/);
  await down.stop();
});
