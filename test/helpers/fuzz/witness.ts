// Remembers a directory tree (names, types, sizes, modes, owners, mtimes, ctimes and, where
// asked, atimes) and later says what changed. Used to prove that a daemon under attack created,
// changed or read nothing outside its own directories.
//
// Reading a directory or a symlink updates its atime on a strictatime mount, so the walk that
// finds names comes before the stamps are taken, and the check compares stamps before it walks.
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';

interface Stamp {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  ino: bigint;
  nlink: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  atimeNs: bigint;
}

function typeOf(st: BigIntStats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isSocket()) return 'socket';
  if (st.isFIFO()) return 'fifo';
  return 'device';
}

function stamp(path: string): Stamp | undefined {
  let st: BigIntStats;
  try { st = lstatSync(path, { bigint: true }); } catch { return undefined; }
  return {
    type: typeOf(st), mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: st.size, ino: st.ino,
    nlink: st.nlink, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, atimeNs: st.atimeNs,
  };
}

export interface WitnessOptions {
  /** Paths (and everything below them) that are not watched. */
  skip?: readonly string[];
  /** Whether reads count: compare atimes (needs a strictatime mount to mean anything). */
  atime: boolean;
}

export class TreeWitness {
  private stamps = new Map<string, Stamp>();
  private targets = new Map<string, string>();

  constructor(readonly base: string, private readonly opts: WitnessOptions) {}

  private skipped(p: string): boolean {
    return (this.opts.skip ?? []).some((s) => p === s || p.startsWith(s + '/'));
  }

  /** Every path under base (base included), and each symlink's target. Reads directories and links. */
  private walk(): { paths: string[]; targets: Map<string, string> } {
    const paths: string[] = [];
    const targets = new Map<string, string>();
    const visit = (p: string): void => {
      if (this.skipped(p)) return;
      paths.push(p);
      let st;
      try { st = lstatSync(p); } catch { return; }
      if (st.isSymbolicLink()) targets.set(p, readlinkSync(p));
      if (st.isDirectory()) for (const n of readdirSync(p).sort()) visit(join(p, n));
    };
    visit(this.base);
    return { paths, targets };
  }

  /** Takes the baseline. */
  record(): void {
    const { paths, targets } = this.walk();
    this.targets = targets;
    this.stamps = new Map();
    for (const p of paths) {
      const s = stamp(p);
      if (s !== undefined) this.stamps.set(p, s);
    }
  }

  /** What differs from the baseline, one line per difference. */
  changes(): string[] {
    const out: string[] = [];
    for (const [p, before] of this.stamps) {
      const now = stamp(p);
      if (now === undefined) { out.push(`${p}: removed`); continue; }
      for (const k of Object.keys(before) as (keyof Stamp)[]) {
        if (k === 'atimeNs' && !this.opts.atime) continue;
        if (before[k] !== now[k]) out.push(`${p}: ${k === 'atimeNs' ? 'read (atime changed)' : `${k} changed`} ${String(before[k])} -> ${String(now[k])}`);
      }
    }
    const { paths, targets } = this.walk();
    for (const p of paths) if (!this.stamps.has(p)) out.push(`${p}: created`);
    for (const [p, t] of targets) if (this.targets.has(p) && this.targets.get(p) !== t) out.push(`${p}: link target changed to ${t}`);
    return out;
  }
}
