// What the rest of the daemon uses from src/metrics.
export { createDaemonMetrics } from './daemon-metrics.js';
export type { DaemonMetrics } from './daemon-metrics.js';
export { createFuseMetrics, FUSE_METRICS_INTERVAL_MS } from './fuse-metrics.js';
export type { FuseMetrics, MounterStats } from './fuse-metrics.js';
export { CountingRemoteLayers, decisionReason, DECISION_REASONS } from './decisions.js';
export type { DecisionReason } from './decisions.js';
export { mergeMetrics, registrySource } from './merge.js';
export type { MergeResult, MetricsJson, MetricsSource } from './merge.js';
export { startMetricsServer, MetricsServerError, METRICS_PAGE_CACHE_MS } from './http.js';
export type { MetricsServer, MetricsServerOptions } from './http.js';
export { PREFIX, grpcCodeLabel, errnoLabel } from './names.js';
export { throttle } from './throttle.js';
export type { Throttled } from './throttle.js';
