// The FUSE server as its own process: started on demand by the daemon's client, serving layers
// across handovers to successor processes (the upgrade path), and taking every layer down on
// --stop. A reader keeps reading through every handover.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RemoteLayerMounter } from '../../src/fuse/server/client.js';
import { silentLogger } from '../../src/log.js';
import { daemonBin } from '../helpers/paths.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { waitUntil } from '../helpers/wait.js';
import { isAlive } from '../../src/sys/pid.js';
import { mountsUnder } from '../helpers/mounts.js';

let scope: Scope;
let socket = '';
let layer = '';
let mnt = '';
let client: RemoteLayerMounter;

const serverPid = async (): Promise<number> => Number.parseInt(await readFile(`${socket}.pid`, 'utf8'), 10);

before(async () => {
  scope = await Scope.create('fuse-server');
  // The server serves layers of one store, below one root: the daemon's.
  const store = await scope.mkdir('store');
  const root = await scope.mkdir('root');
  const hex = 'fe'.repeat(32);
  layer = join(store, '.layers', 'fe', hex, 'layerfs');
  await mkdir(join(layer, 'd'), { recursive: true });
  await writeFile(join(layer, 'd', 'f'), 'served\n');
  mnt = join(root, 'snapshots', '1', 'fs');
  socket = join(await scope.mkdir('run'), 'fuse.sock');
  client = new RemoteLayerMounter({
    socket,
    log: silentLogger(),
    scope: { root, store },
    startServer: () => {
      const c = spawn(process.execPath, [daemonBin, 'fuse-server', '--socket', socket, '--log-level', 'warn'],
        { stdio: 'ignore', detached: true });
      c.unref();
    },
  });
  scope.defer('stop the FUSE server', async () => {
    const pid = await serverPid().catch(() => undefined);
    if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGTERM');
    if (pid !== undefined) await waitUntil(() => !isAlive(pid), { what: 'the FUSE server to exit', timeoutMs: 20_000 });
  });
});

after(async () => {
  await client?.disconnect();
  await scope?.teardown();
});

test('the client starts a server when none answers, and the server mounts a layer', async () => {
  await client.mount(layer, mnt);
  assert.deepEqual(client.mountpoints(), [mnt]);
  assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), 'served\n');
});

test('two handovers in a row: a new process each time, the layer served throughout, never unmounted', async () => {
  // A reader in another process; it exits non-zero at the first failed read.
  const reader: ChildProcess = spawn('sh', ['-c', `while :; do cat '${join(mnt, 'd', 'f')}' >/dev/null || exit 3; sleep 0.01; done`], { stdio: 'ignore' });
  let readerExit: number | null | undefined;
  reader.on('exit', (code) => { readerExit = code; });
  try {
    const pids = [await serverPid()];
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['fuse-server', '--handover', '--socket', socket], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const next = await serverPid();
      assert.ok(!pids.includes(next), `handover ${i + 1} started a new process (${r.stdout.trim()})`);
      await waitUntil(() => !isAlive(pids[pids.length - 1] as number), { what: 'the old server to exit', timeoutMs: 10_000 });
      pids.push(next);
      assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), 'served\n');
    }
    assert.equal(readerExit, undefined, 'the reader never failed a read');
    // The client reconnects to the successor by itself.
    await client.unmount(mnt).then(() => client.mount(layer, mnt));
    assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), 'served\n');
  } finally {
    reader.kill('SIGKILL');
  }
});

test('--stop unmounts every layer and ends the server', async () => {
  const pid = await serverPid();
  const r = await runCli(['fuse-server', '--stop', '--socket', socket], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  await waitUntil(() => !isAlive(pid), { what: 'the server to exit', timeoutMs: 20_000 });
  assert.deepEqual(mountsUnder(scope.dir), [], 'nothing is mounted any more');
});
