// A daemon taking over from another on the same socket and root (`--replace`), as the new pod's
// daemon does in a rolling update on Kubernetes: the old one steps down when asked, keeps every
// snapshot and mount, and idles until SIGTERM; without --replace a second daemon still refuses.
// And the health endpoints: /livez answers while the process does, /readyz only while the daemon
// serves with its own FUSE server holding every mount its snapshots need.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SnapshotsClient } from '../../src/server/client.js';
import { runCli } from '../helpers/cli.js';
import { defaultDaemonConfig, parseJsonLines, startDaemon, type Daemon, type LogRecord } from '../helpers/daemon.js';
import { mountpointsUnder, readRecords } from '../helpers/root-check.js';
import { makeStoreLayers, mountDirs, prepareRemote, type StoreLayer } from '../helpers/snapshot-cycles.js';
import { freePort } from '../helpers/ports.js';
import { configWithMetrics, httpGet, readyzBecomes, startDaemonProcess, startFuseServerAs, waitForLog } from '../helpers/daemon-process.js';
import { startFuseServer } from '../helpers/fuse-server-process.js';
import { processesMentioning } from '../helpers/processes.js';
import { ManagedProcess } from '../helpers/process.js';
import { daemonBin } from '../helpers/paths.js';
import { Scope } from '../helpers/scope.js';
import { canConnect, waitUntil } from '../helpers/wait.js';

let scope: Scope;
let store: string;
let layers: StoreLayer[];

before(async () => {
  scope = await Scope.create('replace');
  store = await scope.mkdir('store');
  layers = await makeStoreLayers(store, 2);
});
after(async () => { await scope?.teardown(); });

const config = (port: number): string => configWithMetrics(store, port);

const messages = (records: LogRecord[]): string[] => records.map((r) => String(r.msg));

test('--replace: the serving daemon steps down and idles, the new one serves the same snapshots and mounts, the old one exits 0 on SIGTERM having removed nothing', async (t) => {
  const portA = await freePort();
  const a: Daemon = await startDaemon(scope, { name: 'a', configToml: config(portA), logLevel: 'info' });
  const ca = new SnapshotsClient(a.socket);
  // A committed snapshot, and an active one on a remote layer: its FUSE mount is in use.
  await ca.prepare('plain-active', '');
  await ca.commit('plain-committed', 'plain-active');
  const layer = layers[0] as StoreLayer;
  await prepareRemote(ca, 'extract-0', '', 'layer-0', layer);
  const { mounts } = await ca.prepare('container', 'layer-0');
  const lower = mountDirs(mounts).lower[0] as string;
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content, 'the layer reads through its mount');
  // ca stays connected through the takeover, as containerd's connection does.
  assert.equal((await httpGet(portA, '/readyz')).status, 200, 'A is ready before');
  const recordsBefore = readRecords(a.root);
  const dirsBefore = (await readdir(join(a.root, 'snapshots'))).sort();
  const mountsBefore = await mountpointsUnder(a.root);
  assert.ok(mountsBefore.includes(lower), `the layer is mounted at ${lower}: ${mountsBefore.join(', ')}`);

  // A connection to A's control socket made before the step-down: the only way left to ask it twice.
  const early = await rawConnection(join(a.socket, '..', 'daemon-control.sock'));

  const portB = await freePort();
  const configB = join(scope.path('a'), 'config-b.toml');
  await writeFile(configB, config(portB));
  const b = await startDaemonProcess(scope, 'b', ['--address', a.socket, '--root', a.root, '--config', configB, '--log-level', 'info', '--replace']);
  await readyzBecomes(portB, 200, 'B to serve');

  assert.ok(a.process.running, 'A still runs after stepping down');
  const stepped = a.logRecords().find((r) => r.msg === 'stepped down: the new daemon serves; idle until SIGTERM or SIGINT');
  assert.ok(stepped, `A logged that it stepped down; its log: ${messages(a.logRecords()).join(' | ')}`);
  assert.equal((stepped.successor as { pid: number }).pid, b.pid, 'for B');
  const bRecords = parseJsonLines(b.log());
  const opened = bRecords.findIndex((r) => r.msg === 'the daemon that served before stepped down; taking over');
  assert.ok(opened >= 0, `B says it took over: ${messages(bRecords).join(' | ')}`);
  assert.equal(bRecords[opened]?.predecessor, a.pid);
  // The root changes hands only once A has let go of it (one clock: both logs are this machine's).
  const aLetGo = Number(stepped.time);
  const bOpened = Number(bRecords.find((r) => r.msg === 'serving containerd.services.snapshots.v1.Snapshots')?.time);
  assert.ok(Number(bRecords[opened]?.time) >= aLetGo && bOpened >= aLetGo, 'B opened the root after A stepped down');

  const aRecords = a.logRecords();
  const at = (records: LogRecord[], msg: string): number => Number(records.find((r) => r.msg === msg)?.time);
  const asked = at(aRecords, 'stepping down for a new daemon: no new calls; snapshots and mounts are kept');
  t.diagnostic(`step-down took ${at(aRecords, 'stepped down: the new daemon serves; idle until SIGTERM or SIGINT') - asked} ms; `
    + `no daemon served gRPC for ${at(parseJsonLines(b.log()), 'serving containerd.services.snapshots.v1.Snapshots') - asked} ms`);
  assert.equal((await stat(join(a.socket, '..', 'daemon-control.sock'))).mode & 0o777, 0o600, 'B\'s control socket is 0600');

  // The connection made to A reaches B now, as containerd's does.
  await waitUntil(() => ca.stat('plain-committed').then(() => true, () => false), { what: 'the old connection to reach B', timeoutMs: 30_000 });
  ca.close();
  const cb = new SnapshotsClient(a.socket);
  try {
    assert.equal((await cb.stat('plain-committed')).info.kind, 'COMMITTED');
    assert.equal((await cb.stat('container')).info.kind, 'ACTIVE');
    assert.equal((await cb.stat('layer-0')).info.kind, 'COMMITTED');
    const names = (await cb.list()).map((i) => i.name).sort();
    assert.deepEqual(names, ['container', 'layer-0', 'plain-committed']);
    assert.deepEqual((await cb.mounts('container')).mounts, mounts, 'B gives the same mounts');
  } finally {
    cb.close();
  }
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content, 'the layer still reads through its mount');

  assert.deepEqual(await httpGet(portA, '/livez'), { status: 200, body: 'alive\n' }, 'A is alive while idle');
  const aReady = await httpGet(portA, '/readyz');
  assert.equal(aReady.status, 503, 'A is not ready once it stepped down');
  assert.match(aReady.body, new RegExp(`^stepped down for the daemon with pid ${b.pid} `));

  early.send('{"request":"step-down","pid":4242,"host":"someone-else"}\n');
  const second = JSON.parse(await early.answer()) as { error?: string };
  assert.match(second.error ?? '', new RegExp(`already stepped down for the daemon with pid ${b.pid}`), 'a second step-down is refused');

  const exit = await a.kill('SIGTERM');
  assert.deepEqual(exit, { code: 0, signal: null }, 'A exits 0 on SIGTERM');
  assert.deepEqual(readRecords(a.root), recordsBefore, 'every record is still there');
  assert.deepEqual((await readdir(join(a.root, 'snapshots'))).sort(), dirsBefore, 'every snapshot directory is still there');
  assert.deepEqual(await mountpointsUnder(a.root), mountsBefore, 'every mount is still there');
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content, 'the layer reads through its mount after A exited');
  assert.equal((await httpGet(portB, '/readyz')).status, 200, 'B is still ready');

  // Without --replace, a third daemon refuses to start: B serves there.
  const refused = await runCli(['--address', a.socket, '--root', a.root, '--config', a.configFile], { timeoutMs: 60_000 });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, new RegExp(`another process is serving on ${a.socket}; stop it first, or start this daemon with --replace`));
  const stillB = await httpGet(portB, '/readyz');
  assert.equal(stillB.status, 200, `B still serves: ${stillB.body}`);

  await b.stop();
  assert.deepEqual(await mountpointsUnder(a.root), mountsBefore, 'B leaves the mounts to the FUSE server too');
});

test('--replace gives up with a clear message when the serving daemon does not answer in time, or has no control socket', async () => {
  const dir = await scope.mkdir('silent');
  const address = join(dir, 'run', 'snapshotter.sock');
  await scope.mkdir('silent', 'run');
  // Something serves on the address, and something accepts on the control socket but never answers.
  const held: net.Socket[] = [];
  const listeners = await Promise.all([address, join(dir, 'run', 'daemon-control.sock')].map((p) => new Promise<net.Server>((resolve) => {
    // Reads and drops what it is sent (a paused socket would never see its peer hang up).
    const s = net.createServer((c) => { held.push(c); c.resume(); });
    s.listen(p, () => resolve(s));
  })));
  try {
    const args = ['--address', address, '--root', join(dir, 'root'), '--config', await writeConfig(dir), '--replace', '--replace-timeout', '1',
      '--external-fuse-server', '--fuse-socket', (await privateFuseServer('silent-fuse', join(dir, 'root'))).socket];
    const r = await runCli(args, { timeoutMs: 60_000 });
    assert.notEqual(r.code, 0, 'it does not start');
    assert.match(r.stderr, /did not say it stepped down within 1 s \(--replace-timeout\)/);
    assert.equal(await readdir(join(dir, 'root')).then((n) => n.includes('snapshots'), () => false), false, 'it did not open the root');

    // Something serves on the address, but no control socket answers: not a daemon that can step down.
    await new Promise((resolve) => (listeners[1] as net.Server).close(resolve));
    const r2 = await runCli(args, { timeoutMs: 60_000 });
    assert.notEqual(r2.code, 0, 'it does not start');
    assert.match(r2.stderr, /another process is serving on .*, and nothing answers on its control socket .*daemon-control\.sock: it is not a daemon that can step down/);
    assert.equal(await readdir(join(dir, 'root')).then((n) => n.includes('snapshots'), () => false), false, 'it did not open the root');
  } finally {
    for (const c of held) c.destroy();
    await Promise.all(listeners.map((s) => new Promise((resolve) => (s.listening ? s.close(resolve) : resolve(undefined)))));
  }
});

async function writeConfig(dir: string, port?: number): Promise<string> {
  const f = join(dir, 'config.toml');
  await writeFile(f, port === undefined ? defaultDaemonConfig(store) : config(port));
  return f;
}

async function privateFuseServer(name: string, root: string): ReturnType<typeof startFuseServer> {
  await mkdir(root, { recursive: true });
  return startFuseServer(scope, { name, root, store });
}

test('--external-fuse-server: the daemon starts no FUSE server, waits for one of its own host, serves once one answers, and /readyz follows the server', async () => {
  const name = 'ext';
  const dir = await scope.mkdir(name);
  const root = await scope.mkdir(name, 'root');
  const port = await freePort();
  // The socket startFuseServer makes for a server named "ext-fuse".
  const fuseSocket = scope.path('ext-fuse', 'run', 'fuse.sock');
  const address = join(dir, 'run', 'snapshotter.sock');
  const d = await startDaemonProcess(scope, name, ['--address', address, '--root', root, '--config', await writeConfig(dir, port),
    '--log-level', 'info', '--external-fuse-server', '--fuse-socket', fuseSocket]);

  await waitForLog(d, (r) => r.msg === 'waiting for a FUSE server to answer (--external-fuse-server: this daemon starts none)' && r.socket === fuseSocket, 'the daemon to say it waits');
  assert.deepEqual(await httpGet(port, '/livez'), { status: 200, body: 'alive\n' });
  const waiting = await httpGet(port, '/readyz');
  assert.equal(waiting.status, 503);
  assert.equal(waiting.body, `waiting for a FUSE server to answer on ${fuseSocket}\n`);
  assert.equal(await canConnect(address), false, 'no gRPC before a FUSE server answers');
  const servers = processesMentioning(fuseSocket).filter((p) => p.pid !== d.pid);
  assert.deepEqual(servers, [], 'the daemon started no FUSE server');

  // A server that answers from another host (the old pod's, during an upgrade): the daemon waits on.
  const foreign = await startFuseServerAs(scope, 'ext-fuse', 'not-this-pod', { root, store, socket: fuseSocket });
  await waitForLog(d, (r) => r.msg === 'waiting for this host\'s FUSE server: the one answering is another\'s (--external-fuse-server)'
    && (r.server as { host?: string } | undefined)?.host === 'not-this-pod', 'the daemon to say the server is another host\'s');
  const foreignWait = await httpGet(port, '/readyz');
  assert.deepEqual(foreignWait, { status: 503, body: `waiting for this host's FUSE server on ${fuseSocket}; the one answering runs on host "not-this-pod"\n` });
  assert.equal(await canConnect(address), false, 'no gRPC while only another host\'s server answers');
  await foreign.stop();

  // This host's server on the same socket: the daemon reconnects and is ready.
  const server = await startFuseServer(scope, { name: 'ext-fuse', root, store });
  assert.equal(server.socket, fuseSocket);
  assert.match(await readyzBecomes(port, 200, 'the daemon to reconnect to its own server'), /^ready: /);

  // A snapshot in use whose layer the server stops serving: not ready.
  const c = new SnapshotsClient(address);
  try {
    const layer = layers[1] as StoreLayer;
    await prepareRemote(c, 'extract-1', '', 'layer-1', layer);
    const { mounts } = await c.prepare('container', 'layer-1');
    const lower = mountDirs(mounts).lower[0] as string;
    assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content);
    assert.match((await httpGet(port, '/readyz')).body, /^ready: .* serves all 1 layer mounts/);
    const unmounted = await server.call('unmount', { mountpoint: lower });
    assert.equal(unmounted.error, undefined, JSON.stringify(unmounted));
    const lacking = await readyzBecomes(port, 503, 'the daemon to see the mount gone');
    assert.equal(lacking, `the FUSE server (pid ${await server.pid()}) lacks 1 of the 1 layer mounts the snapshots in use need, e.g. ${lower}\n`);
  } finally {
    c.close();
  }

  // Its server replaced by another host's (a handover to another pod): serving, but not ready.
  await server.stop();
  const other = await startFuseServerAs(scope, 'ext-fuse', 'not-this-pod', { root, store, socket: fuseSocket });
  let wrongHost = { status: 0, body: '' };
  await waitUntil(async () => /runs on host/.test((wrongHost = await httpGet(port, '/readyz')).body), { what: 'the daemon to see the other host\'s server', timeoutMs: 30_000 });
  assert.equal(wrongHost.status, 503);
  assert.equal(wrongHost.body, `the FUSE server on ${fuseSocket} (pid ${other.pid}) runs on host "not-this-pod", not on this daemon's host ${JSON.stringify(hostname())}: it is not this pod's server\n`);
  assert.ok(await canConnect(address), 'the daemon still serves gRPC');

  await other.stop();
  assert.match(await readyzBecomes(port, 503, 'the server gone'), new RegExp(`^the FUSE server on ${fuseSocket} does not answer`));
  assert.equal((await httpGet(port, '/livez')).status, 200);
  assert.deepEqual(processesMentioning(fuseSocket).filter((p) => p.pid !== d.pid), [], 'still no FUSE server of the daemon\'s own');
  await d.stop();
});

/** A raw connection to a unix socket: send a line, read one answer line. */
async function rawConnection(path: string): Promise<{ send(text: string): void; answer(): Promise<string> }> {
  const s = await new Promise<net.Socket>((resolve, reject) => {
    const c = net.createConnection(path);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
  let buf = '';
  const lines: string[] = [];
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
  });
  s.on('error', () => undefined);
  return {
    send: (text) => s.write(text),
    answer: async () => {
      await waitUntil(() => lines.length > 0 || s.destroyed, { what: 'an answer on the control socket', timeoutMs: 10_000 });
      s.destroy();
      const l = lines.shift();
      if (l === undefined) throw new Error('closed without an answer');
      return l;
    },
  };
}

test('--external-fuse-server: when the next pod\'s server takes the mounts over (fuse-server --replace), the daemon reconnects to it and is ready with every mount', async () => {
  const name = 'ho';
  const dir = await scope.mkdir(name);
  const root = await scope.mkdir(name, 'root');
  const port = await freePort();
  const first = await startFuseServer(scope, { name: 'ho-fuse', root, store });
  const address = join(dir, 'run', 'snapshotter.sock');
  const d = await startDaemonProcess(scope, name, ['--address', address, '--root', root, '--config', await writeConfig(dir, port),
    '--log-level', 'info', '--external-fuse-server', '--fuse-socket', first.socket]);
  await readyzBecomes(port, 200, 'the daemon to serve');

  const c = new SnapshotsClient(address);
  const layer = layers[0] as StoreLayer;
  let lower: string;
  try {
    await prepareRemote(c, 'extract-0', '', 'layer-0', layer);
    lower = mountDirs((await c.prepare('container', 'layer-0')).mounts).lower[0] as string;
  } finally {
    c.close();
  }
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content);
  const firstPid = await first.pid();
  assert.match((await httpGet(port, '/readyz')).body, new RegExp(`^ready: .*\\(pid ${firstPid}, .* serves all 1 layer mounts`));

  // The next pod's server: not our child, takes every mount over through the control socket.
  const next = await ManagedProcess.start({
    name: 'next fuse-server', cmd: process.execPath, logFile: scope.path('ho-fuse', 'next.log'), cwd: scope.path('ho-fuse'),
    args: [daemonBin, 'fuse-server', '--replace', '--root', root, '--store', store, '--socket', first.socket, '--log-level', 'info'],
  });
  scope.defer('stop the next fuse-server', async () => { if (next.running) await next.kill('SIGTERM', 30_000); });
  await waitUntil(async () => (await first.pid().catch(() => firstPid)) === next.pid && await canConnect(first.socket),
    { what: 'the next server to serve on the socket', process: next, timeoutMs: 60_000 });
  const body = await waitUntil(async () => new RegExp(`^ready: .*\\(pid ${next.pid}, `).test((await httpGet(port, '/readyz')).body),
    { what: 'the daemon to be ready with the next server', timeoutMs: 30_000 }).then(async () => (await httpGet(port, '/readyz')).body);
  assert.match(body, /serves all 1 layer mounts the snapshots in use need/);
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content, 'the layer reads through its mount after the handover');

  // The old server idles holding nothing; SIGTERM ends it without touching the mounts.
  assert.deepEqual(await first.process.stop(30_000).then((s) => ({ code: s.code, forced: s.forced })), { code: 0, forced: false });
  assert.equal((await httpGet(port, '/readyz')).status, 200, 'still ready once the old server is gone');
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content);
  await d.stop();
  await next.kill('SIGTERM', 30_000);
});
