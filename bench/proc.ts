// What a server process costs, read from /proc: resident memory, CPU time, threads.
import { readFile } from 'node:fs/promises';
import { execOk } from '../src/sys/exec.js';

/** Resident set size of pid in MiB, from /proc/PID/status VmRSS. */
export async function rssMb(pid: number): Promise<number> {
  return (await statusField(pid, 'VmRSS')) / 1024;
}

/** The Threads line of /proc/PID/status. */
export function threadCount(pid: number): Promise<number> {
  return statusField(pid, 'Threads');
}

async function statusField(pid: number, field: string): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status);
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

let ticksPerSecond: number | undefined;

/**
 * utime + stime of the whole process in milliseconds: /proc/PID/stat counts every thread of the
 * group, those that already exited included (a go-fuse or libfuse worker may come and go).
 */
export async function cpuMs(pid: number): Promise<number> {
  ticksPerSecond ??= Number((await execOk('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses; fields count from the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unreadable /proc/${pid}/stat: ${stat.slice(0, 200)}`);
  return ((utime + stime) * 1000) / ticksPerSecond;
}
