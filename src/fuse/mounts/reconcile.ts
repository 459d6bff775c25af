// Reconcile: make the FUSE mounts under a prefix be exactly the wanted ones this process
// serves. Stale mounts (a server that died, or one that hangs) are cleared, unwanted ones
// unmounted, ours that someone unmounted released; wanted ones that are not mounted are reported
// for the caller to mount.
import type { Logger } from '../../log.js';
import { fuseMountsUnder, readMountInfo, type MountInfo } from '../mountinfo.js';
import { probeMount, type MountHealth, type UnmountOutcome } from '../unmount.js';
import type { Served } from './served.js';
import { canonicalMountpoint, errorText, type MountTable } from './table.js';

export interface MountFailure {
  readonly mountpoint: string;
  readonly error: string;
}

export interface ReconcileReport {
  /** Mounts of this process that are wanted and stay. */
  readonly kept: string[];
  /** Unwanted mounts removed, normally or lazily. */
  readonly unmounted: string[];
  /** Of those and of the wanted ones, those whose server was gone (ENOTCONN) or hung. */
  readonly staleCleared: string[];
  /** Wanted mountpoints that are not mounted now: the caller mounts them. */
  readonly missing: string[];
  readonly failed: MountFailure[];
}

/** What reconcile needs of the mounter. */
export interface ReconcileHost {
  readonly log: Logger;
  readonly table: MountTable;
  readonly probeTimeoutMs: number;
  unmountLocked(mp: string): Promise<UnmountOutcome | 'not-mounted'>;
  abortIfHung(m: MountInfo, health: MountHealth): Promise<void>;
  release(s: Served, outcome: UnmountOutcome | 'not-mounted'): Promise<void>;
}

export async function reconcileMounts(host: ReconcileHost, prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport> {
  const { table, log } = host;
  const root = await canonicalMountpoint(prefix);
  const wanted = new Set<string>();
  for (const k of keep) wanted.add(table.canonical(k) ?? await canonicalMountpoint(k));
  const report: ReconcileReport = { kept: [], unmounted: [], staleCleared: [], missing: [], failed: [] };

  // One entry per mountpoint: unmountLocked takes every mount stacked on a point at once.
  const present = [...new Map(fuseMountsUnder(await readMountInfo(), root).map((m) => [m.mountPoint, m] as const)).values()];
  const presentPoints = new Set(present.map((m) => m.mountPoint));
  // Ours but gone from the kernel (someone ran umount): release our side.
  for (const [mp, s] of table.served) {
    if ((mp === root || mp.startsWith(root + '/')) && !presentPoints.has(mp)) await host.release(s, 'unmounted');
  }

  for (const m of present) {
    const mp = m.mountPoint;
    await table.locked(mp, async () => {
      const ours = table.served.has(mp);
      if (ours && wanted.has(mp)) {
        report.kept.push(mp);
        return;
      }
      // Not ours: left by an earlier server (dead after SIGKILL) or by someone else.
      const health = ours ? undefined : await probeMount(mp, host.probeTimeoutMs);
      const stale = health !== undefined && health.health !== 'alive';
      try {
        if (health) await host.abortIfHung(m, health.health);
        await host.unmountLocked(mp);
        if (stale) {
          table.count.staleCleared++;
          report.staleCleared.push(mp);
          log.info({ mountpoint: mp, health: health.health, detail: health.detail }, 'cleared stale FUSE mount');
        }
        if (!wanted.has(mp)) report.unmounted.push(mp);
      } catch (err) {
        report.failed.push({ mountpoint: mp, error: errorText(err) });
      }
    });
  }
  for (const mp of wanted) if (!table.served.has(mp)) report.missing.push(mp);
  log.info({ prefix: root, kept: report.kept.length, unmounted: report.unmounted.length, staleCleared: report.staleCleared.length, missing: report.missing.length, failed: report.failed.length }, 'reconciled FUSE mounts');
  return report;
}
