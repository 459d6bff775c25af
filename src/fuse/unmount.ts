// Kernel-side unmount and liveness probing. The unmount is umount2(2) made on the native pool
// (src/sys/mount.ts); the probe runs in a child process (src/sys/exec.ts, so tests can count
// it): a stat on a hung FUSE mount blocks whoever makes it until the server answers, and a
// child blocked that way is simply killed at its deadline.
import fs from 'node:fs';
import { exec } from '../sys/exec.js';
import { umount, SyscallError } from '../sys/mount.js';

export type UnmountOutcome = 'unmounted' | 'lazy';

const C_LOCALE = { ...process.env, LC_ALL: 'C' };

/**
 * Unmounts the top mount at mp: first normally, and when that fails (busy, most often) lazily,
 * which detaches it now and lets the kernel free it when its last user goes.
 */
export async function kernelUnmount(mp: string, opts: { lazyOnly?: boolean } = {}): Promise<UnmountOutcome> {
  let first: unknown = new Error('in use by an overlay mount');
  if (!opts.lazyOnly) {
    try {
      await umount(mp, false);
      return 'unmounted';
    } catch (err) {
      first = err;
    }
  }
  try {
    await umount(mp, true);
    return 'lazy';
  } catch (err) {
    const why = [first, err].map((e) => (e instanceof SyscallError ? e.code : e instanceof Error ? e.message : String(e))).join('; then lazily: ');
    throw Object.assign(new Error(`could not unmount ${mp}: ${why}`), { mountpoint: mp });
  }
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
