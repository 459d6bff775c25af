// What the snapshotter needs from whoever serves layers from the store (src/fuse + src/layers).
// The snapshotter decides which snapshots are remote and when a layer is needed; it never
// knows how a layer is served.
import type { Labels, Usage } from './types.js';

export type RemoteDecision =
  | { remote: true; digest: string; target: string }
  | { remote: false; reason: string; digest?: string };

export interface RemoteLayers {
  /** Whether the layer a Prepare's labels name can be served from the store, and if not, why. */
  decide(labels: Labels): Promise<RemoteDecision>;
  /** The layer's real size in the store. */
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
  /** At shutdown: unmounts every layer, lazily where busy. */
  close(): Promise<void>;
}
