// Handover: a FUSE server passes its live mounts to a successor process (an upgrade) without
// unmounting anything. Nothing is read from the kernel while a handover runs: this process
// stops watching its connections, answers what it has already read, and passes the open
// /dev/fuse descriptors with the kernel's node ids. A request still waiting for a stalled store
// at the end is given back to the kernel (FUSE_NOTIFY_RESEND, Linux 6.9+) for the successor to
// answer, or answered EIO where the kernel cannot resend. A resent request comes back with
// another unique (bit 63 set, fs/fuse/dev.c fuse_resend), so the old unique, which a late
// answer of this process would carry, names nothing in the kernel any more; and this process
// drops such answers anyway (FuseChannel.abandonPending).
import fs from 'node:fs';
import type { Logger } from '../../log.js';
import { native } from '../../sys/native.js';
import { E, errnoName } from '../kernel/errno.js';
import type { NodeTableState } from '../node-table.js';
import type { PassthroughState } from '../open-files.js';
import { openLayerRoot, type LayerLocation } from '../store-access.js';
import { knownXattrFree } from '../xattr-census.js';
import { layerDirOf, serveLayer, startCensus, type ServeContext, type Served } from './served.js';
import { withDeadline, type MountTable } from './table.js';

/** /dev/fuse is character device 10:229 (glibc's dev_t encoding). */
const FUSE_DEVICE = (10 << 8) | 229;

/** Whether fd is open on /dev/fuse (what a predecessor must have sent). */
export function isFuseDevice(fd: number): boolean {
  try {
    const st = fs.fstatSync(fd);
    return st.isCharacterDevice() && st.rdev === FUSE_DEVICE;
  } catch {
    return false;
  }
}

/** A live mount handed from one FUSE server process to the next. */
export interface HandedMount {
  readonly mountpoint: string;
  /** The layer directory, as earlier versions named it. */
  readonly layerDir: string;
  /** Where the layer is, as this version opens it. */
  readonly location?: LayerLocation;
  /** The /dev/fuse descriptor, in the process that holds it. */
  readonly fd: number;
  readonly nodes: NodeTableState;
  /** Lazily unmounted: no longer at its mountpoint, but still used by someone. */
  readonly detached: boolean;
  /** Whether the connection's INIT settled on passthrough (absent: it did not). */
  readonly passthrough?: boolean;
  /** The layer is known to have no xattr (the kernel may already have been told). */
  readonly xattrFree?: boolean;
  /** Whether the kernel offered at INIT to resend unanswered requests (absent: not known). */
  readonly resend?: boolean;
  /** Passthrough backing ids registered on the connection, and the kernel's handles on them. */
  readonly files?: PassthroughState;
}

/** What handover needs of the mounter. */
export interface HandoverHost {
  readonly log: Logger;
  readonly table: MountTable;
  readonly serveContext: ServeContext;
  locate(layerDir: string): LayerLocation;
  serveUntilGone(s: Served): void;
  watchGone(s: Served): void;
}

/**
 * How long a handover waits for the requests it read to be answered when the kernel can resend
 * the rest: nothing reads any mount while it waits, and the successor asks the store again for
 * a request given back (the layer is read-only, every request can be asked twice).
 */
export const RESEND_GRACE_MS = 1000;

/**
 * Stops serving every mount WITHOUT unmounting, and returns what a successor needs to serve
 * them on: the descriptors (still open here) and the node tables. Requests already read are
 * waited for up to timeoutMs, or RESEND_GRACE_MS when every connection's kernel can resend.
 */
export async function drainForHandover(host: HandoverHost, timeoutMs: number): Promise<HandedMount[]> {
  const { table } = host;
  const all = [...table.served.values()].map((s) => ({ s, detached: false }))
    .concat([...table.draining].map((s) => ({ s, detached: true })));
  for (const { s } of all) s.channel.stop();
  const wait = all.every(({ s }) => s.channel.canResend === true) ? Math.min(timeoutMs, RESEND_GRACE_MS) : timeoutMs;
  await withDeadline(Promise.all(all.map(({ s }) => s.channel.quiesced())), wait, 'answering the requests read before the handover')
    .catch(() => undefined);
  const handed: HandedMount[] = [];
  for (const { s, detached } of all) {
    const left = s.channel.pending;
    if (left > 0) {
      // A kernel that did not offer resend is not asked; one whose offer is not known (taken
      // over from an earlier version) is: a kernel without it refuses the notification (EINVAL)
      // and has moved nothing, so EIO is still the answer then.
      const r = s.channel.canResend === false ? -E.ENOSYS : s.channel.resendUnanswered();
      if (r === 0) {
        s.log.warn({ requests: left }, 'requests still waiting for the store at handover were given back to the kernel for the next server');
      } else {
        const why = s.channel.canResend === false ? 'this kernel cannot resend them (Linux 6.9 or later can)' : `the kernel refused to resend them (${errnoName(r)})`;
        s.log.warn({ requests: left }, `requests still waiting for the store at handover were answered EIO: ${why}`);
        s.bridge.answerPending(s.channel, E.EIO);
      }
      s.channel.abandonPending();
    }
    // Backing ids live in the connection, and an OPEN answered just now may not have been taken
    // up by its task yet: they are passed on, not closed.
    const files = s.bridge.files.exportPassthrough();
    // Blocking again, as a server of an earlier version reads it.
    native.setBlocking(s.devFd, true);
    handed.push({
      mountpoint: s.mountpoint, layerDir: layerDirOf(s.location), location: s.location, fd: s.devFd,
      nodes: s.bridge.exportNodes(), detached, passthrough: s.bridge.passthrough, xattrFree: s.bridge.xattrFree,
      ...(s.channel.canResend !== undefined ? { resend: s.channel.canResend } : {}),
      ...(files.files.length > 0 ? { files } : {}),
    });
    s.census.stop();
    s.store.shutdown();
  }
  table.served.clear();
  table.version++;
  table.draining.clear();
  table.aliases.clear();
  return handed;
}

/** Serves a mount a predecessor handed over; m.fd is the descriptor as numbered in this process. */
export async function adoptMount(host: HandoverHost, m: HandedMount, log?: Logger, opts: { resend?: boolean } = {}): Promise<void> {
  if (!isFuseDevice(m.fd)) {
    throw new Error(`handover: descriptor ${m.fd} for ${m.mountpoint} is not /dev/fuse`);
  }
  const location = m.location ?? host.locate(m.layerDir);
  const l = (log ?? host.log).child({ mountpoint: m.mountpoint, layer: layerDirOf(location) });
  // The store may be away right now: the layer is served all the same, and its root opened at first use.
  const root = await openLayerRoot(location, m.xattrFree === true || knownXattrFree(layerDirOf(location))).catch((err: unknown) => {
    l.error({ err }, 'handover: the layer directory cannot be opened now; it will be tried again at the first request');
    return undefined;
  });
  const s = serveLayer(host.serveContext, {
    devFd: m.fd, rootFd: root?.fd ?? -1, rootInfo: root?.root, location, mountpoint: m.mountpoint, log: l,
    nodes: m.nodes, passthrough: m.passthrough ?? false, xattrFree: m.xattrFree === true,
  });
  // What the connection's INIT said of resend, for the next handover (no INIT comes again).
  s.channel.canResend = m.resend;
  if (m.files !== undefined) {
    const bad = s.bridge.files.adoptPassthrough(m.files, (id) => s.bridge.nodes.get(id));
    if (bad > 0) l.warn({ entries: bad }, 'handover: malformed passthrough file entries were left alone; their backing ids stay with the connection until it ends');
  }
  await s.channel.start(false);
  // Taken back from a successor that died: what it read and never answered is asked again.
  if (opts.resend) {
    const r = s.channel.resendUnanswered();
    if (r < 0) l.warn({ errno: -r }, 'handover: this kernel cannot resend what the failed successor read; those requests wait until the mount goes');
  }
  startCensus(s, host.serveContext.tuning);
  if (m.detached) {
    host.serveUntilGone(s);
  } else {
    host.table.add(s);
    host.watchGone(s);
  }
  l.info({ nodes: s.bridge.nodes.size, reads: s.bridge.passthrough ? 'passthrough' : 'served' }, 'took over layer mount');
}
