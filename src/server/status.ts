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

/**
 * The most bytes of message a status carries. It travels percent-encoded in an HTTP/2 trailer,
 * and clients drop a trailer over their limit (grpc-js: 8 KiB), leaving the caller with no
 * answer at all until its deadline.
 */
export const MAX_MESSAGE_BYTES = 1024;

export function boundedMessage(message: string): string {
  const total = Buffer.byteLength(message);
  if (total <= MAX_MESSAGE_BYTES) return message;
  let out = '';
  let bytes = 0;
  for (const ch of message) {
    bytes += Buffer.byteLength(ch);
    if (bytes > MAX_MESSAGE_BYTES - 48) break;
    out += ch;
  }
  return `${out}… (cut; the message had ${total} bytes)`;
}

export function toServiceError(err: unknown): Partial<ServiceError> {
  const message = boundedMessage(err instanceof Error ? err.message : String(err));
  return { code: codeOf(err), details: message, message, metadata: new Metadata() };
}
