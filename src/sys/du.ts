// Disk usage of a directory tree the way containerd counts it (fs.DiskUsage): allocated
// blocks, and each inode once however many hard links reach it. Never follows symlinks.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface DiskUsage {
  size: number;
  inodes: number;
}

export async function diskUsage(dir: string): Promise<DiskUsage> {
  const seen = new Set<string>();
  let size = 0;
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    size += st.blocks * 512;
    if (!st.isDirectory()) return;
    for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(dir);
  return { size, inodes: seen.size };
}
