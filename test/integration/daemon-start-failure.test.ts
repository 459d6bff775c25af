// A daemon whose start fails half-way stops what it had started and exits with the reason: the
// FUSE server connection, the metrics port and the socket are released, nothing keeps it alive.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { isAlive } from '../../src/sys/pid.js';
import { runCli } from '../helpers/cli.js';
import { daemonBin } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { Scope } from '../helpers/scope.js';
import { waitUntil } from '../helpers/wait.js';

let scope: Scope;
before(async () => { scope = await Scope.create('start-failure'); });
after(async () => { await scope?.teardown(); });

/** Stops the FUSE server a daemon started (it outlives the daemon by design). */
async function stopFuseServer(socket: string): Promise<void> {
  const pid = Number.parseInt(await readFile(`${socket}.pid`, 'utf8').catch(() => ''), 10);
  if (!Number.isInteger(pid)) return;
  await runCli(['fuse-server', '--stop', '--socket', socket], { timeoutMs: 30_000 });
  await waitUntil(() => !isAlive(pid), { timeoutMs: 30_000, what: `FUSE server ${pid} to exit` });
}

test('a database that cannot be opened: the daemon exits 1 with the reason instead of hanging, and frees its metrics port', async () => {
  const dir = await scope.mkdir('bad-db');
  const root = await scope.mkdir('bad-db', 'root');
  const store = await scope.mkdir('bad-db', 'store');
  const fuseSocket = join(dir, 'run', 'fuse-server.sock');
  scope.defer('stop the FUSE server', () => stopFuseServer(fuseSocket));
  // Not SQLite: opening it fails after the metrics server and the FUSE server connection are up.
  await writeFile(join(root, 'metadata.db'), Buffer.alloc(8192, 0x5a));
  const port = await freePort();
  await writeFile(join(dir, 'config.toml'), `repository = "unpacked.cern.ch"\nabsolute-mountpoint = ${JSON.stringify(store)}\n[metrics]\naddress = "127.0.0.1:${port}"\n`);

  // Output to a file, not a pipe: the FUSE server the daemon starts inherits it and lives on.
  const logFile = join(dir, 'daemon.log');
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, [daemonBin, '--address', join(dir, 'run', 'snapshotter.sock'), '--root', root, '--config', join(dir, 'config.toml'), '--log-format', 'json'], { stdio: ['ignore', out, out] });
  closeSync(out);
  // Before the cleanup stack, the open connection to the FUSE server kept the process alive
  // after the error: it never exited by itself.
  const exit = await new Promise<{ code: number | null; hung: boolean }>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve({ code: null, hung: true }); }, 60_000);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, hung: false }); });
  });
  const log = await readFile(logFile, 'utf8');
  assert.equal(exit.hung, false, `the daemon did not exit by itself within 60 s after its start failed; log: ${log.slice(-2000)}`);
  assert.equal(exit.code, 1);
  assert.match(log, /file is not a database/);
  assert.match(log, /connected to the FUSE server/, 'the failure came after the FUSE server connection, so its cleanup was exercised');
  assert.match(log, /serving metrics/, 'the failure came after the metrics server started');

  // The metrics port is free again: the stack closed the server it had started.
  const probe = createServer();
  await new Promise<void>((resolve, reject) => { probe.once('error', reject); probe.listen(port, '127.0.0.1', resolve); });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});
