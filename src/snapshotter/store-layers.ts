// RemoteLayers over a DUCC-layout layer store and a FUSE mounter: the decision whether a layer
// is remote, and the mount calls, serialized per directory so that a mount and an unmount of
// the same layer never interleave.
import { isLayerDigest } from '../layers/digest.js';
import type { LayerStore } from '../layers/store.js';
import type { LayerMounts } from '../fuse/index.js';
import type { Logger } from '../log.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from './labels.js';
import type { RemoteDecision, RemoteLayers } from './remote.js';
import type { Labels, Usage } from './types.js';

export class StoreLayers implements RemoteLayers {
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: LayerStore,
    private readonly mounter: LayerMounts,
    private readonly log: Logger,
  ) {}

  async decide(labels: Labels): Promise<RemoteDecision> {
    const target = labels[TARGET_REF_LABEL];
    const digest = labels[LAYER_DIGEST_LABEL];
    if (digest === undefined) return { remote: false, reason: `no ${LAYER_DIGEST_LABEL} label` };
    if (!isLayerDigest(digest)) {
      return { remote: false, reason: `${LAYER_DIGEST_LABEL} ${JSON.stringify(digest.slice(0, 100))} is not sha256: and 64 lowercase hex` };
    }
    if (target === undefined || target === '') {
      return { remote: false, digest, reason: `no ${TARGET_REF_LABEL} label: containerd did not offer a remote snapshot` };
    }
    try {
      if (await this.store.has(digest)) return { remote: true, digest, target };
      return { remote: false, digest, reason: `not in the layer store (${this.store.layerPath(digest)})` };
    } catch (err) {
      return { remote: false, digest, reason: `the layer store failed: ${(err as Error).message}` };
    }
  }

  async usage(digest: string): Promise<Usage> {
    const u = await this.store.usage(digest);
    return { size: u.size, inodes: u.inodes };
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

  async reconcile(prefix: string, wanted: ReadonlyMap<string, string>): Promise<void> {
    const report = await this.mounter.reconcile(prefix, new Set(wanted.keys()));
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
