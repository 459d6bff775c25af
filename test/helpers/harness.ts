// The entry point for end-to-end tests: one Harness per test file owns a private temp directory
// and everything started in it, and its teardown fails the test if anything was left behind.
//
//   const h = await Harness.create('e2e');
//   after(() => h.teardown());
//   const registry = await h.startRegistry();
//   const daemon = await h.startDaemon();
//   const ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry] });
//   const img = await h.buildImage({ registry, name: 'busybox', layers: [busyboxRootfs] });
import { startContainerd, type Containerd, type ContainerdOptions } from './containerd.js';
import { startDaemon, type Daemon, type DaemonOptions } from './daemon.js';
import { buildImage, type BuildImageOptions, type BuiltImage } from './image.js';
import { mountsUnder, type MountEntry } from './mounts.js';
import { startRegistry, type Registry } from './registry.js';
import { Scope } from './scope.js';

export class Harness {
  readonly scope: Scope;

  private constructor(scope: Scope) {
    this.scope = scope;
  }

  static async create(label: string): Promise<Harness> {
    return new Harness(await Scope.create(label));
  }

  /** The private temp directory; every path of every instance is under it. */
  get dir(): string {
    return this.scope.dir;
  }

  startRegistry(name?: string): Promise<Registry> {
    return startRegistry(this.scope, name);
  }

  startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
    return startDaemon(this.scope, opts);
  }

  startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
    return startContainerd(this.scope, opts);
  }

  buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
    return buildImage(this.scope, opts);
  }

  /** What is mounted under the harness directory right now. */
  mounts(): MountEntry[] {
    return mountsUnder(this.scope.dir);
  }

  /** Stops everything (last started first), then fails if a process or mount was left behind. */
  teardown(): Promise<void> {
    return this.scope.teardown();
  }
}
