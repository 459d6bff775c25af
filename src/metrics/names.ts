// Metric names and label values shared by the registries of this folder.
import { constants } from 'node:os';

/** Every metric of this project starts with this, the default Node process metrics too. */
export const PREFIX = 'cvmfs_snapshotter_';

/**
 * gRPC status codes as Go's codes.Code.String() spells them ("NotFound", "Canceled"), the way
 * go-grpc-prometheus labels them, so dashboards written for Go services work unchanged.
 */
const GRPC_CODE_NAMES: Readonly<Record<string, string>> = {
  OK: 'OK',
  CANCELLED: 'Canceled',
  UNKNOWN: 'Unknown',
  INVALID_ARGUMENT: 'InvalidArgument',
  DEADLINE_EXCEEDED: 'DeadlineExceeded',
  NOT_FOUND: 'NotFound',
  ALREADY_EXISTS: 'AlreadyExists',
  PERMISSION_DENIED: 'PermissionDenied',
  RESOURCE_EXHAUSTED: 'ResourceExhausted',
  FAILED_PRECONDITION: 'FailedPrecondition',
  ABORTED: 'Aborted',
  OUT_OF_RANGE: 'OutOfRange',
  UNIMPLEMENTED: 'Unimplemented',
  INTERNAL: 'Internal',
  UNAVAILABLE: 'Unavailable',
  DATA_LOSS: 'DataLoss',
  UNAUTHENTICATED: 'Unauthenticated',
};

/** The codes by number (grpc/status.proto); kept here so that metrics need not load gRPC. */
const GRPC_CODE_BY_NUMBER: readonly string[] = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** "NOT_FOUND" (grpc-js's enum name) or 5 → "NotFound"; anything else is "Unknown", so the label stays bounded. */
export function grpcCodeLabel(code: string): string {
  return GRPC_CODE_NAMES[code] ?? GRPC_CODE_NAMES[GRPC_CODE_BY_NUMBER[Number(code)] ?? ''] ?? 'Unknown';
}

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) {
  // Aliases share a number (EAGAIN and EWOULDBLOCK, ENOTSUP and EOPNOTSUPP): the first name in
  // Node's alphabetical list wins, so the label is stable.
  if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);
}

/** An errno, negative (as FUSE sends it) or positive, as its name: -2 → "ENOENT". */
export function errnoLabel(errno: number): string {
  const n = Math.abs(errno);
  return ERRNO_NAMES.get(n) ?? 'EUNKNOWN';
}
