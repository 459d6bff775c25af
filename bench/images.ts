// The benchmark's images, built once as OCI layouts under BENCH_CACHE_DIR and pushed to each
// run's private registry with skopeo:
// - "small": Debian bookworm minbase + python3 (the test suite's cached debootstrap tarball), one layer;
// - "large": the same base and then one layer per group of Debian packages installed in a chroot
//   (compilers, a JDK, clang, Go, scipy, ...), over 1 GB unpacked and at least 9 layers.
// Each layout is built in a temporary directory and renamed into place, so an interrupted build
// never leaves a half-built image under the final name.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile, copyFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../src/sys/exec.js';
import { debianPythonTarball } from '../test/helpers/debian.js';
import { unmountAllUnder } from '../test/helpers/mounts.js';
import { readLayoutImage, type LayoutImage } from '../test/helpers/oci-layout.js';
import type { Registry } from '../test/helpers/registry.js';

export const BENCH_CACHE_DIR = process.env.CVMFS_BENCH_CACHE ?? '/var/cache/cvmfs-snapshotter-bench';
const MIRROR = process.env.CVMFS_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
export const TAG = 'bench';

/** Package groups of the large image, one layer each, installed in this order. */
export const LARGE_IMAGE_GROUPS: readonly (readonly string[])[] = [
  ['perl', 'git', 'curl', 'ca-certificates', 'procps', 'less', 'xz-utils'],
  ['gcc', 'g++', 'make', 'libc6-dev'],
  ['python3', 'python3-pip', 'python3-venv'],
  ['python3-numpy'],
  ['python3-scipy'],
  ['default-jdk-headless'],
  ['clang'],
  ['golang-go'],
];

export interface CachedLayout {
  layout: string;
  image: LayoutImage;
  built: boolean;
  buildMs: number;
}

const log = (msg: string): void => { process.stderr.write(`[bench] ${msg}\n`); };

async function tarDirectory(dir: string, out: string): Promise<void> {
  const entries = (await readdir(dir)).sort();
  await execOk('tar', ['--create', '--file', out, '--format=pax', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name', '-C', dir, '--', ...entries], { timeoutMs: 20 * 60_000 });
}

async function cached(name: string, build: (layout: string, work: string) => Promise<void>): Promise<CachedLayout> {
  const layout = join(BENCH_CACHE_DIR, name);
  if (existsSync(layout)) return { layout, image: await readLayoutImage(layout, TAG), built: false, buildMs: 0 };
  await mkdir(BENCH_CACHE_DIR, { recursive: true });
  const t0 = Date.now();
  const work = await mkdtemp(join(BENCH_CACHE_DIR, `build-${name}-`));
  try {
    const tmpLayout = join(work, 'oci');
    await execOk('umoci', ['init', '--layout', tmpLayout]);
    await execOk('umoci', ['new', '--image', `${tmpLayout}:${TAG}`]);
    await build(tmpLayout, work);
    await execOk('umoci', ['config', '--no-history', '--image', `${tmpLayout}:${TAG}`, '--config.cmd', '/usr/bin/python3', '--config.cmd', '-c', '--config.cmd', 'print("hi")']);
    await execOk('umoci', ['gc', '--layout', tmpLayout]);
    await rename(tmpLayout, layout);
  } finally {
    await unmountAllUnder(work).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
  const buildMs = Date.now() - t0;
  log(`built ${name} in ${(buildMs / 1000).toFixed(0)} s`);
  return { layout, image: await readLayoutImage(layout, TAG), built: true, buildMs };
}

/** The base layer: the Debian+python3 tarball, unpacked and re-tarred by entry (no "./" entry). */
async function addBaseLayer(layout: string, work: string): Promise<void> {
  const { tarball } = await debianPythonTarball();
  const dir = join(work, 'base');
  await mkdir(dir);
  await execOk('tar', ['--extract', '--file', tarball, '--numeric-owner', '--same-permissions', '--xattrs', '--xattrs-include=*', '-C', dir]);
  const tar = join(work, 'base.tar');
  await tarDirectory(dir, tar);
  await rm(dir, { recursive: true, force: true });
  await execOk('umoci', ['raw', 'add-layer', '--history.created_by', 'debootstrap bookworm minbase + python3-minimal', '--image', `${layout}:${TAG}`, tar], { timeoutMs: 10 * 60_000 });
  await rm(tar);
}

export function smallImageLayout(): Promise<CachedLayout> {
  return cached('small-oci', async (layout, work) => { await addBaseLayer(layout, work); });
}

async function aptInstall(rootfs: string, packages: readonly string[]): Promise<void> {
  // Daemons must not start inside the chroot.
  const policy = join(rootfs, 'usr', 'sbin', 'policy-rc.d');
  await writeFile(policy, '#!/bin/sh\nexit 101\n');
  await chmod(policy, 0o755);
  await copyFile('/etc/resolv.conf', join(rootfs, 'etc', 'resolv.conf'));
  await writeFile(join(rootfs, 'etc', 'apt', 'sources.list'), `deb ${MIRROR} bookworm main\n`);
  await mkdir(join(rootfs, 'usr', 'share', 'man', 'man1'), { recursive: true });
  await execOk('mount', ['-t', 'proc', 'proc', join(rootfs, 'proc')]);
  await execOk('mount', ['--rbind', '/dev', join(rootfs, 'dev')]);
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C', PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
    await execOk('chroot', [rootfs, 'apt-get', 'update', '-qq'], { env, timeoutMs: 10 * 60_000 });
    await execOk('chroot', [rootfs, 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages], { env, timeoutMs: 30 * 60_000 });
    await execOk('chroot', [rootfs, 'apt-get', 'clean'], { env });
  } finally {
    await execOk('umount', ['--recursive', '--lazy', join(rootfs, 'dev')]).catch(() => undefined);
    await execOk('umount', ['--lazy', join(rootfs, 'proc')]).catch(() => undefined);
  }
  await rm(policy, { force: true });
  await rm(join(rootfs, 'var', 'lib', 'apt', 'lists'), { recursive: true, force: true });
  await mkdir(join(rootfs, 'var', 'lib', 'apt', 'lists', 'partial'), { recursive: true });
  for (const f of ['pkgcache.bin', 'srcpkgcache.bin']) await rm(join(rootfs, 'var', 'cache', 'apt', f), { force: true });
}

export function largeImageLayout(): Promise<CachedLayout> {
  return cached('large-oci', async (layout, work) => {
    await addBaseLayer(layout, work);
    const bundle = join(work, 'bundle');
    await execOk('umoci', ['unpack', '--image', `${layout}:${TAG}`, bundle], { timeoutMs: 10 * 60_000 });
    for (const [i, group] of LARGE_IMAGE_GROUPS.entries()) {
      const t0 = Date.now();
      await aptInstall(join(bundle, 'rootfs'), group);
      await execOk('umoci', ['repack', '--refresh-bundle', '--history.created_by', `apt-get install ${group.join(' ')}`, '--image', `${layout}:${TAG}`, bundle], { timeoutMs: 20 * 60_000 });
      log(`large image layer ${i + 2}/${LARGE_IMAGE_GROUPS.length + 1} (${group.join(' ')}) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  });
}

/** Pushes a cached layout to the registry as name:bench and returns the reference. */
export async function pushLayout(c: CachedLayout, registry: Registry, name: string): Promise<string> {
  const ref = `${registry.host}/${name}:${TAG}`;
  await execOk('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${c.layout}:${TAG}`, `docker://${ref}`], { timeoutMs: 10 * 60_000 });
  return ref;
}

// `node dist/bench/images.js` builds both images ahead of a run.
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const s = await smallImageLayout();
  log(`small: ${s.layout} (${s.image.layers.length} layers)`);
  const l = await largeImageLayout();
  log(`large: ${l.layout} (${l.image.layers.length} layers)`);
}
