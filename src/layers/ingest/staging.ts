// The staging area of one ingest run: `<store>/.ingest/<pid>-<start time>-<random>/`. Blobs are
// downloaded and layers unpacked here, on the store's own file system, so the final step is one
// atomic rename into `.layers/`; whatever a run leaves here is not part of the store.
//
// A run removes its directory when it ends, whatever happened. A run that was killed (SIGKILL,
// a power cut) cannot; the next run removes every staging directory whose process is gone. The
// directory's name carries the process's start time as well as its pid, so a reused pid does
// not keep a dead run's leftovers alive, and a run that is still going is never touched.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { removeTree } from '../../sys/remove-tree.js';
import type { LayerStore } from '../store.js';

export const STAGING_DIR = '.ingest';

const RUN_RE = /^(\d+)-(\d+)-[0-9a-f]+$/;

/** Field 22 of /proc/<pid>/stat (clock ticks after boot), or undefined when there is no such process. */
function processStartTime(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ESRCH') return undefined;
    throw err;
  }
  // The command name (field 2) is in parentheses and may hold spaces or ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

function runIsAlive(name: string): boolean {
  const m = RUN_RE.exec(name);
  if (!m) return false;
  try {
    return processStartTime(Number(m[1])) === m[2];
  } catch {
    // /proc cannot tell (EACCES): leave it, it may be a live run.
    return true;
  }
}

export class Staging {
  private constructor(
    readonly dir: string,
    private readonly base: string,
    private readonly store: LayerStore,
    /** The first directory of the store's root this run made, to take away again if it stays empty. */
    private readonly createdRoot: string | undefined,
  ) {}

  /** Removes what crashed runs left, then makes this run's directory. */
  static async open(store: LayerStore, log?: Logger): Promise<Staging> {
    const createdRoot = await mkdir(store.root, { recursive: true, mode: 0o755 });
    const base = path.join(store.root, STAGING_DIR);
    const self = processStartTime(process.pid) ?? '0';
    const dir = path.join(base, `${process.pid}-${self}-${randomBytes(4).toString('hex')}`);
    // Another run that ends now removes the staging area when it looks empty: then make it again.
    for (let attempt = 1; ; attempt++) {
      await mkdir(base, { mode: 0o700 }).catch((err: unknown) => {
        if (errnoCode(err) !== 'EEXIST') throw err;
      });
      try {
        await mkdir(dir, { mode: 0o700 });
        break;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT' || attempt === 3) throw err;
      }
    }
    for (const name of await readdir(base)) {
      if (name === path.basename(dir) || runIsAlive(name)) continue;
      log?.info({ dir: path.join(base, name) }, 'removing what an earlier ingest run left behind');
      await removeTree(path.join(base, name));
    }
    return new Staging(dir, base, store, createdRoot);
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  /** Removes this run's directory, and the staging area and the store's root when they are empty. */
  async close(): Promise<void> {
    await removeTree(this.dir);
    await removeIfEmpty(this.base);
    if (this.createdRoot === undefined) return;
    // The store did not exist before this run: take away what stayed empty, up to where mkdir began.
    for (let p = this.store.root; ; p = path.dirname(p)) {
      if (!(await removeIfEmpty(p))) break;
      if (p === this.createdRoot || p === path.dirname(p)) break;
    }
  }
}

/** rmdir that answers whether the directory is gone; another run may still be using it. */
export async function removeIfEmpty(dir: string): Promise<boolean> {
  try {
    await rmdir(dir);
    return true;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return true;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EBUSY') return false;
    throw err;
  }
}
