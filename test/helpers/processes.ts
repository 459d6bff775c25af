// Finding processes by what their command line mentions, e.g. shims started for our private containerd.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  argv: string[];
}

/** Every process (but this one) whose command line contains needle. */
export function processesMentioning(needle: string): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    let raw: string;
    try { raw = readFileSync(`/proc/${name}/cmdline`, 'utf8'); } catch { continue; }
    if (!raw.includes(needle)) continue;
    out.push({ pid, argv: raw.split('\0').filter((a) => a !== '') });
  }
  return out;
}

export function describeProcess(p: ProcessInfo): string {
  return `pid ${p.pid}: ${p.argv.join(' ')}`;
}

/** SIGKILL by pid; a process that is already gone is not an error. */
export function killPid(pid: number): void {
  try { process.kill(pid, 'SIGKILL'); } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'ESRCH')) throw err;
  }
}
