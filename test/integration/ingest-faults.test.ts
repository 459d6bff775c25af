// `ingest` against a registry that serves something nasty, and onto a disk that fills. A real
// private docker-registry holds the images; a small HTTP proxy of this file sits in front of it
// and spoils chosen blobs (a flipped byte, a connection cut half-way, a short body, a long one).
// Stores that must fill live on small tmpfs mounts under this file's private directory.
// Every refusal is asserted on its words and exit code, and on the store: its tree afterwards is
// the tree before plus the layers that were completely ingested, nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { lstat, mkdir, readdir, readFile, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { exec, execOk, type ExecResult } from '../../src/sys/exec.js';
import { LayerStore } from '../../src/layers/store.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { daemonBin } from '../helpers/paths.js';
import { ManagedProcess } from '../helpers/process.js';
import { waitUntil } from '../helpers/wait.js';
import { pushLayersImage, startRegistry, type PushedLayer, type Registry } from '../helpers/registry.js';

const GZ = 'application/vnd.oci.image.layer.v1.tar+gzip';
const MiB = 1024 * 1024;

let scope: Scope;
let registry: Registry;
let proxy: Server;
let proxyHost: string;

/** What the proxy does to a blob, by digest. */
type Spoil =
  | { kind: 'flip' }
  | { kind: 'cut'; after: number }
  | { kind: 'short'; keep: number }
  | { kind: 'long'; extra: number }
  | { kind: 'stall'; after: number };
const spoiled = new Map<string, Spoil>();

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function runIngest(args: string[]): Promise<ExecResult> {
  return runCli(['ingest', '--plain-http', ...args], { timeoutMs: 180_000 });
}

let tarCounter = 0;
/** A tar of what fill puts in a fresh directory. */
async function tarOf(fill: (dir: string) => Promise<void>): Promise<Buffer> {
  const dir = await scope.mkdir('src', `t${++tarCounter}`);
  await fill(dir);
  const out = `${dir}.tar`;
  await execOk('tar', ['--create', '--file', out, '--format=pax', '--numeric-owner', '-C', dir, '.']);
  return readFile(out);
}

async function gzLayer(fill: (dir: string) => Promise<void>): Promise<{ blob: Buffer; mediaType: string; diffId: string }> {
  const tar = await tarOf(fill);
  return { blob: gzipSync(tar), mediaType: GZ, diffId: sha256(tar) };
}

async function push(name: string, layers: Array<{ blob: Buffer; mediaType: string; diffId: string }>): Promise<{ ref: string; layers: PushedLayer[] }> {
  const img = await pushLayersImage(registry, name, 'v1', layers);
  return { ref: `${proxyHost}/${name}:v1`, layers: img.layers };
}

/** Every path under root with its type and, for files, size: what a user would see with find. */
async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(root, rel))) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(root, r));
      out.push(st.isDirectory() ? `${r}/` : `${r} ${st.size}`);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out.sort();
}

/** The tree without these layers' directories, and without the directories that hold layers. */
function exceptLayers(tree: readonly string[], digests: readonly string[]): string[] {
  const hexes = digests.map((d) => d.slice('sha256:'.length));
  return tree.filter((p) => p !== '.layers/'
    && !hexes.some((h) => p === `.layers/${h.slice(0, 2)}/` || p.startsWith(`.layers/${h.slice(0, 2)}/${h}/`)));
}

/** Mounts a tmpfs of this size in the scope and unmounts it at teardown. */
async function smallDisk(name: string, bytes: number): Promise<string> {
  const dir = await scope.mkdir(name);
  await execOk('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, `ingest-test-${name}`, dir]);
  scope.defer(`unmount ${dir}`, async () => { await execOk('umount', [dir]); });
  return dir;
}

async function usedBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return (s.blocks - s.bfree) * s.bsize;
}

before(async () => {
  scope = await Scope.create('ingest-faults');
  registry = await startRegistry(scope);
  proxy = createServer((req, res) => {
    void (async () => {
      const upstream = await fetch(`${registry.url}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers: { Accept: req.headers.accept ?? '*/*' } });
      let body = Buffer.from(await upstream.arrayBuffer());
      const headers: Record<string, string> = {};
      for (const h of ['content-type', 'docker-content-digest', 'docker-distribution-api-version']) {
        const v = upstream.headers.get(h);
        if (v !== null) headers[h] = v;
      }
      const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '');
      const spoil = m ? spoiled.get(m[1] as string) : undefined;
      if (spoil?.kind === 'flip') {
        body = Buffer.from(body);
        const at = Math.floor(body.length / 2);
        body[at] = (body[at] as number) ^ 0x01;
      } else if (spoil?.kind === 'short') {
        body = body.subarray(0, spoil.keep);
      } else if (spoil?.kind === 'long') {
        // Chunked, with no Content-Length: the client learns only by counting.
        res.writeHead(upstream.status, headers);
        res.end(Buffer.concat([body, Buffer.alloc(spoil.extra, 0x55)]));
        return;
      } else if (spoil?.kind === 'stall') {
        // Part of the blob, then nothing: the transfer hangs until the client goes away.
        res.writeHead(upstream.status, { ...headers, 'content-length': String(body.length) });
        res.write(body.subarray(0, spoil.after));
        return;
      } else if (spoil?.kind === 'cut') {
        // The whole length is announced, part of it sent, then the connection drops.
        res.writeHead(upstream.status, { ...headers, 'content-length': String(body.length) });
        res.write(body.subarray(0, spoil.after), () => { res.socket?.destroy(); });
        return;
      }
      res.writeHead(upstream.status, { ...headers, 'content-length': String(body.length) });
      res.end(body);
    })().catch((err: unknown) => {
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const addr = proxy.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy has no port');
  proxyHost = `127.0.0.1:${addr.port}`;
  scope.defer('stop the proxy', () => new Promise<void>((resolve) => { proxy.closeAllConnections(); proxy.close(() => resolve()); }));
});

after(async () => { await scope.teardown(); });

/** A store that already holds one image, so "nothing left behind" is measured against something. */
async function seededStore(name: string, root?: string): Promise<LayerStore> {
  const store = new LayerStore(root ?? await scope.mkdir(name));
  const seed = await push(`seed/${name}`, [await gzLayer(async (d) => { await writeFile(join(d, 'seed'), `${name}\n`); })]);
  const r = await runIngest(['--store', store.root, seed.ref]);
  assert.equal(r.code, 0, r.stderr);
  return store;
}

test('a tampered blob is refused as a digest mismatch before it is unpacked; the good layer stays, nothing else', async () => {
  const good = await gzLayer(async (d) => { await writeFile(join(d, 'good'), 'good\n'); });
  const bad = await gzLayer(async (d) => { await writeFile(join(d, 'payload'), 'x'.repeat(10_000)); });
  const img = await push('fault/tampered', [good, bad]);
  const [g, b] = img.layers as [PushedLayer, PushedLayer];
  spoiled.set(b.digest, { kind: 'flip' });
  const flipped = Buffer.from(bad.blob);
  flipped[Math.floor(flipped.length / 2)] = (flipped[Math.floor(flipped.length / 2)] as number) ^ 0x01;

  const store = await seededStore('tampered');
  const before = await listTree(store.root);
  const r = await runIngest(['--store', store.root, img.ref]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`layer ${b.digest} of image ${proxyHost}/fault/tampered:v1 does not match its digest: the registry served ${sha256(flipped)} \\(${bad.blob.length} bytes\\); the layer was discarded`));
  assert.match(r.stderr, /1 of 2 layer\(s\) of \S+ could not be ingested \(the other 1 is in the store\); its manifest was not recorded/);
  assert.equal(await store.has(g.digest), true, 'the good layer is in');
  assert.equal(await store.has(b.digest), false);
  assert.deepEqual(exceptLayers(await listTree(store.root), [g.digest]), exceptLayers(before, [g.digest]));
});

test('a gzip bomb under its own correct digest is refused at the unpack bound: the disk never holds more than the bound', async (t) => {
  // 200 MiB of zeros in one file: gzip makes it ~200 KiB, a ratio of ~1000.
  const dir = await scope.mkdir('src', 'bomb');
  await writeFile(join(dir, 'zeros'), '');
  await truncate(join(dir, 'zeros'), 200 * MiB);
  const out = scope.path('src', 'bomb.tar.gz');
  await execOk('sh', ['-c', 'tar --create --format=pax -C "$1" . | gzip -9 > "$2"', 'sh', dir, out]);
  await rm(join(dir, 'zeros'));
  const blob = await readFile(out);
  const tarDigest = (await execOk('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', out])).stdout.split(' ')[0] as string;
  const small = await gzLayer(async (d) => { await writeFile(join(d, 'small'), 'small\n'); });
  const img = await push('fault/bomb', [small, { blob, mediaType: GZ, diffId: `sha256:${tarDigest}` }]);
  const [s, bomb] = img.layers as [PushedLayer, PushedLayer];
  assert.ok(bomb.size < 400 * 1024, `the bomb is small: ${bomb.size} bytes`);

  // The default bound is 100 times the compressed size. The disk holds the bound, the blob and
  // 2 MiB of slack, and not a byte more: had tar written past the bound, ingest would have
  // failed for a full disk instead.
  const bound = Math.ceil(bomb.size * 100);
  const disk = await smallDisk('bombfs', bound + bomb.size + 2 * MiB);
  await mkdir(join(disk, 'store'));
  const store = await seededStore('bomb', join(disk, 'store'));
  const before = await listTree(store.root);
  const idle = await usedBytes(disk);
  let peak = idle;
  const sampler = setInterval(() => { void usedBytes(disk).then((u) => { peak = Math.max(peak, u); }); }, 5);
  let r: ExecResult;
  try {
    r = await runIngest(['--store', store.root, '--jobs', '1', img.ref]);
  } finally {
    clearInterval(sampler);
  }
  t.diagnostic(`bomb: ${bomb.size} bytes compressed, bound ${bound} bytes; peak tmpfs use seen ${peak - idle} bytes above idle`);
  assert.equal(r.code, 1, r.stderr);
  const mib = (bound / MiB).toFixed(1);
  const kib = (bomb.size / 1024).toFixed(1);
  assert.match(r.stderr, new RegExp(`layer ${bomb.digest} of image ${proxyHost}/fault/bomb:v1 unpacks to more than ${mib} MiB \\(100 times its compressed size of ${kib} KiB\\); refused as a likely decompression bomb\\. Raise --max-unpack-ratio if the layer is genuine`));
  assert.doesNotMatch(r.stderr, /ENOSPC|Wrote only/);
  assert.ok(peak - idle <= bound + bomb.size + MiB, `peak use ${peak - idle} stays within the bound ${bound} and the blob`);
  assert.equal(await store.has(s.digest), true, 'the small layer of the same image is in');
  assert.deepEqual(exceptLayers(await listTree(store.root), [s.digest]), exceptLayers(before, [s.digest]));
  assert.ok((await usedBytes(disk)) - idle < 64 * 1024, 'the refused layer holds no space (the small one a page or so)');

  // The flag raises the bound, and then the layer is ingested whole (on a disk big enough).
  const roomy = new LayerStore(await scope.mkdir('bomb-roomy'));
  const ok = await runIngest(['--store', roomy.root, '--max-unpack-ratio', '2000', img.ref]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await stat(join(roomy.layerPath(bomb.digest), 'zeros'))).size, 200 * MiB);
  await rm(roomy.root, { recursive: true });
});

test('a zstd bomb is bounded as well (zstd shrinks zeros far more than gzip)', async () => {
  const dir = await scope.mkdir('src', 'zbomb');
  await writeFile(join(dir, 'zeros'), '');
  await truncate(join(dir, 'zeros'), 64 * MiB);
  const out = scope.path('src', 'zbomb.tar.zst');
  await execOk('sh', ['-c', 'tar --create --format=pax -C "$1" . | zstd -q -19 -o "$2"', 'sh', dir, out]);
  await rm(join(dir, 'zeros'));
  const blob = await readFile(out);
  const img = await push('fault/zbomb', [{ blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', diffId: sha256(blob) }]);
  const z = img.layers[0] as PushedLayer;
  const store = await seededStore('zbomb');
  const before = await listTree(store.root);
  const r = await runIngest(['--store', store.root, img.ref]);
  assert.equal(r.code, 1, r.stderr);
  // Some kilobytes compressed: the 1 MiB every layer may unpack to is the bound here.
  assert.match(r.stderr, new RegExp(`layer ${z.digest} of image \\S+ unpacks to more than 1\\.0 MiB \\(the 1\\.0 MiB every layer may unpack to; 100 times its compressed size of [\\d.]+ (bytes|KiB) is less\\); refused as a likely decompression bomb\\. Raise --max-unpack-ratio if the layer is genuine`));
  assert.deepEqual(await listTree(store.root), before);
});

test('a layer with more entries than --max-unpack-entries is refused, naming the flag', async () => {
  const many = await gzLayer(async (d) => {
    for (let i = 0; i < 300; i++) await writeFile(join(d, `f${i}`), '');
  });
  const img = await push('fault/many', [many]);
  const digest = (img.layers[0] as PushedLayer).digest;
  const store = await seededStore('many');
  const before = await listTree(store.root);
  const r = await runIngest(['--store', store.root, '--max-unpack-entries', '100', img.ref]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`layer ${digest} of image \\S+ holds more than 100 files and directories; refused as a likely decompression bomb\\. Raise --max-unpack-entries if the layer is genuine`));
  assert.deepEqual(await listTree(store.root), before);
  const ok = await runIngest(['--store', store.root, '--max-unpack-entries', '1000', img.ref]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await readdir(store.layerPath(digest))).length, 300);
});

test('a truncated blob is refused with what the registry sent, whether the connection drops or the body is short', async (t) => {
  const good = await gzLayer(async (d) => { await writeFile(join(d, 'good'), 'good\n'); });
  const cut = await gzLayer(async (d) => { await writeFile(join(d, 'cut'), randomBytes(256 * 1024)); });
  const short = await gzLayer(async (d) => { await writeFile(join(d, 'short'), randomBytes(64 * 1024)); });
  const img = await push('fault/truncated', [good, cut, short]);
  const [g, c, s] = img.layers as [PushedLayer, PushedLayer, PushedLayer];
  spoiled.set(c.digest, { kind: 'cut', after: 100_000 });
  spoiled.set(s.digest, { kind: 'short', keep: 5_000 });

  const store = await seededStore('truncated');
  const before = await listTree(store.root);
  const r = await runIngest(['--store', store.root, img.ref]);
  t.diagnostic(r.stderr);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`layer ${c.digest} of image ${proxyHost}/fault/truncated:v1 is truncated: the registry sent 100000 of ${c.size} bytes \\(the transfer broke off: .+\\); the layer was discarded`));
  assert.match(r.stderr, new RegExp(`layer ${s.digest} of image ${proxyHost}/fault/truncated:v1 is truncated: the registry sent 5000 of ${s.size} bytes; the layer was discarded`));
  assert.match(r.stderr, /2 of 3 layer\(s\)/);
  assert.equal(await store.has(g.digest), true);
  assert.deepEqual(exceptLayers(await listTree(store.root), [g.digest]), exceptLayers(before, [g.digest]));
});

test('a blob longer than its descriptor is cut off and refused', async () => {
  const long = await gzLayer(async (d) => { await writeFile(join(d, 'long'), 'long\n'); });
  const img = await push('fault/long', [long]);
  const l = img.layers[0] as PushedLayer;
  spoiled.set(l.digest, { kind: 'long', extra: 3 * MiB });
  const store = await seededStore('long');
  const before = await listTree(store.root);
  const r = await runIngest(['--store', store.root, img.ref]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`layer ${l.digest} of image \\S+ is longer than its manifest says: the registry sent more than the ${l.size} bytes of its descriptor; the layer was discarded`));
  assert.deepEqual(await listTree(store.root), before);
});

test('a full disk is named as such, whether it fills while downloading, unpacking or recording the manifest; space back, ingest works', async (t) => {
  const disk = await smallDisk('fullfs', 16 * MiB);
  const store = await seededStore('full', join(disk, 'store'));
  const small = await gzLayer(async (d) => { await writeFile(join(d, 'small'), 'small\n'); });
  // Random data does not compress: a 10 MiB blob that unpacks to 10 MiB, 20 MiB with both.
  const big = await gzLayer(async (d) => { await writeFile(join(d, 'big'), randomBytes(10 * MiB)); });
  const huge = await gzLayer(async (d) => { await writeFile(join(d, 'huge'), randomBytes(20 * MiB)); });

  // Unpacking fills it: the small layer first (--jobs 1 keeps the order), then the big one.
  const unpacking = await push('fault/unpacking', [small, big]);
  const [s, b] = unpacking.layers as [PushedLayer, PushedLayer];
  let before = await listTree(store.root);
  const r1 = await runIngest(['--store', store.root, '--jobs', '1', unpacking.ref]);
  t.diagnostic(r1.stderr);
  assert.equal(r1.code, 1, r1.stderr);
  assert.match(r1.stderr, new RegExp(`the disk holding ${store.root} is full \\(ENOSPC\\) while unpacking layer ${b.digest} of image ${proxyHost}/fault/unpacking:v1; nothing of it was kept: free space there and run ingest again`));
  assert.doesNotMatch(r1.stderr, /Wrote only/);
  assert.equal(await store.has(s.digest), true, 'the layer ingested before the disk filled stays');
  assert.deepEqual(exceptLayers(await listTree(store.root), [s.digest]), exceptLayers(before, [s.digest]));

  // Downloading fills it: the blob alone is bigger than the disk.
  const downloading = await push('fault/downloading', [huge]);
  const h = downloading.layers[0] as PushedLayer;
  before = await listTree(store.root);
  const r2 = await runIngest(['--store', store.root, downloading.ref]);
  assert.equal(r2.code, 1, r2.stderr);
  assert.match(r2.stderr, new RegExp(`the disk holding ${store.root} is full \\(ENOSPC\\) while downloading layer ${h.digest} of image ${proxyHost}/fault/downloading:v1`));
  assert.deepEqual(await listTree(store.root), before);

  // Recording the manifest fills it: every layer is there, the disk is full of something else.
  const filler = join(disk, 'filler');
  await exec('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=64']);
  before = await listTree(store.root);
  const seedRef = `${proxyHost}/seed/full:v1`;
  const r3 = await runIngest(['--store', store.root, seedRef]);
  assert.equal(r3.code, 1, r3.stderr);
  assert.match(r3.stderr, new RegExp(`the disk holding ${store.root} is full \\(ENOSPC\\) while recording the manifest of image ${proxyHost}/seed/full:v1`));
  assert.deepEqual(await listTree(store.root), before, 'no manifest.json.tmp-*, no staging area');

  // Space back: the same command works, without anything to clean first.
  await rm(filler);
  const again = await runIngest(['--store', store.root, seedRef]);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await listTree(store.root), before);
});

test('a run removes what a killed run left in the staging area, and leaves a live run alone', async () => {
  const img = await push('fault/stale', [await gzLayer(async (d) => { await writeFile(join(d, 'x'), 'x\n'); })]);
  const store = new LayerStore(await scope.mkdir('stale'));
  const staging = join(store.root, '.ingest');
  // pid 999999999 is above any pid_max: that run is surely gone.
  const dead = join(staging, '999999999-12345-0badc0de');
  await mkdir(join(dead, 'abcd'), { recursive: true });
  await writeFile(join(dead, 'abcd.blob'), 'half a blob');
  const selfStart = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]?.split(' ')[19] as string;
  const live = join(staging, `${process.pid}-${selfStart}-beefcafe`);
  await mkdir(live);
  const r = await runIngest(['--store', store.root, img.ref]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readdir(staging), [`${process.pid}-${selfStart}-beefcafe`], 'the dead run is gone, the live one is not');
  await rm(live, { recursive: true });
});

/** Bytes of the blobs being downloaded into the store's staging area. */
async function stagedBlobBytes(store: LayerStore): Promise<number> {
  const base = join(store.root, '.ingest');
  let total = 0;
  for (const run of await readdir(base).catch(() => [])) {
    for (const name of await readdir(join(base, run)).catch(() => [])) {
      if (name.endsWith('.blob')) total += (await stat(join(base, run, name)).catch(() => ({ size: 0 }))).size;
    }
  }
  return total;
}

/** An image of a small layer, then one whose download hangs after 300000 bytes. */
async function stalledImage(name: string): Promise<{ ref: string; done: PushedLayer; stalled: PushedLayer }> {
  const img = await push(name, [
    await gzLayer(async (d) => { await writeFile(join(d, 'done'), 'done\n'); }),
    await gzLayer(async (d) => { await writeFile(join(d, 'slow'), randomBytes(MiB)); }),
  ]);
  const [done, stalled] = img.layers as [PushedLayer, PushedLayer];
  spoiled.set(stalled.digest, { kind: 'stall', after: 300_000 });
  return { ref: img.ref, done, stalled };
}

async function startIngest(store: LayerStore, ref: string, log: string): Promise<ManagedProcess> {
  const proc = await ManagedProcess.start({ name: 'ingest', cmd: process.execPath, args: [daemonBin, 'ingest', '--plain-http', '--jobs', '1', '--store', store.root, ref], logFile: scope.path(log) });
  scope.defer(`stop ingest ${proc.pid}`, async () => { await proc.stop(5_000); });
  await waitUntil(async () => (await stagedBlobBytes(store)) >= 300_000, { what: 'the stalled download to reach 300000 bytes', process: proc });
  return proc;
}

test('SIGTERM in the middle of a download stops ingest, removes the unfinished layer and the staging area, keeps the finished one', async () => {
  const img = await stalledImage('fault/sigterm');
  const store = await seededStore('sigterm');
  const before = await listTree(store.root);
  const proc = await startIngest(store, img.ref, 'sigterm.log');
  const status = await proc.kill('SIGTERM');
  assert.deepEqual(status, { code: 143, signal: null }, proc.log());
  assert.match(proc.log(), /SIGTERM: stopping; removing the layers not yet complete/);
  assert.match(proc.log(), new RegExp(`error: ingest of image ${proxyHost}/fault/sigterm:v1 was interrupted`));
  assert.equal(await store.has(img.done.digest), true);
  assert.equal(await store.has(img.stalled.digest), false);
  assert.deepEqual(exceptLayers(await listTree(store.root), [img.done.digest]), exceptLayers(before, [img.done.digest]));
});

test('after a SIGKILL in the middle of a download, the next run removes the dead run\'s staging directory', async () => {
  const img = await stalledImage('fault/sigkill');
  const store = await seededStore('sigkill');
  const before = await listTree(store.root);
  const proc = await startIngest(store, img.ref, 'sigkill.log');
  const status = await proc.kill('SIGKILL');
  assert.equal(status.signal, 'SIGKILL');
  const left = await readdir(join(store.root, '.ingest'));
  assert.equal(left.length, 1);
  assert.match(left[0] as string, new RegExp(`^${proc.pid}-\\d+-[0-9a-f]+$`), 'the killed run left its staging directory');

  spoiled.delete(img.stalled.digest);
  const r = await runIngest(['--store', store.root, img.ref]);
  assert.equal(r.code, 0, r.stderr);
  const both = [img.done.digest, img.stalled.digest];
  for (const d of both) assert.equal(await store.has(d), true);
  // Before, plus both layers and this image's manifest record.
  const after = (await listTree(store.root)).filter((p) => !p.startsWith(`.metadata/${proxyHost}/fault/`));
  assert.deepEqual(exceptLayers(after, both), exceptLayers(before, both));
});
