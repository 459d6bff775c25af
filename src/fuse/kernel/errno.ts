// The one errno map of the FUSE layer: names (what logs and metrics show) to the numbers a reply
// carries, and back. Node's table is the C library's, which is the kernel's on Linux.
import { constants } from 'node:os';

const BY_NAME: Readonly<Record<string, number>> = constants.errno;
const BY_NUMBER = new Map<number, string>();
for (const [name, n] of Object.entries(BY_NAME)) if (!BY_NUMBER.has(n)) BY_NUMBER.set(n, name);

function must(name: string): number {
  const n = BY_NAME[name];
  if (n === undefined) throw new Error(`errno ${name} is unknown on this platform`);
  return n;
}

/** Positive errno numbers, by name. */
export const E = {
  EPERM: must('EPERM'), ENOENT: must('ENOENT'), EINTR: must('EINTR'), EIO: must('EIO'), ENXIO: must('ENXIO'),
  EBADF: must('EBADF'), EAGAIN: must('EAGAIN'), ENOMEM: must('ENOMEM'), EACCES: must('EACCES'), EEXIST: must('EEXIST'),
  EXDEV: must('EXDEV'), ENODEV: must('ENODEV'), ENOTDIR: must('ENOTDIR'), EISDIR: must('EISDIR'), EINVAL: must('EINVAL'),
  EMFILE: must('EMFILE'), ENFILE: must('ENFILE'), EROFS: must('EROFS'), ERANGE: must('ERANGE'), ENAMETOOLONG: must('ENAMETOOLONG'),
  ENOSYS: must('ENOSYS'), ELOOP: must('ELOOP'), ENODATA: must('ENODATA'), EPROTO: must('EPROTO'), ENOTSUP: must('ENOTSUP'),
  EOPNOTSUPP: must('EOPNOTSUPP'), ESTALE: must('ESTALE'), ETIMEDOUT: must('ETIMEDOUT'), ENOTCONN: must('ENOTCONN'),
  E2BIG: must('E2BIG'), ENOSPC: must('ENOSPC'), ECONNABORTED: must('ECONNABORTED'),
} as const;

/** "ENOENT" for 2; "E123" for a number the platform has no name for. */
export function errnoName(n: number): string {
  const a = Math.abs(n);
  return BY_NUMBER.get(a) ?? `E${a}`;
}

/** The number for a name such as Node's err.code; EIO for a name that is not an errno. */
export function errnoNumber(name: string | undefined): number {
  return (name !== undefined ? BY_NAME[name] : undefined) ?? E.EIO;
}
