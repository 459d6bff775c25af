// Kernel-side unmount and liveness probing. Both run as child processes (through src/sys/exec.ts,
// so tests can count them), never as fs calls from the daemon: a stat on a hung FUSE mount
// blocks its thread until the server answers, and a blocked libuv pool thread would also stall
// every layer this daemon serves. A child blocked that way is simply killed at its deadline.
import fs from 'node:fs';
import { exec } from '../sys/exec.js';

export type UnmountOutcome = 'unmounted' | 'lazy';

export interface UnmountFailure extends Error {
  readonly mountpoint: string;
}

const C_LOCALE = { ...process.env, LC_ALL: 'C' };

/**
 * Unmounts the top mount at mp: first normally, and when that fails (busy, most often) lazily,
 * which detaches it now and lets the kernel free it when its last user goes.
 */
export async function kernelUnmount(mp: string, opts: { lazyOnly?: boolean; timeoutMs?: number } = {}): Promise<UnmountOutcome> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  // --no-canonicalize: mp already is mountinfo's canonical path, and canonicalizing it would
  // stat through a possibly dead or hung mount.
  const normal = opts.lazyOnly
    ? { code: 1, signal: null, stdout: '', stderr: 'in use by an overlay mount' }
    : await exec('umount', ['--no-canonicalize', mp], { env: C_LOCALE, timeoutMs });
  if (normal.code === 0) return 'unmounted';
  const lazy = await exec('umount', ['--no-canonicalize', '--lazy', mp], { env: C_LOCALE, timeoutMs });
  if (lazy.code === 0) return 'lazy';
  // fusermount is the helper a non-root daemon would need; try it before giving up.
  const fm = await exec('fusermount', ['-u', '-z', '--', mp], { env: C_LOCALE, timeoutMs }).catch(() => undefined);
  if (fm?.code === 0) return 'lazy';
  const why = [normal, lazy].map((r) => r.stderr.trim() || `exit ${String(r.code ?? r.signal)}`).join('; then lazily: ');
  const err = new Error(`could not unmount ${mp}: ${why}`) as Error & { mountpoint: string };
  err.mountpoint = mp;
  throw err;
}

export type MountHealth = 'alive' | 'dead' | 'unresponsive' | 'error';

/**
 * statfs on mp in a child: "dead" is the ENOTCONN/ECONNABORTED of a FUSE server that went away.
 * Not stat: with long attribute timeouts the kernel answers stat from its cache even after the
 * server died, while statfs always asks the server.
 */
export async function probeMount(mp: string, timeoutMs = 2000): Promise<{ health: MountHealth; detail: string }> {
  const r = await exec('stat', ['--file-system', '-c', '%t', '--', mp], { env: C_LOCALE, timeoutMs });
  if (r.code === 0) return { health: 'alive', detail: '' };
  const detail = r.stderr.trim();
  if (r.signal !== null) return { health: 'unresponsive', detail: `stat killed by ${r.signal} after ${timeoutMs} ms` };
  if (/not connected|connection aborted/i.test(detail)) return { health: 'dead', detail };
  return { health: 'error', detail };
}

/**
 * Aborts a FUSE connection through fusectl, so that processes stuck waiting for a server that
 * will never answer get ENOTCONN instead of hanging. A server can look alive after it died when
 * a child of it inherited /dev/fuse (libfuse opens it without O_CLOEXEC) and outlived it.
 * Returns false when fusectl is not mounted or the connection is already gone.
 */
export async function abortConnection(majorMinor: string, connections = '/sys/fs/fuse/connections'): Promise<boolean> {
  const minor = /^0:(\d+)$/.exec(majorMinor)?.[1];
  if (minor === undefined) return false;
  try {
    await fs.promises.writeFile(`${connections}/${minor}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}
