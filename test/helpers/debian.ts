// A real-world root filesystem for end-to-end tests: Debian bookworm (minbase) with python3,
// built once with debootstrap (about 40 s, from a Debian mirror) and kept as a tarball in a
// cache directory outside the repository, so later runs only unpack it.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';
import type { RawLayer } from './image.js';
import { unmountAllUnder } from './mounts.js';

/** Where built test artifacts are kept between runs; CVMFS_TEST_CACHE overrides it. */
export const TEST_CACHE_DIR = process.env.CVMFS_TEST_CACHE ?? '/var/cache/cvmfs-snapshotter-tests';
const MIRROR = process.env.CVMFS_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const TARBALL = 'debian-bookworm-minbase-python3.tar';

export interface CachedRootfs {
  tarball: string;
  /** True if this call ran debootstrap (the cache was empty). */
  built: boolean;
  /** Milliseconds spent building (0 when it came from the cache). */
  buildMs: number;
}

/**
 * The tarball of a debootstrap'd Debian bookworm with python3-minimal, built if it is missing.
 * The build happens in a private temp directory and the tarball is renamed into place, so an
 * interrupted or concurrent build never leaves a partial file under the final name.
 */
export async function debianPythonTarball(): Promise<CachedRootfs> {
  const tarball = join(TEST_CACHE_DIR, TARBALL);
  if (existsSync(tarball)) return { tarball, built: false, buildMs: 0 };
  await mkdir(TEST_CACHE_DIR, { recursive: true });
  const t0 = Date.now();
  const work = await mkdtemp(join(TEST_CACHE_DIR, 'build-'));
  try {
    const rootfs = join(work, 'rootfs');
    await execOk('debootstrap', ['--variant=minbase', '--include=python3-minimal', 'bookworm', rootfs, MIRROR], { timeoutMs: 15 * 60_000 });
    // Downloaded .debs and apt lists are not part of a container image's job here.
    await rm(join(rootfs, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true });
    await mkdir(join(rootfs, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true });
    const tmpTar = join(work, TARBALL);
    await execOk('tar', ['--create', '--file', tmpTar, '--format=pax', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name', '-C', rootfs, '.']);
    await rename(tmpTar, tarball);
  } finally {
    // debootstrap mounts /proc and /sys inside the target while it works; a failed run may leave them.
    await unmountAllUnder(work).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
  return { tarball, built: true, buildMs: Date.now() - t0 };
}

/** A raw image layer holding exactly the tarball's contents. */
export function rootfsTarballLayer(tarball: string, comment = `rootfs from ${tarball}`): RawLayer {
  return {
    comment,
    raw: (dir) => execOk('tar', ['--extract', '--file', tarball, '--numeric-owner', '--same-permissions', '--xattrs', '--xattrs-include=*', '-C', dir]),
  };
}
