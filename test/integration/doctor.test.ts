// `cvmfs-snapshotter doctor` run as a user runs it, against a private setup: a config, a store
// with one layer, a real daemon on its socket, and a containerd config file. All right, it exits
// 0; with one thing broken, it exits 1 with the FAIL line that names it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk, type ExecResult } from '../../src/sys/exec.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { defaultDaemonConfig, startDaemon, type Daemon } from '../helpers/daemon.js';

let scope: Scope;
let daemon: Daemon;
let store: string;
let ctdConfig: string;
const HEX = `ab${'0123456789abcdef'.repeat(4).slice(2)}`;

function containerdToml(socket: string, cri: string): string {
  return `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
${cri}
[proxy_plugins]
  [proxy_plugins."cvmfs-snapshotter"]
    type = "snapshot"
    address = ${JSON.stringify(socket)}
`;
}

const GOOD_CRI = `  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "cvmfs-snapshotter"
    disable_snapshot_annotations = false
`;

function doctor(o: { config?: string; containerdConfig?: string; address?: string; extra?: string[] } = {}): Promise<ExecResult> {
  return runCli([
    'doctor',
    '--config', o.config ?? daemon.configFile,
    '--containerd-config', o.containerdConfig ?? ctdConfig,
    '--address', o.address ?? daemon.socket,
    '--root', daemon.root,
    ...(o.extra ?? []),
  ], { timeoutMs: 60_000 });
}

function failLines(r: ExecResult): string[] {
  return r.stdout.split('\n').filter((l) => l.startsWith('FAIL'));
}

before(async () => {
  scope = await Scope.create('doctor');
  store = await scope.mkdir('store');
  const layerfs = join(store, '.layers', 'ab', HEX, 'layerfs');
  await mkdir(join(layerfs, 'etc'), { recursive: true });
  await writeFile(join(layerfs, 'etc', 'hello'), 'hi\n');
  daemon = await startDaemon(scope, { configToml: defaultDaemonConfig(store), logLevel: 'info' });
  await chmod(daemon.root, 0o700);
  ctdConfig = scope.path('containerd.toml');
  await writeFile(ctdConfig, containerdToml(daemon.socket, GOOD_CRI));
});

after(async () => { await scope?.teardown(); });

test('all set up: exit 0, and every line says what it checked', async () => {
  const r = await doctor();
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(failLines(r), []);
  const lines = r.stdout.trimEnd().split('\n');
  for (const l of lines) assert.match(l, /^(ok {4}|warn {2})\S.*: /, l);
  assert.ok(lines.includes('ok    /dev/fuse: character device 10:229, openable'), r.stdout);
  assert.ok(lines.includes(`ok    store layer: sha256:${HEX}: layerfs lists 1 entry`), r.stdout);
  assert.ok(lines.includes(`ok    daemon: answers on ${daemon.socket} (Stat of an unknown key: NOT_FOUND)`), r.stdout);
  assert.ok(lines.includes(`ok    socket: ${daemon.socket} is 0600, owned by root`), r.stdout);
  assert.ok(lines.includes(`ok    root: ${daemon.root} is 0700, owned by root; metadata.db present`), r.stdout);
  assert.ok(lines.includes('ok    containerd: disable_snapshot_annotations = false ([plugins."io.containerd.grpc.v1.cri".containerd]), so CRI passes each layer\'s digest'), r.stdout);

  const j = await doctor({ extra: ['--json'] });
  assert.equal(j.code, 0);
  const doc = JSON.parse(j.stdout) as { ok: boolean; findings: Array<{ check: string; level: string; subject: string; message: string }> };
  assert.equal(doc.ok, true);
  assert.equal(doc.findings.length, lines.length);
  assert.deepEqual(doc.findings.find((f) => f.check === 'daemon'), { check: 'daemon', subject: 'daemon', level: 'ok', message: `answers on ${daemon.socket} (Stat of an unknown key: NOT_FOUND)` });
});

test('disable_snapshot_annotations one table too high: exit 1 and where it must go', async () => {
  const misplaced = scope.path('containerd-misplaced.toml');
  await writeFile(misplaced, containerdToml(daemon.socket, `  disable_snapshot_annotations = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "cvmfs-snapshotter"
`));
  const r = await doctor({ containerdConfig: misplaced });
  assert.equal(r.code, 1);
  assert.deepEqual(failLines(r), [
    'FAIL  containerd: disable_snapshot_annotations sits under [plugins."io.containerd.grpc.v1.cri"]; move it to [plugins."io.containerd.grpc.v1.cri".containerd] or CRI ignores it and pulls every layer',
  ]);
  const j = JSON.parse((await doctor({ containerdConfig: misplaced, extra: ['--json'] })).stdout) as { ok: boolean; findings: Array<{ check: string; level: string }> };
  assert.equal(j.ok, false);
  assert.deepEqual(j.findings.filter((f) => f.level === 'fail').map((f) => f.check), ['containerd.annotations']);
});

test('a proxy plugin pointing elsewhere, and no containerd config at all', async () => {
  const elsewhere = scope.path('containerd-elsewhere.toml');
  await writeFile(elsewhere, containerdToml('/run/elsewhere.sock', GOOD_CRI));
  const r = await doctor({ containerdConfig: elsewhere });
  assert.equal(r.code, 1);
  assert.deepEqual(failLines(r), [
    `FAIL  containerd: [proxy_plugins.cvmfs-snapshotter] has address = "/run/elsewhere.sock", but the daemon serves on ${daemon.socket}: set address = ${JSON.stringify(daemon.socket)} (or run the daemon with --address /run/elsewhere.sock)`,
  ]);
  const none = await doctor({ containerdConfig: scope.path('no-such.toml') });
  assert.equal(none.code, 1);
  assert.match(failLines(none).join('\n'), /^FAIL {2}containerd: no config at .*no-such\.toml/);
});

test('containerd imports: the CRI settings in conf.d/*.toml are found, and a misplaced key there is named with its file', async () => {
  const confd = await scope.mkdir('conf.d');
  const main = scope.path('containerd-imports.toml');
  await writeFile(main, `version = 2\nimports = [${JSON.stringify(join(confd, '*.toml'))}]\n${containerdToml(daemon.socket, '').replace('version = 2\n', '')}`);
  const cri = join(confd, '10-cri.toml');
  await writeFile(cri, `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n${GOOD_CRI}`);
  const ok = await doctor({ containerdConfig: main });
  assert.equal(ok.code, 0, ok.stdout);
  assert.ok(ok.stdout.includes(`ok    containerd: ${main} (with imports ${cri}): config version 2`), ok.stdout);

  await writeFile(cri, `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  snapshotter = "cvmfs-snapshotter"\n  disable_snapshot_annotations = false\n`);
  const bad = await doctor({ containerdConfig: main });
  assert.equal(bad.code, 1);
  assert.deepEqual(failLines(bad), [
    `FAIL  containerd: snapshotter = "cvmfs-snapshotter" sits under [plugins."io.containerd.grpc.v1.cri"] in ${cri}, where CRI does not read it as its snapshotter: move it to [plugins."io.containerd.grpc.v1.cri".containerd]`,
    `FAIL  containerd: disable_snapshot_annotations sits under [plugins."io.containerd.grpc.v1.cri"] in ${cri}; move it to [plugins."io.containerd.grpc.v1.cri".containerd] or CRI ignores it and pulls every layer`,
  ]);
});

test('a socket directory open to all: exit 1 and the chmod that fixes it', async () => {
  const dir = join(daemon.socket, '..');
  await chmod(dir, 0o755);
  try {
    const r = await doctor();
    assert.equal(r.code, 1);
    assert.deepEqual(failLines(r), [
      `FAIL  socket dir: ${dir} is 0755; only root may reach the socket, since whoever talks to it makes the daemon mount file systems as root: chmod 0700 ${dir}`,
    ]);
  } finally {
    await chmod(dir, 0o700);
  }
  assert.equal((await doctor()).code, 0);
});

test('a store without layers is a warning; a directory that is no store fails', async () => {
  const emptyStore = await scope.mkdir('empty-store', '.layers');
  const emptyConfig = scope.path('empty.toml');
  await writeFile(emptyConfig, defaultDaemonConfig(join(emptyStore, '..')));
  const e = await doctor({ config: emptyConfig });
  assert.equal(e.code, 0, e.stdout);
  assert.match(e.stdout, /^warn {2}store layer: .*empty-store\/\.layers holds no layer directories yet/m);

  const noStore = await scope.mkdir('not-a-store');
  const noStoreConfig = scope.path('not-a-store.toml');
  await writeFile(noStoreConfig, defaultDaemonConfig(noStore));
  const n = await doctor({ config: noStoreConfig });
  assert.equal(n.code, 1);
  assert.deepEqual(failLines(n), [
    `FAIL  store: ${noStore} has no .layers directory, so it is not a DUCC layer store and every layer is downloaded: set absolute-mountpoint in ${noStoreConfig} to the directory that holds .layers`,
  ]);

  const badConfig = scope.path('bad.toml');
  await writeFile(badConfig, 'repo = "x"\n');
  const b = await doctor({ config: badConfig });
  assert.equal(b.code, 1);
  assert.match(failLines(b).join('\n'), /^FAIL {2}config: .*bad\.toml: unknown key "repo".*the daemon will not start with it/);
});

test('a stale socket nobody serves: the gRPC probe says so', async () => {
  const staleDir = await scope.mkdir('stale');
  await chmod(staleDir, 0o700);
  const stale = join(staleDir, 'stale.sock');
  // A unix socket bound and then abandoned stays on disk, like a daemon's after SIGKILL.
  await execOk('python3', ['-c', `import os, socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)}); os.chmod(${JSON.stringify(stale)}, 0o600)`]);
  const ctd = scope.path('containerd-stale.toml');
  await writeFile(ctd, containerdToml(stale, GOOD_CRI));
  const r = await doctor({ address: stale, containerdConfig: ctd });
  assert.equal(r.code, 1);
  const fails = failLines(r);
  assert.equal(fails.length, 1, r.stdout);
  assert.match(fails[0] ?? '', /^FAIL {2}daemon: nothing answers on .*stale\.sock \(connection refused\): the socket is stale, its daemon is gone/);
});

test('usage', async () => {
  const help = await runCli(['doctor', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: cvmfs-snapshotter doctor \[options\]/);
  assert.equal((await runCli(['doctor', 'extra'])).code, 2);
  assert.equal((await runCli(['doctor', '--bogus'])).code, 2);
  const top = await runCli(['--help']);
  assert.match(top.stdout, /^ {2}doctor {5}check this node/m);
});

test('a daemon that accepts but never answers (stopped with SIGSTOP): doctor gives up after 5 s', async () => {
  process.kill(daemon.pid, 'SIGSTOP');
  try {
    const r = await doctor();
    assert.equal(r.code, 1);
    assert.deepEqual(failLines(r), [
      `FAIL  daemon: nothing answered on ${daemon.socket} within 5 s: the daemon is hung or stopped (SIGSTOP); see its log, restart it`,
    ]);
  } finally {
    process.kill(daemon.pid, 'SIGCONT');
  }
  assert.equal((await doctor()).code, 0);
});

// Last: it stops the daemon.
test('the daemon stopped: no socket, and doctor says to start it', async () => {
  await daemon.stop();
  const r = await doctor();
  assert.equal(r.code, 1);
  assert.deepEqual(failLines(r), [
    `FAIL  daemon: not running: there is no socket at ${daemon.socket}; start it (cvmfs-snapshotter --address ${daemon.socket}), or pass the --address it serves on`,
  ]);
});
