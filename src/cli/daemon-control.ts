// The daemon's control socket: how a new daemon (`--replace`) asks the one serving on the same
// --address to step down. It sits beside --address (daemon-control.sock), 0600 in the same
// private directory, and takes one request: a JSON line
//   {"request":"step-down","pid":<successor pid>,"host":"<successor host>"}
// answered, once the daemon has stopped serving (gRPC closed with running calls finished,
// database closed, FUSE server connection closed, nothing removed or unmounted), by
//   {"steppedDown":{"pid":<its pid>}}
// or by {"error":"<why not>"}. The serving daemon closes this socket before it answers, so the
// successor can listen on it next; a second request (on a connection made before that) is refused.
import fs from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import type { Logger } from '../log.js';
import { listenControlSocket } from '../fuse/server/socket.js';
import { CONTROL_SOCKET_NAME } from './daemon-args.js';

const MAX_LINE_BYTES = 4096;
const MAX_HOST_BYTES = 255;

/** The control socket of the daemon serving on address. */
export function controlSocketPath(address: string): string {
  return join(dirname(address), CONTROL_SOCKET_NAME);
}

/** Who asked a daemon to step down. */
export interface Successor {
  pid: number;
  host: string;
}

export type StepDownRequest = { request: 'step-down' } & Successor;
export type StepDownAnswer = { steppedDown: { pid: number } } | { error: string };

/** A request line checked: the request, or why it is refused. */
export function parseStepDown(line: string): StepDownRequest | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'the request is not JSON; expected {"request":"step-down","pid":N,"host":"..."}';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'the request is not a JSON object';
  const o = v as Record<string, unknown>;
  if (o.request !== 'step-down') return `unknown request ${JSON.stringify(o.request)?.slice(0, 100)}; this socket takes only "step-down"`;
  if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return 'step-down needs "pid", the successor\'s pid (a positive integer)';
  if (typeof o.host !== 'string' || o.host === '' || Buffer.byteLength(o.host) > MAX_HOST_BYTES) {
    return `step-down needs "host", the successor's host name (1 to ${MAX_HOST_BYTES} bytes)`;
  }
  return { request: 'step-down', pid: o.pid, host: o.host };
}

export interface DaemonControl {
  readonly path: string;
  /** Stops taking connections (the socket path is gone once it resolves); open ones stay. */
  close(): Promise<void>;
}

/**
 * Listens on the control socket. onStepDown is called at most once; it stops serving and resolves
 * with this daemon's pid, or rejects with why it could not. Later requests get refuse(successor).
 */
export async function listenDaemonControl(
  path: string,
  log: Logger,
  onStepDown: (s: Successor) => Promise<void>,
  refusal: () => string | undefined,
): Promise<DaemonControl> {
  const server = await listenControlSocket(path, log, (c) => serveConnection(c, log, onStepDown, refusal));
  let closing: Promise<void> | undefined;
  return {
    path,
    close: () => {
      // Stops listening and unlinks the path at once (libuv does so as it closes the handle);
      // open connections stay, so the one that asked still gets its answer, and are not waited for.
      closing ??= new Promise<void>((resolve) => {
        server.close();
        setImmediate(resolve);
      });
      return closing;
    },
  };
}

function serveConnection(c: net.Socket, log: Logger, onStepDown: (s: Successor) => Promise<void>, refusal: () => string | undefined): void {
  let buf = '';
  let busy = false;
  const answer = (a: StepDownAnswer): void => {
    if (!c.destroyed) c.end(`${JSON.stringify(a)}\n`);
  };
  c.setEncoding('utf8');
  c.on('error', (err) => log.debug({ err }, 'daemon control connection error'));
  c.on('data', (chunk: string) => {
    if (busy) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl < 0) {
      if (Buffer.byteLength(buf) > MAX_LINE_BYTES) {
        busy = true;
        answer({ error: `request line longer than ${MAX_LINE_BYTES} bytes` });
      }
      return;
    }
    busy = true;
    const req = parseStepDown(buf.slice(0, nl));
    if (typeof req === 'string') {
      log.warn({ reason: req }, 'refused a request on the daemon control socket');
      answer({ error: req });
      return;
    }
    const successor = { pid: req.pid, host: req.host };
    const refused = refusal();
    if (refused !== undefined) {
      log.warn({ successor, reason: refused }, 'refused to step down');
      answer({ error: refused });
      return;
    }
    onStepDown(successor).then(
      () => answer({ steppedDown: { pid: process.pid } }),
      (err: unknown) => answer({ error: `could not step down: ${err instanceof Error ? err.message : String(err)}` }),
    );
  });
}

/** Nothing answers on the control socket: no daemon that knows --replace serves there. */
export class NoControlSocket extends Error {}

/**
 * Asks the daemon whose control socket is path to step down for this process, and waits up to
 * timeoutMs for it to say it stopped serving. Throws NoControlSocket when nothing answers there,
 * and an Error saying what went wrong otherwise.
 */
export async function askToStepDown(path: string, me: Successor, timeoutMs: number): Promise<{ pid: number }> {
  let st: fs.Stats;
  try {
    st = await fs.promises.lstat(path);
  } catch {
    throw new NoControlSocket(`nothing at ${path}`);
  }
  if (!st.isSocket()) throw new Error(`${path} is not a socket; refusing to talk to it as a daemon's control socket`);
  const uid = process.geteuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`the daemon control socket ${path} belongs to uid ${st.uid}, not to this daemon's uid ${uid}; refusing to use it`);
  const c = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.createConnection(path);
    s.once('connect', () => { s.off('error', reject); resolve(s); });
    s.once('error', (err: NodeJS.ErrnoException) => reject(new NoControlSocket(`${path}: ${err.code ?? err.message}`)));
  });
  return new Promise<{ pid: number }>((resolve, reject) => {
    let buf = '';
    const done = (err: Error | undefined, v?: { pid: number }): void => {
      clearTimeout(timer);
      c.destroy();
      if (err) reject(err);
      else resolve(v as { pid: number });
    };
    const timer = setTimeout(() => done(new Error(`the daemon on ${path} did not say it stepped down within ${Math.round(timeoutMs / 1000)} s `
      + '(--replace-timeout); it may still be finishing its calls: try again, or stop it')), timeoutMs);
    c.setEncoding('utf8');
    c.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > MAX_LINE_BYTES) done(new Error(`the daemon on ${path} answered a line longer than ${MAX_LINE_BYTES} bytes`));
        return;
      }
      let a: unknown;
      try {
        a = JSON.parse(buf.slice(0, nl));
      } catch {
        done(new Error(`the daemon on ${path} answered something that is not JSON: ${buf.slice(0, 200)}`));
        return;
      }
      const o = (typeof a === 'object' && a !== null ? a : {}) as Record<string, unknown>;
      const sd = o.steppedDown as Record<string, unknown> | undefined;
      if (typeof sd === 'object' && sd !== null && typeof sd.pid === 'number') done(undefined, { pid: sd.pid });
      else if (typeof o.error === 'string') done(new Error(`the daemon on ${path} refused to step down: ${o.error}`));
      else done(new Error(`the daemon on ${path} answered something that is not a step-down answer: ${buf.slice(0, 200)}`));
    });
    c.on('error', () => undefined);
    c.on('close', () => done(new Error(`the daemon on ${path} closed the connection without saying it stepped down`)));
    c.write(`${JSON.stringify({ request: 'step-down', ...me } satisfies StepDownRequest)}\n`);
  });
}
