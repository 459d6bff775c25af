// Many containers at once from images that share layers: a base image (busybox, in the layer
// store) and images made of the base plus one top layer each; the first `lazyTops` tops are in
// the store too, the others are downloaded by containerd. A round pulls every image through CRI,
// starts every container at once (`ctr run -d ... sleep`), looks at what each sees (the base,
// its own top and all its files), then stops and removes the containers and the images and looks
// at what the daemon still holds. Each step returns what it saw; the tests
// (test/e2e/shared-layers.e2e.test.ts, test/stress/load-containers.test.ts) assert.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Containerd } from './containerd.js';
import { defaultDaemonConfig, type Daemon } from './daemon.js';
import { Harness } from './harness.js';
import type { BuiltImage } from './image.js';
import { CRI_NAMESPACE, contentDigests, ingest, isAsleep, lazyRunArgs, pullLazy, remoteLabel } from './lazy.js';
import { fuseMountHealth, mountpointsUnder, readRecords, serverUsage, type FuseMountState, type RootRecord, type ServerUsage } from './root-check.js';
import type { MountEntry } from './mounts.js';
import { busyboxRootfs } from './rootfs.js';
import { deriveImage } from './shared-images.js';
import { waitUntil } from './wait.js';

const NS = { namespace: CRI_NAMESPACE };
/** Files in each top layer. */
const TOP_FILES = 50;

export interface ContainerLoadOptions {
  images: number;
  containersPerImage: number;
  /** Images whose top layer is in the store. */
  lazyTops: number;
}

export interface PullObservation {
  pullMs: number;
  /** The shared base layer's blob digest, and the remote label containerd holds for its snapshot. */
  baseDigest: string;
  baseRemoteLabel: string | undefined;
  /** Whether containerd's content store holds the base layer's blob (a lazy layer is not downloaded). */
  baseDownloaded: boolean;
  tops: Array<{ tag: string; inStore: boolean; downloaded: boolean }>;
}

export interface StartObservation {
  startMs: number;
  status: Array<{ name: string; status: string }>;
}

export interface RunningObservation {
  notAlive: FuseMountState[];
  fuseMounts: string[];
  /** One FUSE mount for the base and one per top layer in the store. */
  expectedFuseMounts: number;
  /** The daemon's processes while every container runs. */
  peak: ServerUsage[];
  /** What `cat /etc/load-base /opt/app/id; ls /opt/app/data | wc -l` printed in each container. */
  views: Array<{ name: string; sees: string; expected: string }>;
}

export interface RemovedObservation {
  stopMs: number;
  records: RootRecord[];
  snapshotDirs: string[];
  mountpoints: string[];
  /** Mounts under the test's directory. */
  testMounts: MountEntry[];
}

export class ContainerLoad {
  private constructor(
    readonly h: Harness,
    readonly daemon: Daemon,
    readonly ctd: Containerd,
    readonly base: BuiltImage,
    readonly images: readonly BuiltImage[],
    readonly opts: ContainerLoadOptions,
  ) {}

  static async create(label: string, opts: ContainerLoadOptions, note: (s: string) => void = () => undefined): Promise<ContainerLoad> {
    const h = await Harness.create(label);
    try {
      const registry = await h.startRegistry();
      const t0 = Date.now();
      const base = await h.buildImage({
        registry,
        name: 'load/base',
        layers: [{ comment: 'busybox', raw: async (d) => { await busyboxRootfs(d); await writeFile(join(d, 'etc', 'load-base'), 'base\n'); } }],
      });
      const images: BuiltImage[] = [];
      for (let i = 0; i < opts.images; i++) {
        images.push(await deriveImage(base, {
          registry,
          name: 'load/app',
          tag: `a${i}`,
          raw: async (d) => {
            await mkdir(join(d, 'opt', 'app', 'data'), { recursive: true });
            for (let f = 0; f < TOP_FILES; f++) await writeFile(join(d, 'opt', 'app', 'data', `f${f}`), `a${i} ${f}\n`);
            await writeFile(join(d, 'opt', 'app', 'id'), `a${i}\n`);
          },
        }));
      }
      const store = await h.scope.mkdir('store');
      await ingest(store, ...images.slice(0, opts.lazyTops).map((i) => i.ref));
      note(`${opts.images} images on one base built and pushed, ${opts.lazyTops} ingested, in ${Date.now() - t0} ms`);
      const daemon = await h.startDaemon({ logLevel: 'info', configToml: defaultDaemonConfig(store) });
      const ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true });
      return new ContainerLoad(h, daemon, ctd, base, images, opts);
    } catch (err) {
      await h.teardown().catch(() => undefined);
      throw err;
    }
  }

  private name(i: number, j: number): string {
    return `load-a${i}-${j}`;
  }

  private all(): Array<[number, number]> {
    return this.images.flatMap((_, i) => Array.from({ length: this.opts.containersPerImage }, (_x, j) => [i, j] as [number, number]));
  }

  private async tasks(): Promise<Map<string, { pid: number; status: string }>> {
    return new Map((await this.ctd.ctr(['tasks', 'ls'], NS)).split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 3)
      .map((f) => [f[0] ?? '', { pid: Number(f[1]), status: f[2] ?? '' }]));
  }

  /** `ctr tasks exec` takes only the --fifo-dir of the harness's run flags. */
  private fifoFlags(): string[] {
    const k = this.ctd.runFlags.indexOf('--fifo-dir');
    return this.ctd.runFlags.slice(k, k + 2);
  }

  /** Step 1 of a round: every image pulled through CRI at once; which layers were downloaded. */
  async pullAll(): Promise<PullObservation> {
    const { ctd, base, images, opts } = this;
    const t0 = Date.now();
    await Promise.all(images.map((img) => pullLazy(ctd, img.ref)));
    const pullMs = Date.now() - t0;
    const content = await contentDigests(ctd);
    const baseDigest = base.layers[0]?.digest ?? '';
    return {
      pullMs,
      baseDigest,
      baseRemoteLabel: await remoteLabel(ctd, base.chainIds[0] as string),
      baseDownloaded: content.has(baseDigest),
      tops: images.map((img, i) => ({ tag: img.tag, inStore: i < opts.lazyTops, downloaded: content.has(img.layers[1]?.digest ?? '') })),
    };
  }

  /** Step 2: every container started at once (`ctr run -d ... sleep`); the status of each. */
  async startAll(): Promise<StartObservation> {
    const { ctd, images } = this;
    const t0 = Date.now();
    await Promise.all(this.all().map(([i, j]) =>
      ctd.ctr([...lazyRunArgs(ctd), '-d', (images[i] as BuiltImage).ref, this.name(i, j), 'sleep', '3600'], { ...NS, timeoutMs: 120_000 })));
    const startMs = Date.now() - t0;
    const running = await this.tasks();
    return { startMs, status: this.all().map(([i, j]) => ({ name: this.name(i, j), status: running.get(this.name(i, j))?.status ?? '(none)' })) };
  }

  /** Step 3: once every container sleeps: the FUSE mounts, the servers' usage, and what each container sees. */
  async observeRunning(): Promise<RunningObservation> {
    const { ctd, daemon, opts } = this;
    const running = await this.tasks();
    await waitUntil(async () => (await Promise.all([...running.values()].map((x) => isAsleep(x.pid)))).every(Boolean),
      { what: 'every container to be asleep', timeoutMs: 60_000, intervalMs: 100 });
    const fuse = await fuseMountHealth(daemon.root);
    const peak = await serverUsage(daemon.socket);
    const views: RunningObservation['views'] = [];
    await limited(this.all(), 5, async ([i, j]) => {
      const out = await ctd.ctr(['tasks', 'exec', ...this.fifoFlags(), '--exec-id', 'check', this.name(i, j), 'sh', '-c', 'cat /etc/load-base /opt/app/id; ls /opt/app/data | wc -l'], NS);
      views.push({ name: this.name(i, j), sees: out.trim().split(/\s+/).join(' '), expected: `base a${i} ${TOP_FILES}` });
    });
    return {
      notAlive: fuse.filter((m) => m.health !== 'alive'),
      fuseMounts: fuse.map((m) => m.mountpoint),
      expectedFuseMounts: 1 + opts.lazyTops,
      peak,
      views,
    };
  }

  /** Step 4: containers stopped and removed with their images, garbage collected; what is left. */
  async removeAll(): Promise<RemovedObservation> {
    const { ctd, daemon } = this;
    const t0 = Date.now();
    await limited(this.all(), 10, async ([i, j]) => { await ctd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', this.name(i, j)], NS); });
    await waitUntil(async () => [...(await this.tasks()).values()].every((x) => x.status === 'STOPPED'), { what: 'every container to stop', timeoutMs: 60_000, intervalMs: 100 });
    await limited(this.all(), 10, async ([i, j]) => {
      await ctd.ctr(['tasks', 'delete', this.name(i, j)], NS);
      await ctd.ctr(['containers', 'delete', this.name(i, j)], NS);
    });
    const names = (await ctd.ctr(['images', 'ls', '--quiet'], NS)).split('\n').map((l) => l.trim()).filter((n) => n !== '');
    await ctd.ctr(['images', 'rm', ...names], NS);
    await ctd.gc(CRI_NAMESPACE);
    const stopMs = Date.now() - t0;
    return {
      stopMs,
      records: readRecords(daemon.root),
      snapshotDirs: await readdir(join(daemon.root, 'snapshots')),
      mountpoints: await mountpointsUnder(daemon.root),
      testMounts: this.h.mounts(),
    };
  }

  teardown(): Promise<void> {
    return this.h.teardown();
  }
}

/** Runs fn over items, at most n at a time. */
async function limited<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  for (let k = 0; k < items.length; k += n) await Promise.all(items.slice(k, k + n).map(fn));
}
