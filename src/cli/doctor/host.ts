// Judging the node itself: the FUSE device, libfuse2, the file systems the kernel offers and its
// version. Pure functions over facts gathered elsewhere (gather.ts).
import { finding, type Finding } from './findings.js';

export const FUSE_MAJOR = 10;
export const FUSE_MINOR = 229;

/**
 * The oldest kernel this relies on: overlayfs takes several lowerdirs from 4.0 and the
 * index=off option (in every overlay mount we hand to containerd) from 4.13. FUSE and the
 * overlayfs whiteout formats the FUSE layer produces (0/0 character devices,
 * trusted.overlay.opaque) are older than both.
 */
export const MIN_KERNEL: readonly [number, number] = [4, 13];

export type StatFacts =
  | { state: 'missing' }
  | { state: 'error'; error: string }
  | { state: 'present'; kind: 'char' | 'block' | 'dir' | 'file' | 'socket' | 'symlink' | 'other'; major: number; minor: number };

export interface DevFuseFacts {
  path: string;
  stat: StatFacts;
  /** Opening the device read/write: "ok", an errno code, or undefined when not tried. */
  open: string | undefined;
}

export function checkDevFuse(f: DevFuseFacts): Finding {
  const bad = (m: string): Finding => finding('fuse.device', f.path, 'fail', m);
  const s = f.stat;
  if (s.state === 'missing') return bad('missing: load the fuse module (modprobe fuse), or in a container pass the device (--device /dev/fuse)');
  if (s.state === 'error') return bad(`cannot stat it (${s.error}); run doctor as root`);
  if (s.kind !== 'char') return bad(`is a ${s.kind}, not a character device: remove it and run modprobe fuse (or mknod ${f.path} c ${FUSE_MAJOR} ${FUSE_MINOR})`);
  const dev = `character device ${s.major}:${s.minor}`;
  if (s.major !== FUSE_MAJOR || s.minor !== FUSE_MINOR) {
    return bad(`${dev}, not ${FUSE_MAJOR}:${FUSE_MINOR}, so it is not the FUSE device: remove it and mknod ${f.path} c ${FUSE_MAJOR} ${FUSE_MINOR}`);
  }
  if (f.open !== 'ok') {
    return bad(`${dev}, but opening it read/write failed (${f.open ?? 'not tried'}): the daemon must run as root, and a container needs the device allowed (cgroup rule c ${FUSE_MAJOR}:${FUSE_MINOR} rwm)`);
  }
  return finding('fuse.device', f.path, 'ok', `${dev}, openable`);
}

/** The paths `ldconfig -p` gives for a library name. */
export function ldconfigPaths(ldconfigOutput: string, lib: string): string[] {
  const out: string[] = [];
  for (const line of ldconfigOutput.split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/.exec(line);
    if (m && m[1] === lib) out.push(m[3] as string);
  }
  return out;
}

export interface LibFacts {
  name: string;
  /** From `ldconfig -p`; undefined when ldconfig could not be run. */
  fromLdconfig: string[] | undefined;
  /** Found by looking in the usual library directories. */
  fromDirs: string[];
}

/**
 * libfuse2 used to be loaded through fuse-native. The FUSE layer now speaks the kernel protocol
 * on /dev/fuse itself and mounts through mount(8), so libfuse is reported, never required.
 */
export function checkLibfuse(f: LibFacts): Finding {
  const at = (f.fromLdconfig ?? [])[0] ?? f.fromDirs[0];
  const why = 'not needed: the layer filesystem speaks the FUSE protocol on /dev/fuse itself and mounts with mount(8)';
  return finding('fuse.libfuse2', 'libfuse2', 'ok', at ? `${f.name} at ${at}; ${why}` : `${f.name} is not installed; ${why}`);
}

/** The file system names in /proc/filesystems ("nodev\toverlay" → "overlay"). */
export function procFilesystems(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const name = line.trim().split(/\s+/).pop();
    if (name) out.add(name);
  }
  return out;
}

/** Whether modules.dep or modules.builtin lists the module (kernel/fs/x/name.ko, possibly compressed). */
export function moduleListed(listing: string, name: string): boolean {
  const re = new RegExp(`(^|/)${name.replace(/[-_]/g, '[-_]')}\\.ko(\\.(xz|zst|gz))?(:|$)`);
  return listing.split('\n').some((line) => re.test(line.trim().split(/\s+/)[0] ?? ''));
}

export interface FilesystemFacts {
  /** The name in /proc/filesystems and of the module: "overlay", "fuse". */
  name: string;
  registered: boolean;
  /** Whether the kernel's modules.dep/modules.builtin list it; undefined if there is no /lib/modules for this kernel. */
  module: boolean | undefined;
  kernelRelease: string;
}

const FS_CONFIG: Record<string, string> = { overlay: 'CONFIG_OVERLAY_FS', fuse: 'CONFIG_FUSE_FS' };

export function checkFilesystem(f: FilesystemFacts): Finding {
  const check = `kernel.${f.name}`;
  const subject = f.name === 'overlay' ? 'overlayfs' : f.name;
  if (f.registered) return finding(check, subject, 'ok', `"${f.name}" is in /proc/filesystems`);
  if (f.module) return finding(check, subject, 'ok', `not in /proc/filesystems yet, but the ${f.name} module of kernel ${f.kernelRelease} is installed; the first mount loads it (or modprobe ${f.name})`);
  const where = f.module === undefined ? `there is no /lib/modules/${f.kernelRelease} to load it from` : `kernel ${f.kernelRelease} has no ${f.name} module`;
  return finding(check, subject, 'fail', `"${f.name}" is not in /proc/filesystems and ${where}: modprobe ${f.name}, or boot a kernel built with ${FS_CONFIG[f.name] ?? 'it'}`);
}

/** "6.18.44-fc-v595" → [6, 18]; undefined when it does not start with two numbers. */
export function kernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function checkKernel(release: string): Finding {
  const need = `${MIN_KERNEL[0]}.${MIN_KERNEL[1]}`;
  const why = `overlayfs with several lowerdirs (4.0) and index=off (4.13), and FUSE`;
  const v = kernelVersion(release);
  if (!v) return finding('kernel.version', 'kernel', 'warn', `cannot read a version from "${release}"; this needs ${need} or newer: ${why}`);
  const [major, minor] = v;
  if (major > MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor >= MIN_KERNEL[1])) {
    return finding('kernel.version', 'kernel', 'ok', `${release}, at least ${need} as needed for ${why}`);
  }
  return finding('kernel.version', 'kernel', 'fail', `${release} is older than ${need}, which this needs for ${why}: upgrade the kernel`);
}

export function checkUser(uid: number): Finding {
  if (uid === 0) return finding('user', 'user', 'ok', 'running as root, as the daemon must');
  return finding('user', 'user', 'warn', `running as uid ${uid}: the daemon must run as root, and checks of root-only paths below may fail for lack of permission; run doctor as root`);
}
