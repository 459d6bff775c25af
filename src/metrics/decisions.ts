// Counting the remote-layer decisions without touching the code that makes them: a decorator
// around RemoteLayers whose decide() reports each answer's reason code. A digest is never a
// label value (every image would add series).
import { DECISION_CODES, type DecisionCode, type RemoteDecision, type RemoteLayers } from '../snapshotter/remote.js';
import type { Labels, Usage } from '../snapshotter/types.js';

export const DECISION_REASONS = DECISION_CODES;
export type DecisionReason = DecisionCode;

/** RemoteLayers that tells `count` about every decision and otherwise passes calls through. */
export class CountingRemoteLayers implements RemoteLayers {
  constructor(
    private readonly inner: RemoteLayers,
    private readonly count: (remote: boolean, reason: DecisionReason) => void,
  ) {}

  async decide(labels: Labels): Promise<RemoteDecision> {
    const decision = await this.inner.decide(labels);
    this.count(decision.remote, decision.code);
    return decision;
  }

  usage(digest: string): Promise<Usage> { return this.inner.usage(digest); }
  mount(digest: string, dir: string): Promise<void> { return this.inner.mount(digest, dir); }
  unmount(dir: string, stillUnused: () => boolean): Promise<void> { return this.inner.unmount(dir, stillUnused); }
  mounted(): string[] { return this.inner.mounted(); }
  reconcile(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> { return this.inner.reconcile(prefix, wanted); }
  remount(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> { return this.inner.remount(prefix, wanted); }
  close(): Promise<void> { return this.inner.close(); }
}
