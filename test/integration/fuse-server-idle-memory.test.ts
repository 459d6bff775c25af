// A FUSE server that grew while it served gives the memory back once it idles: after a walk of a
// 30,000-entry layer and its unmount (the layer's cache entries become garbage), the server runs
// one memory reduction within seconds of its last request, and its RSS falls; with requests
// coming it runs none, and once they stop it runs one.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../../src/sys/exec.js';
import { MiB, buildBigDir, rssKb, startMemoryServer, storeLayerDir, type ServerUnderTest } from '../helpers/memory-load.js';
import { Scope } from '../helpers/scope.js';
import { waitUntil } from '../helpers/wait.js';

const ENTRIES = 30_000;
const WALK_PY = String.raw`
import os, sys
d = sys.argv[1]
names = os.listdir(d)
for n in names: os.lstat(os.path.join(d, n))
print(len(names))
`;

let scope: Scope;
let server: ServerUnderTest;
let layer = '';
let root = '';

before(async () => {
  scope = await Scope.create('fuse-idle-memory');
  layer = storeLayerDir(await scope.mkdir('store'), 'e1');
  await buildBigDir(join(layer, 'big'), ENTRIES);
  root = await scope.mkdir('root');
  server = await startMemoryServer(scope, { name: 'server', root, store: scope.path('store'), cacheBytes: 64 * MiB, walkEntries: 0, logLevel: 'debug' });
});

after(async () => {
  await server?.stop();
  await scope?.teardown();
});

const reductions = async (): Promise<{ rssBefore: number; rssAfter: number; ms: number }[]> =>
  (await readFile(server.logFile, 'utf8')).split('\n').filter((l) => l.includes('"idle: gave memory back to the system"'))
    .map((l) => JSON.parse(l) as { rssBefore: number; rssAfter: number; ms: number });

test('after a big walk and the unmount, the idle server gives memory back once, and its RSS falls', async (t) => {
  const mnt = join(root, 'mnt');
  await server.client.mount(layer, mnt);
  const walk = await exec('/usr/bin/python3', ['-c', WALK_PY, join(mnt, 'big')], { timeoutMs: 5 * 60_000 });
  assert.equal(walk.stdout.trim(), String(ENTRIES), walk.stderr);
  await server.client.unmount(mnt);
  const grown = await rssKb(server.process.pid);
  const before = (await reductions()).length;
  await waitUntil(async () => (await reductions()).length > before, { what: 'a memory reduction in the idle server', timeoutMs: 60_000 });
  const r = (await reductions()).at(-1) as { rssBefore: number; rssAfter: number; ms: number };
  // The freed pages go back on V8's own thread: look again a moment later.
  await new Promise((res) => setTimeout(res, 1000));
  const settled = await rssKb(server.process.pid);
  t.diagnostic(`RSS after the walk and unmount ${(grown / 1024).toFixed(1)} MiB; reduction ${r.ms} ms; then ${(settled / 1024).toFixed(1)} MiB`);
  assert.ok(settled < grown - 2 * 1024, `RSS ${settled} KiB after the reduction, ${grown} KiB before it`);
  // Quiet and no new growth: no second one.
  await new Promise((res) => setTimeout(res, 8000));
  assert.equal((await reductions()).length, before + 1);
});

test('while requests keep coming no reduction runs; once they stop, one does', async () => {
  const mnt = join(root, 'mnt2');
  await server.client.mount(layer, mnt);
  const before = (await reductions()).length;
  // Grown again: the walk's listing stays in the cache while the layer is mounted.
  const walk = await exec('/usr/bin/python3', ['-c', WALK_PY, join(mnt, 'big')], { timeoutMs: 5 * 60_000 });
  assert.equal(walk.stdout.trim(), String(ENTRIES), walk.stderr);
  // Lookups of missing names, one every 200 ms for 10 s: never 5 s of quiet.
  const end = Date.now() + 10_000;
  for (let i = 0; Date.now() < end; i++) {
    await exec('stat', [join(mnt, 'big', `missing-${i}`)]);
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.equal((await reductions()).length, before, 'a reduction ran between requests');
  await waitUntil(async () => (await reductions()).length > before, { what: 'a memory reduction once the requests stopped', timeoutMs: 60_000 });
  await server.client.unmount(mnt);
});
