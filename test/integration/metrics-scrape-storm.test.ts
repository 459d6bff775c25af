// A scraper that never stops: /metrics asked 500 times a second for 10 s while a worker reads
// through a layer the daemon mounted. The FUSE server collects its metrics at most once a second
// however often it is asked (the daemon serves one rendering of the page per second, and the
// server itself answers its last collection), so the layers keep serving. The lookups' latency
// with and without the scraper is printed, not asserted (timing belongs in bench/).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { Agent, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { status } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { LayerStore } from '../../src/layers/store.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import { RemoteLayerMounter } from '../../src/fuse/server/client.js';
import type { MetricsJson } from '../../src/metrics/index.js';
import { silentLogger } from '../../src/log.js';
import { Scope } from '../helpers/scope.js';
import { defaultDaemonConfig, startDaemon, type Daemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import { samples } from '../helpers/metrics-text.js';

const COLLECTIONS = 'cvmfs_snapshotter_fuse_metrics_collections_total';
const FILES = 200;
const SCRAPES_PER_SECOND = 500;
const STORM_SECONDS = 10;
const contentOf = (i: number): string => `file ${i} of the layer\n`.repeat(1 + (i % 7));
const digest = `sha256:${createHash('sha256').update('the layer read during the scrape storm').digest('hex')}`;

let scope: Scope;
let daemon: Daemon;
let c: SnapshotsClient;
let port: number;
let layerDir: string;

before(async () => {
  scope = await Scope.create('metrics-storm');
  const storeDir = await scope.mkdir('store');
  const layer = new LayerStore(storeDir).layerPath(digest);
  await mkdir(join(layer, 'data'), { recursive: true });
  for (let i = 0; i < FILES; i++) await writeFile(join(layer, 'data', `f${i}`), contentOf(i));
  port = await freePort();
  daemon = await startDaemon(scope, { configToml: `${defaultDaemonConfig(storeDir)}\n[metrics]\naddress = "127.0.0.1:${port}"\n`, logLevel: 'info' });
  c = new SnapshotsClient(daemon.socket);
  // The layer is in the store: committed as the target, and containerd is told AlreadyExists.
  await assert.rejects(c.prepare('ns/1/extract sha256:chain', '', { [LAYER_DIGEST_LABEL]: digest, [TARGET_REF_LABEL]: 'ns/1/sha256:chain' }),
    (e: { code: number }) => e.code === status.ALREADY_EXISTS);
  await c.prepare('ns/1/container', 'ns/1/sha256:chain');
  const { mounts } = await c.mounts('ns/1/container');
  const lower = mounts[0]?.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length);
  assert.ok(lower, `an overlay on the layer's FUSE mount: ${JSON.stringify(mounts)}`);
  layerDir = lower;
});
after(async () => {
  agent.destroy();
  c?.close();
  await scope?.teardown();
});

interface ReadReport {
  lookups: number;
  reads: number;
  /** Unexpected answers: a missing name that was found, a file with other contents, any other error. */
  failures: string[];
  /** Milliseconds per lookup of a fresh missing name (each one goes to the FUSE server). */
  latencies: number[];
}

// The reader runs in a worker with synchronous calls, so that neither the scraper nor the test's
// event loop sits between it and the kernel; it pauses a millisecond between rounds (a busy loop
// would take a core of its own and measure the machine instead) and stops when told.
const READER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const { dir, files, stop, tag } = workerData;
const flag = new Int32Array(stop);
const failures = [];
const latencies = [];
let lookups = 0, reads = 0;
for (let i = 0; Atomics.load(flag, 0) === 0; i++) {
  const t0 = performance.now();
  try {
    fs.statSync(path.join(dir, 'missing-' + tag + '-' + i));
    failures.push('missing-' + i + ' was found');
  } catch (err) {
    if (err.code !== 'ENOENT') failures.push('lookup ' + i + ': ' + err.message);
  }
  latencies.push(performance.now() - t0);
  lookups++;
  const f = i % files;
  try {
    const got = fs.readFileSync(path.join(dir, 'f' + f), 'utf8');
    if (got !== ('file ' + f + ' of the layer\\n').repeat(1 + (f % 7))) failures.push('f' + f + ' read back other contents');
  } catch (err) {
    failures.push('read f' + f + ': ' + err.message);
  }
  reads++;
  Atomics.wait(flag, 0, 0, 1);
}
parentPort.postMessage({ lookups, reads, failures: failures.slice(0, 20), latencies });
`;

/** Reads through the layer until the returned stop() is called; stop() answers what it saw. */
function readThroughLayer(tag: string): { stop(): Promise<ReadReport & { seconds: number }> } {
  const stop = new SharedArrayBuffer(4);
  const t0 = performance.now();
  const w = new Worker(READER, { eval: true, workerData: { dir: join(layerDir, 'data'), files: FILES, stop, tag } });
  const report = new Promise<ReadReport>((resolve, reject) => {
    w.once('message', (m: ReadReport) => resolve(m));
    w.once('error', reject);
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`the reader exited with ${code}`)); });
  });
  return {
    async stop() {
      const flag = new Int32Array(stop);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      const seconds = (performance.now() - t0) / 1000;
      return { ...(await report), seconds };
    },
  };
}

function summary(r: ReadReport & { seconds: number }): string {
  const { seconds } = r;
  const sorted = [...r.latencies].sort((a, b) => a - b);
  const at = (q: number): string => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(3);
  return `${Math.round(r.lookups / seconds)} lookups/s, latency ms p50 ${at(0.5)} p99 ${at(0.99)} max ${(sorted[sorted.length - 1] ?? 0).toFixed(3)}`;
}

// node:http with a few kept-alive connections: fetch() costs the test more CPU per request than
// the daemon spends answering it.
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

function get(): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path: '/metrics', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function scrape(): Promise<Map<string, number>> {
  const res = await get();
  assert.equal(res.status, 200);
  return samples(res.body);
}

/** CPU seconds (user + system) a process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Scrapes `count` times at `perSecond`, without waiting for answers to send the next; all must be 200. */
async function storm(count: number, perSecond: number): Promise<{ ok: number; failed: string[] }> {
  const failed: string[] = [];
  let ok = 0;
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(get().then(({ status: code, body }) => {
      if (code === 200 && body.includes(COLLECTIONS)) ok++;
      else failed.push(`scrape ${i}: HTTP ${code}`);
    }, (err: unknown) => { failed.push(`scrape ${i}: ${(err as Error).message} (${String((err as Error).cause)})`); }));
  }
  await Promise.all(pending);
  return { ok, failed };
}

test('500 scrapes a second for 10 s cost the FUSE server at most one collection a second, and reads through the layer all succeed', async (t) => {
  const alone = readThroughLayer('quiet');
  await sleep(3000);
  const quiet = await alone.stop();
  t.diagnostic(`reading alone: ${summary(quiet)}`);
  assert.deepEqual(quiet.failures, []);

  // A page older than the cache's second, so the one asked for now is freshly collected.
  await sleep(1100);
  const before = (await scrape()).get(COLLECTIONS);
  assert.ok(before !== undefined && before >= 1, `the FUSE server counts its collections (${before})`);
  const fusePid = await daemon.fuseServerPid();
  assert.ok(fusePid !== undefined, 'the daemon started a FUSE server');
  const cpu0 = { daemon: await cpuSeconds(daemon.pid), fuse: await cpuSeconds(fusePid), test: process.cpuUsage() };
  const t0 = performance.now();
  const reader = readThroughLayer('storm');
  const scrapes = await storm(SCRAPES_PER_SECOND * STORM_SECONDS, SCRAPES_PER_SECOND);
  const reads = await reader.stop();
  const stormSeconds = (performance.now() - t0) / 1000;
  const testCpu = process.cpuUsage(cpu0.test);
  t.diagnostic(`CPU seconds during the storm: daemon ${(await cpuSeconds(daemon.pid) - cpu0.daemon).toFixed(2)}, FUSE server ${(await cpuSeconds(fusePid) - cpu0.fuse).toFixed(2)}, `
    + `this test (scraper and reader) ${((testCpu.user + testCpu.system) / 1e6).toFixed(2)}`);
  await sleep(1100);
  const last = (await scrape()).get(COLLECTIONS) ?? NaN;
  const seconds = (performance.now() - t0) / 1000;

  t.diagnostic(`under ${scrapes.ok} scrapes in ${stormSeconds.toFixed(1)} s (${Math.round(scrapes.ok / stormSeconds)}/s): ${summary(reads)}`);
  t.diagnostic(`FUSE server metrics collections: ${last - before} in ${seconds.toFixed(1)} s`);
  assert.deepEqual(scrapes.failed.slice(0, 10), [], 'every scrape was answered');
  assert.equal(scrapes.ok, SCRAPES_PER_SECOND * STORM_SECONDS);
  assert.deepEqual(reads.failures, [], 'every lookup and read through the layer gave the right answer');
  assert.ok(reads.lookups > 0 && reads.reads > 0);
  assert.ok(last - before <= Math.ceil(seconds) + 1,
    `${last - before} collections of the FUSE server's metrics in ${seconds.toFixed(1)} s; at most one a second`);
});

test('a client on the control socket that asks for metrics in a loop gets at most one collection a second', async (t) => {
  // What a root process could do past the daemon: the server itself holds the line.
  const client = new RemoteLayerMounter({ socket: daemon.fuseSocket, log: silentLogger(), startServer: () => undefined, startTimeoutMs: 5000 });
  await client.connect();
  try {
    const collections = (json: MetricsJson): number => {
      const v = json.find((f) => f.name === COLLECTIONS)?.values[0]?.value;
      assert.ok(typeof v === 'number', `${COLLECTIONS} is in the FUSE server's registry`);
      return v;
    };
    await sleep(1100);
    const first = collections(await client.metrics());
    const t0 = performance.now();
    const asked = 2000;
    for (let i = 0; i < asked; i += 10) await Promise.all(Array.from({ length: 10 }, () => client.metrics()));
    await sleep(1100);
    const last = collections(await client.metrics());
    const seconds = (performance.now() - t0) / 1000;
    t.diagnostic(`${asked} metrics requests on the control socket: ${last - first} collections in ${seconds.toFixed(1)} s`);
    assert.ok(last - first <= Math.ceil(seconds) + 1, `${last - first} collections in ${seconds.toFixed(1)} s; at most one a second`);
  } finally {
    await client.disconnect();
  }
});
