// The gRPC daemon's own metrics: calls by method and code, remote-layer decisions, and Node's
// process metrics. The FUSE side's metrics live in fuse-metrics.ts, in their own registry.
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { CallObserver } from '../server/service.js';
import type { DecisionReason } from './decisions.js';
import { grpcCodeLabel, PREFIX } from './names.js';

export interface DaemonMetrics {
  readonly registry: Registry;
  /** For snapshotsHandlers: one call per finished RPC. */
  readonly call: CallObserver;
  /** One remote-layer decision of a Prepare. */
  decision(remote: boolean, reason: DecisionReason): void;
}

// Stat and List take well under a millisecond; Prepare, Mounts (which may mount a layer) and
// Remove (which deletes a directory tree) can take seconds.
const CALL_BUCKETS = [2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createDaemonMetrics(): DaemonMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry, prefix: PREFIX });

  const calls = new Counter({
    name: `${PREFIX}grpc_requests_total`,
    help: 'Snapshots API calls finished, by method and gRPC status code (NotFound, AlreadyExists, ...).',
    labelNames: ['method', 'code'],
    registers,
  });
  const durations = new Histogram({
    name: `${PREFIX}grpc_request_duration_seconds`,
    help: 'Time to answer a Snapshots API call, by method.',
    labelNames: ['method'],
    buckets: CALL_BUCKETS,
    registers,
  });
  const decisions = new Counter({
    name: `${PREFIX}layer_decisions_total`,
    help: 'Prepare calls that named a layer: served from the layer store (decision="remote") or left to containerd to download (decision="downloaded"), with the reason.',
    labelNames: ['decision', 'reason'],
    registers,
  });

  return {
    registry,
    call(method, code, seconds) {
      calls.inc({ method, code: grpcCodeLabel(code) });
      durations.observe({ method }, seconds);
    },
    decision(remote, reason) {
      decisions.inc({ decision: remote ? 'remote' : 'downloaded', reason });
    },
  };
}
