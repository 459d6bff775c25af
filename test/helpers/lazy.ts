// The lazy path end to end: fill a layer store with `cvmfs-snapshotter ingest`, pull through
// containerd's CRI with `cvmfs-snapshotter pull`, and look at what containerd downloaded and what
// the daemon has mounted.
import { readFile, stat, statfs } from 'node:fs/promises';
import type { ExecResult } from '../../src/sys/exec.js';
import type { Containerd } from './containerd.js';
import { PROXY_SNAPSHOTTER } from './containerd-config.js';
import { mountsUnder, type MountEntry } from './mounts.js';
import { runCli } from './cli.js';

/** CRI pulls land in this containerd namespace. */
export const CRI_NAMESPACE = 'k8s.io';
/** The label the daemon puts on a snapshot served from the layer store. */
export const REMOTE_LABEL = 'containerd.io/snapshot/remote';

/** Runs `bin/cvmfs-snapshotter ARGS`; throws with its output on a non-zero exit. */
export async function cli(args: readonly string[], timeoutMs = 300_000): Promise<ExecResult> {
  const r = await runCli(args, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(`cvmfs-snapshotter ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}):\n${r.stderr.trim()}\n${r.stdout.trim()}`);
  }
  return r;
}

/** `cvmfs-snapshotter ingest --store STORE --plain-http REF...` */
export function ingest(store: string, ...refs: string[]): Promise<ExecResult> {
  return cli(['ingest', '--store', store, '--plain-http', ...refs]);
}

/** `cvmfs-snapshotter pull --containerd SOCK REF` (a CRI pull into the k8s.io namespace). */
export function pullLazy(ctd: Containerd, ref: string): Promise<ExecResult> {
  return cli(['pull', '--containerd', ctd.socket, ref]);
}

/** The digests of every blob in containerd's content store in namespace ns. */
export async function contentDigests(ctd: Containerd, ns = CRI_NAMESPACE): Promise<Set<string>> {
  const out = await ctd.ctr(['content', 'ls', '--quiet'], { namespace: ns });
  return new Set(out.split('\n').map((l) => l.trim()).filter((l) => l !== ''));
}

export interface SnapshotInfo {
  Kind?: string;
  Name?: string;
  Parent?: string;
  Labels?: Record<string, string>;
}

/** `ctr snapshots info KEY` as containerd reports it, or undefined if containerd does not know KEY. */
export async function snapshotInfo(ctd: Containerd, key: string, ns = CRI_NAMESPACE, snapshotter = PROXY_SNAPSHOTTER): Promise<SnapshotInfo | undefined> {
  const r = await ctd.ctrResult(['snapshots', '--snapshotter', snapshotter, 'info', key], { namespace: ns, timeoutMs: 30_000 });
  if (r.code !== 0) {
    if (/not found/i.test(r.stderr)) return undefined;
    throw new Error(`ctr snapshots info ${key}: ${r.stderr.trim()}`);
  }
  return JSON.parse(r.stdout) as SnapshotInfo;
}

/** The remote label of a snapshot (the layer digest), or undefined for a local or unknown snapshot. */
export async function remoteLabel(ctd: Containerd, key: string, ns = CRI_NAMESPACE): Promise<string | undefined> {
  return (await snapshotInfo(ctd, key, ns))?.Labels?.[REMOTE_LABEL];
}

/** FUSE mounts under dir (the daemon's layer mounts live under its root). */
export function fuseMountsUnder(dir: string): MountEntry[] {
  return mountsUnder(dir).filter((m) => m.fsType === 'fuse' || m.fsType.startsWith('fuse.'));
}

export interface MountHealth {
  mount: MountEntry;
  /** undefined if stat worked, else the errno code (ENOTCONN for a FUSE mount whose server died). */
  error: string | undefined;
}

/**
 * stat()s and statfs()s each mount point; a FUSE mount whose process is gone answers ENOTCONN.
 * Both, because with long attribute timeouts the kernel may answer stat from its cache, while
 * statfs always asks the FUSE server.
 */
export async function statMounts(mounts: readonly MountEntry[]): Promise<MountHealth[]> {
  const out: MountHealth[] = [];
  for (const m of mounts) {
    try {
      await stat(m.mountPoint);
      await statfs(m.mountPoint);
      out.push({ mount: m, error: undefined });
    } catch (err) {
      const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : String(err);
      out.push({ mount: m, error: code });
    }
  }
  return out;
}

/** ctr flags that run a container of a lazily pulled image through the daemon. */
export function lazyRunArgs(ctd: Containerd): string[] {
  return ['run', ...ctd.runFlags, '--snapshotter', PROXY_SNAPSHOTTER];
}

/**
 * True once process pid is blocked in nanosleep: it has loaded everything it needs to sleep
 * (a process still paging in its binary or libraries from a FUSE layer is not).
 */
export async function isAsleep(pid: number): Promise<boolean> {
  try {
    const wchan = (await readFile(`/proc/${pid}/wchan`, 'utf8')).trim();
    if (/nanosleep/.test(wchan)) return true;
    // Without kernel symbols wchan reads "0": fall back on the syscall number
    // (x86_64: nanosleep 35, clock_nanosleep 230; arm64: 101, 115).
    const nr = (await readFile(`/proc/${pid}/syscall`, 'utf8')).split(' ')[0];
    return ['35', '230', '101', '115'].includes(nr ?? '');
  } catch {
    return false;
  }
}
