// `npm run bench [-- --quick] [-- --only pull,first,fs,mem,container,scale] [-- --layers N]`:
// lazy start against overlayfs, and the FUSE layer against a bind mount of the same layer
// directory and against two peer FUSE servers (go-fuse, libfuse's passthrough_hp), on a private
// containerd, registry, layer store and daemon (test/helpers). Writes bench/results/latest.json,
// the ratio chart and the results section of bench/README.md, and prints the tables.
import { cpus, loadavg, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { execOk } from '../src/sys/exec.js';
import { SnapshotsClient } from '../src/server/client.js';
import { Scope } from '../test/helpers/scope.js';
import { startRegistry } from '../test/helpers/registry.js';
import { startContainerd } from '../test/helpers/containerd.js';
import { defaultDaemonConfig, startDaemon, type Daemon } from '../test/helpers/daemon.js';
import { ingest } from '../test/helpers/lazy.js';
import { largeImageLayout, pushLayout, smallImageLayout, type CachedLayout } from './images.js';
import { STORE_DIR, memLayers } from './fixtures.js';
import { DaemonLayerMount, downloadedLayers, lazyFirstOutput, lazyPull, logSample, overlayFirstOutput, overlayPull } from './cases.js';
import { containers } from './container-section.js';
import { fileSystem } from './fs-section.js';
import { ensurePeers, PEER_NAMES } from './peers.js';
import { rssMb } from './proc.js';
import { Results } from './results.js';
import { scale } from './scale-section.js';
import { pullCommand, restMemory } from './startup.js';
import { log, median, nowMs, summarize } from './stats.js';
import { fmt, ratioChartSvg, table, targetsTable, writeOutputs } from './report.js';

const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
const SECTIONS = ['pull', 'first', 'fs', 'mem', 'container', 'scale'] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, layers: { type: 'string' } } });
const quick = values.quick ?? false;
const requested = values.only?.split(',') ?? [...SECTIONS];
const unknown = requested.filter((s) => !(SECTIONS as readonly string[]).includes(s));
if (unknown.length > 0) throw new Error(`--only ${unknown.join(',')}: expected sections among ${SECTIONS.join(', ')}`);
const only = new Set<Section>(requested as Section[]);
const SCALE_LAYERS = Number(values.layers ?? 5000);
if (!Number.isSafeInteger(SCALE_LAYERS) || SCALE_LAYERS < 1) throw new Error(`--layers ${values.layers}: expected a positive integer`);
const REPS = quick ? 2 : 5;
const LARGE_REPS = quick ? 2 : 3;
const FS_REPS = quick ? 2 : 4;
const CONTAINER_REPS = quick ? 2 : 4;

const started = nowMs();
const res = new Results();
const { raw, ratios, notes } = res;
const addRow = res.addRow.bind(res);

async function imageSizes(store: string, c: CachedLayout): Promise<{ layers: number; unpackedBytes: number; compressedBytes: number }> {
  let unpacked = 0;
  for (const l of c.image.layers) {
    const hex = l.digest.slice('sha256:'.length);
    const r = await execOk('du', ['-sb', join(store, '.layers', hex.slice(0, 2), hex, 'layerfs')]);
    unpacked += Number(r.stdout.split('\t')[0]);
  }
  return { layers: c.image.layers.length, unpackedBytes: unpacked, compressedBytes: c.image.layers.reduce((s, l) => s + l.size, 0) };
}

/** The sections that need containerd: pull, first output, containers. */
async function withContainerd(scope: Scope): Promise<void> {
  const small = await smallImageLayout();
  const large = only.has('pull') ? await largeImageLayout() : undefined;
  const registry = await startRegistry(scope);
  const smallRef = await pushLayout(small, registry, 'bench/debian-python');
  const largeRef = large ? await pushLayout(large, registry, 'bench/large') : undefined;
  const t0 = nowMs();
  await ingest(STORE_DIR, smallRef, ...(largeRef ? [largeRef] : []));
  log(`images pushed and in the store (ingest ${((nowMs() - t0) / 1000).toFixed(1)} s)`);
  raw.images = { small: { ref: smallRef, ...(await imageSizes(STORE_DIR, small)) }, ...(large ? { large: { ref: largeRef, ...(await imageSizes(STORE_DIR, large)) } } : {}) };

  const daemon = await startDaemon(scope, { configToml: defaultDaemonConfig(STORE_DIR), logLevel: 'warn' });
  const ctd = await startContainerd(scope, { criEnabled: true, snapshotterSocket: daemon.socket, registries: [registry] });

  // Every layer must really stay lazy, or the comparison means nothing.
  await lazyPull(ctd, smallRef);
  const fetched = await downloadedLayers(ctd, small.image.layers.map((l) => l.digest));
  if (fetched.length > 0) throw new Error(`the lazy pull downloaded ${fetched.join(', ')}`);

  if (only.has('pull')) {
    const pull: Record<string, { overlayMs: number[]; lazyMs: number[] }> = {};
    for (const [name, ref, reps] of [['small', smallRef, REPS], ['large', largeRef, LARGE_REPS]] as const) {
      if (ref === undefined) continue;
      const s = { overlayMs: [] as number[], lazyMs: [] as number[] };
      for (let i = 0; i < reps; i++) {
        s.overlayMs.push(await overlayPull(ctd, ref));
        logSample(`pull ${name} overlayfs`, s.overlayMs.at(-1) as number, 'ms');
        // Lazy pulls are cheap and short (tens of ms), so noisier: three per overlayfs pull.
        for (let j = 0; j < 3; j++) {
          s.lazyMs.push(await lazyPull(ctd, ref));
          logSample(`pull ${name} lazy`, s.lazyMs.at(-1) as number, 'ms');
        }
      }
      if (name === 'large' && large) {
        const f = await downloadedLayers(ctd, large.image.layers.map((l) => l.digest));
        if (f.length > 0) throw new Error(`the lazy pull of the large image downloaded ${f.length} layers`);
      }
      pull[name] = s;
      addRow(`pull ${name} (ms)`, s.overlayMs, s.lazyMs, 'overlayfs / lazy', median(s.overlayMs) / median(s.lazyMs));
    }
    raw.pull = pull;
    // Issue 11: the command a person types, as a whole process.
    const cmd = await pullCommand(ctd, smallRef, REPS);
    raw.pull_command = cmd;
    ratios.pull_command_wall_s = median(cmd.commandMs) / 1000;
    ratios.pull_command_node_start_s = median(cmd.nodeStartMs) / 1000;
    if (pull.small) ratios.pull_command_vs_ctr_pull = median(pull.small.overlayMs) / median(cmd.commandMs);
    addRow('pull command, whole process: node -e 0 / cvmfs-snapshotter pull (ms)', cmd.nodeStartMs, cmd.commandMs, 'node start / command', median(cmd.nodeStartMs) / median(cmd.commandMs));
    if (pull.small) ratios.pull_speedup_small = median(pull.small.overlayMs) / median(pull.small.lazyMs);
    if (pull.large) ratios.pull_speedup_large = median(pull.large.overlayMs) / median(pull.large.lazyMs);
    if (pull.small && pull.large) ratios.lazy_pull_growth = median(pull.large.lazyMs) / median(pull.small.lazyMs);
  }

  if (only.has('first')) {
    const s = { overlayMs: [] as number[], lazyMs: [] as number[] };
    for (let i = 0; i < REPS; i++) {
      s.overlayMs.push(await overlayFirstOutput(ctd, smallRef));
      logSample('first output overlayfs', s.overlayMs.at(-1) as number, 'ms');
      s.lazyMs.push(await lazyFirstOutput(ctd, smallRef));
      logSample('first output lazy', s.lazyMs.at(-1) as number, 'ms');
    }
    raw.first_output = s;
    ratios.first_output_speedup = median(s.overlayMs) / median(s.lazyMs);
    addRow('pull+run python hello (ms)', s.overlayMs, s.lazyMs, 'overlayfs / lazy', ratios.first_output_speedup);
  }
  if (only.has('container')) await containers(scope, ctd, daemon, res, { reps: CONTAINER_REPS, ref: smallRef });
  await ctd.stop();
  await daemon.stop();
}

async function memory(daemon: Daemon): Promise<void> {
  const digests = await memLayers();
  const client = new SnapshotsClient(daemon.socket);
  const mounts = digests.map((d, i) => new DaemonLayerMount(client, daemon.root, `bench-mem-${i}`, d));
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1500));
  const rss: Record<string, number> = {};
  const fuseRss: Record<string, number> = {};
  // The layers live in the FUSE server process; both processes count.
  const measure = async (key: string): Promise<number> => {
    const fusePid = await daemon.fuseServerPid();
    const f = fusePid === undefined ? 0 : await rssMb(fusePid);
    fuseRss[key] = f;
    return (await rssMb(daemon.pid)) + f;
  };
  try {
    await settle();
    rss.idle = await measure('idle');
    // Issue 11: the daemon alone at rest (no snapshot yet), beside an idle node's floor.
    const rest = await restMemory(daemon.pid);
    ratios.daemon_rss_rest_mb = rest.rssMb;
    ratios.daemon_rss_anon_rest_mb = rest.anonMb;
    ratios.node_idle_rss_mb = rest.nodeIdleRssMb;
    log(`daemon at rest: ${fmt(rest.rssMb)} MiB RSS, ${fmt(rest.anonMb)} MiB of it anonymous; an idle node: ${fmt(rest.nodeIdleRssMb)} MiB`);
    let n = 0;
    const registerMs: number[] = [];
    const mountMs: number[] = [];
    for (const target of [1, 10, 100]) {
      for (; n < target; n++) {
        const t1 = nowMs();
        await mounts[n]?.register();
        const t2 = nowMs();
        await mounts[n]?.mount();
        registerMs.push(t2 - t1);
        mountMs.push(nowMs() - t2);
      }
      await settle();
      rss[`layers_${target}`] = await measure(`layers_${target}`);
      log(`daemon + FUSE server RSS with ${target} layers mounted: ${fmt(rss[`layers_${target}`])} MiB (FUSE server ${fmt(fuseRss[`layers_${target}`] ?? 0)})`);
    }
    // Fill the metadata cache: stat every entry of every layer (100 x 2,000 entries, more than the default bound of 200,000 cache entries).
    const t0 = nowMs();
    for (const m of mounts) await execOk('sh', ['-c', 'find "$1" -printf "%s\\n" > /dev/null', 'sh', m.mountpoint]);
    const walkMs = nowMs() - t0;
    await settle();
    rss.layers_100_cache_full = await measure('layers_100_cache_full');
    log(`daemon RSS with 100 layers and a full metadata cache: ${fmt(rss.layers_100_cache_full)} MiB (walk ${fmt(walkMs)} ms)`);
    raw.memory = { daemonAtRest: rest, rssMb: rss, fuseServerRssMb: fuseRss, walk100LayersMs: walkMs, remotePrepareMs: summarize(registerMs), viewMountMs: summarize(mountMs) };
    addRow('remote Prepare (AlreadyExists) / View that mounts, over gRPC (ms)', registerMs, mountMs, 'Prepare / View', undefined);
    // The layers live in the FUSE server: its RSS is what 100 layers cost. The daemon's own RSS
    // does not grow with layers; the sum is reported beside it.
    ratios.rss_100_layers_mb = fuseRss.layers_100;
    ratios.rss_100_layers_with_daemon_mb = rss.layers_100;
    ratios.rss_100_layers_cache_full_mb = fuseRss.layers_100_cache_full;
    res.rows.push(['daemon + FUSE server RSS idle / 1 / 10 / 100 layers / +cache full (MiB)', [rss.idle, rss.layers_1, rss.layers_10, rss.layers_100, rss.layers_100_cache_full].map((x) => fmt(x)).join(' / '), '', 'MiB', '']);
  } finally {
    for (const m of mounts) await m.remove().catch(() => undefined);
    client.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark mounts file systems and drops caches: run it as root');
  const scope = await Scope.create('bench');
  let failure: unknown;
  try {
    if (only.has('pull') || only.has('first') || only.has('container')) await withContainerd(scope);
    if (only.has('fs') || only.has('mem')) {
      const peers = only.has('fs') ? await ensurePeers() : undefined;
      const daemon = await startDaemon(scope, { name: 'daemon-fs', configToml: defaultDaemonConfig(STORE_DIR), logLevel: 'warn' });
      if (only.has('mem')) await memory(daemon);
      if (peers) await fileSystem(scope, daemon, res, { reps: FS_REPS, quick, peers });
      await daemon.stop();
      await daemon.stopFuseServer();
    }
    if (only.has('scale')) await scale(scope, res, { layers: SCALE_LAYERS });
  } catch (err) {
    failure = err;
  }
  try {
    await scope.teardown();
  } catch (err) {
    failure ??= err;
  }
  if (failure !== undefined) throw failure;

  const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? '', kernel: release(), memoryGiB: Math.round(totalmem() / 2 ** 30), loadavgAtEnd: loadavg() };
  const json = {
    ...Object.fromEntries(Object.entries(ratios).filter(([, v]) => v !== undefined)),
    peers: res.peers,
    date: new Date().toISOString(),
    quick,
    sections: [...only],
    durationS: Math.round((nowMs() - started) / 1000),
    machine,
    notes,
    samples: raw,
  };
  const resultsTable = table(['case', 'baseline: median ±MAD [min..max]', 'candidate: median ±MAD [min..max]', 'ratio is', 'ratio'], res.rows);
  const peersTable = res.peerRows.length === 0 ? [] : [
    'File system cases, the same layer directory served four ways; median ±MAD, (xN) = ratio to bind\'s median (times: x2 = twice as slow; throughputs: 0.5 = half as fast).',
    '',
    table(['case', 'bind (read-only)', 'product', 'go-fuse loopback', 'passthrough_hp'], res.peerRows),
    '',
  ];
  const md = [
    `Run of ${json.date.slice(0, 16).replace('T', ' ')} UTC${quick ? ' (--quick)' : ''}, ${machine.cores} cores (${machine.cpu}), kernel ${machine.kernel}, ${json.durationS} s.`,
    '',
    targetsTable(ratios),
    '',
    ...peersTable,
    ...(res.rows.length === 0 ? [] : [resultsTable, '']),
    ...notes.map((n) => `Note: ${n}`),
  ].join('\n');
  const partial = only.size < SECTIONS.length;
  if (partial) {
    // A partial run must not replace the complete result the README describes.
    const file = join(BENCH_DIR, 'results', `partial-${[...only].join('-')}.json`);
    await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
    process.stdout.write(`\n${md}\n\nwrote ${file} (partial run: latest.json and the README are left alone)\n`);
    return;
  }
  const peerValue = (key: string, peer: (typeof PEER_NAMES)[number]): number | undefined => {
    const c = res.peers[key.replace(/_ratio$/, '')] as Record<string, { ratio?: number } | undefined> | undefined;
    return c?.[peer]?.ratio;
  };
  await writeOutputs(BENCH_DIR, json, ratioChartSvg(ratios, peerValue, `cvmfs-snapshotter bench ${json.date.slice(0, 10)}${quick ? ' (quick)' : ''}`), md);
  process.stdout.write(`\n${md}\n\nwrote bench/results/latest.json, bench/results/ratios.svg\n`);
}

await main();
