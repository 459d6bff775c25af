// What a server process costs, read from /proc: resident memory, CPU time, threads.
import { readFile } from 'node:fs/promises';
import { execOk } from '../src/sys/exec.js';

/** Resident set size of pid in MiB, from /proc/PID/status VmRSS. */
export async function rssMb(pid: number): Promise<number> {
  return (await statusField(pid, 'VmRSS')) / 1024;
}

/**
 * What of pid's resident memory is its own, in MiB: the node binary's pages it maps are shared
 * with every other node process (on a node, the daemon), and counted in each one's RSS whole;
 * PSS (/proc/PID/smaps_rollup) divides each shared page among those who map it. And the file
 * pages alone (RssFile of /proc/PID/status): mostly the node binary.
 */
export async function sharedAwareMb(pid: number): Promise<{ pssMb: number; fileMb: number }> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const pss = /^Pss:\s+(\d+) kB/m.exec(rollup);
  if (pss === null) throw new Error(`no Pss in /proc/${pid}/smaps_rollup`);
  return { pssMb: Number(pss[1]) / 1024, fileMb: (await statusField(pid, 'RssFile')) / 1024 };
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
