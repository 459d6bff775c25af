// Editing a root filesystem for a test image layer. Every helper touches the ancestors of what it
// changes: umoci repack leaves an unchanged parent directory out of the layer, and containerd
// would then create it at apply time with a new mtime that no lazy layer store can match.
import { chmod, copyFile, link, lchown, lutimes, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { execOk } from '../../src/sys/exec.js';

export interface Attrs {
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
}

/** rootfs + rel, refusing anything that would step outside rootfs. */
export function inRoot(rootfs: string, rel: string): string {
  const clean = normalize(rel).replace(/^\/+/, '');
  if (clean === '' || clean === '.' || clean.split(sep).includes('..')) throw new Error(`bad path in rootfs: ${JSON.stringify(rel)}`);
  return join(rootfs, clean);
}

/** Sets the mtime of every directory between rootfs (excluded) and rel (excluded) to now. */
export async function touchAncestors(rootfs: string, rel: string): Promise<void> {
  const now = new Date();
  let dir = dirname(inRoot(rootfs, rel));
  while (dir.length > rootfs.length && dir.startsWith(rootfs)) {
    await utimes(dir, now, now);
    dir = dirname(dir);
  }
}

async function applyAttrs(path: string, a: Attrs, isLink = false): Promise<void> {
  if (a.uid !== undefined || a.gid !== undefined) await lchown(path, a.uid ?? 0, a.gid ?? 0);
  // chown clears setuid/setgid, so the mode comes after it; symlinks have no mode of their own.
  if (a.mode !== undefined && !isLink) await chmod(path, a.mode);
  if (a.mtime !== undefined) await lutimes(path, a.mtime, a.mtime);
}

export async function addDir(rootfs: string, rel: string, a: Attrs = {}): Promise<string> {
  const p = inRoot(rootfs, rel);
  await mkdir(p, { recursive: true });
  await applyAttrs(p, a);
  await touchAncestors(rootfs, rel);
  return p;
}

export async function addFile(rootfs: string, rel: string, content: string | Buffer, a: Attrs = {}): Promise<string> {
  const p = inRoot(rootfs, rel);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, content);
  await applyAttrs(p, { mode: 0o644, ...a });
  await touchAncestors(rootfs, rel);
  return p;
}

export async function addSymlink(rootfs: string, rel: string, target: string, a: Attrs = {}): Promise<string> {
  const p = inRoot(rootfs, rel);
  await mkdir(dirname(p), { recursive: true });
  await symlink(target, p);
  await applyAttrs(p, a, true);
  await touchAncestors(rootfs, rel);
  return p;
}

/** A hard link at rel to the existing file existingRel (both inside rootfs). */
export async function addHardlink(rootfs: string, rel: string, existingRel: string): Promise<string> {
  const p = inRoot(rootfs, rel);
  await mkdir(dirname(p), { recursive: true });
  await link(inRoot(rootfs, existingRel), p);
  await touchAncestors(rootfs, rel);
  return p;
}

export async function addFifo(rootfs: string, rel: string, a: Attrs = {}): Promise<string> {
  const p = inRoot(rootfs, rel);
  await mkdir(dirname(p), { recursive: true });
  await execOk('mkfifo', [p]);
  await applyAttrs(p, { mode: 0o644, ...a });
  await touchAncestors(rootfs, rel);
  return p;
}

/** Sets an extended attribute (on the link itself for a symlink: use a trusted.* name there). */
export async function setXattr(rootfs: string, rel: string, name: string, value: string): Promise<void> {
  await execOk('setfattr', ['-h', '-n', name, '-v', value, inRoot(rootfs, rel)]);
  await touchAncestors(rootfs, rel);
}

/** Deletes rel; in a layer built by umoci repack this becomes a whiteout. */
export async function removePath(rootfs: string, rel: string): Promise<void> {
  await rm(inRoot(rootfs, rel), { recursive: true });
  await touchAncestors(rootfs, rel);
}

/** The busybox applets a test image links in /bin. */
export const BUSYBOX_APPLETS = ['sh', 'echo', 'cat', 'ls', 'true', 'false', 'sleep', 'stat', 'id', 'find', 'readlink', 'test', 'mkdir', 'rm', 'touch', 'wc', 'sha256sum', 'env', 'mount', 'grep', 'head', 'tail', 'ln', 'chmod', 'mkfifo', 'cp', 'mv', 'sync'] as const;

/** A minimal root filesystem: the static busybox and its applets, /etc/passwd and group, the usual empty dirs. */
export async function busyboxRootfs(rootfs: string, busybox = '/bin/busybox'): Promise<void> {
  for (const [d, mode] of [['bin', 0o755], ['etc', 0o755], ['tmp', 0o1777], ['root', 0o700], ['proc', 0o555], ['sys', 0o555], ['dev', 0o755]] as const) {
    await addDir(rootfs, d, { mode });
  }
  const bb = inRoot(rootfs, 'bin/busybox');
  await copyFile(busybox, bb);
  await chmod(bb, 0o755);
  for (const applet of BUSYBOX_APPLETS) await symlink('busybox', inRoot(rootfs, `bin/${applet}`));
  await addFile(rootfs, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await addFile(rootfs, 'etc/group', 'root:x:0:\nnogroup:x:65534:\n');
}

/**
 * Waits for the next whole second. umoci repack compares mtimes in whole seconds (tar_time), so a
 * parent touched in the same second its previous layer was made in looks unchanged and is left
 * out of the layer; call this at the start of an edit that must carry its parents.
 */
export async function nextSecond(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5));
}
