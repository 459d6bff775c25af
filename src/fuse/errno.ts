// Errno plumbing: Node's error codes to the errno numbers a FUSE reply carries.
import { constants } from 'node:os';
import { errnoCode } from '../errors.js';

const ERRNO: Readonly<Record<string, number>> = constants.errno;

/** An answer the filesystem gives on purpose (ENOENT for a hidden `.wh.` name, EROFS, ...). */
export class FsError extends Error {
  readonly code: string;
  constructor(code: string, message?: string) {
    super(message ?? code);
    this.code = code;
    this.name = 'FsError';
  }
}

export function negErrno(code: string): number {
  const n = ERRNO[code];
  return n === undefined ? -(ERRNO.EIO ?? 5) : -n;
}

/** Codes that describe the layer or the request: callers see them as they are, without a log line. */
const EXPECTED = new Set([
  'ENOENT', 'ENODATA', 'ENOTDIR', 'EISDIR', 'EINVAL', 'EROFS', 'ELOOP', 'ENAMETOOLONG', 'EACCES', 'EPERM',
  'ENOTSUP', 'EOPNOTSUPP', 'ERANGE', 'EBADF', 'ENXIO',
]);

export function isExpectedCode(code: string | undefined): boolean {
  return code !== undefined && EXPECTED.has(code);
}

/**
 * Answers that can be remembered: a later identical question gets the same answer because
 * the layer is immutable. EIO, EMFILE and the like are not remembered.
 */
const DEFINITIVE = new Set(['ENOENT', 'ENOTDIR', 'ENODATA', 'ELOOP', 'ENAMETOOLONG', 'EINVAL']);

export function isDefinitiveCode(code: string | undefined): boolean {
  return code !== undefined && DEFINITIVE.has(code);
}

/** The errno code of any error, EIO when it has none (a bug or a library failure). */
export function codeOf(err: unknown): string {
  return errnoCode(err) ?? 'EIO';
}
