// /proc/self/mountinfo, parsed. Paths there escape space, tab, newline and backslash as octal
// (\040 \011 \012 \134), and containerd keys put spaces in paths, so every path is unescaped.
import fs from 'node:fs';

export interface MountInfo {
  readonly id: number;
  readonly parentId: number;
  /** "major:minor" of the filesystem; for FUSE it names /sys/fs/fuse/connections/<minor>. */
  readonly majorMinor: string;
  readonly root: string;
  readonly mountPoint: string;
  readonly mountOptions: string;
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: string;
}

export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses one mountinfo line; undefined for a line that does not have the documented shape. */
export function parseMountInfoLine(line: string): MountInfo | undefined {
  const f = line.split(' ');
  const sep = f.indexOf('-', 6);
  if (f.length < 10 || sep < 0 || f.length < sep + 4) return undefined;
  const [id, parent, mm, root, mp, opts] = f;
  if (id === undefined || parent === undefined || mm === undefined || root === undefined || mp === undefined || opts === undefined) {
    return undefined;
  }
  return {
    id: Number(id),
    parentId: Number(parent),
    majorMinor: mm,
    root: unescapeMountPath(root),
    mountPoint: unescapeMountPath(mp),
    mountOptions: opts,
    fsType: f[sep + 1] ?? '',
    source: unescapeMountPath(f[sep + 2] ?? ''),
    superOptions: f[sep + 3] ?? '',
  };
}

export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = parseMountInfoLine(line);
    if (m) out.push(m);
  }
  return out;
}

export async function readMountInfo(file = '/proc/self/mountinfo'): Promise<MountInfo[]> {
  return parseMountInfo(await fs.promises.readFile(file, 'utf8'));
}

/** A path as mountinfo writes it (space, tab, newline and backslash in octal). */
export function escapeMountPath(p: string): string {
  return p.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/**
 * The mounts whose line names one of paths (as mountpoint, or in an overlay's options). A node
 * with thousands of layer mounts has a mountinfo of thousands of lines: only the lines that can
 * matter are parsed.
 */
export async function readMountInfoAbout(paths: readonly string[], file = '/proc/self/mountinfo'): Promise<MountInfo[]> {
  const text = await fs.promises.readFile(file, 'utf8');
  // Overlay options escape ':' and ',' once more, with a backslash.
  const needles = paths.flatMap((p) => {
    const e = escapeMountPath(p);
    return [e, e.replace(/[:,]/g, (c) => `\\${c}`)];
  });
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || !needles.some((n) => line.includes(n))) continue;
    const m = parseMountInfoLine(line);
    if (m) out.push(m);
  }
  return out;
}

export function isFuseType(fsType: string): boolean {
  return fsType === 'fuse' || fsType === 'fuseblk' || fsType.startsWith('fuse.');
}

/** True when p is dir itself or lies below it. */
export function isUnder(p: string, dir: string): boolean {
  if (dir === '/') return p.startsWith('/');
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
}

/** FUSE mounts at or below prefix, deepest first (the order they must be unmounted in). */
export function fuseMountsUnder(mounts: readonly MountInfo[], prefix: string): MountInfo[] {
  return mounts
    .filter((m) => isFuseType(m.fsType) && isUnder(m.mountPoint, prefix))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

/**
 * The layer directories an overlay mount stacks (lowerdir, upperdir, and the lowerdir+ /
 * datadir+ forms of newer kernels). Overlay escapes ':' and ',' in a path with a backslash.
 */
export function overlayLayerDirs(m: MountInfo): string[] {
  if (m.fsType !== 'overlay') return [];
  const out: string[] = [];
  for (const raw of m.superOptions.split(',')) {
    const opt = unescapeMountPath(raw);
    const eq = opt.indexOf('=');
    if (eq < 0) continue;
    const key = opt.slice(0, eq);
    const val = opt.slice(eq + 1);
    if (key === 'lowerdir') out.push(...splitUnescaped(val, ':'));
    else if (key === 'upperdir' || key === 'lowerdir+' || key === 'datadir+') out.push(unbackslash(val));
  }
  return out;
}

/** Overlay mounts that stack dir: unmounting dir would not free its filesystem while they live. */
export function overlaysUsing(mounts: readonly MountInfo[], dirs: readonly string[]): MountInfo[] {
  const wanted = new Set(dirs);
  return mounts.filter((m) => overlayLayerDirs(m).some((d) => wanted.has(d)));
}

function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out.filter((p) => p !== '');
}

function unbackslash(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}
