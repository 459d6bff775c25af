// The FUSE server's control protocol, for client and server alike: one JSON object per line over
// a unix socket that only root can reach. The daemon asks, the server answers; every answer
// carries the server's mount list and counters, so the daemon's view never lags by more than
// one call. The server takes only what a daemon needs: layers of its store, mountpoints under
// its root, lines of bounded length; anything else is InvalidArgument.
import path from 'node:path';
import type { CacheStats } from '../../cache/index.js';
import type { MounterCounters } from '../mounts/table.js';

export type Method = 'hello' | 'mount' | 'unmount' | 'reconcile' | 'metrics' | 'handover' | 'shutdown';
export const METHODS: readonly Method[] = ['hello', 'mount', 'unmount', 'reconcile', 'metrics', 'handover', 'shutdown'];

/** What one server may touch: mountpoints below root, layers of the store. Set once. */
export interface ServerScope {
  readonly root: string;
  readonly store: string;
}

export interface Params {
  hello: { scope?: ServerScope };
  mount: { layerDir: string; mountpoint: string; digest?: string };
  unmount: { mountpoint: string };
  reconcile: { prefix: string; keep: string[] };
  metrics: Record<string, never>;
  handover: Record<string, never>;
  shutdown: Record<string, never>;
}

export interface Request {
  id: number;
  method: Method;
  params: Record<string, unknown>;
}

export interface ServerState {
  pid: number;
  version: string;
  /**
   * Every mountpoint, in answers to hello and reconcile only: a server with thousands of layers
   * would otherwise send them all with every answer. mountsVersion says when a copy is stale.
   */
  mounts?: string[];
  mountsVersion: number;
  mountCount: number;
  counters: MounterCounters;
  cache: CacheStats;
  scope?: ServerScope;
  /** How this server reads files for new mounts: 'passthrough' where the kernel allows it. */
  reads?: 'passthrough' | 'served';
}

export type Response =
  | { id: number; result: unknown; state: ServerState }
  | { id: number; error: { kind: string; message: string }; state?: ServerState };

/** Longest request line: a reconcile names every live mountpoint (~150 bytes each). */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;
/** Most mountpoints one reconcile may name. */
export const MAX_KEEP = 200_000;

export class BadRequest extends Error {}

export function parseRequest(line: string): Request {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new BadRequest('a request must be one JSON object per line');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadRequest('a request must be a JSON object');
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'number' || !Number.isSafeInteger(r.id)) throw new BadRequest('request id must be an integer');
  if (typeof r.method !== 'string' || !(METHODS as readonly string[]).includes(r.method)) {
    throw new BadRequest(`unknown method ${JSON.stringify(r.method)}; expected one of ${METHODS.join(', ')}`);
  }
  const params = r.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new BadRequest('params must be an object');
  return { id: r.id, method: r.method as Method, params: params as Record<string, unknown> };
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
