// The `container` section: `find /usr` inside containers of the small Debian+python3 image,
// pulled lazily with CRI into this snapshotter and, as the baseline, pulled the ordinary way
// into overlayfs. The first container of a pull is cold (page cache dropped; the lazy layer is
// mounted afresh for it, so the FUSE server's caches for it are empty too); the second starts
// while the first still runs, so it shares the first one's layer mount, as a second pod of the
// same image on a node would. Issue 10 compares with stargz-snapshotter's figures for the same
// command, recorded here as constants.
import type { Containerd } from '../test/helpers/containerd.js';
import type { Daemon } from '../test/helpers/daemon.js';
import { CRI_NAMESPACE, fuseMountsUnder } from '../test/helpers/lazy.js';
import { PROXY_SNAPSHOTTER } from '../test/helpers/containerd-config.js';
import type { Scope } from '../test/helpers/scope.js';
import { lazyPull, overlayPull } from './cases.js';
import { FuseTrace, fuseConnection, type RequestCounts } from './fuse-trace.js';
import { IDLE_MEMORY_DEFAULTS } from '../src/fuse/server/idle-memory.js';
import { rssMb, sharedAwareMb } from './proc.js';
import { fmt } from './report.js';
import type { Results } from './results.js';
import { dropCaches, log, median, nowMs } from './stats.js';

/** stargz-snapshotter, `find /usr` in the first and in a second container of a lazily pulled image (issue 10). */
export const STARGZ_FIND_USR = { firstContainerS: 0.32, secondContainerS: 0.24, entries: 6608 } as const;

/** Times `find /usr` inside the container, so neither runc nor ctr is in the figure. */
const TIMED_FIND = 't0=$(date +%s%N); n=$(find /usr | wc -l); t1=$(date +%s%N); echo "$n $(( (t1 - t0) / 1000 ))"';

interface ContainerRun {
  /** `find /usr` as timed inside the container. */
  findMs: number;
  entries: number;
  /** `ctr run -d` until the task runs. */
  startMs: number;
  /** `ctr task exec` of the timed find, as ctr saw it. */
  execMs: number;
  /** FUSE requests from the container's start to the end of its find (lazy only). */
  requests?: RequestCounts;
}

type Kind = 'lazy' | 'overlayfs';

export interface ContainerOptions {
  reps: number;
  ref: string;
}

let counter = 0;

async function removeContainer(ctd: Containerd, namespace: string, name: string): Promise<void> {
  await ctd.ctrResult(['tasks', 'kill', '--signal', 'SIGKILL', name], { namespace, timeoutMs: 30_000 });
  await ctd.ctrResult(['tasks', 'delete', '--force', name], { namespace, timeoutMs: 30_000 });
  await ctd.ctrResult(['containers', 'delete', name], { namespace, timeoutMs: 30_000 });
}

/** A fresh pull, then two containers of it; the first one's page cache dropped. */
async function pair(ctd: Containerd, daemon: Daemon, kind: Kind, ref: string, trace: FuseTrace | undefined): Promise<ContainerRun[]> {
  const namespace = kind === 'lazy' ? CRI_NAMESPACE : 'default';
  // Both clear every image first (so GC removes the earlier snapshots and the product unmounts their layers).
  if (kind === 'lazy') await lazyPull(ctd, ref); else await overlayPull(ctd, ref);
  if (kind === 'lazy' && fuseMountsUnder(daemon.root).length > 0) throw new Error('a layer of the previous pull is still mounted: the first container would not be cold');
  const fifo = ctd.runFlags.slice(ctd.runFlags.indexOf('--fifo-dir'), ctd.runFlags.indexOf('--fifo-dir') + 2);
  const names: string[] = [];
  const runs: ContainerRun[] = [];
  try {
    for (const which of [1, 2]) {
      const name = `bench-find-${kind}-${++counter}`;
      if (which === 1) await dropCaches();
      await trace?.clear();
      let t0 = nowMs();
      await ctd.ctr(['run', ...ctd.runFlags, '-d', '--snapshotter', kind === 'lazy' ? PROXY_SNAPSHOTTER : 'overlayfs', ref, name, 'sleep', '3600'], { namespace, timeoutMs: 120_000 });
      names.push(name);
      const startMs = nowMs() - t0;
      t0 = nowMs();
      const out = await ctd.ctr(['tasks', 'exec', ...fifo, '--exec-id', `find-${counter}`, name, 'sh', '-c', TIMED_FIND], { namespace, timeoutMs: 120_000 });
      const execMs = nowMs() - t0;
      const [entries, us] = out.trim().split(/\s+/).map(Number);
      if (entries === undefined || us === undefined || !(entries > 0) || Number.isNaN(us)) throw new Error(`timed find in ${name} printed ${JSON.stringify(out)}`);
      const run: ContainerRun = { findMs: us / 1000, entries, startMs, execMs };
      if (kind === 'lazy' && trace) {
        const connections = new Set(fuseMountsUnder(daemon.root).map((m) => fuseConnection(m.mountPoint)).filter((c): c is number => c !== undefined));
        run.requests = await trace.counts(connections);
      }
      runs.push(run);
      log(`container ${kind} #${which}: find /usr ${fmt(run.findMs)} ms (${entries} entries), start ${fmt(startMs)} ms${run.requests ? `, ${run.requests.total} FUSE requests (GETXATTR ${run.requests.byOpcode.GETXATTR ?? 0})` : ''}`);
    }
  } finally {
    for (const n of names) await removeContainer(ctd, namespace, n);
  }
  return runs;
}

function requestsText(rs: readonly (RequestCounts | undefined)[]): string {
  const known = rs.filter((r): r is RequestCounts => r !== undefined);
  if (known.length === 0) return '-';
  const count = (f: (r: RequestCounts) => number): number => Math.round(median(known.map(f)));
  const total = count((r) => r.total);
  const getxattr = count((r) => r.byOpcode.GETXATTR ?? 0);
  const ops = [...new Set(known.flatMap((r) => Object.keys(r.byOpcode)))].filter((o) => o !== 'GETXATTR')
    .map((o) => [o, count((r) => r.byOpcode[o] ?? 0)] as const).sort((a, b) => b[1] - a[1]);
  return `${total}: GETXATTR ${getxattr}, other ${total - getxattr} (${ops.map(([o, n]) => `${o} ${n}`).join(', ')})`;
}

export async function containers(scope: Scope, ctd: Containerd, daemon: Daemon, res: Results, o: ContainerOptions): Promise<void> {
  let trace: FuseTrace | undefined;
  let traceMissing: string | undefined;
  try {
    trace = await FuseTrace.open(scope);
  } catch (err) {
    traceMissing = err instanceof Error ? err.message : String(err);
    res.notes.push(`FUSE requests per container were not counted: ${traceMissing}`);
  }
  const runs: Record<Kind, ContainerRun[][]> = { lazy: [], overlayfs: [] };
  try {
    for (let i = 0; i < o.reps; i++) {
      for (const kind of i % 2 === 0 ? ['lazy', 'overlayfs'] as const : ['overlayfs', 'lazy'] as const) runs[kind].push(await pair(ctd, daemon, kind, o.ref, trace));
    }
  } finally {
    await trace?.close();
  }
  const fusePid = await daemon.fuseServerPid();
  const rss = fusePid === undefined ? undefined : await rssMb(fusePid);
  const shared = fusePid === undefined ? undefined : await sharedAwareMb(fusePid);
  // And once the server has idled long enough to give memory back (src/fuse/server/idle-memory.ts),
  // as it stands on a node between container starts.
  const restMs = IDLE_MEMORY_DEFAULTS.idleMs + 2 * IDLE_MEMORY_DEFAULTS.tickMs + 1000;
  await new Promise((resolve) => setTimeout(resolve, restMs));
  const rssRest = fusePid === undefined ? undefined : await rssMb(fusePid);

  const pick = (kind: Kind, which: 0 | 1, f: (r: ContainerRun) => number): number[] => runs[kind].map((p) => f(p[which] as ContainerRun));
  const m = (kind: Kind, which: 0 | 1): number => median(pick(kind, which, (r) => r.findMs));
  const r = res.ratios;
  r.container_first_ratio = m('lazy', 0) / m('overlayfs', 0);
  r.container_second_ratio = m('lazy', 1) / m('overlayfs', 1);
  r.fuse_server_rss_mb = rss;
  r.fuse_server_rss_rest_mb = rssRest;
  r.fuse_server_pss_mb = shared?.pssMb;
  const entries = runs.lazy[0]?.[0]?.entries;
  res.addRow(`find /usr in the first container, cold (ms; ${entries ?? '?'} entries; stargz ${STARGZ_FIND_USR.firstContainerS * 1000} ms for ${STARGZ_FIND_USR.entries})`,
    pick('overlayfs', 0, (x) => x.findMs), pick('lazy', 0, (x) => x.findMs), 'lazy / overlayfs', r.container_first_ratio);
  res.addRow(`find /usr in a second container (ms; stargz ${STARGZ_FIND_USR.secondContainerS * 1000} ms)`,
    pick('overlayfs', 1, (x) => x.findMs), pick('lazy', 1, (x) => x.findMs), 'lazy / overlayfs', r.container_second_ratio);
  res.addRow('ctr run -d of the first container (ms)', pick('overlayfs', 0, (x) => x.startMs), pick('lazy', 0, (x) => x.startMs), 'lazy / overlayfs', median(pick('lazy', 0, (x) => x.startMs)) / median(pick('overlayfs', 0, (x) => x.startMs)));
  res.rows.push(['FUSE requests, first container (median)', '', requestsText(runs.lazy.map((p) => p[0]?.requests)), 'requests', '']);
  res.rows.push(['FUSE requests, second container (median)', '', requestsText(runs.lazy.map((p) => p[1]?.requests)), 'requests', '']);
  res.rows.push(['FUSE server RSS after the container runs (MiB)', '', fmt(rss), 'MiB', '']);
  res.rows.push([`FUSE server RSS ${restMs / 1000} s later, idle (MiB)`, '', fmt(rssRest), 'MiB', '']);
  res.rows.push(['Of the RSS after the runs: file pages, mostly the node binary shared with the daemon (MiB)', '', fmt(shared?.fileMb), 'MiB', '']);
  res.rows.push(['FUSE server PSS after the runs: shared pages divided among their users (MiB)', '', fmt(shared?.pssMb), 'MiB', '']);
  if (runs.lazy.some((p) => p.some((x) => (x.requests?.lost ?? 0) > 0))) res.notes.push('The FUSE tracepoint buffer overflowed during a container run: its request counts are too low.');
  res.raw.container = { stargz: STARGZ_FIND_USR, fuseServerRssMb: rss, fuseServerRssRestMb: rssRest, fuseServerShared: shared, traceMissing, runs };
}
