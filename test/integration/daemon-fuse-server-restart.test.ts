// A FUSE server that dies under a running daemon (a crash, its pod container restarted): its
// layer mounts are dead (ENOTCONN) and the daemon is not ready; once a fresh server answers on
// the same socket, the daemon (the same process: it must outlive its server) mounts again every
// layer its active snapshots stand on, is ready, and serves new remote snapshots, with no dead
// mount left. Both when the server is another
// container's (--external-fuse-server) and when the daemon starts its own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from '../../src/sys/pid.js';
import { SnapshotsClient } from '../../src/server/client.js';
import { startDaemon, type LogRecord } from '../helpers/daemon.js';
import { configWithMetrics, readyzBecomes, startDaemonProcess } from '../helpers/daemon-process.js';
import { startFuseServer } from '../helpers/fuse-server-process.js';
import { fuseMountsUnder, statMounts } from '../helpers/lazy.js';
import { freePort } from '../helpers/ports.js';
import { Scope } from '../helpers/scope.js';
import { makeStoreLayers, mountDirs, prepareRemote, type StoreLayer } from '../helpers/snapshot-cycles.js';
import { waitUntil } from '../helpers/wait.js';

let scope: Scope;
let store: string;
let layers: StoreLayer[];

before(async () => {
  scope = await Scope.create('fuse-restart');
  store = await scope.mkdir('store');
  layers = await makeStoreLayers(store, 2);
});
after(async () => { await scope?.teardown(); });

const config = (port: number): string => configWithMetrics(store, port);

/** A remote snapshot of layer committed as target, and an active snapshot on it (a container's): its lower directory. */
async function containerOn(c: SnapshotsClient, n: number, layer: StoreLayer): Promise<string> {
  await prepareRemote(c, `extract-${n}`, '', `layer-${n}`, layer);
  const { mounts } = await c.prepare(`container-${n}`, `layer-${n}`);
  const lower = mountDirs(mounts).lower[0];
  assert.ok(lower !== undefined, 'the active snapshot has the layer as its lower directory');
  return lower;
}

/** Each FUSE mount under root, with the errno its stat/statfs answers (undefined: it works). */
async function mountHealth(root: string): Promise<{ mountpoint: string; error: string | undefined }[]> {
  return (await statMounts(fuseMountsUnder(root))).map((h) => ({ mountpoint: h.mount.mountPoint, error: h.error }));
}

/**
 * The only FUSE mount under root is lower, and it is dead: ENOTCONN, or ECONNABORTED when the
 * kernel aborted a request under way as the server died (src/fuse/unmount.ts takes both for dead).
 */
async function assertDead(root: string, lower: string): Promise<void> {
  const health = await mountHealth(root);
  assert.deepEqual(health.map((h) => h.mountpoint), [lower], 'the layer mount is still there');
  assert.ok(['ENOTCONN', 'ECONNABORTED'].includes(health[0]?.error ?? 'works'), `the layer mount is dead: ${JSON.stringify(health)}`);
}

/** The layer answers at lower: its files are listed and read through the mount. */
async function assertLayerServed(lower: string, layer: StoreLayer, what: string): Promise<void> {
  assert.deepEqual((await readdir(lower)).sort(), ['etc'], `${what}: the layer's top directory lists`);
  assert.equal((await readdir(join(lower, 'etc', 'many'))).length, 20, `${what}: the layer's files list`);
  assert.equal(await readFile(join(lower, layer.file), 'utf8'), layer.content, `${what}: the layer's file reads`);
}

/** Kills the FUSE server pid with SIGKILL, having checked that it is the server on socket, and waits until it is gone. */
async function killFuseServer(pid: number, socket: string): Promise<void> {
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  assert.ok(cmdline.includes('fuse-server') && cmdline.includes(socket), `pid ${pid} is the FUSE server on ${socket}: ${cmdline.join(' ')}`);
  assert.equal(Number.parseInt(await readFile(`${socket}.pid`, 'utf8'), 10), pid, 'and its pid file says so');
  process.kill(pid, 'SIGKILL');
  await waitUntil(() => !isAlive(pid), { what: `FUSE server ${pid} to die of SIGKILL`, timeoutMs: 20_000 });
}

const remountLogged = (records: LogRecord[], pid: number): boolean => records.some((r) =>
  r.msg === 'another FUSE server answers now; mounting again any layer it does not serve' && (r.fuseServer as { pid?: number } | undefined)?.pid === pid);

test('--external-fuse-server: after its FUSE server is SIGKILLed, the daemon mounts the layers again on the fresh server started on the same socket, is ready again, and leaves no dead mount', async (t) => {
  const name = 'ext';
  const dir = await scope.mkdir(name);
  const root = await scope.mkdir(name, 'root');
  const port = await freePort();
  const first = await startFuseServer(scope, { name: 'ext-fuse', root, store });
  const address = join(dir, 'run', 'snapshotter.sock');
  const configFile = join(dir, 'config.toml');
  await writeFile(configFile, config(port));
  const d = await startDaemonProcess(scope, name, ['--address', address, '--root', root, '--config', configFile,
    '--log-level', 'info', '--external-fuse-server', '--fuse-socket', first.socket]);
  await readyzBecomes(port, 200, 'the daemon to serve', { daemon: d.process });

  const c = new SnapshotsClient(address);
  try {
    const layer = layers[0] as StoreLayer;
    const lower = await containerOn(c, 0, layer);
    await assertLayerServed(lower, layer, 'before the crash');
    assert.deepEqual(await mountHealth(root), [{ mountpoint: lower, error: undefined }], 'one live layer mount');

    const firstPid = await first.pid();
    assert.equal(firstPid, first.process.pid, 'the server answering is the one this test started');
    await killFuseServer(firstPid, first.socket);
    await assertDead(root, lower);
    assert.match(await readyzBecomes(port, 503, 'the daemon to see its server gone', { daemon: d.process }), new RegExp(`^the FUSE server on ${first.socket} does not answer`));

    // The fuse-server container restarted: a fresh server on the same socket, root and store.
    const fresh = await startFuseServer(scope, { name: 'ext-fuse', root, store });
    assert.equal(fresh.socket, first.socket, 'on the same socket');
    const freshPid = await fresh.pid();
    const freshAt = Date.now();
    assert.notEqual(freshPid, firstPid);
    const body = await readyzBecomes(port, 200, 'the daemon to be ready on the fresh server', { daemon: d.process, match: new RegExp(`\\(pid ${freshPid}, `) });
    const readyMs = Date.now() - freshAt;
    assert.match(body, /serves all 1 layer mounts the snapshots in use need/);
    assert.ok(d.process.running, 'the daemon outlived the crash of its FUSE server (same process)');
    assert.ok(remountLogged(d.logRecords(), freshPid), 'the daemon said it mounts the layers again on the fresh server');
    assert.deepEqual(await mountHealth(root), [{ mountpoint: lower, error: undefined }], 'the layer is mounted again, once, and answers stat and statfs');
    await assertLayerServed(lower, layer, 'after the fresh server came');

    // A new container on another layer.
    const layer1 = layers[1] as StoreLayer;
    const lower1 = await containerOn(c, 1, layer1);
    await assertLayerServed(lower1, layer1, 'a layer prepared after the crash');
    const health = await mountHealth(root);
    assert.deepEqual(health.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint)),
      [lower, lower1].sort().map((mountpoint) => ({ mountpoint, error: undefined })), 'no dead mount is left, and no mount is stacked');
    assert.match(await readyzBecomes(port, 200, 'the daemon to stay ready', { daemon: d.process }), /serves all 2 layer mounts/);
    t.diagnostic(`fresh FUSE server ${freshPid} (after the SIGKILL of ${firstPid}): /readyz 200 ${readyMs} ms after it listened; it serves ${health.length} mounts`);
  } finally {
    c.close();
  }
  await d.stop();
});

test('the daemon\'s own FUSE server SIGKILLed: a readiness probe starts a new one, which gets the layers mounted again', async (t) => {
  const port = await freePort();
  const d = await startDaemon(scope, { name: 'own', configToml: config(port), logLevel: 'info' });
  await readyzBecomes(port, 200, 'the daemon to serve', { daemon: d.process });
  const c = new SnapshotsClient(d.socket);
  try {
    const layer = layers[0] as StoreLayer;
    const lower = await containerOn(c, 0, layer);
    await assertLayerServed(lower, layer, 'before the crash');
    assert.deepEqual(await mountHealth(d.root), [{ mountpoint: lower, error: undefined }], 'one live layer mount');

    const firstPid = await d.fuseServerPid();
    assert.ok(firstPid !== undefined, 'the daemon started a FUSE server');
    assert.notEqual(firstPid, d.pid);
    await killFuseServer(firstPid, d.fuseSocket);
    const killedAt = Date.now();
    await assertDead(d.root, lower);

    // The probe finds the server gone; the daemon starts another and mounts the layer again.
    const body = await readyzBecomes(port, 200, 'the daemon to be ready with a new server of its own', { daemon: d.process, match: /serves all 1 layer mounts/ });
    const readyMs = Date.now() - killedAt;
    const secondPid = await d.fuseServerPid();
    assert.ok(secondPid !== undefined && secondPid !== firstPid, `a new FUSE server runs (${secondPid}, was ${firstPid})`);
    assert.match(body, new RegExp(`\\(pid ${secondPid}, `), 'the ready server is the new one');
    assert.ok(d.logRecords().some((r) => r.msg === 'started a FUSE server' && r.pid === secondPid), 'the daemon started it');
    assert.ok(d.process.running, 'the daemon outlived the crash of its FUSE server (same process)');
    assert.ok(remountLogged(d.logRecords(), secondPid), 'the daemon said it mounts the layers again on the new server');
    assert.deepEqual(await mountHealth(d.root), [{ mountpoint: lower, error: undefined }], 'the layer is mounted again, once, and answers stat and statfs');
    await assertLayerServed(lower, layer, 'after the new server came');

    const layer1 = layers[1] as StoreLayer;
    const lower1 = await containerOn(c, 1, layer1);
    await assertLayerServed(lower1, layer1, 'a layer prepared after the crash');
    const health = await mountHealth(d.root);
    assert.deepEqual(health.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint)),
      [lower, lower1].sort().map((mountpoint) => ({ mountpoint, error: undefined })), 'no dead mount is left, and no mount is stacked');
    t.diagnostic(`new FUSE server ${secondPid} (after the SIGKILL of ${firstPid}): /readyz 200 ${readyMs} ms after the kill`);
  } finally {
    c.close();
  }
  await d.stop();
});
