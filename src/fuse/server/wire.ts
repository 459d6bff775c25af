// The FUSE server's control contract, the one definition the daemon's client and the server both
// use: every request kind with its parameters as sent, its parameters as checked, its answer,
// and the checks themselves. The wire is one JSON object per line over a unix socket that only
// root can reach (socket.ts): {id, method, params} in, {id, result, state} or {id, error, state}
// out. The daemon asks, the server answers; every answer carries the server's counters, so the
// daemon's view never lags by more than one call. The server takes only what a daemon needs:
// layers of its store, mountpoints under its root, lines of bounded length; anything else is
// InvalidArgument, and a mount before anyone said which root and store is FailedPrecondition.
//
// The wire form is the one servers have spoken since the control socket exists, so a daemon
// upgraded in place talks to the server that outlived its predecessor: hello is the first call
// on every connection and carries the scope, every answer names the server's pid and version,
// and a method a server does not know is answered InvalidArgument, never misread.
import path from 'node:path';
import { SnapshotterError } from '../../errors.js';
import type { CacheStats } from '../../cache/index.js';
import type { MetricsJson } from '../../metrics/merge.js';
import type { MounterCounters, ReconcileReport, UnmountOutcome } from '../index.js';

/** What one server may touch: mountpoints below root, layers of the store. Set once. */
export interface ServerScope {
  readonly root: string;
  readonly store: string;
}

type NoParams = Record<string, never>;

/**
 * Every request kind: `params` as the client sends them, `checked` as the server's handler gets
 * them (after the rules below), `result` as the answer carries it.
 */
export interface Contract {
  /** The first call on a connection: tells a server without a scope its scope; refused if it has another. */
  hello: { params: { scope?: ServerScope }; checked: { scope?: ServerScope }; result: null };
  /** Serves a layer of the store at a mountpoint below the root. */
  mount: { params: { layerDir: string; mountpoint: string; digest?: string }; checked: { layerDir: string; mountpoint: string; digest: string }; result: null };
  /** Unmounts, lazily if busy. */
  unmount: { params: { mountpoint: string }; checked: { mountpoint: string }; result: UnmountOutcome | 'not-mounted' };
  /** Makes the FUSE mounts below prefix exactly the kept ones this server serves. */
  reconcile: { params: { prefix: string; keep: string[] }; checked: { prefix: string; keep: string[] }; result: ReconcileReport };
  /** The server's metrics registry, collected at most once a second. */
  metrics: { params: NoParams; checked: NoParams; result: MetricsJson };
  /** Hands every mount to a new server process started from the code installed now; answers its pid. */
  handover: { params: NoParams; checked: NoParams; result: { pid: number } };
  /**
   * Hands every mount to a FUSE server that is not this one's child (the next pod's), which
   * listens on socket, a private socket beside the control socket; answers once that server
   * serves them. The scope is the new server's, when it has one: a different one is refused.
   */
  handoverTo: { params: { socket: string; scope?: ServerScope }; checked: { socket: string; scope?: ServerScope }; result: { pid: number; host: string } };
  /** Unmounts every layer (lazily where busy), then the server exits. */
  shutdown: { params: NoParams; checked: NoParams; result: null };
}

export type Method = keyof Contract;
export type Params<M extends Method> = Contract[M]['params'];
export type Checked<M extends Method> = Contract[M]['checked'];
export type Result<M extends Method> = Contract[M]['result'];

/** A path the server must find below its root on disk too (links resolved) before it acts. */
export interface OnDisk {
  readonly key: string;
  readonly path: string;
  /** The root itself is allowed (a reconcile of the whole root). */
  readonly orRoot: boolean;
}

/** How the server takes one request kind. */
export interface Rule<M extends Method> {
  /**
   * The raw params checked against the server's scope and returned typed: throws BadRequest
   * (answered InvalidArgument) or a SnapshotterError (FailedPrecondition without a scope).
   */
  check(raw: Record<string, unknown>, scope: ServerScope | undefined): Checked<M>;
  /** Paths to check on disk before acting: names below the root may lead out of it through links. */
  onDisk?(p: Checked<M>): OnDisk[];
  /** The answer's state lists every mountpoint (hello and reconcile only: the list can be long). */
  readonly withMounts: boolean;
}

/** Thrown for a request the contract refuses: answered InvalidArgument. */
export class BadRequest extends Error {}

/** Longest request line: a reconcile names every live mountpoint (~150 bytes each). */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;
/** Most mountpoints one reconcile may name. */
export const MAX_KEEP = 200_000;

function needScope(scope: ServerScope | undefined): ServerScope {
  if (!scope) throw new SnapshotterError('FailedPrecondition', 'this FUSE server has no scope yet (start it with --root and --store, or say hello with a scope first)');
  return scope;
}

function mountpointParam(raw: Record<string, unknown>, key: string, scope: ServerScope | undefined): string {
  const { root } = needScope(scope);
  const mp = absolutePath(raw, key);
  if (!isBelow(mp, root)) throw new BadRequest(`${key} ${JSON.stringify(mp.slice(0, 300))} is not below the daemon's root ${root}`);
  return mp;
}

export const RULES: { readonly [M in Method]: Rule<M> } = {
  hello: {
    withMounts: true,
    check: (raw) => {
      const scope = scopeParam(raw);
      return scope ? { scope } : {};
    },
  },
  mount: {
    withMounts: false,
    check: (raw, scope) => {
      const { store } = needScope(scope);
      const mountpoint = mountpointParam(raw, 'mountpoint', scope);
      const layerDir = absolutePath(raw, 'layerDir');
      const digest = checkLayerDir(layerDir, store, optionalString(raw, 'digest'));
      return { layerDir, mountpoint, digest };
    },
    onDisk: (p) => [{ key: 'mountpoint', path: p.mountpoint, orRoot: false }],
  },
  unmount: {
    withMounts: false,
    check: (raw, scope) => ({ mountpoint: mountpointParam(raw, 'mountpoint', scope) }),
    onDisk: (p) => [{ key: 'mountpoint', path: p.mountpoint, orRoot: false }],
  },
  reconcile: {
    withMounts: true,
    check: (raw, scope) => {
      const { root } = needScope(scope);
      const prefix = absolutePath(raw, 'prefix');
      if (prefix !== root && !isBelow(prefix, root)) throw new BadRequest(`prefix ${JSON.stringify(prefix.slice(0, 300))} is not the daemon's root ${root} or below it`);
      const keep = pathList(raw, 'keep');
      for (const k of keep) if (!isBelow(k, root)) throw new BadRequest(`keep names ${JSON.stringify(k.slice(0, 300))}, which is not below ${root}`);
      return { prefix, keep };
    },
    onDisk: (p) => [{ key: 'prefix', path: p.prefix, orRoot: true }],
  },
  // Requests without parameters ignore any they are sent, as servers always did.
  metrics: { withMounts: false, check: () => ({}) },
  handover: { withMounts: false, check: () => ({}) },
  handoverTo: {
    withMounts: false,
    check: (raw) => {
      const socket = absolutePath(raw, 'socket');
      const scope = scopeParam(raw);
      return scope ? { socket, scope } : { socket };
    },
  },
  shutdown: { withMounts: false, check: () => ({}) },
};

export const METHODS = Object.keys(RULES) as readonly Method[];

function isMethod(m: unknown): m is Method {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(RULES, m);
}

/** A request line as read: its id and method known, its params not yet checked. */
export interface Envelope {
  id: number;
  method: Method;
  params: Record<string, unknown>;
}

/** The request the client sends for method M. */
export interface Request<M extends Method> {
  id: number;
  method: M;
  params: Params<M>;
}

export interface ServerState {
  pid: number;
  version: string;
  /**
   * The server's host name (its UTS namespace): on Kubernetes, the pod's name. A daemon tells by
   * it whether the server that answers is its own pod's (absent from servers of earlier versions).
   */
  host?: string;
  /**
   * Every mountpoint, in answers to hello and reconcile only: a server with thousands of layers
   * would otherwise send them all with every answer. mountsVersion says when a copy is stale.
   */
  mounts?: string[];
  mountsVersion: number;
  mountCount: number;
  /** This server handed its mounts over to another one, which serves them now: call that one. */
  handedOver?: boolean;
  counters: MounterCounters;
  cache: CacheStats;
  scope?: ServerScope;
  /** How this server reads files for new mounts: 'passthrough' where the kernel allows it. */
  reads?: 'passthrough' | 'served';
}

export interface ErrorAnswer {
  id: number;
  error: { kind: string; message: string };
  state?: ServerState;
}

/** The answer to a request of method M; id -1 answers a line that was not a request at all. */
export type Answer<M extends Method> = { id: number; result: Result<M>; state: ServerState } | ErrorAnswer;

/** Reads a request line's envelope; throws BadRequest when it is not a request of a known method. */
export function parseEnvelope(line: string): Envelope {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new BadRequest('a request must be one JSON object per line');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadRequest('a request must be a JSON object');
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'number' || !Number.isSafeInteger(r.id)) throw new BadRequest('request id must be an integer');
  if (!isMethod(r.method)) {
    throw new BadRequest(`unknown method ${JSON.stringify(r.method)}; expected one of ${METHODS.join(', ')}`);
  }
  const params = r.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new BadRequest('params must be an object');
  return { id: r.id, method: r.method, params: params as Record<string, unknown> };
}

/** One line of the wire: a request or an answer. */
export function encodeLine(message: Request<Method> | Answer<Method>): string {
  return `${JSON.stringify(message)}\n`;
}

/** An absolute path in normal form (no '.', '..', '//' or trailing '/'), without NUL. */
export function absolutePath(params: Record<string, unknown>, key: string): string {
  const v = params[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw new BadRequest(`${key} must be an absolute path of at most 4096 bytes`);
  if (!v.startsWith('/') || v.includes('\0')) throw new BadRequest(`${key} must be an absolute path, got ${JSON.stringify(v.slice(0, 200))}`);
  if (path.posix.normalize(v) !== v || (v.length > 1 && v.endsWith('/'))) throw new BadRequest(`${key} must be in normal form (no ".", ".." or "//"), got ${JSON.stringify(v.slice(0, 200))}`);
  return v;
}

export function optionalString(params: Record<string, unknown>, key: string): string | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 4096) throw new BadRequest(`${key} must be a string`);
  return v;
}

export function pathList(params: Record<string, unknown>, key: string): string[] {
  const v = params[key];
  if (!Array.isArray(v)) throw new BadRequest(`${key} must be a list of absolute paths`);
  if (v.length > MAX_KEEP) throw new BadRequest(`${key} names ${v.length} paths; at most ${MAX_KEEP}`);
  return v.map((_x, i) => absolutePath(v as unknown as Record<string, unknown>, String(i)));
}

export function scopeParam(params: Record<string, unknown>): ServerScope | undefined {
  const s = params.scope;
  if (s === undefined) return undefined;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new BadRequest('scope must be an object with root and store');
  const o = s as Record<string, unknown>;
  return { root: absolutePath(o, 'root'), store: absolutePath(o, 'store') };
}

/** A path strictly below dir. */
export function isBelow(p: string, dir: string): boolean {
  return dir === '/' ? p !== '/' : p.startsWith(dir + '/');
}

const LAYER_HEX = /^[0-9a-f]{64}$/;

/**
 * The one form a layer directory may take: `<store>/.layers/<xx>/<64 hex>/layerfs`, xx the
 * first two hex digits. Returns the digest it names.
 */
export function checkLayerDir(layerDir: string, store: string, digest: string | undefined): string {
  const rel = isBelow(layerDir, store) ? layerDir.slice(store === '/' ? 1 : store.length + 1) : undefined;
  const parts = rel?.split('/');
  const hex = parts?.[2] ?? '';
  if (!parts || parts.length !== 4 || parts[0] !== '.layers' || !LAYER_HEX.test(hex) || parts[1] !== hex.slice(0, 2) || parts[3] !== 'layerfs') {
    throw new BadRequest(`layerDir ${JSON.stringify(layerDir.slice(0, 300))} is not a layer of the store ${store} (expected ${store}/.layers/<xx>/<64 hex>/layerfs)`);
  }
  const named = `sha256:${hex}`;
  if (digest !== undefined && digest !== named) throw new BadRequest(`digest ${JSON.stringify(digest.slice(0, 100))} does not match layerDir (${named})`);
  return named;
}

/**
 * Splits a byte stream into lines, refusing one longer than max: the caller answers and
 * closes the connection instead of buffering without end.
 */
export class LineSplitter {
  private buf = '';
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }

  /** The complete lines in chunk; throws BadRequest once a line grows past the bound. */
  push(chunk: string): string[] {
    this.buf += chunk;
    const lines = this.buf.split('\n');
    this.buf = lines.pop() ?? '';
    if (this.buf.length > this.max || lines.some((l) => l.length > this.max)) {
      this.buf = '';
      throw new BadRequest(`a request line is longer than ${this.max} bytes`);
    }
    return lines.filter((l) => l.trim() !== '');
  }
}
