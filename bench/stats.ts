// Samples and their summary: the median and the spread (min, max, and the relative
// median absolute deviation), and timing helpers shared by the benchmark cases.
import { writeFile } from 'node:fs/promises';
import { exec, type ExecOptions, type ExecResult } from '../src/sys/exec.js';

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** Median absolute deviation / median: 0.05 means samples typically 5 % off the median. */
  relMad: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  const med = median(xs);
  const mad = median(xs.map((x) => Math.abs(x - med)));
  return { n: xs.length, median: med, min: Math.min(...xs), max: Math.max(...xs), relMad: med === 0 ? 0 : mad / med };
}

/** Empties the page cache, dentries and inodes (FUSE mounts forget what the kernel cached too). */
export async function dropCaches(): Promise<void> {
  await exec('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Runs cmd and returns its wall time in milliseconds; throws on a non-zero exit. */
export async function timeExec(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<{ ms: number; result: ExecResult }> {
  const t0 = nowMs();
  const result = await exec(cmd, args, { timeoutMs: 15 * 60_000, ...opts });
  const ms = nowMs() - t0;
  if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${result.signal ?? `exit ${result.code}`}): ${result.stderr.trim().slice(0, 2000)}`);
  return { ms, result };
}

export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

export const log = (msg: string): void => { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`); };
