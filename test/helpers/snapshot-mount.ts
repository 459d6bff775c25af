// Mounting an image's root filesystem on the host through containerd (ctr), so a test can look at
// it as any snapshotter presents it. The snapshot is made with `ctr snapshots prepare`, which
// labels it as a GC root: a `ctr snapshots view` carries no such label and containerd's garbage
// collector may remove it at any moment (ctr cannot hold a lease).
import { mkdir } from 'node:fs/promises';
import { execOk } from '../../src/sys/exec.js';
import type { Containerd } from './containerd.js';

export interface MountedSnapshot {
  target: string;
  key: string;
  /** Unmounts the target and removes the snapshot. */
  release(): Promise<void>;
}

export interface MountSnapshotOptions {
  snapshotter: string;
  /** The committed snapshot to look at: an image's top chain ID. */
  parent: string;
  /** An empty directory (created if missing) to mount it on. */
  target: string;
  /** Mount read-only (default true). */
  readOnly?: boolean;
  namespace?: string;
}

export interface CtrMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** `ctr snapshots mounts` prints one `mount -t TYPE SOURCE TARGET -o OPTIONS` line per mount. */
export function parseCtrMountCommands(stdout: string): CtrMount[] {
  return stdout.split('\n').filter((l) => l.trim() !== '').map((line) => {
    const m = /^mount -t (\S+) (\S+) (\S+) -o (\S*)$/.exec(line.trim());
    if (!m) throw new Error(`unexpected line from ctr snapshots mounts: ${JSON.stringify(line)}`);
    return { type: m[1] ?? '', source: m[2] ?? '', target: m[3] ?? '', options: (m[4] ?? '').split(',').filter((x) => x !== '') };
  });
}

/** mount(8) arguments for one mount; a "bind" type becomes --bind. */
export function mountArgs(m: CtrMount, readOnly: boolean): string[] {
  const options = readOnly && !m.options.includes('ro') ? [...m.options, 'ro'] : m.options;
  const o = options.length > 0 ? ['-o', options.join(',')] : [];
  return m.type === 'bind' ? ['--bind', ...o, m.source, m.target] : ['-t', m.type, ...o, m.source, m.target];
}

let counter = 0;

export async function mountSnapshot(ctd: Containerd, o: MountSnapshotOptions): Promise<MountedSnapshot> {
  const key = `test-mount-${process.pid}-${++counter}`;
  const sn = ['snapshots', '--snapshotter', o.snapshotter];
  const ns = { namespace: o.namespace };
  await mkdir(o.target, { recursive: true });
  await ctd.ctr([...sn, 'prepare', key, o.parent], ns);
  const mounted: string[] = [];
  const release = async (): Promise<void> => {
    for (const t of mounted.reverse()) await execOk('umount', [t]);
    mounted.length = 0;
    await ctd.ctr([...sn, 'rm', key], ns);
  };
  try {
    for (const m of parseCtrMountCommands(await ctd.ctr([...sn, 'mounts', o.target, key], ns))) {
      await execOk('mount', mountArgs(m, o.readOnly ?? true));
      mounted.push(m.target);
    }
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
  return { target: o.target, key, release };
}
