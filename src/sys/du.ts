// A du-like walk for Usage. It never follows symlinks (lstat only) and counts each inode once,
// the way containerd's continuity fs.DiskUsage does, so a remote snapshot reports the same kind
// of number as an overlayfs one.
import { existsSync } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../errors.js';
import { exec } from './exec.js';

export interface DiskUsage {
  /** Bytes allocated on disk (st_blocks * 512), summed over distinct inodes. */
  size: number;
  /** Sum of st_size over distinct inodes: what the files hold. */
  apparentSize: number;
  /** Distinct inodes, the root directory included. */
  inodes: number;
}

// Stat this many directory entries at once: enough to hide latency on a network file system
// without opening thousands of requests for one huge directory.
const STAT_BATCH = 64;

export async function diskUsage(root: string): Promise<DiskUsage> {
  try {
    return await walk(root);
  } catch (err) {
    if (errnoCode(err) !== 'ENAMETOOLONG') throw err;
  }
  return duUsage(root);
}

async function walk(root: string): Promise<DiskUsage> {
  const seen = new Set<string>();
  const total: DiskUsage = { size: 0, apparentSize: 0, inodes: 0 };
  const pending: string[] = [root];

  const account = async (p: string): Promise<boolean> => {
    const st = await lstat(p, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return false;
    seen.add(key);
    total.inodes++;
    total.size += Number(st.blocks) * 512;
    total.apparentSize += Number(st.size);
    return st.isDirectory();
  };

  if (!(await account(root))) return total;
  while (pending.length > 0) {
    const dir = pending.pop() as string;
    const names: string[] = [];
    for await (const entry of await opendir(dir)) names.push(entry.name);
    for (let i = 0; i < names.length; i += STAT_BATCH) {
      const batch = names.slice(i, i + STAT_BATCH).map((n) => path.join(dir, n));
      const isDir = await Promise.all(batch.map(account));
      batch.forEach((p, j) => { if (isDir[j]) pending.push(p); });
    }
  }
  return total;
}

/**
 * The same three numbers from GNU du, for a tree deeper than a path can name (PATH_MAX): du walks
 * by descriptors. Like the walk, it counts each inode once and follows no symlink.
 */
export async function duUsage(root: string): Promise<DiskUsage> {
  const du = async (flag: string): Promise<number> => {
    const r = await exec('du', ['--summarize', flag, '--', root]);
    const v = /^(\d+)\t/.exec(r.stdout);
    if (r.code !== 0 || !v) {
      const err = new Error(`du ${flag} ${root} (deeper than PATH_MAX) failed: ${r.signal ?? `exit ${String(r.code)}`}: ${r.stderr.trim()}`);
      // Removed meanwhile (a Remove racing the Usage): ENOENT, as the walk would say.
      throw existsSync(root) ? err : Object.assign(err, { code: 'ENOENT' });
    }
    return Number(v[1]);
  };
  return { size: await du('--block-size=1'), apparentSize: await du('--bytes'), inodes: await du('--inodes') };
}
