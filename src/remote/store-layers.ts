// RemoteLayers over a DUCC-layout layer store and a FUSE mounter: the decision whether a layer
// is remote, as a reason code plus a detail, and the mount calls, serialized per directory so
// that a mount and an unmount of the same layer never interleave.
import { quote, Unavailable } from '../errors.js';
import { isLayerDigest } from '../layers/digest.js';
import type { LayerMounts } from '../fuse/index.js';
import type { Logger } from '../log.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../snapshotter/labels.js';
import type { RemoteDecision, RemoteLayers } from '../snapshotter/remote.js';
import type { Labels, Usage } from '../snapshotter/types.js';
import { StoreUnanswered, type LayerQueries } from './store-calls.js';

export class StoreLayers implements RemoteLayers {
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: LayerQueries,
    private readonly mounter: LayerMounts,
    private readonly log: Logger,
  ) {}

  async decide(labels: Labels): Promise<RemoteDecision> {
    const target = labels[TARGET_REF_LABEL];
    const digest = labels[LAYER_DIGEST_LABEL];
    if (digest === undefined) return { remote: false, code: 'no_digest_label', detail: `no ${LAYER_DIGEST_LABEL} label` };
    if (!isLayerDigest(digest)) {
      return { remote: false, code: 'invalid_digest', detail: `${LAYER_DIGEST_LABEL} ${quote(digest)} is not sha256: and 64 lowercase hex` };
    }
    if (target === undefined || target === '') {
      return { remote: false, code: 'no_target', digest, detail: `no ${TARGET_REF_LABEL} label: containerd did not offer a remote snapshot` };
    }
    try {
      if (await this.store.has(digest)) return { remote: true, code: 'in_store', digest, target };
      return { remote: false, code: 'not_in_store', digest, detail: `not in the layer store (${this.store.layerPath(digest)})` };
    } catch (err) {
      if (err instanceof StoreUnanswered) {
        return { remote: false, code: err.why === 'timeout' ? 'store_timeout' : 'store_busy', digest, detail: err.message };
      }
      return { remote: false, code: 'store_error', digest, detail: `the layer store failed: ${(err as Error).message}` };
    }
  }

  async usage(digest: string): Promise<Usage> {
    try {
      return await this.store.usage(digest);
    } catch (err) {
      throw new Unavailable(`the usage of layer ${digest} cannot be measured: ${(err as Error).message}`, err);
    }
  }

  mount(digest: string, dir: string): Promise<void> {
    return this.serialize(dir, async () => {
      if (this.mounter.isMounted(dir)) return;
      // The mounter logs the mount and, later, its unmount with this logger's digest.
      await this.mounter.mount(this.store.layerPath(digest), dir, this.log.child({ digest, mountpoint: dir }));
    });
  }

  unmount(dir: string, stillUnused: () => boolean): Promise<void> {
    return this.serialize(dir, async () => {
      if (!this.mounter.isMounted(dir) || !stillUnused()) return;
      await this.mounter.unmount(dir);
    });
  }

  mounted(): string[] {
    return this.mounter.mountpoints();
  }

  reconcile(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> {
    return this.reconcileKeeping(prefix, wanted, []);
  }

  remount(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> {
    return this.reconcileKeeping(prefix, wanted, this.mounter.mountpoints());
  }

  private async reconcileKeeping(prefix: string, wanted: ReadonlyMap<string, string>, alsoKeep: readonly string[]): Promise<void> {
    const report = await this.mounter.reconcile(prefix, new Set([...wanted.keys(), ...alsoKeep]));
    if (report.staleCleared.length > 0) this.log.warn({ mounts: report.staleCleared }, 'cleared dead layer mounts left by an earlier run');
    if (report.unmounted.length > 0) this.log.info({ mounts: report.unmounted }, 'unmounted layers no snapshot needs');
    for (const f of report.failed) this.log.error({ mountpoint: f.mountpoint, error: f.error }, 'could not clear a layer mount');
    for (const dir of report.missing) {
      const digest = wanted.get(dir);
      if (digest === undefined) continue;
      try {
        await this.mount(digest, dir);
      } catch (err) {
        this.log.error({ digest, mountpoint: dir, err }, 'could not mount a layer that an active snapshot needs');
      }
    }
  }

  /** Waits for the mount and unmount calls under way; the mounter is let go of by whoever made it. */
  async close(): Promise<void> {
    await Promise.all(this.queues.values());
    const stuck = this.store.pending ?? 0;
    if (stuck > 0) {
      // The kernel waits out a FUSE request the store's server has read, even for SIGKILL: the
      // threads making these calls, and so this process, end only when the store answers them.
      this.log.warn({ calls: stuck }, 'calls into the layer store are still unanswered; the process ends once the store answers them');
    }
  }

  private serialize<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(dir) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.queues.set(dir, settled);
    void settled.then(() => { if (this.queues.get(dir) === settled) this.queues.delete(dir); });
    return next;
  }
}
