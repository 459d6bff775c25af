// One private temp directory per test file, the cleanups registered against it, and the final
// check that nothing we started is left behind: no mount and no process under the directory.
import { mkdtemp, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '../../src/sys/remove-tree.js';
import { describeMount, unmountAllUnder } from './mounts.js';
import { describeProcess, killPid, processesMentioning } from './processes.js';

interface Cleanup {
  what: string;
  run: () => Promise<void>;
}

export class Scope {
  readonly dir: string;
  private readonly cleanups: Cleanup[] = [];
  private tornDown = false;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** A fresh directory /tmp/cvmfs-<label>-XXXXXX (short: unix socket paths live in it). */
  static async create(label: string): Promise<Scope> {
    return new Scope(await mkdtemp(join(tmpdir(), `cvmfs-${label}-`)));
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** Makes (recursively) and returns a directory inside the scope. */
  async mkdir(...parts: string[]): Promise<string> {
    const p = this.path(...parts);
    await mkdir(p, { recursive: true });
    return p;
  }

  /** Registers a cleanup; teardown runs them last-registered first. */
  defer(what: string, run: () => Promise<void>): void {
    this.cleanups.push({ what, run });
  }

  /**
   * Runs every cleanup, then kills any process still mentioning the scope directory and
   * unmounts anything still mounted under it, removes the directory, and throws if a cleanup
   * failed or a process or mount was left behind.
   */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    const problems: string[] = [];
    for (const c of this.cleanups.reverse()) {
      try { await c.run(); } catch (err) { problems.push(`${c.what}: ${err instanceof Error ? err.message : String(err)}`); }
    }
    const procs = processesMentioning(this.dir);
    for (const p of procs) killPid(p.pid);
    if (procs.length > 0) problems.push(`processes left running (killed): ${procs.map(describeProcess).join('; ')}`);
    try {
      const leaked = await unmountAllUnder(this.dir);
      if (leaked.length > 0) problems.push(`mounts leaked under ${this.dir} (now unmounted): ${leaked.map(describeMount).join('; ')}`);
      await removeTree(this.dir, 3);
    } catch (err) {
      problems.push(`removing ${this.dir}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (problems.length > 0) throw new Error(`teardown found problems:\n- ${problems.join('\n- ')}`);
  }
}
