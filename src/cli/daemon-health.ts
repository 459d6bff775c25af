// What the daemon is doing, and whether that makes it ready (/readyz). Ready means: it serves
// gRPC (not still starting or waiting, not stepped down), its FUSE server answers, that server
// runs on this daemon's host (on Kubernetes, the pod's name: the server is this pod's, not a
// predecessor's), and it serves every layer mount the snapshots in use need. One FUSE-server round
// trip and one database query per probe; no walk of the store or the root.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readiness } from '../metrics/http.js';
import type { Successor } from './daemon-control.js';
import { dialControlSocket, ForeignSocket } from '../fuse/server/socket.js';
import type { Logger } from '../log.js';

export type Phase =
  | { name: 'starting' }
  /** foreignHost: a server answers, but from another host (another pod's, during an upgrade). */
  | { name: 'waiting-for-fuse-server'; foreignHost?: string }
  | { name: 'replacing' }
  | { name: 'serving' }
  | { name: 'stepping-down'; successor: Successor }
  | { name: 'stepped-down'; successor: Successor }
  | { name: 'stopping' };

/** How long a readiness probe waits for the FUSE server's answer. */
export const PROBE_TIMEOUT_MS = 2000;

export interface ServingView {
  address: string;
  fuseSocket: string;
  ownHost: string;
  /** One round trip to the FUSE server: who it is and what it serves. */
  probe(): Promise<{ server: { pid: number; version: string; host?: string }; mounts: string[] }>;
  /** The mountpoints the snapshots in use need. */
  needed(): string[];
}

const notReady = (reason: string): Readiness => ({ ready: false, reason });

/** The reason a daemon that is not serving gives (undefined while serving). */
export function phaseReason(p: Phase, v: Pick<ServingView, 'address' | 'fuseSocket'>): string | undefined {
  switch (p.name) {
    case 'serving': return undefined;
    case 'starting': return 'starting';
    case 'waiting-for-fuse-server': return p.foreignHost === undefined
      ? `waiting for a FUSE server to answer on ${v.fuseSocket}`
      : `waiting for this host's FUSE server on ${v.fuseSocket}; the one answering runs on host ${JSON.stringify(p.foreignHost)}`;
    case 'replacing': return `waiting for the daemon serving on ${v.address} to step down`;
    case 'stepping-down': return `stepping down for the daemon with pid ${p.successor.pid} on host ${p.successor.host}`;
    case 'stepped-down': return `stepped down for the daemon with pid ${p.successor.pid} on host ${p.successor.host}; idle until SIGTERM`;
    case 'stopping': return 'stopping';
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms (${what})`)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export async function readiness(phase: () => Phase, v: ServingView): Promise<Readiness> {
  const before = phaseReason(phase(), v);
  if (before !== undefined) return notReady(before);
  let probe;
  try {
    probe = await withDeadline(v.probe(), PROBE_TIMEOUT_MS, 'a hello');
  } catch (err) {
    return notReady(`the FUSE server on ${v.fuseSocket} does not answer: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { server, mounts } = probe;
  if (server.host === undefined) {
    return notReady(`the FUSE server on ${v.fuseSocket} (pid ${server.pid}, version ${server.version}) does not say its host: it is older than this daemon`);
  }
  if (server.host !== v.ownHost) {
    return notReady(`the FUSE server on ${v.fuseSocket} (pid ${server.pid}) runs on host ${JSON.stringify(server.host)}, not on this daemon's host ${JSON.stringify(v.ownHost)}: it is not this pod's server`);
  }
  // The phase may have changed while the server answered (a step-down closes the database).
  const after = phaseReason(phase(), v);
  if (after !== undefined) return notReady(after);
  const needed = v.needed();
  const have = new Set(mounts);
  const missing = needed.filter((m) => !have.has(m));
  if (missing.length > 0) {
    return notReady(`the FUSE server (pid ${server.pid}) lacks ${missing.length} of the ${needed.length} layer mounts the snapshots in use need, e.g. ${missing[0]}`);
  }
  return { ready: true, reason: `ready: serving on ${v.address}; the FUSE server (pid ${server.pid}, host ${server.host}) serves all ${needed.length} layer mounts the snapshots in use need` };
}

/** The wait ended because the daemon was told to stop. */
export class StopRequested extends Error {}

/**
 * Waits until a FUSE server accepts a connection on socket, logging every logEveryMs while it
 * waits. Throws at once for a socket that waiting cannot fix (not a socket, another user's), and
 * StopRequested when signal aborts.
 */
export async function waitForFuseServer(socket: string, log: Logger, signal: AbortSignal, logEveryMs = 5000): Promise<void> {
  const started = Date.now();
  let logged = -Infinity;
  for (;;) {
    if (signal.aborted) throw new StopRequested('stopped while waiting for a FUSE server');
    try {
      const c = await dialControlSocket(socket);
      c.destroy();
      if (Date.now() - started > 1000) log.info({ socket, waitedSec: Math.round((Date.now() - started) / 1000) }, 'a FUSE server answers');
      return;
    } catch (err) {
      if (err instanceof ForeignSocket) throw err;
      if (Date.now() - logged >= logEveryMs) {
        logged = Date.now();
        log.info({ socket, waitedSec: Math.round((logged - started) / 1000), error: (err as NodeJS.ErrnoException).code ?? (err as Error).message },
          'waiting for a FUSE server to answer (--external-fuse-server: this daemon starts none)');
      }
    }
    await sleep(200, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * Waits until the FUSE server answering on socket runs on ownHost (or is too old to say its
 * host): during a rolling update the old pod's server answers until the new pod's takes its
 * mounts over, and the daemon takes over from its own predecessor only once its own pod's server
 * serves. Calls onForeign with the host of a server that is another's; logs every logEveryMs.
 */
export async function waitForOwnFuseServer(
  probe: () => Promise<{ server: { pid: number; host?: string } }>,
  o: { socket: string; ownHost: string; log: Logger; signal: AbortSignal; onForeign: (host: string) => void; logEveryMs?: number },
): Promise<void> {
  let logged = -Infinity;
  for (;;) {
    if (o.signal.aborted) throw new StopRequested('stopped while waiting for this host\'s FUSE server');
    let why: Record<string, unknown>;
    try {
      const { server } = await probe();
      if (server.host === undefined || server.host === o.ownHost) return;
      o.onForeign(server.host);
      why = { pid: server.pid, host: server.host };
    } catch (err) {
      why = { error: err instanceof Error ? err.message : String(err) };
    }
    if (Date.now() - logged >= (o.logEveryMs ?? 5000)) {
      logged = Date.now();
      o.log.info({ socket: o.socket, ownHost: o.ownHost, server: why }, 'waiting for this host\'s FUSE server: the one answering is another\'s (--external-fuse-server)');
    }
    await sleep(500, undefined, { signal: o.signal }).catch(() => undefined);
  }
}
