// A root filesystem read into a comparable form: for every path its type, mode, owner, size,
// content hash, link target, device numbers, link count, mtime and extended attributes. Two
// trees built from the same image by different snapshotters must come out equal.
import { createHash } from 'node:crypto';
import { createReadStream, type BigIntStats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface TreeEntry {
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777), in octal. */
  mode: string;
  uid: number;
  gid: number;
  /** Regular files and symlinks only: a directory's size depends on the file system. */
  size?: number;
  sha256?: string;
  target?: string;
  /** Devices: "major:minor". */
  rdev?: string;
  /** Non-directories only: overlayfs computes a directory's link count its own way. */
  nlink?: number;
  /** Modification time in nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** name -> hex value, every namespace getfattr shows to root. */
  xattrs: Record<string, string>;
  /** Other paths of the tree with the same inode (hard links), sorted; absent if none. */
  hardlinks?: string[];
}

/** Relative path ('.' for the root) -> entry. */
export type Tree = Map<string, TreeEntry>;

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** getfattr escapes unusual bytes in file names as \ooo. */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const m = /^\\([0-7]{3})/.exec(s.slice(i));
    if (m?.[1] !== undefined) { bytes.push(parseInt(m[1], 8)); i += 3; continue; }
    if (s[i] === '\\' && s[i + 1] === '\\') { bytes.push(0x5c); i++; continue; }
    bytes.push(...Buffer.from(s[i] ?? '', 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Every extended attribute under root (symlinks themselves, never followed), by absolute path. */
export async function readXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const r = await execOk('getfattr', ['--absolute-names', '--recursive', '--physical', '--no-dereference', '--dump', '--match=-', '--encoding=hex', root], { timeoutMs: 120_000 });
  const out = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      out.set(unescapeGetfattr(line.slice('# file: '.length)), current);
    } else if (current !== undefined && line.includes('=')) {
      const eq = line.indexOf('=');
      current[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return out;
}

/** Walks root without following symlinks and reads every entry. */
export async function readTree(root: string): Promise<Tree> {
  const xattrs = await readXattrs(root);
  const tree: Tree = new Map();
  const inodes = new Map<string, string[]>();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const type = typeOf(st);
    const e: TreeEntry = {
      type,
      mode: (Number(st.mode) & 0o7777).toString(8).padStart(4, '0'),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs.toString(),
      xattrs: Object.fromEntries(Object.entries(xattrs.get(abs) ?? {}).sort(([a], [b]) => a.localeCompare(b))),
    };
    if (type === 'file') { e.size = Number(st.size); e.sha256 = await sha256File(abs); }
    if (type === 'symlink') { e.size = Number(st.size); e.target = await readlink(abs); }
    if (type === 'char' || type === 'block') {
      const rdev = Number(st.rdev);
      e.rdev = `${(rdev >> 8) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
    }
    if (type !== 'dir') {
      e.nlink = Number(st.nlink);
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
    }
    tree.set(rel, e);
    if (type === 'dir') {
      for (const name of (await readdir(abs)).sort()) await visit(rel === '.' ? name : join(rel, name));
    }
  };
  await visit('.');
  for (const paths of inodes.values()) {
    if (paths.length < 2) continue;
    for (const p of paths) {
      const e = tree.get(p);
      if (e) e.hardlinks = paths.filter((x) => x !== p).sort();
    }
  }
  return tree;
}

export type EntryField = keyof TreeEntry;

export interface TreeDifference {
  path: string;
  /** 'missing-left' / 'missing-right' when only one tree has the path, else the differing field. */
  what: string;
  left: unknown;
  right: unknown;
}

/** The differences between two trees, ignoring the given fields (per path or for every path). */
export function diffTrees(left: Tree, right: Tree, ignore: (path: string, field: EntryField) => boolean = () => false): TreeDifference[] {
  const out: TreeDifference[] = [];
  const paths = [...new Set([...left.keys(), ...right.keys()])].sort();
  for (const p of paths) {
    const l = left.get(p);
    const r = right.get(p);
    if (l === undefined) { out.push({ path: p, what: 'missing-left', left: undefined, right: r }); continue; }
    if (r === undefined) { out.push({ path: p, what: 'missing-right', left: l, right: undefined }); continue; }
    const fields = new Set([...Object.keys(l), ...Object.keys(r)]) as Set<EntryField>;
    for (const f of fields) {
      if (ignore(p, f)) continue;
      if (JSON.stringify(l[f]) !== JSON.stringify(r[f])) out.push({ path: p, what: f, left: l[f], right: r[f] });
    }
  }
  return out;
}

export function describeDifferences(d: readonly TreeDifference[], max = 40): string {
  const lines = d.slice(0, max).map((x) => `${x.path}: ${x.what}: ${JSON.stringify(x.left)} != ${JSON.stringify(x.right)}`);
  if (d.length > max) lines.push(`... and ${d.length - max} more`);
  return lines.join('\n');
}

