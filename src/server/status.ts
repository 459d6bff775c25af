// The one place where errors become gRPC status codes, as containerd's errdefs.ToGRPC does.
import { status as Code, Metadata, type ServiceError } from '@grpc/grpc-js';
import { SnapshotterError, type ErrorKind } from '../errors.js';

const CODES: Record<ErrorKind, Code> = {
  NotFound: Code.NOT_FOUND,
  AlreadyExists: Code.ALREADY_EXISTS,
  FailedPrecondition: Code.FAILED_PRECONDITION,
  InvalidArgument: Code.INVALID_ARGUMENT,
  Unavailable: Code.UNAVAILABLE,
  ResourceExhausted: Code.RESOURCE_EXHAUSTED,
  Unimplemented: Code.UNIMPLEMENTED,
  Internal: Code.INTERNAL,
};

export function codeOf(err: unknown): Code {
  return err instanceof SnapshotterError ? CODES[err.kind] : Code.UNKNOWN;
}

export function codeName(code: Code): string {
  return Code[code] ?? String(code);
}

export function toServiceError(err: unknown): Partial<ServiceError> {
  const message = err instanceof Error ? err.message : String(err);
  return { code: codeOf(err), details: message, message, metadata: new Metadata() };
}
