// Typed errors, one class per containerd errdefs kind. The gRPC adapter maps them to status
// codes in one place (src/server/status.ts); everything else only throws them.

export type ErrorKind =
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'InvalidArgument'
  | 'Unavailable'
  | 'ResourceExhausted'
  | 'Unimplemented'
  | 'Internal';

export class SnapshotterError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = kind;
  }
}

export class NotFound extends SnapshotterError {
  constructor(message: string) { super('NotFound', message); }
}
export class AlreadyExists extends SnapshotterError {
  constructor(message: string) { super('AlreadyExists', message); }
}
export class FailedPrecondition extends SnapshotterError {
  constructor(message: string) { super('FailedPrecondition', message); }
}
export class InvalidArgument extends SnapshotterError {
  constructor(message: string) { super('InvalidArgument', message); }
}
export class Unavailable extends SnapshotterError {
  constructor(message: string, cause?: unknown) { super('Unavailable', message, { cause }); }
}
/** Out of a resource the caller cannot fix by asking again at once: a full disk, too many calls. */
export class ResourceExhausted extends SnapshotterError {
  constructor(message: string, cause?: unknown) { super('ResourceExhausted', message, { cause }); }
}
export class Unimplemented extends SnapshotterError {
  constructor(message: string) { super('Unimplemented', message); }
}

export function isKind(err: unknown, kind: ErrorKind): boolean {
  return err instanceof SnapshotterError && err.kind === kind;
}

/**
 * Untrusted text for an error message: JSON-quoted (so NULs and newlines stay visible) and cut
 * after max characters. Error messages travel back in a gRPC trailer, which clients limit to a
 * few KiB, and into the log.
 */
export function quote(value: string, max = 100): string {
  if (value.length <= max) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, max))}… (${Buffer.byteLength(value)} bytes)`;
}

/** The errno code of a Node system error (ENOENT, EBUSY, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
