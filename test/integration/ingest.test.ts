// `ingest` against a real private docker-registry on 127.0.0.1: images built with umoci (and a
// few pushed by hand through the registry API, for what umoci cannot make), unpacked into a
// store in DUCC's layout, with whiteouts kept and every kind of file preserved.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, chown, copyFile, link, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execOk, type ExecResult } from '../../src/sys/exec.js';
import { LayerStore } from '../../src/layers/store.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { freePort } from '../helpers/ports.js';

const FIXED_TIME = new Date('2021-02-03T04:05:06Z');

let scope: Scope;
let registry: Registry;
let image: BuiltImage;

function runIngest(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<ExecResult> {
  return runCli(['ingest', ...args], { env, timeoutMs: 120_000 });
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** The file the registry serves for a blob (filesystem storage driver). */
function registryBlob(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return scope.path('registry', 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

async function noTempLeft(store: LayerStore): Promise<void> {
  await assert.rejects(stat(join(store.root, '.ingest')), /ENOENT/, 'the staging area is gone');
  const layers = join(store.root, '.layers');
  const xxs = await readdir(layers).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  for (const xx of xxs) {
    assert.notDeepEqual(await readdir(join(layers, xx)), [], `empty ${xx}`);
    for (const hex of await readdir(join(layers, xx))) {
      const names = await readdir(join(layers, xx, hex));
      assert.deepEqual(names.filter((n) => n !== 'layerfs'), [], `temp left in ${xx}/${hex}`);
    }
  }
}

before(async () => {
  scope = await Scope.create('ingest');
  registry = await startRegistry(scope);
  image = await buildImage(scope, {
    registry,
    name: 'test/fidelity',
    tag: 'v1',
    layers: [
      async (root) => {
        await mkdir(join(root, 'bin'), { recursive: true });
        await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
        await symlink('busybox', join(root, 'bin', 'sh'));
        await mkdir(join(root, 'etc'));
        await writeFile(join(root, 'etc', 'doomed'), 'bye\n');
        await writeFile(join(root, 'etc', 'keep'), 'keep\n');
        await mkdir(join(root, 'opq'));
        await writeFile(join(root, 'opq', 'old'), 'old\n');
      },
      async (root) => {
        const d = join(root, 'data');
        await mkdir(d);
        await writeFile(join(d, 'file'), 'content\n');
        await execOk('setfattr', ['-n', 'user.test', '-v', 'value', join(d, 'file')]);
        await link(join(d, 'file'), join(d, 'hard'));
        await symlink('../etc/keep', join(d, 'link'));
        await copyFile('/bin/busybox', join(d, 'suid'));
        await chmod(join(d, 'suid'), 0o4755);
        await execOk('mkfifo', [join(d, 'fifo')]);
        await execOk('mknod', [join(d, 'null'), 'c', '1', '3']);
        await writeFile(join(d, 'owned'), 'own\n');
        await chown(join(d, 'owned'), 1234, 5678);
        await chmod(join(d, 'owned'), 0o640);
        await mkdir(join(d, 'odd'), { mode: 0o751 });
        await chmod(join(d, 'odd'), 0o751);
        await chown(join(d, 'odd'), 99, 98);
        await utimes(join(d, 'owned'), FIXED_TIME, FIXED_TIME);
        await utimes(d, new Date(), new Date());
      },
      async (root) => {
        await rm(join(root, 'etc', 'doomed'));
        await utimes(join(root, 'etc'), new Date(), new Date()); // umoci leaves unchanged parents out
      },
      { raw: async (dir) => {
        await mkdir(join(dir, 'opq'));
        await writeFile(join(dir, 'opq', '.wh..wh..opq'), '');
        await writeFile(join(dir, 'opq', 'new'), 'new\n');
      } },
    ],
  });
});

after(async () => { await scope.teardown(); });

test('an image is unpacked in DUCC layout, whiteouts kept, every file kind preserved', async () => {
  const store = new LayerStore(scope.path('store1'));
  const r = await runIngest(['--store', store.root, '--plain-http', image.ref]);
  assert.equal(r.code, 0, r.stderr);
  const digests = image.layers.map((l) => l.digest);
  assert.equal(digests.length, 4);
  // Plain lines off a terminal: a header, one per layer, a summary.
  assert.match(r.stdout, new RegExp(`manifest ${image.manifestDigest}, 4 layers`));
  for (const d of digests) assert.match(r.stdout, new RegExp(`^${d} \\S+ \\S+ ingested [\\d.]+ (ms|s)$`, 'm'));
  assert.match(r.stdout, /4 layers \(4 ingested, 0 already present\)/);

  for (const d of digests) {
    assert.equal(await store.has(d), true, d);
    assert.equal(store.layerPath(d), join(store.root, '.layers', d.slice(7, 9), d.slice(7), 'layerfs'));
  }
  await noTempLeft(store);
  const [l0, l1, l2, l3] = digests.map((d) => store.layerPath(d)) as [string, string, string, string];

  // Layer 0: busybox and its symlink.
  assert.equal((await readFile(join(l0, 'bin', 'busybox'))).equals(await readFile('/bin/busybox')), true);
  assert.equal(await readlink(join(l0, 'bin', 'sh')), 'busybox');

  // Layer 1: every kind of file, with owners, modes, xattrs, times.
  const data = join(l1, 'data');
  const file = await lstat(join(data, 'file'));
  const hard = await lstat(join(data, 'hard'));
  assert.equal(file.ino, hard.ino, 'hardlink kept as a hardlink');
  assert.equal(file.nlink, 2);
  assert.equal((await execOk('getfattr', ['--only-values', '-n', 'user.test', join(data, 'file')])).stdout, 'value');
  assert.equal(await readlink(join(data, 'link')), '../etc/keep');
  const suid = await lstat(join(data, 'suid'));
  assert.equal(suid.mode & 0o7777, 0o4755);
  assert.equal((await lstat(join(data, 'fifo'))).isFIFO(), true);
  const dev = await lstat(join(data, 'null'));
  assert.equal(dev.isCharacterDevice(), true);
  assert.equal(dev.rdev, (1 << 8) | 3);
  const owned = await lstat(join(data, 'owned'));
  assert.deepEqual([owned.uid, owned.gid, owned.mode & 0o7777], [1234, 5678, 0o640]);
  assert.equal(owned.mtime.getTime(), FIXED_TIME.getTime());
  const odd = await lstat(join(data, 'odd'));
  assert.deepEqual([odd.isDirectory(), odd.uid, odd.gid, odd.mode & 0o7777], [true, 99, 98, 0o751]);

  // Layer 2: the deletion stays an AUFS whiteout file, not interpreted.
  const wh = await lstat(join(l2, 'etc', '.wh.doomed'));
  assert.equal(wh.isFile(), true);
  assert.equal(wh.size, 0);
  assert.deepEqual(await readdir(join(l2, 'etc')), ['.wh.doomed']);

  // Layer 3: the opaque marker stays too.
  assert.deepEqual((await readdir(join(l3, 'opq'))).sort(), ['.wh..wh..opq', 'new']);

  // The manifest is recorded byte for byte.
  const recorded = await readFile(join(store.root, '.metadata', registry.host, 'test', 'fidelity:v1', 'manifest.json'));
  assert.equal(sha256(recorded), image.manifestDigest);
});

test('layers already present are skipped; a missing one is fetched again', async () => {
  const store = new LayerStore(scope.path('store2'));
  assert.equal((await runIngest(['--store', store.root, '--plain-http', image.ref])).code, 0);
  const again = await runIngest(['--store', store.root, '--plain-http', image.ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /4 layers \(0 ingested, 4 already present\)/);
  for (const l of image.layers) assert.match(again.stdout, new RegExp(`^${l.digest} .* skipped`, 'm'));

  const victim = image.layers[1]?.digest as string;
  const ino = (await stat(store.layerPath(image.layers[0]?.digest as string))).ino;
  await rm(store.layerDir(victim), { recursive: true });
  const third = await runIngest(['--store', store.root, '--plain-http', image.ref]);
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stdout, /4 layers \(1 ingested, 3 already present\)/);
  assert.match(third.stdout, new RegExp(`^${victim} .* ingested`, 'm'));
  assert.equal((await stat(store.layerPath(image.layers[0]?.digest as string))).ino, ino, 'present layer untouched');
});

test('a corrupted blob is rejected as a digest mismatch and leaves nothing behind', async () => {
  const victim = image.layers[1]?.digest as string;
  const blob = registryBlob(victim);
  const original = await readFile(blob);
  const corrupt = Buffer.from(original);
  const at = Math.floor(corrupt.length / 2);
  corrupt[at] = (corrupt[at] as number) ^ 0xff;
  await writeFile(blob, corrupt);
  try {
    const store = new LayerStore(scope.path('store3'));
    const r = await runIngest(['--store', store.root, '--plain-http', image.ref]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`layer ${victim} of image ${registry.host}/test/fidelity:v1 does not match its digest: the registry served ${sha256(corrupt)} \\(\\d+ bytes\\); the layer was discarded`));
    assert.match(r.stdout, new RegExp(`^${victim} .* FAILED`, 'm'));
    assert.equal(await store.has(victim), false);
    await noTempLeft(store);
    for (const l of image.layers) if (l.digest !== victim) assert.equal(await store.has(l.digest), true);
    await assert.rejects(stat(join(store.root, '.metadata', registry.host, 'test', 'fidelity:v1')), /ENOENT/, 'no manifest for an incomplete image');
  } finally {
    await writeFile(blob, original);
  }
});

// ---- images pushed by hand through the registry API ----

interface PushedLayer { digest: string; size: number; mediaType: string }

async function pushBlob(name: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await fetch(`${registry.url}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202, await start.text());
  const url = new URL(start.headers.get('location') ?? '', registry.url);
  url.searchParams.set('digest', digest);
  const put = await fetch(url, { method: 'PUT', body: new Uint8Array(data), headers: { 'Content-Type': 'application/octet-stream' } });
  assert.equal(put.status, 201, await put.text());
  return digest;
}

async function pushManifest(name: string, ref: string, mediaType: string, doc: unknown): Promise<{ digest: string; size: number }> {
  const body = Buffer.from(JSON.stringify(doc));
  const put = await fetch(`${registry.url}/v2/${name}/manifests/${ref}`, { method: 'PUT', body: new Uint8Array(body), headers: { 'Content-Type': mediaType } });
  assert.equal(put.status, 201, await put.text());
  return { digest: sha256(body), size: body.length };
}

let handCounter = 0;
async function tarOf(fill: (dir: string) => Promise<void>): Promise<Buffer> {
  const dir = await scope.mkdir('hand', `l${++handCounter}`);
  await fill(dir);
  const out = `${dir}.tar`;
  await execOk('tar', ['--create', '--file', out, '--format=pax', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', dir, '.']);
  return readFile(out);
}

async function zstdOf(tar: Buffer): Promise<Buffer> {
  const f = scope.path('hand', `z${++handCounter}`);
  await writeFile(f, tar);
  await execOk('zstd', ['-q', '-f', f, '-o', `${f}.zst`]);
  return readFile(`${f}.zst`);
}

async function pushHandImage(name: string, ref: string, layers: Array<{ blob: Buffer; mediaType: string; diffId: string }>): Promise<{ digest: string; size: number; layers: PushedLayer[] }> {
  const pushed: PushedLayer[] = [];
  for (const l of layers) pushed.push({ digest: await pushBlob(name, l.blob), size: l.blob.length, mediaType: l.mediaType });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, config: {} }));
  const configDigest = await pushBlob(name, config);
  const m = await pushManifest(name, ref, 'application/vnd.oci.image.manifest.v1+json', {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: pushed,
  });
  return { ...m, layers: pushed };
}

test('zstd-compressed and uncompressed layers unpack too', async () => {
  const zTar = await tarOf(async (d) => { await writeFile(join(d, 'from-zstd'), 'z\n'); });
  const pTar = await tarOf(async (d) => { await writeFile(join(d, 'from-plain'), 'p\n'); await chmod(join(d, 'from-plain'), 0o600); });
  const img = await pushHandImage('test/codecs', 'v1', [
    { blob: await zstdOf(zTar), mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', diffId: sha256(zTar) },
    { blob: pTar, mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: sha256(pTar) },
  ]);
  const store = new LayerStore(scope.path('store4'));
  const r = await runIngest(['--store', store.root, '--plain-http', `${registry.host}/test/codecs:v1`]);
  assert.equal(r.code, 0, r.stderr);
  const [z, p] = img.layers as [PushedLayer, PushedLayer];
  assert.equal(await readFile(join(store.layerPath(z.digest), 'from-zstd'), 'utf8'), 'z\n');
  assert.equal((await lstat(join(store.layerPath(p.digest), 'from-plain'))).mode & 0o777, 0o600);
});

test('a blob that unpacks fine but does not hash to its digest is still rejected', async () => {
  const tar = await tarOf(async (d) => { await writeFile(join(d, 'payload'), 'AAAAAAAAAAAAAAAA\n'); });
  const img = await pushHandImage('test/tamper', 'v1', [{ blob: tar, mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: sha256(tar) }]);
  const layer = img.layers[0] as PushedLayer;
  const blob = registryBlob(layer.digest);
  const tampered = Buffer.from(tar.toString('latin1').replace('AAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBB'), 'latin1');
  assert.equal(tampered.length, tar.length);
  await writeFile(blob, tampered);
  const store = new LayerStore(scope.path('store5'));
  const r = await runIngest(['--store', store.root, '--plain-http', `${registry.host}/test/tamper:v1`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /does not match its digest/);
  assert.equal(await store.has(layer.digest), false);
  await noTempLeft(store);
});

test('a hostile layer writes nothing outside its directory and is rejected', async () => {
  const outside = await scope.mkdir('outside');
  const tarFile = scope.path('hand', 'hostile.tar');
  // Names GNU tar must not follow: .. components, absolute paths, writes through symlinks.
  const py = `
import tarfile, io, sys
def add(t, name, type=tarfile.REGTYPE, linkname=''):
    ti = tarfile.TarInfo(name); ti.type = type; ti.linkname = linkname
    if type == tarfile.REGTYPE:
        ti.size = 1; t.addfile(ti, io.BytesIO(b'x'))
    else:
        t.addfile(ti)
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    add(t, '../escape1')
    add(t, 'd/../../escape2')
    add(t, 'out', tarfile.SYMTYPE, sys.argv[2])
    add(t, 'out/escape3')
    add(t, 'up', tarfile.SYMTYPE, '..')
    add(t, 'up/escape4')
`;
  await execOk('python3', ['-c', py, tarFile, outside]);
  const tar = await readFile(tarFile);
  const img = await pushHandImage('test/hostile', 'v1', [{ blob: gzipSync(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }]);
  const store = new LayerStore(await scope.mkdir('store-hostile'));
  const r = await runIngest(['--store', store.root, '--plain-http', `${registry.host}/test/hostile:v1`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /tar could not unpack the layer \(exit 2\)/);
  assert.deepEqual(await readdir(outside), []);
  assert.equal(await store.has(img.layers[0]?.digest as string), false);
  assert.deepEqual(await readdir(store.root), [], 'nothing of the refused layer is in the store');
  assert.equal((await readdir(scope.dir)).some((n) => n.startsWith('escape')), false, scope.dir);
  await noTempLeft(store);
});

test('an image index resolves to linux/amd64 by default, or to --platform', async () => {
  const arch = async (a: string) => {
    const tar = await tarOf(async (d) => { await writeFile(join(d, 'arch'), `${a}\n`); });
    return pushHandImage('test/multi', `only-${a}`, [{ blob: gzipSync(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }]);
  };
  const arm = await arch('arm64');
  const amd = await arch('amd64');
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  await pushManifest('test/multi', 'v1', 'application/vnd.oci.image.index.v1+json', {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType, digest: arm.digest, size: arm.size, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { mediaType, digest: amd.digest, size: amd.size, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  });
  const ref = `${registry.host}/test/multi:v1`;
  const store = new LayerStore(scope.path('store6'));
  const metadata = join(store.root, '.metadata', registry.host, 'test', 'multi:v1', 'manifest.json');

  const def = await runIngest(['--store', store.root, '--plain-http', ref]);
  assert.equal(def.code, 0, def.stderr);
  assert.match(def.stdout, new RegExp(`manifest ${amd.digest} \\(linux/amd64\\)`));
  assert.equal(await readFile(join(store.layerPath(amd.layers[0]?.digest as string), 'arch'), 'utf8'), 'amd64\n');
  assert.equal(await store.has(arm.layers[0]?.digest as string), false);
  assert.equal(sha256(await readFile(metadata)), amd.digest, 'the platform manifest is recorded, not the index');

  const a = await runIngest(['--store', store.root, '--plain-http', '--platform', 'linux/arm64', ref]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(await readFile(join(store.layerPath(arm.layers[0]?.digest as string), 'arch'), 'utf8'), 'arm64\n');

  const none = await runIngest(['--store', store.root, '--plain-http', '--platform', 'linux/s390x', ref]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no manifest for linux\/s390x; it offers: linux\/arm64\/v8, linux\/amd64/);
});

test('Docker schema 2 manifests work as well as OCI ones', async () => {
  const ref = `${registry.host}/test/docker-format:v1`;
  await execOk('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${image.layout}:v1`, `docker://${ref}`]);
  const res = await fetch(`${registry.url}/v2/test/docker-format/manifests/v1`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
  const store = new LayerStore(scope.path('store7'));
  const r = await runIngest(['--store', store.root, '--plain-http', ref]);
  assert.equal(r.code, 0, r.stderr);
  const manifest = JSON.parse(await readFile(join(store.root, '.metadata', registry.host, 'test', 'docker-format:v1', 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string; mediaType: string }> };
  assert.equal(manifest.layers[0]?.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
  for (const l of manifest.layers) assert.equal(await store.has(l.digest), true);
});

test('command line errors are clear and have distinct exit codes', async () => {
  const store = scope.path('store8');
  const noStore = await runIngest([image.ref]);
  assert.equal(noStore.code, 2);
  assert.match(noStore.stderr, /--store DIR is required/);
  const help = await runIngest(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: cvmfs-snapshotter ingest --store DIR/);
  const badPlatform = await runIngest(['--store', store, '--platform', 'amd64', image.ref]);
  assert.equal(badPlatform.code, 2);
  assert.match(badPlatform.stderr, /expected os\/arch\[\/variant\]/);
  const badRef = await runIngest(['--store', store, '--plain-http', `${registry.host}/../etc:x`]);
  assert.equal(badRef.code, 1);
  assert.match(badRef.stderr, /invalid image reference/);

  const missing = await runIngest(['--store', store, '--plain-http', `${registry.host}/test/nothing:v1`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /manifest test\/nothing:v1 not found/);
  const tls = await runIngest(['--store', store, image.ref]);
  assert.equal(tls.code, 1);
  assert.match(tls.stderr, /pass --plain-http/);
  const port = await freePort();
  const closed = await runIngest(['--store', store, '--plain-http', `127.0.0.1:${port}/x:y`]);
  assert.equal(closed.code, 1);
  assert.match(closed.stderr, new RegExp(`cannot reach registry http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
});
