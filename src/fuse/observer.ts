// What the FUSE layer reports about its own work, for metrics. The FUSE layer calls these on
// every request; the metrics module (src/metrics) implements them. Both sides may live in a
// different process from the gRPC daemon, so nothing here may hold a reference to the daemon.
export interface FuseObserver {
  /** One kernel request answered: its FUSE opcode name in lower case ("lookup", "read", ...). */
  op(name: string, seconds: number, errno: number): void;
  /** File bytes handed to the kernel by READ. */
  bytesServed(n: number): void;
  /**
   * Reads fell back from passthrough to being served: for a whole mount ('kernel': not offered,
   * 'disabled': turned off) or for one file (the errno name the kernel refused it with).
   */
  passthroughFallback(reason: string): void;
}

export const NO_OBSERVER: FuseObserver = { op: () => undefined, bytesServed: () => undefined, passthroughFallback: () => undefined };
