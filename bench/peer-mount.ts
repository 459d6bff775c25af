// A peer FUSE server serving one directory read-only at a mountpoint: its own process, started
// and stopped by PID, restarted for a cold sample (a fresh process has no inode table, no open
// descriptors and no kernel caches for its new mount).
import { realpathSync } from 'node:fs';
import { exec } from '../src/sys/exec.js';
import { listMounts } from '../test/helpers/mounts.js';
import { ManagedProcess } from '../test/helpers/process.js';
import { waitUntil } from '../test/helpers/wait.js';
import type { PeerName } from './peers.js';

function fuseMountedAt(mountpoint: string): boolean {
  return listMounts().some((m) => m.mountPoint === mountpoint && (m.fsType === 'fuse' || m.fsType.startsWith('fuse.')));
}

export class PeerMount {
  private proc: ManagedProcess | undefined;
  readonly mountpoint: string;

  constructor(readonly name: PeerName, private readonly binary: string, private readonly layerDir: string, mountpoint: string, private readonly logFile: string) {
    this.mountpoint = realpathSync(mountpoint);
  }

  /** PID of the serving process; undefined when stopped. */
  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  async start(): Promise<void> {
    if (this.proc?.running) throw new Error(`${this.name} already serves ${this.mountpoint}`);
    // passthrough_hp daemonizes unless told not to; the go-fuse loopback never does.
    const args = this.name === 'passthrough_hp' ? ['--foreground', this.layerDir, this.mountpoint] : [this.layerDir, this.mountpoint];
    this.proc = await ManagedProcess.start({ name: `peer ${this.name}`, cmd: this.binary, args, logFile: this.logFile });
    await waitUntil(() => fuseMountedAt(this.mountpoint), { what: `${this.name} to mount ${this.mountpoint}`, process: this.proc, timeoutMs: 15_000, intervalMs: 10 });
  }

  /** SIGTERM (both unmount and exit on it), SIGKILL after a grace period; then no mount is left. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p?.running) await p.stop(10_000);
    for (let i = 0; i < 10 && fuseMountedAt(this.mountpoint); i++) {
      const r = await exec('umount', [this.mountpoint]);
      if (r.code !== 0) await exec('umount', ['-l', this.mountpoint]);
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}
