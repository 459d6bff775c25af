// Issue 11: what a person waits for and what the daemon holds. `cvmfs-snapshotter pull` of the
// small image timed as a whole process (Node's start, loading modules, the CRI calls, exit),
// beside the same run's `node -e 0` and `ctr images pull`; and the daemon's memory at rest.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { BIN_PATH } from '../src/cli/build-info.js';
import type { Containerd } from '../test/helpers/containerd.js';
import { CRI_NAMESPACE } from '../test/helpers/lazy.js';
import { clearImages, logSample } from './cases.js';
import { rssMb } from './proc.js';
import { timeExec } from './stats.js';

export interface PullCommandSamples {
  /** `cvmfs-snapshotter pull IMAGE`, process start to exit, the image removed before each. */
  commandMs: number[];
  /** `node -e 0`: the part of the command that is Node's own start. */
  nodeStartMs: number[];
}

export async function pullCommand(ctd: Containerd, ref: string, reps: number): Promise<PullCommandSamples> {
  const s: PullCommandSamples = { commandMs: [], nodeStartMs: [] };
  // One run not counted: the overlayfs pulls before this dropped the page cache, and a person
  // who runs the command has Node and the code in it.
  for (let i = -1; i < reps; i++) {
    await clearImages(ctd, CRI_NAMESPACE);
    // As a person runs it: the code is in the page cache (it was run before), the image is not pulled.
    const { ms, result } = await timeExec(process.execPath, [BIN_PATH, 'pull', '--containerd', ctd.socket, ref]);
    if (!/ pulled in /.test(result.stdout)) throw new Error(`cvmfs-snapshotter pull printed no result: ${result.stdout}${result.stderr}`);
    const node = (await timeExec(process.execPath, ['-e', '0'])).ms;
    if (i < 0) continue;
    s.commandMs.push(ms);
    s.nodeStartMs.push(node);
    logSample('pull command (whole process)', ms, 'ms');
  }
  return s;
}

async function statusKb(pid: number, field: string): Promise<number> {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

export interface RestMemory {
  /** VmRSS of the daemon with no snapshot, after it settled. */
  rssMb: number;
  /** Its anonymous part (heap, stacks): what is the daemon's own, not shared file pages. */
  anonMb: number;
  /** VmRSS of an idle `node` in the same run: the floor any Node process pays here. */
  nodeIdleRssMb: number;
}

/** The daemon's memory at rest, and an idle Node process's beside it. */
export async function restMemory(daemonPid: number): Promise<RestMemory> {
  const rss = await rssMb(daemonPid);
  const anonMb = (await statusKb(daemonPid, 'RssAnon')) / 1024;
  const idle = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10_000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    if (idle.pid === undefined) throw new Error('could not start an idle node');
    return { rssMb: rss, anonMb, nodeIdleRssMb: await rssMb(idle.pid) };
  } finally {
    idle.kill('SIGKILL');
  }
}
