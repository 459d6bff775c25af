// The mounts of this mount namespace (/proc/self/mountinfo), and unmounting what is left under a directory.
import { readFileSync } from 'node:fs';
import { exec } from '../../src/sys/exec.js';

export interface MountEntry {
  id: number;
  parentId: number;
  root: string;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 4) throw new Error(`unparsable mountinfo line: ${line}`);
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      root: unescapeOctal(f[3] ?? ''),
      mountPoint: unescapeOctal(f[4] ?? ''),
      options: f[5] ?? '',
      fsType: f[sep + 1] ?? '',
      source: unescapeOctal(f[sep + 2] ?? ''),
      superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

export function listMounts(): MountEntry[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

function isUnder(path: string, dir: string): boolean {
  const d = dir.endsWith('/') ? dir : `${dir}/`;
  return path === dir || path.startsWith(d);
}

/** Mounts whose mount point is dir or below it, in mount order (the last one is on top). */
export function mountsUnder(dir: string): MountEntry[] {
  return listMounts().filter((m) => isUnder(m.mountPoint, dir));
}

export function describeMount(m: MountEntry): string {
  return `${m.mountPoint} (${m.fsType} from ${m.source}, ${m.superOptions})`;
}

/**
 * Unmounts everything under dir, topmost first; a busy mount is detached lazily.
 * Returns the mounts that were found (empty if there was nothing to do).
 */
/**
 * Mounts elsewhere that stand on dir: an overlay whose lower, upper or work directory lies in it
 * (containerd's temporary mounts in /tmp, left behind when containerd is killed in the middle of
 * using one).
 */
export function mountsReferencing(dir: string): MountEntry[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return listMounts().filter((m) => !m.mountPoint.startsWith(prefix) && m.fsType === 'overlay'
    && /(?:^|,)(?:lowerdir|upperdir|workdir)=/.test(m.superOptions) && m.superOptions.includes(prefix));
}

export async function unmountAllUnder(dir: string): Promise<MountEntry[]> {
  const found = [...mountsReferencing(dir), ...mountsUnder(dir)];
  for (const m of mountsReferencing(dir).reverse()) {
    const r = await exec('umount', [m.mountPoint]);
    if (r.code !== 0) await exec('umount', ['-l', m.mountPoint]);
  }
  for (let pass = 0; pass < 10; pass++) {
    const left = mountsUnder(dir).reverse();
    if (left.length === 0) return found;
    for (const m of left) {
      const r = await exec('umount', [m.mountPoint]);
      if (r.code !== 0) await exec('umount', ['-l', m.mountPoint]);
    }
  }
  const stuck = mountsUnder(dir);
  if (stuck.length > 0) throw new Error(`cannot unmount under ${dir}: ${stuck.map(describeMount).join('; ')}`);
  return found;
}
