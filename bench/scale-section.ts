// The `scale` section: one FUSE server holding thousands of idle layer mounts, as a node with
// many images would. The server the daemon starts is driven directly over its control socket
// (the daemon's own client, RemoteLayerMounter), so the case needs nothing but that socket's
// mount and unmount and works unchanged with any server that keeps the contract. A server that
// cannot take them all is a result, not a crash: the case reports how far it got and the error.
// Every mount is taken down at the end, by the server if it still answers, else by umount.
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RemoteLayerMounter } from '../src/fuse/server/client.js';
import { silentLogger } from '../src/log.js';
import { defaultDaemonConfig, startDaemon } from '../test/helpers/daemon.js';
import { unmountAllUnder } from '../test/helpers/mounts.js';
import { withTimeout } from '../test/helpers/process.js';
import type { Scope } from '../test/helpers/scope.js';
import { SCALE_FILE, STORE_DIR, layerPath, scaleLayers } from './fixtures.js';
import { rssMb, threadCount } from './proc.js';
import { fmt } from './report.js';
import type { Results } from './results.js';
import { log, nowMs } from './stats.js';

export interface ScaleOptions {
  layers: number;
}

/** A call to a server that has stopped answering must not stall the bench. */
async function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const v = await withTimeout(p.then((x) => ({ x })), ms);
  if (v === undefined) throw new Error(`${what}: no answer within ${ms / 1000} s`);
  return v.x;
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1500));

export async function scale(scope: Scope, res: Results, o: ScaleOptions): Promise<void> {
  const t0 = nowMs();
  const digests = await scaleLayers(o.layers);
  log(`scale: ${o.layers} layers in the store (${fmt((nowMs() - t0) / 1000)} s)`);
  const daemon = await startDaemon(scope, { name: 'daemon-scale', configToml: defaultDaemonConfig(STORE_DIR), logLevel: 'warn' });
  const pid = await daemon.fuseServerPid();
  if (pid === undefined) throw new Error(`no FUSE server pid file at ${daemon.fuseSocket}.pid`);
  // The daemon has connected to the server; it must not matter that we are a second client.
  const mounter = new RemoteLayerMounter({ socket: daemon.fuseSocket, log: silentLogger(), startServer: () => undefined, startTimeoutMs: 5000 });
  // The server mounts only below the daemon's root (its scope), as the daemon itself does.
  const base = join(daemon.root, 'scale');
  await mkdir(base, { recursive: true });
  const mounted: string[] = [];
  let error: string | undefined;
  let mountMs = 0;
  let lookupAllMs = 0;
  let answered = 0;
  try {
    await settle();
    const rss0 = await rssMb(pid);
    const threads0 = await threadCount(pid);
    const t1 = nowMs();
    for (let i = 0; i < o.layers; i++) {
      const mp = join(base, String(i));
      try {
        await deadline(mounter.mount(layerPath(digests[i] as string), mp), 60_000, `mount of layer ${i + 1}`);
        mounted.push(mp);
        // A lookup the server must answer: the layer's one file.
        await deadline(stat(join(mp, SCALE_FILE)), 30_000, `stat in layer ${i + 1}`);
      } catch (err) {
        error = `layer ${i + 1} of ${o.layers}: ${err instanceof Error ? err.message : String(err)}`;
        log(`scale: stopped at ${error}`);
        break;
      }
      if ((i + 1) % 500 === 0) log(`scale: ${i + 1} layers mounted, ${fmt((nowMs() - t1) / 1000)} s, ${await threadCount(pid)} threads, ${fmt(await rssMb(pid))} MiB`);
    }
    mountMs = nowMs() - t1;
    // Every mount still answers: a name never asked before, so the kernel must ask the server.
    const t2 = nowMs();
    for (const mp of mounted) {
      try {
        await deadline(stat(join(mp, 'absent')), 30_000, `lookup in ${mp}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') answered++;
        else { error ??= `lookup after mounting: ${err instanceof Error ? err.message : String(err)}`; break; }
      }
    }
    lookupAllMs = nowMs() - t2;
    await settle();
    const rssN = await rssMb(pid);
    const threadsN = await threadCount(pid);
    const n = mounted.length;
    const r = res.ratios;
    r.scale_layers_mounted = n;
    r.scale_threads = threadsN;
    r.scale_rss_0_layers_mb = rss0;
    r.scale_rss_n_layers_mb = rssN;
    r.scale_rss_per_layer_kib = n > 0 ? ((rssN - rss0) * 1024) / n : undefined;
    r.scale_mount_s = mountMs / 1000;
    res.rows.push([`one FUSE server, ${n} of ${o.layers} idle layers mounted${error ? ' (stopped: see notes)' : ''}: RSS 0 / N layers (MiB), per layer (KiB)`,
      fmt(rss0), `${fmt(rssN)}, ${fmt(r.scale_rss_per_layer_kib)} KiB/layer`, 'MiB', '']);
    res.rows.push([`  threads with 0 / ${n} layers; mounting took (s); a lookup in each (ms)`, `${threads0}`, `${threadsN}; ${fmt(mountMs / 1000)} s; ${fmt(lookupAllMs)} ms`, '', '']);
    if (error) res.notes.push(`scale: the FUSE server took ${n} of ${o.layers} layers; ${error}`);
    res.raw.scale = { requested: o.layers, mounted: n, answeredLookup: answered, error, rss0Mb: rss0, rssNMb: rssN, threads0, threadsN, mountMs, lookupAllMs };
  } finally {
    let failedUnmounts = 0;
    for (const mp of mounted.reverse()) {
      try { await deadline(mounter.unmount(mp), 30_000, `unmount of ${mp}`); } catch { failedUnmounts++; }
    }
    await mounter.disconnect();
    // Whatever the server could not take down (or mounted before it failed) goes by umount.
    const left = await unmountAllUnder(base);
    if (left.length > 0 || failedUnmounts > 0) res.notes.push(`scale: ${failedUnmounts} unmounts through the server failed; ${left.length} mounts were removed with umount`);
    await daemon.stop();
    await daemon.stopFuseServer();
  }
}
