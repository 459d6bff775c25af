// Mounting a FUSE filesystem without libfuse: open /dev/fuse, and let mount(8) make the mount
// syscall with `fd=3` naming our descriptor (handed to it as its fd 3). The kernel ties the new
// connection to the open file, so whoever holds the descriptor serves the mount, and a
// descriptor handed to another process (see handover) keeps the mount alive and served.
import fs from 'node:fs';
import { exec } from '../../sys/exec.js';

export interface DevMountOptions {
  /** Shown as the mount's source in mountinfo. */
  source: string;
  /** The mount's type shows as `fuse.<subtype>`. */
  subtype: string;
  allowOther: boolean;
  timeoutMs?: number;
}

/** Opens /dev/fuse and mounts it read-only at mp; returns the descriptor that serves the mount. */
export async function mountFuseDevice(mp: string, o: DevMountOptions): Promise<number> {
  const fd = await new Promise<number>((resolve, reject) =>
    fs.open('/dev/fuse', fs.constants.O_RDWR, (err, n) => (err ? reject(err) : resolve(n))));
  // rootmode: the root is a directory; default_permissions: the kernel checks modes, since we
  // never see an open; ro, nosuid, nodev as libfuse gives a root mount by default.
  const opts = [
    'fd=3', 'rootmode=40000', `user_id=0`, `group_id=0`, 'default_permissions',
    ...(o.allowOther ? ['allow_other'] : []), 'ro', 'nosuid', 'nodev',
  ].join(',');
  // -i: no /sbin/mount.fuse helper; -n: no mtab; --no-canonicalize: mp is already canonical.
  const r = await exec('mount', ['-i', '-n', '--no-canonicalize', '-t', `fuse.${o.subtype}`, '-o', opts, o.source, mp], {
    env: { ...process.env, LC_ALL: 'C' }, passFds: [fd], timeoutMs: o.timeoutMs ?? 10_000,
  }).catch((err: unknown) => ({ code: null, signal: null, stdout: '', stderr: err instanceof Error ? err.message : String(err) }));
  if (r.code !== 0) {
    fs.closeSync(fd);
    throw new Error(`mount of ${mp} failed: ${r.stderr.trim() || `exit ${String(r.code ?? r.signal)}`}`);
  }
  return fd;
}
