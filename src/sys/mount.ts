// mount(2) and umount2(2), made by the native pool: a mount point on a hung filesystem can
// block the call, and it must block a pool thread of ours, never the event loop. The layer
// mounts are FUSE mounts of an open /dev/fuse descriptor (fd=N in the options), so no mount
// helper and no mtab are involved.
import { NC, bytes, submitJob } from './native.js';
import { constants } from 'node:os';
import path from 'node:path';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

export class SyscallError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(call: string, errno: number) {
    const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
    super(`${call}: ${code}`);
    this.code = code;
    this.errno = errno;
  }
}

function run(op: number, what: string, i0: number, s0?: Buffer, s1?: Buffer, s2?: Buffer, s3?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const r = submitJob(op, (res) => (res < 0 ? reject(new SyscallError(what, -res)) : resolve()), i0, 0, 0, s0, s1, s2, s3);
    if (r < 0) reject(new SyscallError(what, -r));
  });
}

export interface FuseMountOptions {
  /** Shown as the mount's source in mountinfo. */
  source: string;
  /** The mount's type shows as `fuse.<subtype>`. */
  subtype: string;
  allowOther: boolean;
}

/** Mounts the FUSE connection of devFd read-only, nosuid and nodev at mp. */
export function mountFuse(mp: string, devFd: number, o: FuseMountOptions): Promise<void> {
  // rootmode: the root is a directory; default_permissions: the kernel checks modes itself.
  const data = [`fd=${devFd}`, 'rootmode=40000', 'user_id=0', 'group_id=0', 'default_permissions', ...(o.allowOther ? ['allow_other'] : [])].join(',');
  return run(NC.OP_MOUNT, `mount ${mp}`, NC.MS_RDONLY | NC.MS_NOSUID | NC.MS_NODEV, bytes(o.source), Buffer.from(mp), bytes(`fuse.${o.subtype}`), bytes(data));
}

/** umount2(mp); lazy detaches it now and frees it when its last user goes. Links at mp are not followed. */
export function umount(mp: string, lazy: boolean): Promise<void> {
  return run(NC.OP_UMOUNT, `umount ${mp}`, NC.UMOUNT_NOFOLLOW | (lazy ? NC.MNT_DETACH : 0), Buffer.from(mp));
}

/**
 * Whether something is mounted at mp, found without asking the mounted filesystem anything
 * (a FUSE mount whose server hangs would hang a stat), and without reading mountinfo, which
 * costs the kernel a line per mount of the node. ENOSYS where openat2 is missing (Linux < 5.6).
 */
export function isMountpoint(mp: string): Promise<boolean> {
  const parent = path.dirname(mp);
  return new Promise((resolve, reject) => {
    const r = submitJob(NC.OP_ISMOUNT, (res) => (res < 0 ? reject(new SyscallError(`is ${mp} a mountpoint`, -res)) : resolve(res === 1)),
      0, 0, 0, Buffer.from(parent), Buffer.from(path.basename(mp)));
    if (r < 0) reject(new SyscallError(`is ${mp} a mountpoint`, -r));
  });
}
