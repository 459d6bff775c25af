// A private `cvmfs-snapshotter fuse-server` process and raw connections to its control socket:
// the tests that speak the control protocol byte for byte, not through the daemon's client, so
// that they can send what the client never would.
import { readFile, readdir, readlink } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { isAlive } from '../../src/sys/pid.js';
import { daemonBin } from './paths.js';
import { ManagedProcess } from './process.js';
import type { Scope } from './scope.js';
import { canConnect, waitUntil } from './wait.js';

/** One answer line of the server, as it is on the wire. */
export interface ControlAnswer {
  id: number;
  result?: unknown;
  error?: { kind: string; message: string };
  state?: { pid: number; mounts?: string[]; mountCount: number };
}

function parseAnswer(line: string): ControlAnswer | Error {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return new Error(`the server answered a line that is not JSON: ${line.slice(0, 300)}`);
  }
  const ok = typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { id?: unknown }).id === 'number';
  return ok ? v as ControlAnswer : new Error(`the server answered something that is not an answer: ${line.slice(0, 300)}`);
}

/** A connection to the control socket that sends raw text and reads answers one line at a time. */
export class ControlConnection {
  private readonly sock: net.Socket;
  private buf = '';
  private readonly answers: (ControlAnswer | Error)[] = [];
  private readonly waiters: { resolve: (a: ControlAnswer) => void; reject: (e: Error) => void }[] = [];
  private isClosed = false;
  /** The last socket error (EPIPE, ECONNRESET: the server hung up while we were still writing). */
  error: Error | undefined;
  /** Settles once the connection is closed, by either side. */
  readonly closed: Promise<void>;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buf += chunk;
      const lines = this.buf.split('\n');
      this.buf = lines.pop() ?? '';
      for (const l of lines) {
        if (l.trim() === '') continue;
        const a = parseAnswer(l);
        const w = this.waiters.shift();
        if (!w) this.answers.push(a);
        else if (a instanceof Error) w.reject(a);
        else w.resolve(a);
      }
    });
    sock.on('error', (err) => { this.error = err; });
    this.closed = new Promise<void>((resolve) => sock.once('close', () => {
      this.isClosed = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`the connection closed without an answer${this.error ? ` (${this.error.message})` : ''}`));
      resolve();
    }));
  }

  static open(socket: string): Promise<ControlConnection> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socket);
      s.once('connect', () => { s.off('error', reject); resolve(new ControlConnection(s)); });
      s.once('error', reject);
    });
  }

  /** Writes text exactly as given (add the newline yourself). */
  send(text: string): void {
    this.sock.write(text);
  }

  /** The next answer line. */
  next(): Promise<ControlAnswer> {
    const a = this.answers.shift();
    if (a instanceof Error) return Promise.reject(a);
    if (a) return Promise.resolve(a);
    if (this.isClosed) return Promise.reject(new Error('the connection is closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): void {
    this.sock.destroy();
  }
}

export interface FuseServerProcess {
  readonly socket: string;
  readonly root: string;
  readonly store: string;
  readonly logFile: string;
  readonly process: ManagedProcess;
  /** The pid the server wrote to `${socket}.pid`. */
  pid(): Promise<number>;
  /** One line on a new connection; the first answer, then the connection is closed. */
  ask(line: string): Promise<ControlAnswer>;
  /** A well-formed request on a new connection. */
  call(method: string, params: Record<string, unknown>, id?: number): Promise<ControlAnswer>;
  /** How many /dev/fuse descriptors the server holds: every mount it makes needs one. */
  fuseDescriptors(): Promise<number>;
  /** SIGTERM by the pid in the pid file (it unmounts every layer), and waits for the exit. */
  stop(): Promise<void>;
}

export interface FuseServerOptions {
  root: string;
  store: string;
  /** Names its directory in the scope. */
  name?: string;
  logLevel?: string;
  extraArgs?: readonly string[];
  /** The server's environment (this process's by default). */
  env?: NodeJS.ProcessEnv;
}

/** Starts `fuse-server --root R --store S --socket X` with its working directory in the scope. */
export async function startFuseServer(scope: Scope, o: FuseServerOptions): Promise<FuseServerProcess> {
  const name = o.name ?? 'fuse-server';
  const dir = await scope.mkdir(name);
  // The server wants its socket's directory to itself.
  const socket = join(await scope.mkdir(name, 'run'), 'fuse.sock');
  const logFile = join(dir, 'fuse-server.log');
  const pid = async (): Promise<number> => Number.parseInt(await readFile(`${socket}.pid`, 'utf8'), 10);
  const stop = async (): Promise<void> => {
    const p = await pid().catch(() => undefined);
    if (p === undefined || !Number.isInteger(p) || !isAlive(p)) return;
    process.kill(p, 'SIGTERM');
    await waitUntil(() => !isAlive(p), { what: `FUSE server ${p} to exit`, timeoutMs: 20_000 });
  };
  scope.defer(`stop ${name}`, stop);
  const proc = await ManagedProcess.start({
    name,
    cmd: process.execPath,
    args: [daemonBin, 'fuse-server', '--root', o.root, '--store', o.store, '--socket', socket, '--log-level', o.logLevel ?? 'info', ...(o.extraArgs ?? [])],
    logFile,
    cwd: dir,
    ...(o.env ? { env: o.env } : {}),
  });
  await waitUntil(async () => (await canConnect(socket)) && (await pid().then(Number.isInteger, () => false)), { what: `${name} to listen on ${socket}`, process: proc, timeoutMs: 20_000 });
  const ask = async (line: string): Promise<ControlAnswer> => {
    const c = await ControlConnection.open(socket);
    try {
      c.send(line);
      return await c.next();
    } finally {
      c.close();
    }
  };
  return {
    socket,
    root: o.root,
    store: o.store,
    logFile,
    process: proc,
    pid,
    ask,
    call: (method, params, id = 1) => ask(`${JSON.stringify({ id, method, params })}\n`),
    fuseDescriptors: async () => {
      const p = await pid();
      let n = 0;
      for (const fd of await readdir(`/proc/${p}/fd`)) {
        if (await readlink(`/proc/${p}/fd/${fd}`).then((t) => t === '/dev/fuse', () => false)) n++;
      }
      return n;
    },
    stop,
  };
}
