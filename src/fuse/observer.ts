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
  /**
   * One call on the layer store came back from the store pool: its kind and the seconds it
   * spent there (the store's own latency, without the wait for a slot of its layer). Also told
   * for a call that comes back after its deadline, with the time it really took.
   */
  storeCall(call: StoreCall, seconds: number): void;
  /** The store failed a call (errno; a name the layer lacks is an answer, not this), answered EIO. */
  storeError(call: StoreCall, errno: number): void;
  /** A store call passed its deadline and was answered EIO, while the store still held it. */
  storeDeadline(call: StoreCall): void;
  /** A layer directory of the store stopped answering (ENOTCONN, ESTALE) and was opened again. */
  storeReopen(): void;
}

/** The kinds of call the FUSE server makes on the layer store. */
export type StoreCall = 'lookup' | 'list' | 'stat' | 'readlink' | 'getxattr' | 'open' | 'read' | 'close' | 'statfs';

export const NO_OBSERVER: FuseObserver = {
  op: () => undefined,
  bytesServed: () => undefined,
  passthroughFallback: () => undefined,
  storeCall: () => undefined,
  storeError: () => undefined,
  storeDeadline: () => undefined,
  storeReopen: () => undefined,
};
