// What the snapshotter needs from whoever serves layers from the store (src/remote).
// The snapshotter decides which snapshots are remote and when a layer is needed; it never
// knows how a layer is served.
import type { Labels, Usage } from './types.js';

/**
 * Why a layer is served from the store or left to containerd to download: a bounded set, so the
 * metrics count it directly and the log carries it as a field.
 */
export const DECISION_CODES = [
  'in_store', 'no_digest_label', 'invalid_digest', 'no_target', 'not_in_store', 'store_error', 'store_timeout', 'store_busy',
] as const;
export type DecisionCode = (typeof DECISION_CODES)[number];

export type RemoteDecision =
  | { remote: true; code: 'in_store'; digest: string; target: string }
  /** detail: what a person reading the log needs (the path looked at, the store's error). */
  | { remote: false; code: Exclude<DecisionCode, 'in_store'>; detail: string; digest?: string };

export interface RemoteLayers {
  /** Whether the layer a Prepare's labels name can be served from the store, and if not, why. */
  decide(labels: Labels): Promise<RemoteDecision>;
  /** The layer's real size in the store; Unavailable when the store does not answer in time. */
  usage(digest: string): Promise<Usage>;
  /** Mounts the layer at dir unless it is mounted there already. Calls for one dir are serialized. */
  mount(digest: string, dir: string): Promise<void>;
  /** Unmounts dir, if `stillUnused()` is still true once earlier calls for dir are done. */
  unmount(dir: string, stillUnused: () => boolean): Promise<void>;
  /** The directories where a layer is mounted now. */
  mounted(): string[];
  /**
   * At start: clears stale and unwanted mounts under prefix, and mounts each wanted layer
   * (directory → digest) that is not mounted.
   */
  reconcile(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void>;
  /**
   * After the layers' server changed while running (a fresh one after a crash): clears the dead
   * mounts under prefix and mounts each wanted layer that is not mounted. Unlike reconcile, it
   * unmounts nothing the server serves: a Prepare may have mounted a layer not recorded yet.
   */
  remount(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void>;
  /** At shutdown: unmounts every layer, lazily where busy. */
  close(): Promise<void>;
}
