// Who may reach the daemon's socket: only its own user. The socket is 0600 in a 0700 directory,
// whether the daemon makes the directory or finds it; a directory it may not make private is
// refused and left as it was.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotsClient } from '../../src/server/client.js';
import { exec } from '../../src/sys/exec.js';
import { runCli } from '../helpers/cli.js';
import { defaultDaemonConfig, startDaemon } from '../helpers/daemon.js';
import { Scope } from '../helpers/scope.js';

const NOBODY = 65534;
let scope: Scope;

before(async () => {
  scope = await Scope.create('socket-perms');
  // Traversable by others up to the socket's directory, so that only the daemon's modes stop them.
  await chmod(scope.dir, 0o755);
});
after(async () => { await scope?.teardown(); });

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o7777;

/** Connects to a unix socket as another user; the errno name, or "connected". */
async function connectAs(uid: number, socket: string): Promise<string> {
  const py = `import socket, sys, errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("connected")
except OSError as e:
    print(errno.errorcode[e.errno])`;
  const r = await exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/usr/bin/python3', '-c', py, socket], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Leaves a socket file behind, as a daemon killed with SIGKILL does. */
async function staleSocket(path: string): Promise<void> {
  const r = await exec('/usr/bin/python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
  assert.equal(r.code, 0, r.stderr);
}

/** A daemon directory in the scope, open to others, with the socket's directory made (or not) by the test. */
async function daemonDir(name: string): Promise<{ dir: string; run: string; socket: string }> {
  const dir = await scope.mkdir(name);
  await chmod(dir, 0o755);
  return { dir, run: join(dir, 'run'), socket: join(dir, 'run', 'snapshotter.sock') };
}

async function refusedStart(name: string): Promise<{ code: number | null; output: string }> {
  const { dir, socket } = await daemonDir(name);
  const store = await scope.mkdir(name, 'store');
  await writeFile(join(dir, 'config.toml'), defaultDaemonConfig(store));
  const r = await runCli(['--address', socket, '--root', join(dir, 'root'), '--config', join(dir, 'config.toml')], { timeoutMs: 60_000 });
  return { code: r.code, output: r.stdout + r.stderr };
}

test('the daemon makes its socket directory 0700 and the socket 0600; another user cannot connect, root can', async () => {
  await daemonDir('made');
  const d = await startDaemon(scope, { name: 'made' });
  assert.equal((await mode(join(d.socket, '..'))).toString(8), '700');
  assert.equal((await mode(d.socket)).toString(8), '600');
  assert.equal((await stat(d.socket)).uid, process.geteuid?.());
  assert.equal(await connectAs(NOBODY, d.socket), 'EACCES');
  const c = new SnapshotsClient(d.socket);
  try { assert.deepEqual(await c.list(), []); } finally { c.close(); }
  assert.ok(d.logRecords().some((r) => r.msg === 'made the socket directory'));
  await d.stop();
});

for (const open of [0o755, 0o777, 0o1777, 0o710]) {
  test(`an existing socket directory of mode 0${open.toString(8)} holding only sockets and .pid files is tightened to 0700, and the log says so`, async () => {
    const name = `open-${open.toString(8)}`;
    const { run } = await daemonDir(name);
    await mkdir(run);
    await chmod(run, open);
    await staleSocket(join(run, 'snapshotter.sock'));
    await staleSocket(join(run, 'fuse-server.sock'));
    await writeFile(join(run, 'fuse-server.sock.pid'), '1\n');
    const d = await startDaemon(scope, { name });
    assert.equal((await mode(run)).toString(8), '700');
    assert.equal((await mode(d.socket)).toString(8), '600');
    assert.equal(await connectAs(NOBODY, d.socket), 'EACCES');
    const line = d.logRecords().find((r) => r.msg === 'the socket directory was open to other users; tightened it to 0700');
    assert.ok(line, 'a log line says the directory was tightened');
    assert.equal(line.was, `0${open.toString(8)}`);
    assert.equal(line.dir, run);
    await d.stop();
  });
}

test('a 0700 socket directory of the daemon\'s user is used as it is, without a warning', async () => {
  const { run } = await daemonDir('private');
  await mkdir(run, { mode: 0o700 });
  const d = await startDaemon(scope, { name: 'private' });
  assert.equal((await mode(run)).toString(8), '700');
  assert.ok(!d.logRecords().some((r) => r.level === 40 && String(r.msg).includes('socket directory')));
  await d.stop();
});

test('a socket directory open to others that holds other files is refused and left as it was', async () => {
  const { run } = await daemonDir('shared');
  await mkdir(run);
  await chmod(run, 0o755);
  await writeFile(join(run, 'notes.txt'), 'not ours\n');
  const r = await refusedStart('shared');
  assert.notEqual(r.code, 0);
  assert.match(r.output, /socket directory .*shared\/run has mode 0755, open to other users, and holds other files \(notes\.txt\); refusing to change a shared directory/);
  assert.equal((await mode(run)).toString(8), '755');
});

test('a socket directory that belongs to another user is refused, whatever its mode', async () => {
  const { run } = await daemonDir('foreign');
  await mkdir(run, { mode: 0o700 });
  await chown(run, NOBODY, NOBODY);
  const r = await refusedStart('foreign');
  assert.notEqual(r.code, 0);
  assert.match(r.output, new RegExp(`socket directory .*foreign/run belongs to uid ${NOBODY}, not to this daemon's uid 0`));
  assert.equal((await mode(run)).toString(8), '700');
  assert.equal((await stat(run)).uid, NOBODY);
});

test('a socket directory path that is a file is refused', async () => {
  const { run } = await daemonDir('file');
  await writeFile(run, 'a file\n');
  const r = await refusedStart('file');
  assert.notEqual(r.code, 0);
  assert.match(r.output, /socket directory .*file\/run exists and is not a directory/);
});
