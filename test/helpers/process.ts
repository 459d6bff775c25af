// A long-running child process (a server) whose output goes to a log file, stopped by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerSpec {
  /** A short name for messages, e.g. "containerd". */
  name: string;
  cmd: string;
  args: readonly string[];
  /** stdout and stderr of the process are appended here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Live servers, killed if this process exits without a teardown (e.g. a test timeout). */
const live = new Set<ChildProcess>();
process.once('exit', () => { for (const c of live) c.kill('SIGKILL'); });

export class ManagedProcess {
  readonly spec: ServerSpec;
  readonly pid: number;
  /** Resolves when the process has exited, whatever the reason. */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private readonly child: ChildProcess;

  private constructor(spec: ServerSpec, child: ChildProcess, pid: number, exited: Promise<ExitStatus>) {
    this.spec = spec;
    this.child = child;
    this.pid = pid;
    this.exited = exited.then((s) => { this.status = s; return s; });
  }

  /** Spawns the process; rejects if it cannot be started at all (e.g. ENOENT). */
  static start(spec: ServerSpec): Promise<ManagedProcess> {
    const fd = openSync(spec.logFile, 'a');
    try {
      // Not detached: if the test runner itself is interrupted, the servers go with it.
      const child = spawn(spec.cmd, [...spec.args], { cwd: spec.cwd, env: spec.env ?? process.env, stdio: ['ignore', fd, fd] });
      return new Promise((resolve, reject) => {
        child.once('error', reject);
        child.once('spawn', () => {
          live.add(child);
          const exited = new Promise<ExitStatus>((res) => child.once('exit', (code, signal) => { live.delete(child); res({ code, signal }); }));
          if (child.pid === undefined) { reject(new Error(`${spec.name}: spawned without a pid`)); return; }
          resolve(new ManagedProcess(spec, child, child.pid, exited));
        });
      });
    } finally {
      closeSync(fd);
    }
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** The exit status, or undefined while the process runs. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** Sends a signal to this process (while it runs) without waiting for anything. */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Sends a signal (by PID) and waits until the process has exited. */
  async kill(signal: NodeJS.Signals, timeoutMs = 10_000): Promise<ExitStatus> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    const s = await withTimeout(this.exited, timeoutMs);
    if (s === undefined) throw new Error(`${this.spec.name} (pid ${this.pid}) did not exit within ${timeoutMs} ms of ${signal}`);
    return s;
  }

  /** SIGTERM, then SIGKILL if it has not exited after graceMs. */
  async stop(graceMs = 10_000): Promise<ExitStatus & { forced: boolean }> {
    if (!this.running) return { ...(await this.exited), forced: false };
    this.child.kill('SIGTERM');
    const s = await withTimeout(this.exited, graceMs);
    if (s !== undefined) return { ...s, forced: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), forced: true };
  }

  /** The whole log so far. */
  log(): string {
    try { return readFileSync(this.spec.logFile, 'utf8'); } catch { return ''; }
  }

  /** The last lines of the log, for error messages. */
  logTail(lines = 40): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), ms); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
