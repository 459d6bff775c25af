// Shared by the tests that serve layers in this process from a store that fails, stalls or is
// slow: the log as records, the requests the server answered, and python readers that are
// still running while the test looks at the server (fs-probe's readers only report at the end).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import readline from 'node:readline';
import type { FuseObserver } from '../../src/fuse/observer.js';
import { LogCapture as BaseLogCapture } from '../helpers/log-capture.js';
import { waitUntil } from '../helpers/wait.js';

/** The shared log capture, with the queries the fault tests ask of it. */
export class LogCapture extends BaseLogCapture {
  /** Records at warn or above since mark that mention any of the needles. */
  problemsSince(mark: number, needles: readonly string[]): Record<string, unknown>[] {
    return this.records.slice(mark).filter((r) => Number(r.level) >= 40 && needles.some((n) => JSON.stringify(r).includes(n)));
  }

  /** Records since mark whose message contains text. */
  withMessage(mark: number, text: string): Record<string, unknown>[] {
    return this.records.slice(mark).filter((r) => typeof r.msg === 'string' && r.msg.includes(text));
  }
}

/** Counts what the server answered: requests by "op errno" (errno 0 for success) and bytes read. */
export class OpCounter implements FuseObserver {
  private readonly counts = new Map<string, number>();
  bytes = 0;

  op(name: string, _seconds: number, errno: number): void {
    const k = `${name} ${Math.abs(errno)}`;
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  bytesServed(n: number): void {
    this.bytes += n;
  }

  passthroughFallback(): void {
    // Whether a mount reads by passthrough is checked on the mounter's counters.
  }

  storeCall(): void {
    // The store's side is counted by the metrics (test/integration/store-metrics.test.ts).
  }

  storeError(): void {
    // As storeCall.
  }

  storeDeadline(): void {
    // As storeCall.
  }

  storeReopen(): void {
    // As storeCall.
  }

  /** Answers of op with errno (0: success) so far. */
  count(op: string, errno = 0): number {
    return this.counts.get(`${op} ${errno}`) ?? 0;
  }
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string[];
  stderr: string;
}

/**
 * A python3 child that reports on stdout line by line while it runs. It is stopped by its own
 * pid only; stop() is safe to call when it has exited.
 */
export class PyChild {
  readonly pid: number;
  readonly exited: Promise<ChildExit>;
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private readonly waiters: (() => void)[] = [];
  private stderr = '';
  private done = false;

  constructor(script: string, args: readonly string[], input?: string) {
    this.child = spawn('/usr/bin/python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    if (this.child.pid === undefined) throw new Error('python3 did not start');
    this.pid = this.child.pid;
    this.child.stderr?.on('data', (b: Buffer) => { this.stderr += b.toString(); });
    readline.createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      this.lines.push(l);
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.done = true;
        for (const w of this.waiters.splice(0)) w();
        resolve({ code, signal, stdout: this.lines, stderr: this.stderr });
      });
    });
    if (input !== undefined) this.child.stdin?.write(input);
  }

  get running(): boolean {
    return !this.done;
  }

  /** What it printed so far. */
  get output(): readonly string[] {
    return this.lines;
  }

  write(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** Waits for a line that starts with prefix; fails if the child exits or the time runs out first. */
  async line(prefix: string, timeoutMs = 60_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.find((x) => x.startsWith(prefix));
      if (l !== undefined) return l;
      if (this.done) throw new Error(`the child exited before printing ${JSON.stringify(prefix)}: ${this.stderr}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`the child printed no ${JSON.stringify(prefix)} within ${timeoutMs} ms (it printed ${JSON.stringify(this.lines)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (this.done) return;
    process.kill(this.pid, sig);
  }

  /** SIGKILL (a reader blocked in a FUSE request is killable, never interruptible otherwise) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.done) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Where this process's descriptors point, for those that point below dir. */
export function descriptorsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try { target = readlinkSync(`/proc/self/fd/${fd}`); } catch { continue; }
    if (target === dir || target.startsWith(`${dir}/`)) out.push(target);
  }
  return out.sort();
}

/** The p-th percentile (0..100) of samples, nearest rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const s = [...samples].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i] as number;
}

/** waitUntil, with a message made when the time is up: it shows the state that was waited out. */
export async function eventually(check: () => boolean, describe: () => string, timeoutMs: number): Promise<void> {
  try {
    await waitUntil(check, { what: 'a condition', timeoutMs });
  } catch {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`);
  }
}
