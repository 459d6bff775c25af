// The metrics endpoint of the real daemon: gRPC calls (good and refused), a remote layer mounted
// through FUSE and read, then one scrape of http://127.0.0.1:<port>/metrics.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { LayerStore } from '../../src/layers/store.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import { Scope } from '../helpers/scope.js';
import { defaultDaemonConfig, startDaemon, type Daemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { runCli } from '../helpers/cli.js';
import { samples } from '../helpers/metrics-text.js';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const inStore = digestOf('layer in the store');
const notInStore = digestOf('layer not in the store');
const target = 'ns/1/sha256:chain-of-the-layer';

let scope: Scope;
let daemon: Daemon;
let c: SnapshotsClient;
let port: number;

before(async () => {
  scope = await Scope.create('metrics');
  const storeDir = await scope.mkdir('store');
  const layer = new LayerStore(storeDir).layerPath(inStore);
  await mkdir(join(layer, 'etc'), { recursive: true });
  await writeFile(join(layer, 'etc', 'hello.txt'), 'hello from the store\n');
  port = await freePort();
  daemon = await startDaemon(scope, { configToml: `${defaultDaemonConfig(storeDir)}\n[metrics]\naddress = "127.0.0.1:${port}"\n` });
  c = new SnapshotsClient(daemon.socket);
});
after(async () => {
  c?.close();
  await scope?.teardown();
});

function value(s: Map<string, number>, series: string): number {
  const v = s.get(series);
  assert.ok(v !== undefined, `no sample ${series} in the scrape; samples:\n${[...s.keys()].filter((k) => k.startsWith('cvmfs_snapshotter_') && !k.includes('nodejs') && !k.includes('process')).join('\n')}`);
  return v;
}

async function refused(p: Promise<unknown>, code: status): Promise<void> {
  await assert.rejects(p, (e: { code: number; details: string }) => {
    assert.equal(status[e.code], status[code], `got ${status[e.code]}: ${e.details}`);
    return true;
  });
}

test('a scrape after gRPC calls, a remote layer mounted and read', async () => {
  await refused(c.stat('ns/1/no such snapshot'), status.NOT_FOUND);
  // The layer is in the store: committed as the target, and containerd is told AlreadyExists.
  await refused(c.prepare('ns/1/extract-1 sha256:chain', '', { [LAYER_DIGEST_LABEL]: inStore, [TARGET_REF_LABEL]: target }), status.ALREADY_EXISTS);
  // Not in the store: an ordinary snapshot that containerd fills.
  await c.prepare('ns/1/extract-2 sha256:other', '', { [LAYER_DIGEST_LABEL]: notInStore, [TARGET_REF_LABEL]: 'ns/1/sha256:other' });
  // A container on the remote layer: its mounts need the layer's FUSE mount.
  await c.prepare('ns/1/container', target);
  const { mounts } = await c.mounts('ns/1/container');
  const lower = mounts[0]?.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length);
  assert.ok(lower, `an overlay on the layer: ${JSON.stringify(mounts)}`);
  assert.equal(await readFile(join(lower, 'etc', 'hello.txt'), 'utf8'), 'hello from the store\n');
  await assert.rejects(stat(join(lower, 'etc', 'missing')), /ENOENT/);

  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  const s = samples(text);

  assert.equal(value(s, 'cvmfs_snapshotter_grpc_requests_total{method="Stat",code="NotFound"}'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_grpc_requests_total{method="Prepare",code="AlreadyExists"}'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_grpc_requests_total{method="Prepare",code="OK"}'), 2);
  assert.equal(value(s, 'cvmfs_snapshotter_grpc_requests_total{method="Mounts",code="OK"}'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_grpc_request_duration_seconds_count{method="Prepare"}'), 3);
  assert.equal(value(s, 'cvmfs_snapshotter_layer_decisions_total{decision="remote",reason="in_store"}'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_layer_decisions_total{decision="downloaded",reason="not_in_store"}'), 1);
  assert.ok(![...s.keys()].some((k) => k.includes(inStore.slice(7)) || k.includes(notInStore.slice(7))), 'no digest in any label');

  assert.equal(value(s, 'cvmfs_snapshotter_layers_mounted'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_layer_mounts_total'), 1);
  assert.equal(value(s, 'cvmfs_snapshotter_layer_unmounts_total{mode="normal"}'), 0);
  // Reading the file went through the layer's metadata cache at least once.
  assert.ok(value(s, 'cvmfs_snapshotter_metadata_cache_misses_total') >= 1);
  assert.ok(s.has('cvmfs_snapshotter_metadata_cache_hits_total'), 'cache hits are exposed (the kernel may have answered every repeat itself)');
  assert.ok(value(s, 'cvmfs_snapshotter_metadata_cache_entries') >= 1);

  // The FUSE server answered the kernel: lookups of etc, hello.txt and the missing name (a
  // negative entry is an answer, not an error), then the file: with passthrough an OPEN whose
  // reads go straight to the store, without it a READ of the file's 21 bytes.
  assert.ok(value(s, 'cvmfs_snapshotter_fuse_request_duration_seconds_count{op="lookup"}') >= 3, 'lookups counted');
  if (value(s, 'cvmfs_snapshotter_layers_passthrough') === 1) {
    assert.ok(value(s, 'cvmfs_snapshotter_fuse_request_duration_seconds_count{op="open"}') >= 1, 'the open counted');
    assert.equal(value(s, 'cvmfs_snapshotter_fuse_read_bytes_total'), 0, 'no byte read through the server');
  } else {
    assert.ok(value(s, 'cvmfs_snapshotter_fuse_request_duration_seconds_count{op="read"}') >= 1, 'reads counted');
    assert.ok(value(s, 'cvmfs_snapshotter_fuse_read_bytes_total') >= 21, 'the bytes of hello.txt were served');
    assert.ok(value(s, 'cvmfs_snapshotter_fuse_passthrough_fallbacks_total{reason="kernel"}') >= 1, 'the fallback is counted');
  }
  for (const family of ['fuse_request_duration_seconds', 'fuse_request_errors_total', 'fuse_read_bytes_total']) {
    assert.match(text, new RegExp(`^# HELP cvmfs_snapshotter_${family} \\S`, 'm'), `${family} has a HELP line`);
    assert.match(text, new RegExp(`^# TYPE cvmfs_snapshotter_${family} (histogram|counter)$`, 'm'));
  }
  assert.ok(s.has('cvmfs_snapshotter_fuse_read_bytes_total'));

  assert.ok(value(s, 'cvmfs_snapshotter_process_resident_memory_bytes') > 0, 'Node process metrics, prefixed');
  for (const line of text.split('\n').filter((l) => l.startsWith('# HELP '))) assert.match(line, /^# HELP cvmfs_snapshotter_\S+ \S/);
});

test('only GET /metrics is served', async () => {
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${port}/metrics/x`)).status, 404);
  const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  assert.equal((await fetch(`http://127.0.0.1:${port}/metrics?x=1`)).status, 200);
});

test('the address is logged at start, and the endpoint goes away with the daemon', async () => {
  const logged = daemon.logRecords().find((r) => r['msg'] === 'serving metrics');
  assert.equal(logged?.['url'], `http://127.0.0.1:${port}/metrics`);
  await daemon.stop();
  await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), /fetch failed/);
});

test('a metrics port in use stops the daemon at start with a message naming the address', async () => {
  const busy: Server = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  try {
    const addr = busy.address();
    assert.ok(typeof addr === 'object' && addr !== null);
    const dir = await scope.mkdir('busy');
    const config = join(dir, 'config.toml');
    await writeFile(config, `${defaultDaemonConfig(await scope.mkdir('busy', 'store'))}\n[metrics]\naddress = "127.0.0.1:${addr.port}"\n`);
    const socket = join(dir, 'snapshotter.sock');
    const r = await runCli(['--address', socket, '--root', join(dir, 'root'), '--config', config], { timeoutMs: 30_000 });
    assert.equal(r.code, 1, `exit ${String(r.code)} ${r.signal ?? ''}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${addr.port} \\(\\[metrics\\] address\\): the port is in use`));
    assert.equal(existsSync(socket), false, 'no gRPC socket was made');
  } finally {
    await new Promise<void>((resolve) => busy.close(() => resolve()));
  }
});

test('a bad metrics address in the config stops the daemon at start', async () => {
  const dir = await scope.mkdir('bad');
  const config = join(dir, 'config.toml');
  await writeFile(config, '[metrics]\naddress = "127.0.0.1:http"\n');
  const r = await runCli(['--address', join(dir, 's.sock'), '--root', join(dir, 'root'), '--config', config], { timeoutMs: 30_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /"metrics\.address" must be host:port such as "127\.0\.0\.1:9110", got "127\.0\.0\.1:http"/);
});
