// Crash safety under real pulls: one private registry, containerd (CRI on) and daemon; small
// images, some in the layer store (lazy pulls through `cvmfs-snapshotter pull` and CRI), some not
// (`ctr images pull`, which downloads and unpacks into the daemon's overlay snapshots). Each
// cycle removes an old image (when the pool is full) and pulls another, and SIGKILLs the daemon
// at a random point of that work: after a random number of the daemon's answered calls plus a
// random delay. The daemon is restarted on the same root. The rig observes, and the tests
// (test/e2e/crash-pulls.e2e.test.ts, test/stress/crash-pulls.test.ts) assert:
//   (a) its records match the disk: no orphan directory, no record without its directory;
//   (b) every snapshot committed right before the kill (its database, read just before) is still
//       listed, unless it belongs to the image the cycle was removing, or containerd's GC
//       removed it since (what the pull that the kill cut short left);
//   (c) no dead FUSE mount is left under its root, and exactly the layers that active
//       snapshots stand on are mounted (a long-lived active snapshot on a lazy image keeps
//       FUSE mounts up at every kill);
//   (d) the same pull then succeeds, and a container of a lazily pulled image runs.
// One cycle is four steps, each returning what it saw: kill(), restart(), recover(), settle().
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SnapshotsClient } from '../../src/server/client.js';
import type { WireInfo } from '../../src/server/wire.js';
import { PROXY_SNAPSHOTTER, type Containerd } from './containerd.js';
import { defaultDaemonConfig, type Daemon } from './daemon.js';
import { Harness } from './harness.js';
import type { BuiltImage } from './image.js';
import { CRI_NAMESPACE, ingest, lazyRunArgs, pullLazy } from './lazy.js';
import { asRpc, LogTail, logSize, type RpcRecord } from './log-tail.js';
import type { Rng } from './rng.js';
import type { Registry } from './registry.js';
import {
  describeUsage, fdKinds, fuseMountHealth, layerMountsNeeded, mountpointsUnder, readRecords, rootMismatches, serverUsage, type FuseMountState, type RootRecord, type ServerUsage,
} from './root-check.js';
import { busyboxRootfs } from './rootfs.js';
import { waitUntil } from './wait.js';

export type PullKind = 'lazy' | 'ordinary';

const NAMESPACE: Record<PullKind, string> = { lazy: CRI_NAMESPACE, ordinary: 'default' };
const SN = ['--snapshotter', PROXY_SNAPSHOTTER];

export interface PoolImage {
  kind: PullKind;
  image: BuiltImage;
  /** Files with one line each, one per layer; `cat` of them prints `expected`. */
  markers: string[];
  expected: string;
  present: boolean;
  /** The cycle that last pulled it (for removing the oldest first). */
  pulledIn: number;
}

export interface CrashRigOptions {
  /** Images per kind in the pool (besides the pinned lazy image). */
  poolSize: number;
  /** At most this many images of a kind are present at once; the oldest is removed to make room. */
  maxPresent: number;
  /** Small files in the middle layer of an ordinary image (what containerd unpacks). */
  ordinaryFiles?: number;
  /** Bytes of random data in the middle layer of an ordinary image. */
  ordinaryBlobBytes?: number;
}

export interface CycleReport {
  cycle: number;
  kind: PullKind;
  pulled: string;
  removed: string | undefined;
  /** The kill came after this many answered calls of the cycle's work (capped by what it made)... */
  killAfterRpcs: number;
  /** ...and this many more milliseconds. */
  killDelayMs: number;
  /** The calls the daemon had answered in the cycle when it was killed. */
  rpcsBeforeKill: number;
  /** The last call it answered before the kill. */
  lastRpc: string;
  /** How the cycle's own work ended (it may fail because of the kill, or finish first). */
  workOutcome: string;
  /** FUSE mounts that answered ENOTCONN right after the kill. */
  deadAfterKill: number;
  /** What restart reported (daemon log) and what the checks saw. */
  staleClearedAtStart: number;
  orphansRemovedAtStart: number;
  /** Mismatches seen while waiting for the records and the disk to agree (calls in progress). */
  transientMismatches: string[];
  /** Snapshots committed before the kill that containerd's GC removed since (a failed pull's layers). */
  collectedAfterRestart: number;
  restartMs: number;
  reconnectMs: number;
  cycleMs: number;
}

/** The FUSE mounts under the daemon's root against what the records call for (check (c)). */
export interface MountObservation {
  /** FUSE mounts whose server does not answer. */
  notAlive: FuseMountState[];
  /** The FUSE mounts under the root, sorted. */
  mounted: string[];
  /** The layer mounts that active snapshots stand on, sorted. */
  needed: string[];
  /** Other mounts under the root. */
  other: string[];
}

/** Step 1 of a cycle: the work started and the daemon SIGKILLed at a random point of it. */
export interface KillObservation {
  cycle: number;
  kind: PullKind;
  target: PoolImage;
  old: PoolImage | undefined;
  killAfterRpcs: number;
  killDelayMs: number;
  /** The signal the daemon died of. */
  signal: string | null;
  rpcsBeforeKill: number;
  lastRpc: string;
  deadAfterKill: number;
  /** Committed snapshots in the database right before the kill. */
  committedBefore: string[];
  wasFinished: boolean;
  /** @internal */ offsetAtKill: number;
  /** @internal */ outcome: Promise<string>;
  /** @internal */ t0: number;
}

/** Step 2: the daemon restarted on the same root, checks (a) to (c). */
export interface RestartObservation {
  restartMs: number;
  staleClearedAtStart: number;
  orphansRemovedAtStart: number;
  /** (c) right after the restart. */
  mounts: MountObservation;
  /** (a) what still disagrees between records and disk once the wait is over (empty: they match). */
  mismatches: string[];
  /** Mismatches seen while waiting for the records and the disk to agree (calls in progress). */
  transient: string[];
  /** (b) snapshots committed before the kill that are neither listed nor removed by a Remove call. */
  lost: string[];
  /** The daemon's log lines that name a lost snapshot. */
  lostLogLines: string[];
  /** Snapshots committed before the kill that containerd's GC removed since. */
  collected: number;
}

/** Step 3: (d) the same pull again, and a container of a lazy image. */
export interface RecoveryObservation {
  workOutcome: string;
  reconnectMs: number;
  /** The container's `cat` of one marker file per layer, and what it should print. */
  run: { name: string; ref: string; output: string; expected: string };
}

/** Step 4: containerd idle again. */
export interface SettledObservation {
  mismatches: string[];
  mounts: MountObservation;
  /** Layers of present images (`<ref> <chain ID>`) that the daemon holds no committed snapshot for. */
  missingLayers: string[];
}

/** After finish(): everything removed. */
export interface FinishObservation {
  snapshots: WireInfo[];
  mismatches: string[];
  records: RootRecord[];
  mountpoints: string[];
  /** Each server process that lived through every kill: how many descriptors it holds more than at the start. */
  fdGrowth: Array<{ role: string; pid: number; grew: number; atStart: string; now: string }>;
  usage: string;
}

/** Calls that count as the cycle's work: not CRI's periodic Usage, not the List with no filter that a check makes. */
function isWorkRpc(r: RpcRecord): boolean {
  return r.method !== 'Usage' && !(r.method === 'List' && r.key === '');
}

export class CrashRig {
  readonly h: Harness;
  readonly registry: Registry;
  readonly store: string;
  readonly daemon: Daemon;
  readonly ctd: Containerd;
  readonly pool: Record<PullKind, PoolImage[]>;
  readonly pinned: PoolImage;
  readonly holderKey = 'crash-holder';
  /** Answered calls of an un-killed pull of each kind (measured at setup). */
  readonly pullRpcs: Record<PullKind, number> = { lazy: 0, ordinary: 0 };
  readonly pullMs: Record<PullKind, number> = { lazy: 0, ordinary: 0 };
  /** Milliseconds from the first to the last answered call of that pull. */
  readonly pullSpanMs: Record<PullKind, number> = { lazy: 0, ordinary: 0 };
  /** A client of the current daemon run. */
  private client: SnapshotsClient | undefined;
  private readonly opts: CrashRigOptions;
  private cycleNo = 0;
  /** The server processes once the holder is mounted: the ones that outlive every kill are compared at the end. */
  private usageAtStart: ServerUsage[] = [];
  private readonly fdKindsAtStart = new Map<number, Map<string, number>>();
  /** FUSE mounts under the root once the holder snapshot is prepared on the pinned image (one per layer). */
  holderMounts = 0;
  /** Totals over all cycles, for the final report. */
  readonly totals = { deadAfterKill: 0, staleClearedAtStart: 0, orphansRemovedAtStart: 0, killedMidWork: 0, collectedAfterRestart: 0 };

  private constructor(h: Harness, registry: Registry, store: string, daemon: Daemon, ctd: Containerd,
    pool: Record<PullKind, PoolImage[]>, pinned: PoolImage, opts: CrashRigOptions) {
    this.h = h;
    this.registry = registry;
    this.store = store;
    this.daemon = daemon;
    this.ctd = ctd;
    this.pool = pool;
    this.pinned = pinned;
    this.opts = opts;
  }

  static async create(label: string, opts: CrashRigOptions, note: (s: string) => void = () => undefined): Promise<CrashRig> {
    const h = await Harness.create(label);
    try {
      const registry = await h.startRegistry();
      const t0 = Date.now();
      const build = (kind: PullKind, tag: string): Promise<PoolImage> => buildPoolImage(h, registry, kind, tag, opts);
      const specs: Array<[PullKind, string]> = [['lazy', 'pinned']];
      for (let i = 0; i < opts.poolSize; i++) specs.push(['lazy', `l${i}`], ['ordinary', `o${i}`]);
      const built: PoolImage[] = [];
      // Two at a time: umoci and skopeo each keep a core busy.
      for (let i = 0; i < specs.length; i += 2) {
        built.push(...await Promise.all(specs.slice(i, i + 2).map(([k, t]) => build(k, t))));
      }
      const store = await h.scope.mkdir('store');
      const lazy = built.filter((p) => p.kind === 'lazy');
      await ingest(store, ...lazy.map((p) => p.image.ref));
      note(`${built.length} images built, pushed and ${lazy.length} ingested in ${Date.now() - t0} ms`);

      const daemon = await h.startDaemon({ logLevel: 'debug', configToml: defaultDaemonConfig(store) });
      const ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true });
      const pinned = lazy.find((p) => p.image.tag === 'pinned') as PoolImage;
      const pool = { lazy: lazy.filter((p) => p !== pinned), ordinary: built.filter((p) => p.kind === 'ordinary') };
      const rig = new CrashRig(h, registry, store, daemon, ctd, pool, pinned, opts);
      await rig.calibrate(note);
      return rig;
    } catch (err) {
      await h.teardown().catch(() => undefined);
      throw err;
    }
  }

  /** Pulls the pinned lazy image and one ordinary image unharmed (their calls size the kill points), and holds the pinned layers mounted. */
  private async calibrate(note: (s: string) => void): Promise<void> {
    for (const p of [this.pinned, this.pool.ordinary[0] as PoolImage]) {
      const tail = new LogTail(this.daemon.logFile, await logSize(this.daemon.logFile));
      const t0 = Date.now();
      await this.pull(p);
      this.pullMs[p.kind] = Date.now() - t0;
      await sleep(50); // the last call's log line
      await tail.poll();
      const work = tail.records.filter((r) => { const c = asRpc(r); return c !== undefined && isWorkRpc(c); });
      this.pullRpcs[p.kind] = work.length;
      // The daemon's part of a pull: from its first answered call to its last.
      const times = work.map((r) => Number(r.time));
      this.pullSpanMs[p.kind] = times.length > 1 ? Math.max(...times) - Math.min(...times) : 0;
      p.present = true;
    }
    // Nothing is mounted yet: what the server processes hold now is what they must hold at the end.
    this.usageAtStart = await serverUsage(this.daemon.socket);
    for (const u of this.usageAtStart) this.fdKindsAtStart.set(u.pid, await fdKinds(u.pid));
    // An active snapshot on the pinned image: its layers stay mounted, so every kill leaves FUSE
    // mounts that the restarted daemon must clear and mount again.
    await this.ctd.ctr(['snapshots', ...SN, 'prepare', this.holderKey, this.pinned.image.chainIds.at(-1) as string], { namespace: CRI_NAMESPACE });
    this.holderMounts = (await fuseMountHealth(this.daemon.root)).length;

    note(`an un-killed pull takes ${this.pullMs.lazy} ms, the daemon answering ${this.pullRpcs.lazy} calls within ${this.pullSpanMs.lazy} ms (lazy), `
      + `and ${this.pullMs.ordinary} ms with ${this.pullRpcs.ordinary} calls within ${this.pullSpanMs.ordinary} ms (ordinary)`);
  }

  private async pull(p: PoolImage): Promise<void> {
    if (p.kind === 'lazy') await pullLazy(this.ctd, p.image.ref);
    else await this.ctd.ctr(['images', 'pull', ...this.ctd.pullFlags, ...SN, p.image.ref], { timeoutMs: 120_000 });
  }

  /** Removes every name containerd has for the image, then collects garbage (the daemon gets its Removes). */
  private async remove(p: PoolImage): Promise<void> {
    const ns = NAMESPACE[p.kind];
    const names = (await this.ctd.ctr(['images', 'ls', '--quiet'], { namespace: ns })).split('\n').map((l) => l.trim())
      .filter((n) => n === p.image.ref || n === p.image.configDigest || n.endsWith(`@${p.image.manifestDigest}`));
    if (names.length > 0) await this.ctd.ctr(['images', 'rm', ...names], { namespace: ns });
    await this.ctd.gc(ns);
  }

  private async runLazy(p: PoolImage, name: string): Promise<RecoveryObservation['run']> {
    const out = await this.ctd.ctr([...lazyRunArgs(this.ctd), '--rm', p.image.ref, name, 'cat', ...p.markers], { namespace: CRI_NAMESPACE, timeoutMs: 60_000 });
    return { name, ref: p.image.ref, output: out.trim(), expected: p.expected };
  }

  /**
   * containerd reaches the daemon again (after a SIGKILL its connection backs off for about a
   * second). `ctr snapshots ls` would not tell: containerd answers it from its own database;
   * Usage of the holder goes to the daemon.
   */
  private async waitReconnected(): Promise<number> {
    return waitUntil(async () => (await this.ctd.ctrResult(['snapshots', ...SN, 'usage', this.holderKey], { namespace: CRI_NAMESPACE, timeoutMs: 10_000 })).code === 0,
      { what: 'containerd to reach the restarted daemon', timeoutMs: 20_000, intervalMs: 100, process: this.daemon.process });
  }

  /** List on the client of the current daemon run. */
  private async list(): Promise<WireInfo[]> {
    this.client ??= new SnapshotsClient(this.daemon.socket);
    return this.client.list();
  }

  private dropClient(): void {
    this.client?.close();
    this.client = undefined;
  }

  /** For check (c): the FUSE mounts, whether they answer, and what the records call for. */
  private async observeMounts(): Promise<MountObservation> {
    const health = await fuseMountHealth(this.daemon.root);
    const needed = [...layerMountsNeeded(this.daemon.root, readRecords(this.daemon.root))].sort();
    const other = (await mountpointsUnder(this.daemon.root)).filter((mp) => !needed.includes(mp));
    return { notAlive: health.filter((m) => m.health !== 'alive'), mounted: health.map((m) => m.mountpoint), needed, other };
  }

  /** Waits (10 s at most) for the records and the disk to agree; returns what still disagrees and what disagreed meanwhile. */
  private async settleRoot(what: string): Promise<{ mismatches: string[]; transient: string[] }> {
    let last: string[] = [];
    const seen = new Set<string>();
    await waitUntil(async () => {
      last = await rootMismatches(this.daemon.root);
      for (const p of last) seen.add(p);
      return last.length === 0;
    }, { what, timeoutMs: 10_000, intervalMs: 20 }).catch(() => undefined);
    return { mismatches: last, transient: [...seen] };
  }

  /** Step 1 of a cycle: make room, start the pull, SIGKILL the daemon at a random point of that work. */
  async kill(kind: PullKind, rng: Rng): Promise<KillObservation> {
    const n = ++this.cycleNo;
    const t0 = Date.now();
    const pool = this.pool[kind];
    const absent = pool.filter((p) => !p.present);
    const target = rng.pick(absent);
    const present = pool.filter((p) => p.present).sort((a, b) => a.pulledIn - b.pulledIn);
    const old = present.length >= this.opts.maxPresent ? present[0] : undefined;

    // The kill point: after k answered calls of this cycle's work, then d ms.
    const expected = this.pullRpcs[kind] + (old ? old.image.layers.length + 3 : 0);
    const k = rng.range(0, expected);
    // The mean time between two of the daemon's answers in an un-killed pull: the delay lands
    // anywhere between one call and the next.
    const gapMs = Math.max(1, Math.round(this.pullSpanMs[kind] / Math.max(1, this.pullRpcs[kind] - 1)));
    const d = rng.int(gapMs + 1);

    const tail = new LogTail(this.daemon.logFile, await logSize(this.daemon.logFile));
    const pidBefore = this.daemon.pid;
    let finished = false;
    const work = (async () => {
      if (old) {
        old.present = false;
        await this.remove(old);
      }
      await this.pull(target);
    })();
    const outcome = work.then(() => 'finished before the kill', (err: unknown) => `failed: ${lastLine(err)}`)
      .finally(() => { finished = true; });
    const workRpcs = (): RpcRecord[] => tail.rpcs().filter((r) => r.pid === pidBefore && isWorkRpc(r));
    while (!finished && workRpcs().length < k) {
      await tail.poll();
      await sleep(1);
    }
    if (d > 0) await sleep(d);
    // (b) what is committed right before the kill: read from the database itself, not through a
    // call, which would wait behind the daemon's work and move the kill point.
    const committedBefore = readRecords(this.daemon.root).filter((r) => r.kind === 'committed').map((r) => r.key);
    const offsetAtKill = await logSize(this.daemon.logFile);
    const wasFinished = finished;
    const status = await this.daemon.kill('SIGKILL');
    this.dropClient();
    await tail.poll();
    const before = workRpcs();
    const last = before.at(-1);
    const deadAfterKill = (await fuseMountHealth(this.daemon.root)).filter((m) => m.health === 'dead').length;
    return {
      cycle: n, kind, target, old, killAfterRpcs: k, killDelayMs: d, signal: status.signal,
      rpcsBeforeKill: before.length, lastRpc: last ? `${last.method} ${last.code}` : '(none)', deadAfterKill,
      committedBefore, wasFinished, offsetAtKill, outcome, t0,
    };
  }

  /** Step 2: restart the daemon on the same root; observe (c) the mounts, (a) records against disk, (b) what was committed. */
  async restart(k: KillObservation): Promise<RestartObservation> {
    const n = k.cycle;
    await this.daemon.restart();
    const restartMs = this.daemon.startupMs;
    const started = new LogTail(this.daemon.logFile, k.offsetAtKill);
    await started.poll();
    // Whichever process serves the FUSE mounts (the daemon, or a FUSE server of its own) logs here.
    const startRecords = started.records;
    const staleClearedAtStart = startRecords.filter((r) => r.msg === 'cleared stale FUSE mount').length;
    const orphansRemovedAtStart = startRecords
      .filter((r) => r.msg === 'removed snapshot directories that no record owns')
      .reduce((s, r) => s + (Array.isArray(r.removed) ? r.removed.length : 0), 0);

    const mounts = await this.observeMounts();
    const { mismatches, transient } = await this.settleRoot(`cycle ${n}: records and disk to match after the restart`);
    // (b) Two things may take a snapshot away: the removal of the old image that this cycle
    // started (its Remove may have been cut short by the kill, after its transaction), and a
    // Remove that containerd's GC makes after the restart (the layers of the pull that the kill
    // cut short), which the daemon logs.
    const old = k.old;
    const ofOld = (name: string): boolean => old !== undefined && old.image.chainIds.some((c) => name === c || name.endsWith(`/${c}`));
    const removedSince = async (): Promise<Set<string>> => {
      const t = new LogTail(this.daemon.logFile, k.offsetAtKill);
      await t.poll();
      return new Set(t.rpcs().filter((r) => r.method === 'Remove' && r.code === 'OK').map((r) => r.key));
    };
    let lost: string[] = [];
    let collected = 0;
    await waitUntil(async () => {
      const listed = new Set((await this.list()).map((i) => i.name));
      const missing = k.committedBefore.filter((c) => !listed.has(c) && !ofOld(c));
      const removed = await removedSince();
      lost = missing.filter((m) => !removed.has(m));
      collected = missing.length - lost.length;
      return lost.length === 0;
    }, { what: `cycle ${n}: every snapshot committed before the kill to be listed, or removed by a Remove call`, timeoutMs: 5_000, intervalMs: 50 })
      .catch(() => undefined);
    const lostLogLines = lost.length === 0 ? []
      : (await readFile(this.daemon.logFile, 'utf8')).split('\n').filter((l) => lost.some((key) => l.includes(key))).slice(-20);
    return { restartMs, staleClearedAtStart, orphansRemovedAtStart, mounts, mismatches, transient, lost, lostLogLines, collected };
  }

  /** Step 3: (d) containerd reaches the daemon again, the same pull succeeds, and a lazy image's container runs. */
  async recover(k: KillObservation, rng: Rng): Promise<RecoveryObservation> {
    const workOutcome = k.wasFinished ? 'finished before the kill' : await k.outcome;
    const reconnectMs = await this.waitReconnected();
    await this.pull(k.target);
    k.target.present = true;
    k.target.pulledIn = k.cycle;
    const runOf = k.kind === 'lazy' ? k.target : rng.pick([this.pinned, ...this.pool.lazy.filter((p) => p.present)]);
    const run = await this.runLazy(runOf, `crash-run-${k.cycle}`);
    return { workOutcome, reconnectMs, run };
  }

  /** Step 4: containerd removes the container's snapshot and what the failed work left; observe (a), (c) and the images' layers. */
  async settle(k: KillObservation, s: RestartObservation, r: RecoveryObservation): Promise<{ settled: SettledObservation; report: CycleReport }> {
    await this.ctd.gc(CRI_NAMESPACE);
    await this.ctd.gc('default');
    const mismatches = await rootMismatches(this.daemon.root);
    const mounts = await this.observeMounts();
    const missingLayers = await this.missingLayers();

    if (!k.wasFinished) this.totals.killedMidWork++;
    this.totals.deadAfterKill += k.deadAfterKill;
    this.totals.staleClearedAtStart += s.staleClearedAtStart;
    this.totals.orphansRemovedAtStart += s.orphansRemovedAtStart;
    this.totals.collectedAfterRestart += s.collected;
    const report: CycleReport = {
      cycle: k.cycle,
      kind: k.kind,
      pulled: k.target.image.tag,
      removed: k.old?.image.tag,
      killAfterRpcs: k.killAfterRpcs,
      killDelayMs: k.killDelayMs,
      rpcsBeforeKill: k.rpcsBeforeKill,
      lastRpc: k.lastRpc,
      workOutcome: r.workOutcome,
      deadAfterKill: k.deadAfterKill,
      staleClearedAtStart: s.staleClearedAtStart,
      orphansRemovedAtStart: s.orphansRemovedAtStart,
      transientMismatches: s.transient,
      collectedAfterRestart: s.collected,
      restartMs: s.restartMs,
      reconnectMs: r.reconnectMs,
      cycleMs: Date.now() - k.t0,
    };
    return { settled: { mismatches, mounts, missingLayers }, report };
  }

  /** The layers of present images that the daemon holds no committed snapshot for. */
  private async missingLayers(): Promise<string[]> {
    const names = (await this.list()).filter((i) => i.kind === 'COMMITTED').map((i) => i.name);
    const missing: string[] = [];
    for (const p of [this.pinned, ...this.pool.lazy, ...this.pool.ordinary]) {
      if (!p.present) continue;
      for (const chain of p.image.chainIds) {
        // Remote layers are committed under the chain ID itself; unpacked ones under <namespace>/<n>/<chain ID>.
        if (!names.some((s) => s === chain || s.endsWith(`/${chain}`))) missing.push(`${p.image.ref} ${chain}`);
      }
    }
    return missing;
  }

  /**
   * Removes the holder and every image, collects garbage, and observes what is left: snapshots,
   * mismatches of records and disk, records, mounts, and the descriptors of each process that
   * lived through every kill (a FUSE server beside the daemon) against before anything was mounted.
   */
  async finish(): Promise<FinishObservation> {
    await this.ctd.ctr(['snapshots', ...SN, 'rm', this.holderKey], { namespace: CRI_NAMESPACE });
    for (const p of [this.pinned, ...this.pool.lazy, ...this.pool.ordinary]) {
      if (p.present) await this.remove(p);
      p.present = false;
    }
    await this.ctd.gc(CRI_NAMESPACE);
    await this.ctd.gc('default');
    const snapshots = await this.list();
    const mismatches = await rootMismatches(this.daemon.root);
    const records = readRecords(this.daemon.root);
    const mountpoints = await mountpointsUnder(this.daemon.root);
    const now = await serverUsage(this.daemon.socket);
    const fdGrowth: FinishObservation['fdGrowth'] = [];
    for (const a of this.usageAtStart) {
      const b = now.find((x) => x.pid === a.pid);
      if (b === undefined) continue;
      fdGrowth.push({
        role: a.role, pid: a.pid, grew: b.fds - a.fds,
        atStart: JSON.stringify([...(this.fdKindsAtStart.get(a.pid) ?? [])]), now: JSON.stringify([...await fdKinds(a.pid)]),
      });
    }
    const usage = `server processes before anything was mounted: ${describeUsage(this.usageAtStart)}; at the end: ${describeUsage(now)}`;
    return { snapshots, mismatches, records, mountpoints, fdGrowth, usage };
  }

  /** A tail of the daemon's log, for failure messages. */
  async logTail(lines = 30): Promise<string> {
    const text = await readFile(this.daemon.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  teardown(): Promise<void> {
    this.dropClient();
    return this.h.teardown();
  }
}

/** The last line of an error: where ctr and the pull command say why they failed. */
function lastLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  const lines = m.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return (lines.at(-1) ?? m).slice(-240);
}

async function buildPoolImage(h: Harness, registry: Registry, kind: PullKind, tag: string, opts: CrashRigOptions): Promise<PoolImage> {
  const files = kind === 'ordinary' ? opts.ordinaryFiles ?? 200 : 20;
  const blob = kind === 'ordinary' ? opts.ordinaryBlobBytes ?? 512 * 1024 : 0;
  const markers = [`/etc/crash-${tag}`, `/opt/${tag}/1`, `/opt/${tag}/2`];
  const image = await h.buildImage({
    registry,
    name: kind === 'lazy' ? 'crash/lazy' : 'crash/ordinary',
    tag,
    layers: [
      { comment: 'busybox', raw: async (d) => { await busyboxRootfs(d); await writeFile(join(d, 'etc', `crash-${tag}`), `${tag} 0\n`); } },
      {
        comment: 'many small files',
        raw: async (d) => {
          await mkdir(join(d, 'opt', tag, 'many'), { recursive: true });
          for (let i = 0; i < files; i++) await writeFile(join(d, 'opt', tag, 'many', `f${i}`), `${tag} ${i}\n`);
          if (blob > 0) await writeFile(join(d, 'opt', tag, 'blob'), randomBytes(blob));
          await writeFile(join(d, 'opt', tag, '1'), `${tag} 1\n`);
        },
      },
      { comment: 'top', raw: async (d) => { await mkdir(join(d, 'opt', tag), { recursive: true }); await writeFile(join(d, 'opt', tag, '2'), `${tag} 2\n`); } },
    ],
    config: { cmd: ['/bin/sh'] },
  });
  return { kind, image, markers, expected: `${tag} 0\n${tag} 1\n${tag} 2`, present: false, pulledIn: 0 };
}
