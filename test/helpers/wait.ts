// Polling for readiness: a socket that accepts, a URL that answers, any condition.
import { connect } from 'node:net';
import { get } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ManagedProcess } from './process.js';

export interface WaitOptions {
  /** What is awaited, for the error message. */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Stop waiting early (with its log in the error) if this process exits. */
  process?: ManagedProcess;
}

/** Polls check() until it returns true; throws after the timeout or if opts.process exits. */
export async function waitUntil(check: () => Promise<boolean> | boolean, opts: WaitOptions): Promise<number> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  for (;;) {
    if (await check()) return Date.now() - started;
    const p = opts.process;
    if (p && !p.running) {
      const s = p.exitStatus;
      throw new Error(`${p.spec.name} exited (${s?.signal ?? `code ${s?.code}`}) while waiting for ${opts.what}; log tail:\n${p.logTail()}`);
    }
    if (Date.now() - started > timeoutMs) {
      const tail = p ? `; log tail of ${p.spec.name}:\n${p.logTail()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}${tail}`);
    }
    await sleep(opts.intervalMs ?? 25);
  }
}

/** True if a unix socket (or host:port) accepts a connection right now. */
export function canConnect(target: string | { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = typeof target === 'string' ? connect(target) : connect(target.port, target.host);
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => { sock.destroy(); resolve(false); });
  });
}

/** True if a GET of url answers with a 2xx status. */
export function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(url, (res) => {
      res.resume();
      resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300);
    });
    req.once('error', () => resolve(false));
    req.setTimeout(2_000, () => { req.destroy(); resolve(false); });
  });
}
