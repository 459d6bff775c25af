// Synthetic layers written straight into the benchmark's layer store (DUCC layout,
// .layers/<xx>/<hex>/layerfs), keyed by made-up digests: the daemon serves any directory the
// layout names, so the FUSE and memory cases need no registry round trip. Built once, into a
// temporary name and renamed, and kept in BENCH_CACHE_DIR between runs.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../src/sys/exec.js';
import { debianPythonTarball } from '../test/helpers/debian.js';
import { BENCH_CACHE_DIR } from './images.js';

export const STORE_DIR = join(BENCH_CACHE_DIR, 'store');
export const BIG_FILE = 'bench/big.bin';
export const BIG_FILE_BYTES = 512 * 1024 * 1024;
export const TREE_DIR = 'bench/tree';
const TREE_DIRS = 60;
const TREE_FILES = 100;
export const MEM_LAYERS = 100;
const MEM_DIRS = 20;
const MEM_FILES = 100;

export function fakeDigest(name: string): string {
  return `sha256:${createHash('sha256').update(`cvmfs-snapshotter-bench ${name}`).digest('hex')}`;
}

export function layerPath(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(STORE_DIR, '.layers', hex.slice(0, 2), hex, 'layerfs');
}

async function ensureLayer(digest: string, fill: (dir: string) => Promise<void>): Promise<string> {
  const final = layerPath(digest);
  if (existsSync(final)) return final;
  const parent = join(final, '..');
  await mkdir(join(parent, '..'), { recursive: true });
  const tmp = await mkdtemp(`${parent}.tmp-`);
  try {
    await mkdir(join(tmp, 'layerfs'));
    await fill(join(tmp, 'layerfs'));
    await rename(tmp, parent);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return final;
}

function fillTree(root: string, dirs: number, files: number, content: string): void {
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, `d${String(d).padStart(3, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < files; f++) writeFileSync(join(dir, `f${String(f).padStart(4, '0')}`), content);
  }
}

export const FUSE_LAYER_DIGEST = fakeDigest('fuse layer v1');

/**
 * A whole root filesystem in one layer: Debian+python3 (so python runs in a chroot over it), a
 * 512 MiB file of random bytes, and 6,000 small files in 60 directories (over 13,000 entries).
 */
export function fuseLayer(): Promise<string> {
  return ensureLayer(FUSE_LAYER_DIGEST, async (dir) => {
    const { tarball } = await debianPythonTarball();
    await execOk('tar', ['--extract', '--file', tarball, '--numeric-owner', '--same-permissions', '--xattrs', '--xattrs-include=*', '-C', dir]);
    await mkdir(join(dir, TREE_DIR), { recursive: true });
    await execOk('sh', ['-c', `head -c ${BIG_FILE_BYTES} /dev/urandom > "$1"`, 'sh', join(dir, BIG_FILE)]);
    fillTree(join(dir, TREE_DIR), TREE_DIRS, TREE_FILES, 'x\n');
  });
}

export const memLayerDigest = (i: number): string => fakeDigest(`memory layer ${i} v1`);

/** MEM_LAYERS small layers of 2,000 files each, to mount many at once and fill the metadata cache. */
export async function memLayers(): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < MEM_LAYERS; i++) {
    const digest = memLayerDigest(i);
    await ensureLayer(digest, async (dir) => { fillTree(dir, MEM_DIRS, MEM_FILES, `layer ${i}\n`); });
    out.push(digest);
  }
  return out;
}

export const scaleLayerDigest = (i: number): string => fakeDigest(`scale layer ${i} v1`);
export const SCALE_FILE = 'hello';

/** n tiny layers (one file each), for one FUSE server to hold thousands of idle mounts. */
export async function scaleLayers(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const digest = scaleLayerDigest(i);
    await ensureLayer(digest, async (dir) => { writeFileSync(join(dir, SCALE_FILE), `scale layer ${i}\n`); });
    out.push(digest);
  }
  return out;
}
