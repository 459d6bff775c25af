// Where the repository is, found from this file whether it runs from dist/ or not.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const parsed: unknown = JSON.parse(readFileSync(pkg, 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === 'cvmfs-snapshotter') return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`no cvmfs-snapshotter package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const repoRoot = findRepoRoot();
export const daemonBin = join(repoRoot, 'bin', 'cvmfs-snapshotter');
