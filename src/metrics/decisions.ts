// Counting the remote-layer decisions without touching the code that makes them: a decorator
// around RemoteLayers whose decide() reports each answer as a bounded reason. A digest is never
// a label value (every image would add series).
import { isLayerDigest } from '../layers/digest.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../snapshotter/labels.js';
import type { RemoteDecision, RemoteLayers } from '../snapshotter/remote.js';
import type { Labels, Usage } from '../snapshotter/types.js';

export const DECISION_REASONS = ['in_store', 'no_digest_label', 'invalid_digest', 'no_target', 'not_in_store', 'store_error'] as const;
export type DecisionReason = (typeof DECISION_REASONS)[number];

/**
 * Why the decision came out as it did. The label checks mirror StoreLayers.decide, in the same
 * order; once the labels are fine, a negative answer is either "not in the store" or a store
 * failure, and only the reason text tells them apart (test/unit/metrics-decisions pins it to
 * StoreLayers' wording).
 */
export function decisionReason(labels: Labels, decision: RemoteDecision): DecisionReason {
  if (decision.remote) return 'in_store';
  const digest = labels[LAYER_DIGEST_LABEL];
  if (digest === undefined) return 'no_digest_label';
  if (!isLayerDigest(digest)) return 'invalid_digest';
  const target = labels[TARGET_REF_LABEL];
  if (target === undefined || target === '') return 'no_target';
  return decision.reason.startsWith('not in the layer store') ? 'not_in_store' : 'store_error';
}

/** RemoteLayers that tells `count` about every decision and otherwise passes calls through. */
export class CountingRemoteLayers implements RemoteLayers {
  constructor(
    private readonly inner: RemoteLayers,
    private readonly count: (remote: boolean, reason: DecisionReason) => void,
  ) {}

  async decide(labels: Labels): Promise<RemoteDecision> {
    const decision = await this.inner.decide(labels);
    this.count(decision.remote, decisionReason(labels, decision));
    return decision;
  }

  usage(digest: string): Promise<Usage> { return this.inner.usage(digest); }
  mount(digest: string, dir: string): Promise<void> { return this.inner.mount(digest, dir); }
  unmount(dir: string, stillUnused: () => boolean): Promise<void> { return this.inner.unmount(dir, stillUnused); }
  mounted(): string[] { return this.inner.mounted(); }
  reconcile(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> { return this.inner.reconcile(prefix, wanted); }
  close(): Promise<void> { return this.inner.close(); }
}
