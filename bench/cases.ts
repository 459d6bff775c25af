// The measured cases. Each returns raw samples; run.ts summarizes and reports them.
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { execOk } from '../src/sys/exec.js';
import { CriClient } from '../src/cli/pull-cri.js';
import { SnapshotsClient } from '../src/server/client.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../src/snapshotter/labels.js';
import type { Containerd } from '../test/helpers/containerd.js';
import { PROXY_SNAPSHOTTER } from '../test/helpers/containerd-config.js';
import { CRI_NAMESPACE, fuseMountsUnder } from '../test/helpers/lazy.js';
import { cpuMs } from './proc.js';
import { dropCaches, log, nowMs, timeExec } from './stats.js';

const HELLO = ['python3', '-c', 'print("hi")'];

async function lines(ctd: Containerd, args: string[], namespace: string): Promise<string[]> {
  const out = await ctd.ctr(args, { namespace, timeoutMs: 60_000 });
  return out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

/** Removes every image in namespace and runs GC, so the next pull starts from nothing. */
export async function clearImages(ctd: Containerd, namespace: string): Promise<void> {
  const images = await lines(ctd, ['images', 'ls', '-q'], namespace);
  if (images.length > 0) await ctd.ctr(['images', 'rm', '--sync', ...images], { namespace, timeoutMs: 300_000 });
  await ctd.gc(namespace);
  const left = await lines(ctd, ['content', 'ls', '-q'], namespace);
  if (left.length > 0) throw new Error(`${left.length} blobs left in ${namespace} after removing every image and GC`);
}

export interface PullSamples { overlayMs: number[]; lazyMs: number[] }

/** `ctr images pull` into overlayfs (wall time of ctr). */
export async function overlayPull(ctd: Containerd, ref: string): Promise<number> {
  await clearImages(ctd, 'default');
  await dropCaches();
  const { ms } = await timeExec('ctr', ['--address', ctd.socket, '--namespace', 'default', 'images', 'pull', ...ctd.pullFlags, '--snapshotter', 'overlayfs', ref]);
  return ms;
}

/** A CRI PullImage with this snapshotter, timed in-process (the client is connected first, as kubelet's is). */
export async function lazyPull(ctd: Containerd, ref: string): Promise<number> {
  await clearImages(ctd, CRI_NAMESPACE);
  await dropCaches();
  const cri = new CriClient(ctd.socket);
  try {
    await cri.imageStatus(ref); // connects
    const t0 = nowMs();
    await cri.pullImage(ref, 15 * 60_000);
    return nowMs() - t0;
  } finally {
    cri.close();
  }
}

/** After a lazy pull: the layer blobs containerd downloaded (should be none). */
export async function downloadedLayers(ctd: Containerd, layerDigests: readonly string[]): Promise<string[]> {
  const content = new Set(await lines(ctd, ['content', 'ls', '-q'], CRI_NAMESPACE));
  return layerDigests.filter((d) => content.has(d));
}

let containerCounter = 0;

/** Pull, create, start, and python prints "hi": overlayfs through ctr. */
export async function overlayFirstOutput(ctd: Containerd, ref: string): Promise<number> {
  await clearImages(ctd, 'default');
  await dropCaches();
  const t0 = nowMs();
  await ctd.ctr(['images', 'pull', ...ctd.pullFlags, '--snapshotter', 'overlayfs', ref], { namespace: 'default', timeoutMs: 900_000 });
  const out = await ctd.ctr(['run', ...ctd.runFlags, '--rm', '--snapshotter', 'overlayfs', ref, `bench-fo-${++containerCounter}`, ...HELLO], { namespace: 'default' });
  const ms = nowMs() - t0;
  if (out.trim() !== 'hi') throw new Error(`overlayfs container printed ${JSON.stringify(out)}`);
  return ms;
}

/** The same, lazily: a CRI pull, then the container over the FUSE layers. */
export async function lazyFirstOutput(ctd: Containerd, ref: string): Promise<number> {
  await clearImages(ctd, CRI_NAMESPACE);
  await dropCaches();
  const cri = new CriClient(ctd.socket);
  try {
    await cri.imageStatus(ref);
    const t0 = nowMs();
    await cri.pullImage(ref, 15 * 60_000);
    const out = await ctd.ctr(['run', ...ctd.runFlags, '--rm', '--snapshotter', PROXY_SNAPSHOTTER, ref, `bench-fo-${++containerCounter}`, ...HELLO], { namespace: CRI_NAMESPACE });
    const ms = nowMs() - t0;
    if (out.trim() !== 'hi') throw new Error(`lazy container printed ${JSON.stringify(out)}`);
    return ms;
  } finally {
    cri.close();
  }
}

// ---- the FUSE layer against a bind mount -------------------------------------------------

/** A layer of the store mounted by the daemon: a remote snapshot and a View on it. */
export class DaemonLayerMount {
  private viewCounter = 0;
  private viewKey: string | undefined;
  mountpoint = '';

  constructor(private readonly client: SnapshotsClient, private readonly daemonRoot: string, readonly name: string, readonly digest: string) {}

  /** Records the layer as a remote snapshot named `name` (the daemon answers AlreadyExists). */
  async register(): Promise<void> {
    try {
      await this.client.prepare(`${this.name}-extract`, '', { [TARGET_REF_LABEL]: this.name, [LAYER_DIGEST_LABEL]: this.digest });
      throw new Error(`Prepare of ${this.name} did not answer AlreadyExists: is ${this.digest} in the store?`);
    } catch (err) {
      if ((err as { code?: number }).code !== 6) throw err;
    }
  }

  /** A View on the remote snapshot makes the daemon mount its FUSE layer. */
  async mount(): Promise<string> {
    const before = new Set(fuseMountsUnder(this.daemonRoot).map((m) => m.mountPoint));
    this.viewKey = `${this.name}-view-${++this.viewCounter}`;
    await this.client.view(this.viewKey, this.name);
    const added = fuseMountsUnder(this.daemonRoot).filter((m) => !before.has(m.mountPoint));
    const mp = added[0]?.mountPoint ?? this.mountpoint;
    if (mp === '') throw new Error(`View on ${this.name} mounted no FUSE layer`);
    this.mountpoint = mp;
    return mp;
  }

  /** Removes the View; the daemon unmounts the layer once nothing needs it. */
  async unmount(): Promise<void> {
    if (this.viewKey === undefined) return;
    await this.client.remove(this.viewKey);
    this.viewKey = undefined;
  }

  /** True if the FUSE mount is still there. */
  isMounted(): boolean {
    return fuseMountsUnder(this.daemonRoot).some((m) => m.mountPoint === this.mountpoint);
  }

  async remove(): Promise<void> {
    await this.unmount();
    await this.client.remove(this.name).catch(() => undefined);
  }
}

/** What serves the layer directory: a bind mount, the product's FUSE server, or a peer's. */
export const SERVERS = ['bind', 'product', 'gofuse', 'passthrough_hp'] as const;
export type ServerLabel = (typeof SERVERS)[number];

export interface FsTarget {
  label: ServerLabel;
  dir: () => string;
  /** Makes the next access cold: a FUSE server gets a fresh mount (fresh caches); then the kernel's caches are dropped. */
  makeCold: () => Promise<void>;
  /** The FUSE server's process, whose CPU time a cold walk costs; none for a bind mount. */
  serverPid?: () => Promise<number | undefined>;
}

/** MB/s of `dd` reading the whole file. */
async function ddMBps(file: string, bytes: number): Promise<number> {
  const { ms } = await timeExec('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']);
  return bytes / 1e6 / (ms / 1000);
}

/** Reads/s of `count` random 4 KiB-aligned reads of 4 KiB (a fixed pseudo-random sequence). */
function random4k(file: string, bytes: number, count: number): number {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(4096);
  const blocks = Math.floor(bytes / 4096);
  let x = 12345;
  try {
    const t0 = nowMs();
    for (let i = 0; i < count; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      readSync(fd, buf, 0, 4096, (x % blocks) * 4096);
    }
    return count / ((nowMs() - t0) / 1000);
  } finally {
    closeSync(fd);
  }
}

export interface FsSamples {
  seqColdMBps: number[];
  seqWarmMBps: number[];
  randColdIops: number[];
  randWarmIops: number[];
  walkColdMs: number[];
  /** CPU time (utime+stime) of the FUSE server process during the cold walk. */
  walkColdServerCpuMs: number[];
  walkWarmMs: number[];
  /** Walk with the kernel's caches dropped but the FUSE mount (and the daemon's cache) kept. */
  walkDropOnlyMs: number[];
  pythonColdMs: number[];
  pythonWarmMs: number[];
}

export function emptyFsSamples(): FsSamples {
  return { seqColdMBps: [], seqWarmMBps: [], randColdIops: [], randWarmIops: [], walkColdMs: [], walkColdServerCpuMs: [], walkWarmMs: [], walkDropOnlyMs: [], pythonColdMs: [], pythonWarmMs: [] };
}

export interface FsLayout { bigFile: string; bigBytes: number; randCold: number; randWarm: number }

/** One repetition of every file system case over target t. */
export async function fsRound(t: FsTarget, s: FsSamples, l: FsLayout): Promise<void> {
  const big = (): string => join(t.dir(), l.bigFile);
  await t.makeCold();
  s.seqColdMBps.push(await ddMBps(big(), l.bigBytes));
  await ddMBps(big(), l.bigBytes);
  s.seqWarmMBps.push(await ddMBps(big(), l.bigBytes));

  await t.makeCold();
  s.randColdIops.push(random4k(big(), l.bigBytes, l.randCold));
  random4k(big(), l.bigBytes, l.randWarm);
  s.randWarmIops.push(random4k(big(), l.bigBytes, l.randWarm));

  const walk = (): Promise<{ ms: number }> => timeExec('sh', ['-c', 'find "$1" -printf "%s %m %n\\n" > /dev/null', 'sh', t.dir()]);
  await t.makeCold();
  const pid = await t.serverPid?.();
  const cpu0 = pid === undefined ? undefined : await cpuMs(pid);
  s.walkColdMs.push((await walk()).ms);
  if (pid !== undefined && cpu0 !== undefined) s.walkColdServerCpuMs.push((await cpuMs(pid)) - cpu0);
  await walk();
  s.walkWarmMs.push((await walk()).ms);
  await dropCaches();
  s.walkDropOnlyMs.push((await walk()).ms);

  const hello = async (): Promise<number> => {
    const { ms, result } = await timeExec('/usr/sbin/chroot', [t.dir(), '/usr/bin/python3', '-c', 'print("hi")'], { env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' } });
    if (result.stdout.trim() !== 'hi') throw new Error(`python in a chroot over ${t.label} printed ${JSON.stringify(result.stdout)}`);
    return ms;
  };
  await t.makeCold();
  s.pythonColdMs.push(await hello());
  await hello();
  s.pythonWarmMs.push(await hello());
}

export async function countEntries(dir: string): Promise<number> {
  const r = await execOk('sh', ['-c', 'find "$1" | wc -l', 'sh', dir]);
  return Number(r.stdout.trim());
}

export function logSample(what: string, v: number, unit: string): void {
  log(`${what}: ${v.toFixed(unit === 'ms' ? 0 : 1)} ${unit}`);
}
