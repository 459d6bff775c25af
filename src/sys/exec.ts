// Every child process this project starts goes through here, so tests can see and count them.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions extends Pick<SpawnOptions, 'cwd' | 'env'> {
  /** Written to the child's stdin, then stdin is closed. */
  input?: string | Buffer;
  timeoutMs?: number;
  /** Descriptors handed to the child as its fds 3, 4, ... (a /dev/fuse fd for `mount`). */
  passFds?: readonly number[];
}

export const execCounter = { count: 0 };

/** Runs a command to completion and collects its output. Never throws for a non-zero exit. */
export function exec(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  execCounter.count++;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe', ...(opts.passFds ?? [])], timeout: opts.timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin?.end(opts.input ?? undefined);
  });
}

/** Like exec, but a non-zero exit becomes an error that carries the command's stderr. */
export async function execOk(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}

export interface PipedChild {
  /** The child's stdin: write or pipe into it, then end it. */
  stdin: NodeJS.WritableStream & { destroyed: boolean; destroy(err?: Error): void };
  /** Settles when the child exits, with its collected stdout and stderr; never rejects for a non-zero exit. */
  done: Promise<ExecResult>;
  /** Sends a signal to the child (e.g. to stop tar when its input turned out to be bad). */
  kill(signal?: NodeJS.Signals): void;
}

/** Starts a command whose stdin the caller streams into (e.g. a layer into `tar -x`). */
export function spawnPiped(cmd: string, args: readonly string[], opts: Pick<ExecOptions, 'cwd' | 'env'> = {}): PipedChild {
  execCounter.count++;
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  // EPIPE when the child exits before reading all input is reported by its exit status instead.
  child.stdin.on('error', () => undefined);
  const done = new Promise<ExecResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
  });
  return { stdin: child.stdin, done, kill: (signal = 'SIGTERM') => { child.kill(signal); } };
}

export interface FilterChild extends PipedChild {
  /** The child's stdout, to be read as a stream. */
  stdout: NodeJS.ReadableStream;
}

/** Starts a command that transforms a stream (stdin to stdout), e.g. `zstd -d`; stderr is collected. */
export function spawnFilter(cmd: string, args: readonly string[]): FilterChild {
  execCounter.count++;
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const err: Buffer[] = [];
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.on('error', () => undefined);
  const done = new Promise<ExecResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr: Buffer.concat(err).toString() }));
  });
  return { stdin: child.stdin, stdout: child.stdout, done, kill: (signal = 'SIGTERM') => { child.kill(signal); } };
}

/**
 * Starts a long-lived process in its own session that outlives this one (the FUSE server);
 * stdout and stderr are shared with this process, so its logs land where ours do.
 */
export function spawnDetached(cmd: string, args: readonly string[], opts: Pick<ExecOptions, 'cwd' | 'env'> = {}): number | undefined {
  execCounter.count++;
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  child.on('error', () => undefined);
  child.unref();
  return child.pid;
}

/**
 * Starts a successor process (the FUSE server's handover) in its own session: its stdin and its
 * fd 3 are pipes to us, stdout and stderr are ours, and `fds` become its fds 4, 5, ...
 */
export function spawnSuccessor(cmd: string, args: readonly string[], fds: readonly number[], env: NodeJS.ProcessEnv): ChildProcess {
  execCounter.count++;
  return spawn(cmd, args, { stdio: ['pipe', 'inherit', 'inherit', 'pipe', ...fds], detached: true, env });
}
