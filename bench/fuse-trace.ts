// Counts the requests the kernel sends to FUSE servers, by connection and opcode, with the
// tracepoint fuse:fuse_request_send (kernel >= 6.15). It uses a tracefs instance of its own
// (instances/<name>), on a tracefs mount of its own in the scope, so that nobody else's tracing
// is disturbed and nothing stays mounted; the instance is removed again at the end.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, execOk } from '../src/sys/exec.js';
import type { Scope } from '../test/helpers/scope.js';

export interface RequestCounts {
  total: number;
  byOpcode: Record<string, number>;
  /** Events the ring buffer overwrote before they were read (then the counts are too low). */
  lost: number;
}

/**
 * The kernel's id of the FUSE connection mounted at mountpoint, as the tracepoint prints it:
 * the superblock's dev_t in the kernel's encoding (major << 20 | minor).
 */
export function fuseConnection(mountpoint: string): number | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== mountpoint) continue;
    const [major, minor] = (f[2] ?? '').split(':').map(Number);
    if (major === undefined || minor === undefined || Number.isNaN(major) || Number.isNaN(minor)) return undefined;
    return major * 2 ** 20 + minor;
  }
  return undefined;
}

export class FuseTrace {
  private constructor(private readonly mount: string, private readonly instance: string) {}

  /** Mounts tracefs in the scope and enables the tracepoint in a new instance; throws with the reason when it cannot. */
  static async open(scope: Scope): Promise<FuseTrace> {
    const mount = await scope.mkdir('tracefs');
    await execOk('mount', ['-t', 'tracefs', 'nodev', mount]);
    const instance = join(mount, 'instances', `cvmfs-bench-${process.pid}`);
    const t = new FuseTrace(mount, instance);
    scope.defer('close the FUSE tracepoint', () => t.close());
    if (!existsSync(join(mount, 'events', 'fuse', 'fuse_request_send'))) throw new Error('this kernel has no fuse:fuse_request_send tracepoint (kernel >= 6.15)');
    await mkdir(instance);
    // 16 MiB per CPU: a cold `find /usr` over FUSE is a few thousand events of ~40 bytes.
    await writeFile(join(instance, 'buffer_size_kb'), '16384\n');
    await writeFile(join(instance, 'events', 'fuse', 'fuse_request_send', 'enable'), '1\n');
    await writeFile(join(instance, 'tracing_on'), '1\n');
    return t;
  }

  /** Forgets every event so far. */
  async clear(): Promise<void> {
    await writeFile(join(this.instance, 'trace'), '');
  }

  /** The requests sent since the last clear() to the given connections. */
  async counts(connections: ReadonlySet<number>): Promise<RequestCounts> {
    const text = await readFile(join(this.instance, 'trace'), 'utf8');
    const byOpcode: Record<string, number> = {};
    let total = 0;
    for (const m of text.matchAll(/fuse_request_send: connection (\d+) req \d+ opcode \d+ \((\w+)\)/g)) {
      if (!connections.has(Number(m[1]))) continue;
      const op = (m[2] ?? '?').replace(/^FUSE_/, '');
      byOpcode[op] = (byOpcode[op] ?? 0) + 1;
      total++;
    }
    const header = /entries-in-buffer\/entries-written: (\d+)\/(\d+)/.exec(text);
    const lost = header ? Number(header[2]) - Number(header[1]) : 0;
    return { total, byOpcode, lost };
  }

  async close(): Promise<void> {
    if (existsSync(this.instance)) {
      await writeFile(join(this.instance, 'tracing_on'), '0\n').catch(() => undefined);
      await writeFile(join(this.instance, 'events', 'fuse', 'fuse_request_send', 'enable'), '0\n').catch(() => undefined);
      await rmdir(this.instance);
    }
    if ((await exec('mountpoint', ['-q', this.mount])).code === 0) await execOk('umount', [this.mount]);
  }
}
