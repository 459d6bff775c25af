// The control socket's setup, shared by the FUSE server and its clients: born 0600 in a private
// directory, and never dialled when the path is not a socket of this user (a symlink to a socket
// elsewhere, a plain file).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { silentLogger } from '../../src/log.js';
import { RemoteLayerMounter } from '../../src/fuse/server/client.js';
import { dialControlSocket, ForeignSocket, listenControlSocket } from '../../src/fuse/server/socket.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cvmfs-ctl-'));
const servers: net.Server[] = [];
after(async () => {
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the server\'s socket is 0600 in a 0700 directory, and a client reaches it', async () => {
  const sock = path.join(dir, 'run', 'fuse.sock');
  const accepted: net.Socket[] = [];
  servers.push(await listenControlSocket(sock, silentLogger(), (c) => { accepted.push(c); c.end(); }));
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o700);
  const c = await dialControlSocket(sock);
  c.destroy();
  assert.ok(fs.lstatSync(sock).isSocket());
});

test('a symlink to a socket and a plain file are refused at once, without waiting for a server', async () => {
  const real = path.join(dir, 'real', 'fuse.sock');
  servers.push(await listenControlSocket(real, silentLogger(), (c) => c.end()));
  const link = path.join(dir, 'link.sock');
  fs.symlinkSync(real, link);
  await assert.rejects(dialControlSocket(link), (e: unknown) => e instanceof ForeignSocket && /is not a socket \(a symlink\)/.test(e.message));
  const file = path.join(dir, 'file.sock');
  fs.writeFileSync(file, '');
  await assert.rejects(dialControlSocket(file), (e: unknown) => e instanceof ForeignSocket && /another kind of file/.test(e.message));

  // The daemon's client gives up at once rather than starting a server that could not listen there.
  let started = 0;
  const client = new RemoteLayerMounter({ socket: link, log: silentLogger(), startServer: () => { started++; }, startTimeoutMs: 60_000 });
  await assert.rejects(client.connect(), ForeignSocket);
  assert.equal(started, 0, 'no server was started');
  await client.disconnect();
});

test('a client that disconnected refuses further calls and leaves the server running', async () => {
  const sock = path.join(dir, 'gone', 'fuse.sock');
  let closed = 0;
  const srv = await listenControlSocket(sock, silentLogger(), (c) => {
    c.setEncoding('utf8');
    c.on('data', (line: string) => {
      const { id } = JSON.parse(line.trim()) as { id: number };
      c.write(`${JSON.stringify({ id, result: null, state: { pid: 1, version: 'x', mountsVersion: 0, mountCount: 0, counters: {}, cache: {} } })}\n`);
    });
    c.on('close', () => { closed++; });
  });
  servers.push(srv);
  const client = new RemoteLayerMounter({ socket: sock, log: silentLogger(), startServer: () => undefined });
  await client.connect();
  await client.disconnect();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closed, 1, 'the connection was closed');
  assert.ok(srv.listening, 'the server still listens');
  await assert.rejects(client.mount('/s/.layers/x', '/r/m'), /has disconnected/);
});
