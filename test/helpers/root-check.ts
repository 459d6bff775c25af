// The daemon's root seen from outside: its SQLite records (opened read-only) against the
// directories under <root>/snapshots, its FUSE mounts and their health, and the resources of
// its process (/proc/<pid>). For crash and load tests: what must hold whatever happened.
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { fuseMountsUnder, probeMount, readMountInfo } from '../../src/fuse/index.js';
import { processesMentioning } from './processes.js';
import { waitUntil } from './wait.js';

export interface RootRecord {
  id: number;
  key: string;
  kind: 'active' | 'view' | 'committed';
  parentId: number | null;
  remoteDigest: string | null;
}

/** Every snapshot record in <root>/metadata.db, read through a read-only connection. */
export function readRecords(root: string): RootRecord[] {
  const db = new Database(join(root, 'metadata.db'), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const rows = db.prepare('SELECT id, key, kind, parent_id AS parentId, remote_digest AS remoteDigest FROM snapshots ORDER BY id').all();
    return rows as RootRecord[];
  } finally {
    db.close();
  }
}

/** The FUSE mountpoints the records call for: each remote snapshot some active snapshot or view stands on. */
export function layerMountsNeeded(root: string, records: readonly RootRecord[]): Set<string> {
  const byId = new Map(records.map((r) => [r.id, r]));
  const out = new Set<string>();
  for (const r of records) {
    if (r.kind === 'committed') continue;
    for (let p = r.parentId === null ? undefined : byId.get(r.parentId); p; p = p.parentId === null ? undefined : byId.get(p.parentId)) {
      if (p.remoteDigest !== null) out.add(join(root, 'snapshots', String(p.id), 'fs'));
    }
  }
  return out;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * What does not match between the records and the disk: a directory under snapshots/ that no
 * record owns (an orphan, or a temporary new-* left behind), a record without its directory or
 * its fs/, an active snapshot without work/. Empty when they match.
 */
export async function rootMismatches(root: string): Promise<string[]> {
  const dir = join(root, 'snapshots');
  // The disk first, the records after (as the daemon's Cleanup does): a snapshot made in between
  // then shows in the records and is not mistaken for an orphan.
  const names = await readdir(dir);
  const records = readRecords(root);
  const ids = new Set(records.map((r) => String(r.id)));
  const problems: string[] = [];
  for (const n of names) if (!ids.has(n)) problems.push(`orphan directory snapshots/${n}`);
  const present = new Set(names);
  for (const r of records) {
    const what = `record ${r.id} (${r.kind} ${JSON.stringify(r.key)})`;
    if (!present.has(String(r.id))) {
      // Listed before the record was read: it may have been made since.
      if (!(await isDir(join(dir, String(r.id))))) problems.push(`${what} has no directory`);
      continue;
    }
    // A remote snapshot's fs/ may be a FUSE mount; stat answers from the mount then, which is fine.
    if (!(await isDir(join(dir, String(r.id), 'fs')))) problems.push(`${what} has no fs/`);
    if (r.kind === 'active' && !(await isDir(join(dir, String(r.id), 'work')))) problems.push(`${what} has no work/`);
  }
  return problems;
}

/**
 * Waits until the records and the disk match. A call in progress (a Remove between its
 * transaction and its rm, a Prepare filling its temporary directory) is a passing mismatch;
 * a real one stays, and the error lists it.
 */
export async function waitRootConsistent(root: string, what: string, timeoutMs = 10_000): Promise<{ waitedMs: number; transient: string[] }> {
  let last: string[] = [];
  const seen = new Set<string>();
  try {
    const waitedMs = await waitUntil(async () => {
      last = await rootMismatches(root);
      for (const p of last) seen.add(p);
      return last.length === 0;
    }, { what, timeoutMs, intervalMs: 20 });
    return { waitedMs, transient: [...seen] };
  } catch (err) {
    throw new Error(`${(err as Error).message}: metadata and disk of ${root} disagree:\n- ${last.join('\n- ')}`);
  }
}

export interface FuseMountState {
  mountpoint: string;
  health: string;
  detail: string;
}

/** The FUSE mounts under dir and whether their server answers (statfs, through src/fuse probeMount). */
export async function fuseMountHealth(dir: string): Promise<FuseMountState[]> {
  const out: FuseMountState[] = [];
  const seen = new Set<string>();
  for (const m of fuseMountsUnder(await readMountInfo(), dir)) {
    if (seen.has(m.mountPoint)) continue;
    seen.add(m.mountPoint);
    const h = await probeMount(m.mountPoint);
    out.push({ mountpoint: m.mountPoint, health: h.health, detail: h.detail });
  }
  return out.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
}

/** Every mountpoint (any type) at or below dir. */
export async function mountpointsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (await readMountInfo()).map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(prefix));
}

/** Open file descriptors of a process. */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** What a process's descriptors point at, counted by kind (socket, pipe, anon_inode:…, /dev/fuse, files by path). */
export async function fdKinds(pid: number): Promise<Map<string, number>> {
  const { readlink } = await import('node:fs/promises');
  const out = new Map<string, number>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    let target: string;
    try { target = await readlink(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const kind = target.replace(/:\[\d+\]$/, '');
    out.set(kind, (out.get(kind) ?? 0) + 1);
  }
  return out;
}

/** Resident memory of a process in KiB (VmRSS of /proc/<pid>/status). */
export async function rssKb(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

export interface ServerUsage {
  pid: number;
  /** "fuse-server" for a FUSE server the daemon started, "daemon" for the daemon itself. */
  role: string;
  fds: number;
  rssKb: number;
}

/**
 * The daemon and every process it started to serve beside it (a FUSE server), found by the
 * daemon's socket directory on their command lines, with their descriptors and memory.
 */
export async function serverUsage(daemonSocket: string): Promise<ServerUsage[]> {
  const out: ServerUsage[] = [];
  for (const p of processesMentioning(`${dirname(daemonSocket)}/`)) {
    try {
      out.push({ pid: p.pid, role: p.argv.includes('fuse-server') ? 'fuse-server' : 'daemon', fds: await fdCount(p.pid), rssKb: await rssKb(p.pid) });
    } catch {
      // It exited between the listing and the reading.
    }
  }
  return out.sort((a, b) => a.role.localeCompare(b.role) || a.pid - b.pid);
}

export function describeUsage(u: readonly ServerUsage[]): string {
  return u.map((x) => `${x.role} ${x.pid}: ${x.fds} fds, ${x.rssKb} KiB`).join('; ');
}
