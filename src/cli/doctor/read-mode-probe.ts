// The I/O half of the read-mode check: a probe mount of the layer filesystem, made and removed
// here. A file read through it (by a child process: this process serves the mount) tells
// whether the kernel passed the read through to the store, or asked the server.
import { lstat, mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FuseLayerMounter, NO_OBSERVER, type FuseObserver } from '../../fuse/index.js';
import { silentLogger } from '../../log.js';
import { exec } from '../../sys/exec.js';
import type { ReadModeFacts } from './read-mode.js';

export interface ReadModeProbeOptions {
  enabled: boolean;
  /** The layer store's root (trusted, as the daemon opens it). */
  store?: string;
  /** A layerfs directory of the store to try a file of. */
  sampleLayer?: string;
}

/** The smallest regular file within the first entries of a layer, found without following links. */
async function smallFileIn(dir: string, budget = 2000): Promise<string | undefined> {
  const queue = [dir];
  let best: { path: string; size: number } | undefined;
  let seen = 0;
  while (queue.length > 0 && seen < budget) {
    const d = queue.shift() as string;
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (++seen > budget) break;
      const p = path.join(d, e.name);
      if (e.isDirectory()) queue.push(p);
      else if (e.isFile() && !e.name.startsWith('.wh.')) {
        const { size } = await lstat(p).catch(() => ({ size: Infinity }));
        if (!best || size < best.size) best = { path: p, size };
      }
    }
  }
  return best?.path;
}

export async function probeReadMode(o: ReadModeProbeOptions): Promise<ReadModeFacts> {
  if (!o.enabled) return { state: 'disabled' };
  if ((process.getuid?.() ?? -1) !== 0) return { state: 'skipped', why: 'mounting needs root' };
  const fallbacks: string[] = [];
  const observer: FuseObserver = { ...NO_OBSERVER, passthroughFallback: (r) => { fallbacks.push(r); } };
  const tmp = await mkdtemp(path.join(tmpdir(), 'cvmfs-doctor-'));
  const mounter = new FuseLayerMounter({ log: silentLogger(), observer, ...(o.store ? { store: o.store } : {}) });
  try {
    const layer = path.join(tmp, 'layer');
    await mkdir(layer);
    await writeFile(path.join(layer, 'probe'), 'probe\n');
    await mounter.mount(layer, path.join(tmp, 'mnt'));
    const kernel = mounter.counters().passthrough === 1;
    if (!kernel || !o.sampleLayer) return { state: 'probed', kernel };
    const file = await smallFileIn(o.sampleLayer);
    if (!file) return { state: 'probed', kernel };
    const mnt = path.join(tmp, 'store-layer');
    await mounter.mount(o.sampleLayer, mnt);
    const before = fallbacks.length;
    const r = await exec('head', ['-c', '1', path.join(mnt, path.relative(o.sampleLayer, file))], { timeoutMs: 60_000 });
    if (r.code !== 0) return { state: 'probe-failed', error: `reading ${file} through a probe mount: ${r.stderr.trim() || `exit ${String(r.code)}`}` };
    const refused = fallbacks.slice(before)[0];
    return { state: 'probed', kernel, storeFile: { path: file, passthrough: refused === undefined, ...(refused ? { refusedWith: refused } : {}) } };
  } catch (err) {
    return { state: 'probe-failed', error: err instanceof Error ? err.message : String(err) };
  } finally {
    await mounter.close();
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}
