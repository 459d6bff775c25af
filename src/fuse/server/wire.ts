// The FUSE server's control protocol: one JSON object per line over a unix socket that only
// root can reach. The daemon asks, the server answers; every answer carries the server's mount
// list and counters, so the daemon's view never lags by more than one call.
import type { CacheStats } from '../../cache/index.js';
import type { MounterCounters } from '../mounts.js';

export type Method = 'hello' | 'mount' | 'unmount' | 'reconcile' | 'metrics' | 'handover' | 'shutdown';
export const METHODS: readonly Method[] = ['hello', 'mount', 'unmount', 'reconcile', 'metrics', 'handover', 'shutdown'];

export interface Request {
  id: number;
  method: Method;
  params: Record<string, unknown>;
}

export interface ServerState {
  pid: number;
  version: string;
  mounts: string[];
  counters: MounterCounters;
  cache: CacheStats;
}

export type Response =
  | { id: number; result: unknown; state: ServerState }
  | { id: number; error: { kind: string; message: string }; state?: ServerState };

export function parseRequest(line: string): Request {
  const v: unknown = JSON.parse(line);
  if (typeof v !== 'object' || v === null) throw new Error('a request must be a JSON object');
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'number' || !Number.isSafeInteger(r.id)) throw new Error('request id must be an integer');
  if (typeof r.method !== 'string' || !(METHODS as readonly string[]).includes(r.method)) {
    throw new Error(`unknown method ${JSON.stringify(r.method)}; expected one of ${METHODS.join(', ')}`);
  }
  const params = r.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new Error('params must be an object');
  return { id: r.id, method: r.method as Method, params: params as Record<string, unknown> };
}

export function absolutePath(params: Record<string, unknown>, key: string): string {
  const v = params[key];
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) throw new Error(`${key} must be an absolute path`);
  return v;
}

export function optionalString(params: Record<string, unknown>, key: string): string | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new Error(`${key} must be a string`);
  return v;
}

export function pathList(params: Record<string, unknown>, key: string): string[] {
  const v = params[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.startsWith('/'))) throw new Error(`${key} must be a list of absolute paths`);
  return v as string[];
}
