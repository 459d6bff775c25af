// `node dist/bench/memory.js [--cache-bytes N] [--json FILE]`: the FUSE server's memory on the
// two workloads that outgrow any metadata cache, each on a fresh server process of its own:
//   - 120,000 lookups of distinct missing 240-byte names in a directory whose path is ~3,000
//     bytes (a negative entry per name, each costing its whole path);
//   - walks (listdir, then lstat of every name) of a 100,000-entry directory, the second after
//     the kernel's dentries and inodes were dropped, so that the server answers it again.
// It prints the server's VmRSS and the cache's bytes along the way. Runs as root (FUSE); needs
// no containerd. Everything lives in one temp directory, removed at the end.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CacheStats } from '../src/cache/index.js';
import { DEFAULT_CACHE_BYTES } from '../src/fuse/tuning.js';
import { exec } from '../src/sys/exec.js';
import { Scope } from '../test/helpers/scope.js';
import {
  MiB, buildBigDir, buildDeepLayer, dropDentries, mib, missingLookups, peakRssKb, rssKb, startMemoryServer, storeLayerDir, type ServerUnderTest,
} from '../test/helpers/memory-load.js';
import { log, nowMs } from './stats.js';

const { values } = parseArgs({ options: { 'cache-bytes': { type: 'string' }, json: { type: 'string' } } });
const cacheBytes = values['cache-bytes'] === undefined ? DEFAULT_CACHE_BYTES : Number(values['cache-bytes']);
if (!Number.isSafeInteger(cacheBytes) || cacheBytes < MiB) throw new Error(`--cache-bytes must be an integer of at least ${MiB}, got ${String(values['cache-bytes'])}`);

const LOOKUPS = 120_000;
const ENTRIES = 100_000;

interface Sample {
  what: string;
  rssMiB: number;
  cacheMiB: number;
  entries: number;
  evictions: number;
}

const samples: { case: string; samples: Sample[]; peakMiB: number; seconds: number }[] = [];

async function sample(s: ServerUnderTest, what: string): Promise<Sample> {
  await s.client.metrics();
  const c: CacheStats = s.client.cacheStats();
  const x = { what, rssMiB: Number(mib(await rssKb(s.process.pid), 'kB')), cacheMiB: Number(mib(c.bytes, 'bytes')), entries: c.size, evictions: c.evictions };
  log(`${what}: RSS ${x.rssMiB} MiB, cache ${x.cacheMiB} MiB (${x.entries} entries, ${x.evictions} evictions)`);
  return x;
}

async function withServer(scope: Scope, name: string, fn: (s: ServerUnderTest, root: string) => Promise<Sample[]>): Promise<void> {
  const root = await scope.mkdir(name, 'root');
  const s = await startMemoryServer(scope, { name: `${name}-server`, root, store: scope.path('store'), cacheBytes });
  const t0 = nowMs();
  try {
    const out = await fn(s, root);
    const peakMiB = Number(mib(await peakRssKb(s.process.pid), 'kB'));
    samples.push({ case: name, samples: out, peakMiB, seconds: (nowMs() - t0) / 1000 });
  } finally {
    await s.stop();
  }
}

const WALK_PY = String.raw`
import os, sys
d = sys.argv[1]
names = os.listdir(d)
for n in names: os.lstat(os.path.join(d, n))
print(len(names))
`;

async function walk(dir: string): Promise<void> {
  const r = await exec('/usr/bin/python3', ['-c', WALK_PY, dir], { timeoutMs: 15 * 60_000 });
  if (r.code !== 0 || Number(r.stdout.trim()) !== ENTRIES) throw new Error(`the walk of ${dir} failed (exit ${String(r.code)}, ${r.stdout.trim()} names): ${r.stderr.trim()}`);
}

const scope = await Scope.create('bench-memory');
try {
  const store = await scope.mkdir('store');
  log(`building the layers in ${scope.dir}`);
  const deepLayer = storeLayerDir(store, 'd1');
  const tree = await buildDeepLayer(deepLayer, 1000);
  const bigLayer = storeLayerDir(store, 'b1');
  await buildBigDir(join(bigLayer, 'big'), ENTRIES);

  await withServer(scope, 'negative-lookups', async (s, root) => {
    const mnt = join(root, 'mnt');
    await s.client.mount(deepLayer, mnt);
    const out = [await sample(s, 'before')];
    await missingLookups(join(mnt, tree.deep), LOOKUPS, 10_000, 240, async (n) => { out.push(await sample(s, `${n} lookups`)); });
    out.push(await sample(s, `${LOOKUPS} lookups`));
    await s.client.unmount(mnt);
    return out;
  });

  await withServer(scope, 'big-directory-walk', async (s, root) => {
    const mnt = join(root, 'mnt');
    await s.client.mount(bigLayer, mnt);
    const out = [await sample(s, 'before')];
    await walk(join(mnt, 'big'));
    out.push(await sample(s, 'after a walk'));
    await dropDentries();
    await walk(join(mnt, 'big'));
    out.push(await sample(s, 'after a second walk, kernel caches dropped'));
    await s.client.unmount(mnt);
    return out;
  });
} finally {
  await scope.teardown();
}

const lines = [
  `FUSE server memory, --cache-bytes ${cacheBytes} (${mib(cacheBytes, 'bytes')} MiB)`,
  '',
  '| case | point | VmRSS (MiB) | cache (MiB) | entries | evictions |',
  '|---|---|---|---|---|---|',
];
for (const c of samples) {
  for (const s of c.samples) lines.push(`| ${c.case} | ${s.what} | ${s.rssMiB} | ${s.cacheMiB} | ${s.entries} | ${s.evictions} |`);
  lines.push(`| ${c.case} | peak (VmHWM), ${c.seconds.toFixed(1)} s in all | ${c.peakMiB} | | | |`);
}
process.stdout.write(`${lines.join('\n')}\n`);
if (values.json) await writeFile(values.json, `${JSON.stringify({ cacheBytes, date: new Date().toISOString(), cases: samples }, null, 2)}\n`);
