// `node dist/bench/stall.js [--lookups N] [--rounds R] [--stalled S]` (root): how much a stalled
// layer store slows another layer's lookups. The setup of test/integration/stalled-store.test.ts:
// layer A on a FaultyStore whose lookups inside one directory stall, layer B on a local
// directory, both served by one FuseLayerMounter in this process. Each round times N sequential
// lookups of names B does not have (each one a store call: B's directories are too big to be
// listed whole) once with nothing stalled and once while S lookups wait on A's stalled store,
// alternating so that background load hits both alike. The target: B's p99 under 10 ms
// while 600 lookups are pending on a stalled store.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FuseLayerMounter } from '../src/fuse/index.js';
import { DEFAULT_TUNING } from '../src/fuse/tuning.js';
import { silentLogger } from '../src/log.js';
import { poolStats } from '../src/sys/native.js';
import { FaultyStore } from '../test/integration/faulty-store.js';
import { PyChild, eventually, percentile } from '../test/integration/fault-kit.js';
import { probeOne } from '../test/integration/fs-probe.js';
import { LAYER_REL, PARALLEL_LOOKUPS_PY, TIMED_LOOKUPS_PY, writeWideLayer } from '../test/integration/stall-kit.js';
import { log } from './stats.js';

const { values } = parseArgs({
  options: { lookups: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '3' }, stalled: { type: 'string', default: '600' } },
});
const LOOKUPS = Number(values.lookups);
const ROUNDS = Number(values.rounds);
const STALLED = Number(values.stalled);
const TARGET_P99_MS = 10;

if (process.getuid?.() !== 0) {
  process.stderr.write('bench/stall needs root (FUSE mounts with allow_other)\n');
  process.exit(2);
}

interface Stats { n: number; p50: number; p99: number; max: number }

function stats(ns: readonly number[]): Stats {
  const ms = ns.map((x) => x / 1e6);
  return { n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms) };
}

const dir = await mkdtemp(join(tmpdir(), 'cvmfs-bench-stall-'));
const mounter = new FuseLayerMounter({ log: silentLogger() });
const children: PyChild[] = [];
let store: FaultyStore | undefined;
const aMnt = join(dir, 'a', 'mnt');
const bMnt = join(dir, 'b', 'mnt');

/** B's lookups, timed in a child (this process serves the mounts and must not touch them). */
async function timedLookups(prefix: string): Promise<number[]> {
  const c = new PyChild(TIMED_LOOKUPS_PY, [bMnt, String(LOOKUPS), prefix]);
  children.push(c);
  const e = await c.exited;
  const line = e.stdout.find((l) => l.startsWith('done '));
  if (e.code !== 0 || !line) throw new Error(`the timed lookups failed (exit ${String(e.code)}): ${e.stderr}`);
  const out = JSON.parse(line.slice(5)) as { lat: number[]; wrong: string[][] };
  if (out.wrong.length > 0) throw new Error(`lookups of missing names did not give ENOENT: ${JSON.stringify(out.wrong.slice(0, 5))}`);
  return out.lat;
}

try {
  const backing = join(dir, 'a', 'backing');
  const storeMnt = join(dir, 'a', 'store');
  await mkdir(storeMnt, { recursive: true });
  writeWideLayer(join(backing, LAYER_REL));
  const bLayer = join(dir, 'b', 'store', LAYER_REL);
  writeWideLayer(bLayer);
  store = await FaultyStore.start(backing, storeMnt);
  await mounter.mount(join(storeMnt, LAYER_REL), aMnt);
  await mounter.mount(bLayer, bMnt);
  const s = store;
  // D is looked up before any stall: looking a directory up reads inside it (its opaque marker).
  const d = await probeOne({ op: 'lstat', path: join(aMnt, 'D') });
  if (d.stat?.type !== 'dir') throw new Error(`${aMnt}/D is not a directory through the mount: ${JSON.stringify(d)}`);

  const none: number[] = [];
  const stalled: number[] = [];
  const quiet = async (r: number): Promise<void> => {
    log(`round ${r + 1}/${ROUNDS}: ${LOOKUPS} lookups on B with nothing stalled`);
    none.push(...await timedLookups(`none${r}`));
  };
  const underStall = async (r: number): Promise<void> => {
    // The stall holds what is inside D, and each round asks names of its own: nothing the
    // kernel or the server learnt in an earlier round answers them.
    await s.stall(`/${LAYER_REL}/D/`, 'lookup');
    const names = Array.from({ length: STALLED }, (_, i) => join(aMnt, 'D', `absent-r${r}-${i}`));
    const held = new PyChild(PARALLEL_LOOKUPS_PY, [], `${JSON.stringify(names)}\n`);
    children.push(held);
    await held.line('started');
    await eventually(() => mounter.counters().waitingForStore >= STALLED, () => `${STALLED} lookups waiting on the stalled store (waiting: ${mounter.counters().waitingForStore})`, 60_000);
    log(`round ${r + 1}/${ROUNDS}: ${LOOKUPS} lookups on B while ${mounter.counters().waitingForStore} wait on A (pool ${JSON.stringify(poolStats())})`);
    stalled.push(...await timedLookups(`stalled${r}`));
    if (!held.running || mounter.counters().waitingForStore < STALLED) throw new Error('the stall ended before B\'s lookups did: the round measured nothing');
    await s.heal();
    await eventually(() => !held.running && mounter.counters().waitingForStore === 0, () => `the stalled lookups to finish after heal (waiting: ${mounter.counters().waitingForStore})`, 120_000);
  };
  // Which phase comes first alternates, so that warming up and the aftermath of a heal fall on both.
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      await quiet(r);
      await underStall(r);
    } else {
      await underStall(r);
      await quiet(r);
    }
  }

  const a = stats(none);
  const b = stats(stalled);
  const f = (x: number): string => x.toFixed(3).padStart(9);
  const ratio = (x: number, y: number): string => `x${(y / x).toFixed(2)}`.padStart(9);
  process.stdout.write([
    `B's lookup latency, ms (${ROUNDS} rounds of ${LOOKUPS} sequential lookups of missing names; storeCallsPerLayer ${DEFAULT_TUNING.storeCallsPerLayer})`,
    `                                        p50       p99       max`,
    `nothing stalled                  ${f(a.p50)} ${f(a.p99)} ${f(a.max)}`,
    `${String(STALLED).padStart(4)} lookups stalled on A         ${f(b.p50)} ${f(b.p99)} ${f(b.max)}`,
    `ratio (stalled / nothing)        ${ratio(a.p50, b.p50)} ${ratio(a.p99, b.p99)} ${ratio(a.max, b.max)}`,
    `target: p99 under ${TARGET_P99_MS} ms while ${STALLED} lookups are stalled: ${b.p99 < TARGET_P99_MS ? 'holds' : 'does not hold'} (${b.p99.toFixed(3)} ms)`,
    JSON.stringify({ stall_p99_ms: b.p99, stall_p50_ms: b.p50, stall_max_ms: b.max, none_p99_ms: a.p99, none_p50_ms: a.p50, none_max_ms: a.max, p99_ratio: b.p99 / a.p99, stalled: STALLED, lookups: LOOKUPS, rounds: ROUNDS }),
    '',
  ].join('\n'));
} finally {
  // Healed before the readers are stopped: the kernel waits out a request the server has read,
  // even for SIGKILL, so a reader blocked on the stall goes only once the store answers.
  if (store?.running) await store.heal();
  for (const c of children) await c.stop();
  const r = await mounter.close();
  if (r.failed.length > 0) process.stderr.write(`could not unmount: ${JSON.stringify(r.failed)}\n`);
  await store?.stop();
  await rm(dir, { recursive: true, force: true });
}
