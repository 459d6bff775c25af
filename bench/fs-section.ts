// The `fs` section: one layer directory served four ways at once (a read-only bind mount, the
// product's FUSE server, the go-fuse loopback, libfuse's passthrough_hp), each case run over all
// of them in alternating order within every round so that background load hits all alike.
// Ratios are to bind's median in the same run.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { execOk } from '../src/sys/exec.js';
import { SnapshotsClient } from '../src/server/client.js';
import type { Daemon } from '../test/helpers/daemon.js';
import type { Scope } from '../test/helpers/scope.js';
import { DaemonLayerMount, SERVERS, countEntries, emptyFsSamples, fsRound, type FsSamples, type FsTarget, type ServerLabel } from './cases.js';
import { BIG_FILE, BIG_FILE_BYTES, FUSE_LAYER_DIGEST, fuseLayer } from './fixtures.js';
import { PeerMount } from './peer-mount.js';
import { PEER_NAMES, type PeerBuild, type PeerName } from './peers.js';
import { fmt } from './report.js';
import type { Results } from './results.js';
import { dropCaches, log, median, nowMs, summarize } from './stats.js';

export interface FsOptions {
  reps: number;
  quick: boolean;
  peers: Record<PeerName, PeerBuild>;
}

type Field = keyof FsSamples | 'lookupUs';

interface CaseDef {
  /** Key under latest.json `peers`. */
  key: string;
  what: string;
  unit: string;
  better: 'lower' | 'higher';
  field: Field;
}

const FUSE_SERVERS = ['product', ...PEER_NAMES] as const;
const COLUMN: Record<ServerLabel, string> = { bind: 'bind', product: 'product', gofuse: 'go-fuse', passthrough_hp: 'passthrough_hp' };

/** Round i visits the servers starting from the i-th, so none is always first after a cache drop. */
function rotate<T>(xs: readonly T[], i: number): T[] {
  const k = xs.length === 0 ? 0 : i % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** µs per stat() of names that do not exist: each is one uncached LOOKUP round trip. */
function lookupUs(dir: string, tag: string): number {
  const n = 5000;
  const t = nowMs();
  for (let i = 0; i < n; i++) { try { statSync(join(dir, `absent-${tag}-${i}`)); } catch { /* ENOENT expected */ } }
  return ((nowMs() - t) * 1000) / n;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 500) ?? '';

export async function fileSystem(scope: Scope, daemon: Daemon, res: Results, o: FsOptions): Promise<void> {
  const layerDir = await fuseLayer();
  const client = new SnapshotsClient(daemon.socket);
  const product = new DaemonLayerMount(client, daemon.root, 'bench-fuse-layer', FUSE_LAYER_DIGEST);
  const bindDir = await scope.mkdir('bind');
  const peers = new Map<PeerName, PeerMount>();
  /** Servers left out, with the reason: not built, did not start, served a different tree, failed mid-run. */
  const missing = new Map<ServerLabel, string>();
  try {
    await product.register();
    await product.mount();
    await execOk('mount', ['--bind', layerDir, bindDir]);
    await execOk('mount', ['-o', 'remount,bind,ro', bindDir]);
    for (const name of PEER_NAMES) {
      const b = o.peers[name];
      if ('missing' in b) { missing.set(name, `not built: ${b.missing}`); continue; }
      const pm = new PeerMount(name, b.binary, layerDir, await scope.mkdir(`peer-${name}`), scope.path(`peer-${name}.log`));
      try {
        await pm.start();
        peers.set(name, pm);
      } catch (err) {
        missing.set(name, `did not start: ${message(err)}`);
        await pm.stop();
      }
    }

    let remounted = 0;
    const targets: FsTarget[] = [
      { label: 'bind', dir: () => bindDir, makeCold: dropCaches },
      {
        label: 'product',
        dir: () => product.mountpoint,
        // Removing the View unmounts the layer; a new View mounts it again with fresh caches.
        makeCold: async () => {
          await product.unmount();
          if (!product.isMounted()) remounted++;
          await product.mount();
          await dropCaches();
        },
        serverPid: () => daemon.fuseServerPid(),
      },
      ...[...peers.values()].map((pm): FsTarget => ({
        label: pm.name,
        dir: () => pm.mountpoint,
        makeCold: async () => { await pm.restart(); await dropCaches(); },
        serverPid: () => Promise.resolve(pm.pid),
      })),
    ];
    const drop = async (label: ServerLabel, reason: string): Promise<void> => {
      log(`fs: leaving ${label} out: ${reason}`);
      missing.set(label, reason);
      const i = targets.findIndex((t) => t.label === label);
      if (i >= 0) targets.splice(i, 1);
      await peers.get(label as PeerName)?.stop();
    };

    const entries = await countEntries(bindDir);
    const dirs = Number((await execOk('sh', ['-c', 'find "$1" -type d | wc -l', 'sh', bindDir])).stdout.trim());
    for (const t of [...targets]) {
      if (t.label === 'bind') continue;
      const n = await countEntries(t.dir());
      if (n !== entries) {
        if (t.label === 'product') throw new Error(`find sees ${n} entries over the product's FUSE layer but ${entries} over the bind mount`);
        await drop(t.label, `find sees ${n} entries, bind ${entries}`);
      }
    }

    const s = Object.fromEntries(SERVERS.map((l) => [l, emptyFsSamples()])) as Record<ServerLabel, FsSamples>;
    const lookup = Object.fromEntries(SERVERS.map((l) => [l, [] as number[]])) as Record<ServerLabel, number[]>;
    for (let i = 0; i < o.reps; i++) {
      for (const t of rotate(targets, i)) lookup[t.label].push(lookupUs(t.dir(), `${Date.now()}-${i}`));
    }
    log(`fs: lookup round trip ${targets.map((t) => `${t.label} ${fmt(median(lookup[t.label]))} µs`).join(', ')}`);

    const layout = { bigFile: BIG_FILE, bigBytes: BIG_FILE_BYTES, randCold: o.quick ? 2000 : 4000, randWarm: 20000 };
    for (let i = 0; i < o.reps; i++) {
      for (const t of rotate(targets, i)) {
        try {
          await fsRound(t, s[t.label], layout);
        } catch (err) {
          // A peer that breaks is a finding, not a reason to lose the product's numbers.
          if (t.label === 'bind' || t.label === 'product') throw err;
          await drop(t.label, `failed in round ${i + 1}: ${message(err)}`);
          continue;
        }
        const x = s[t.label];
        log(`fs round ${i + 1}/${o.reps} ${t.label}: seq cold ${fmt(x.seqColdMBps.at(-1))} MB/s, walk cold ${fmt(x.walkColdMs.at(-1))} ms (server CPU ${fmt(x.walkColdServerCpuMs.at(-1))} ms), warm ${fmt(x.walkWarmMs.at(-1))} ms, python cold ${fmt(x.pythonColdMs.at(-1))} ms`);
      }
    }
    if (remounted === 0) res.notes.push('The FUSE layer stayed mounted when its View was removed, so "cold" product samples had a warm server cache.');
    // Only servers that finished every round count: a partial sample set would not have met the same load.
    for (const [label] of missing) { s[label] = emptyFsSamples(); lookup[label] = []; }

    const samples = (l: ServerLabel, f: Field): number[] => (f === 'lookupUs' ? lookup[l] : s[l][f]);
    const CASES: readonly CaseDef[] = [
      { key: 'lookup', what: 'stat() of a missing name: one LOOKUP round trip', unit: 'µs', better: 'lower', field: 'lookupUs' },
      { key: 'walk_cold', what: `find+stat ${entries} entries, cold`, unit: 'ms', better: 'lower', field: 'walkColdMs' },
      { key: 'walk_warm', what: `find+stat ${entries} entries, warm`, unit: 'ms', better: 'lower', field: 'walkWarmMs' },
      { key: 'walk_drop_only', what: 'find+stat, kernel caches dropped, server warm', unit: 'ms', better: 'lower', field: 'walkDropOnlyMs' },
      { key: 'python_cold', what: 'chroot python3 hello, cold', unit: 'ms', better: 'lower', field: 'pythonColdMs' },
      { key: 'python_warm', what: 'chroot python3 hello, warm', unit: 'ms', better: 'lower', field: 'pythonWarmMs' },
      { key: 'seq_read_cold', what: 'sequential read 512 MiB, cold', unit: 'MB/s', better: 'higher', field: 'seqColdMBps' },
      { key: 'seq_read_warm', what: 'sequential read 512 MiB, warm', unit: 'MB/s', better: 'higher', field: 'seqWarmMBps' },
      { key: 'rand_read_cold', what: `${layout.randCold} random 4 KiB reads, cold`, unit: 'reads/s', better: 'higher', field: 'randColdIops' },
      { key: 'rand_read_warm', what: `${layout.randWarm} random 4 KiB reads, warm`, unit: 'reads/s', better: 'higher', field: 'randWarmIops' },
    ];
    const ratio = (l: ServerLabel, f: Field): number | undefined => {
      const a = samples(l, f);
      const b = samples('bind', f);
      return a.length > 0 && b.length > 0 ? median(a) / median(b) : undefined;
    };
    const summaryCell = (xs: readonly number[], r?: number): string => {
      if (xs.length === 0) return '-';
      const m = summarize(xs);
      return `${fmt(m.median)} ±${(m.relMad * 100).toFixed(0)}%${r === undefined ? '' : ` (x${fmt(r)})`}`;
    };
    const serverCell = (l: ServerLabel, xs: readonly number[], r?: number): string => (missing.has(l) ? 'missing' : summaryCell(xs, r));
    for (const c of CASES) {
      const entry: Record<string, unknown> = { what: c.what, unit: c.unit, better: c.better, bind: { median: median(samples('bind', c.field)) } };
      for (const l of FUSE_SERVERS) {
        entry[l] = missing.has(l) ? { missing: missing.get(l) } : { median: median(samples(l, c.field)), ratio: ratio(l, c.field) };
      }
      res.peers[c.key] = entry;
      res.peerRows.push([`${c.what} (${c.unit})`, summaryCell(samples('bind', c.field)), ...FUSE_SERVERS.map((l) => serverCell(l, samples(l, c.field), ratio(l, c.field)))]);
    }
    const cpuEntry: Record<string, unknown> = { what: 'FUSE server CPU (utime+stime) during one cold walk', unit: 'ms', better: 'lower' };
    for (const l of FUSE_SERVERS) cpuEntry[l] = missing.has(l) ? { missing: missing.get(l) } : { median: median(s[l].walkColdServerCpuMs) };
    res.peers.server_cpu_walk = cpuEntry;
    res.peerRows.push(['server CPU per cold walk (ms)', '-', ...FUSE_SERVERS.map((l) => serverCell(l, s[l].walkColdServerCpuMs))]);

    const r = res.ratios;
    const peerKey = (key: string, l: PeerName): string => `${key}_${l}`;
    r.lookup_us = median(lookup.product);
    r.walk_cold_ratio = ratio('product', 'walkColdMs');
    r.server_cpu_walk_ms = median(s.product.walkColdServerCpuMs);
    for (const l of PEER_NAMES) {
      if (missing.has(l)) continue;
      r[peerKey('lookup_us', l)] = median(lookup[l]);
      r[peerKey('walk_cold_ratio', l)] = ratio(l, 'walkColdMs');
      r[peerKey('server_cpu_walk_ms', l)] = median(s[l].walkColdServerCpuMs);
    }
    r.walk_warm_ratio = ratio('product', 'walkWarmMs');
    r.python_cold_ratio = ratio('product', 'pythonColdMs');
    r.python_warm_ratio = ratio('product', 'pythonWarmMs');
    r.seq_read_cold_ratio = ratio('product', 'seqColdMBps');
    r.seq_read_warm_ratio = ratio('product', 'seqWarmMBps');
    r.rand_read_cold_ratio = ratio('product', 'randColdIops');
    r.rand_read_warm_ratio = ratio('product', 'randWarmIops');
    r.walk_drop_only_ratio = ratio('product', 'walkDropOnlyMs');
    // The names issue 4's runs wrote, kept for whoever reads older and newer results alike.
    r.rand_4k_cold_ratio = r.rand_read_cold_ratio;
    r.rand_4k_warm_ratio = r.rand_read_warm_ratio;
    r.python_chroot_cold_ratio = r.python_cold_ratio;
    r.python_chroot_warm_ratio = r.python_warm_ratio;
    for (const [l, why] of missing) res.notes.push(`${COLUMN[l]} is missing from the fs section: ${why}`);
    res.raw.fs = {
      entries, directories: dirs, bigFileBytes: BIG_FILE_BYTES, productRemountedForCold: remounted > 0,
      missing: Object.fromEntries(missing), lookupUs: lookup, samples: s,
    };
  } finally {
    await execOk('umount', [bindDir]).catch(() => undefined);
    for (const pm of peers.values()) await pm.stop().catch(() => undefined);
    await product.remove().catch(() => undefined);
    client.close();
  }
}
