import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerStore } from '../../src/layers/store.js';
import { diskUsage } from '../../src/sys/du.js';
import { isKind } from '../../src/errors.js';

const HEX = '0123456789abcdef'.repeat(4);
const DIGEST = `sha256:${HEX}`;
let dir: string;

before(async () => { dir = await mkdtemp(join(tmpdir(), 'layers-store-')); });
after(async () => { await rm(dir, { recursive: true, force: true }); });

test('paths follow DUCC: <root>/.layers/<first two hex>/<64 hex>/layerfs', () => {
  const s = new LayerStore('/cvmfs/unpacked.cern.ch/');
  assert.equal(s.root, '/cvmfs/unpacked.cern.ch');
  assert.equal(s.layerDir(DIGEST), `/cvmfs/unpacked.cern.ch/.layers/01/${HEX}`);
  assert.equal(s.layerPath(DIGEST), `/cvmfs/unpacked.cern.ch/.layers/01/${HEX}/layerfs`);
});

test('an invalid digest never becomes a path', () => {
  const s = new LayerStore('/store');
  for (const bad of ['sha256:../../etc', `sha256:${HEX.toUpperCase()}`, 'sha256:abc', `sha512:${HEX}${HEX}`]) {
    assert.throws(() => s.layerPath(bad), (e: unknown) => isKind(e, 'InvalidArgument'));
  }
});

test('the root must be absolute', () => {
  for (const bad of ['', 'relative/store', './x']) {
    assert.throws(() => new LayerStore(bad), (e: unknown) => isKind(e, 'InvalidArgument'));
  }
});

test('has(): only a real directory at every level counts; symlinks below the root do not', async () => {
  const root = join(dir, 'has');
  const s = new LayerStore(root);
  assert.equal(await s.has(DIGEST), false, 'empty store');
  await mkdir(s.layerDir(DIGEST), { recursive: true });
  assert.equal(await s.has(DIGEST), false, 'layer dir without layerfs');
  await writeFile(s.layerPath(DIGEST), 'not a dir');
  assert.equal(await s.has(DIGEST), false, 'layerfs is a file');
  await rm(s.layerPath(DIGEST));
  await mkdir(s.layerPath(DIGEST));
  assert.equal(await s.has(DIGEST), true);
  await assert.rejects(s.has('sha256:nope'), (e: unknown) => isKind(e, 'InvalidArgument'));

  // layerfs -> elsewhere
  const elsewhere = join(dir, 'elsewhere');
  await mkdir(elsewhere, { recursive: true });
  await rm(s.layerPath(DIGEST), { recursive: true });
  await symlink(elsewhere, s.layerPath(DIGEST));
  assert.equal(await s.has(DIGEST), false, 'layerfs symlink');

  // .layers/01 -> elsewhere (which holds a full layer)
  const other = `sha256:01${'f'.repeat(62)}`;
  const s2 = new LayerStore(join(dir, 'has2'));
  const real = join(dir, 'real01');
  await mkdir(join(real, 'f'.repeat(62).padStart(64, '01'), 'layerfs'), { recursive: true });
  await mkdir(join(s2.root, '.layers'), { recursive: true });
  await symlink(real, join(s2.root, '.layers', '01'));
  assert.equal(await s2.has(other), false, 'prefix directory symlink');

  // The root itself may be a symlink (e.g. an autofs path); that is the operator's choice.
  const alias = join(dir, 'alias');
  await symlink(root, alias);
  await rm(s.layerPath(DIGEST));
  await mkdir(s.layerPath(DIGEST));
  assert.equal(await new LayerStore(alias).has(DIGEST), true, 'root symlink is followed');
});

test('diskUsage (a snapshot\'s Usage): bytes and inodes like du, hardlinks once, symlinks not followed', async () => {
  const s = new LayerStore(join(dir, 'usage'));
  const fs = s.layerPath(DIGEST);
  await mkdir(join(fs, 'sub', 'deeper'), { recursive: true });
  await writeFile(join(fs, 'a'), Buffer.alloc(10_000, 1));
  await link(join(fs, 'a'), join(fs, 'sub', 'a-hardlink'));
  await writeFile(join(fs, 'sub', 'deeper', 'b'), 'hello');
  await symlink('/etc', join(fs, 'etc-link'));
  for (let i = 0; i < 150; i++) await writeFile(join(fs, 'sub', `f${i}`), ''); // more than one stat batch
  const u = await diskUsage(fs);
  // root, sub, deeper, a (once), b, etc-link, 150 empty files
  assert.equal(u.inodes, 3 + 1 + 1 + 1 + 150);
  assert.equal(u.apparentSize > 10_000 + 5, true);
  assert.ok(u.apparentSize < 10_000 + 5 + 4 * 4096 + 100, `apparent ${u.apparentSize}: the hardlink or /etc counted`);
  assert.ok(u.size >= 12_288 && u.size < 64 * 1024, `size ${u.size}`);
  await assert.rejects(diskUsage(new LayerStore(join(dir, 'usage')).layerPath(`sha256:${'e'.repeat(64)}`)), /ENOENT/);
});
