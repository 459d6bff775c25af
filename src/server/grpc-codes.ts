// gRPC status codes (grpc/status.proto), without loading @grpc/grpc-js: the command line's
// client needs them and must start fast. The values are fixed by the protocol, and equal to
// grpc-js's `status` (test/unit/unary-client.test.ts compares the two).
export enum GrpcCode {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export function grpcCodeName(code: number): string {
  return GrpcCode[code] ?? String(code);
}
