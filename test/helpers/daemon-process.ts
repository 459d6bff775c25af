// Daemon and FUSE server processes started with exactly the arguments a test gives, for what
// startDaemon cannot express: a daemon that does not serve at once (--external-fuse-server waits
// for a server; --replace takes another daemon's socket), and a FUSE server that reports another
// host name (its own UTS namespace, as a server in another pod).
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { isAlive } from '../../src/sys/pid.js';
import { parseJsonLines, type LogRecord } from './daemon.js';
import { daemonBin } from './paths.js';
import { ManagedProcess } from './process.js';
import type { Scope } from './scope.js';
import { canConnect, waitUntil } from './wait.js';
import { defaultDaemonConfig } from './daemon.js';

/** A daemon config over store with its HTTP listener ([metrics]: /metrics, /livez, /readyz) on 127.0.0.1:port. */
export const configWithMetrics = (store: string, port: number): string => `${defaultDaemonConfig(store)}\n[metrics]\naddress = "127.0.0.1:${port}"\n`;

/** GET http://127.0.0.1:port/path: its status and body. */
export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

/**
 * Polls /readyz until its status is the one wanted (and its body matches); the last answer's
 * body. With daemon, fails at once, with its log tail, if it exits meanwhile.
 */
export async function readyzBecomes(port: number, want: number, what: string, o: { daemon?: ManagedProcess; match?: RegExp; timeoutMs?: number } = {}): Promise<string> {
  let last = { status: 0, body: '' };
  await waitUntil(async () => {
    last = await httpGet(port, '/readyz').catch((err: unknown) => ({ status: 0, body: `no answer: ${String(err)}` }));
    return last.status === want && (o.match === undefined || o.match.test(last.body));
  }, { what: `${what} (/readyz ${want}${o.match ? ` matching ${o.match.source}` : ''})`, timeoutMs: o.timeoutMs ?? 60_000, ...(o.daemon ? { process: o.daemon } : {}) })
    .catch((err: unknown) => { throw new Error(`${err instanceof Error ? err.message : String(err)}; the last answer: ${last.status} ${last.body.trim()}`); });
  return last.body;
}

export interface DaemonProcess {
  readonly pid: number;
  readonly process: ManagedProcess;
  log(): string;
  logRecords(): LogRecord[];
  /** SIGTERM; throws if it had to be killed or exited with another status than 0. */
  stop(): Promise<void>;
}

/** Starts `cvmfs-snapshotter ARGS` with its log in <scope>/<name>/daemon.log; waits for nothing. */
export async function startDaemonProcess(scope: Scope, name: string, args: readonly string[]): Promise<DaemonProcess> {
  const dir = await scope.mkdir(name);
  const proc = await ManagedProcess.start({ name, cmd: process.execPath, args: [daemonBin, ...args], logFile: join(dir, 'daemon.log') });
  const stop = async (): Promise<void> => {
    if (!proc.running) return;
    const s = await proc.stop(15_000);
    if (s.forced || s.code !== 0) throw new Error(`${name} exited with ${s.forced ? 'SIGKILL after 15 s' : s.signal ?? `code ${s.code}`} on SIGTERM; log tail:\n${proc.logTail()}`);
  };
  scope.defer(`stop ${name}`, stop);
  return {
    pid: proc.pid,
    process: proc,
    log: () => proc.log(),
    logRecords: () => parseJsonLines(proc.log()),
    stop,
  };
}

/** Polls the daemon's log until a record matches. */
export async function waitForLog(d: DaemonProcess, match: (r: LogRecord) => boolean, what: string): Promise<LogRecord> {
  let found: LogRecord | undefined;
  await waitUntil(() => (found = d.logRecords().find(match)) !== undefined, { what, process: d.process, timeoutMs: 30_000 });
  return found as LogRecord;
}

export interface HostedFuseServer {
  readonly pid: number;
  /** SIGTERM (it unmounts what it serves) and waits for the exit. */
  stop(): Promise<void>;
}

/**
 * `fuse-server --root --store --socket` in a UTS namespace of its own whose host name is host:
 * its answers say that host, as a server in another pod would. Stopped by its pid (unshare and
 * sh exec into the server, so the pid is the server's).
 */
export async function startFuseServerAs(scope: Scope, name: string, host: string, o: { root: string; store: string; socket: string }): Promise<HostedFuseServer> {
  const dir = await scope.mkdir(name);
  const proc = await ManagedProcess.start({
    name: `${name} (host ${host})`,
    cmd: 'unshare',
    args: ['--uts', '--', '/bin/sh', '-c', `hostname "$0" && exec "$@"`, host,
      process.execPath, daemonBin, 'fuse-server', '--root', o.root, '--store', o.store, '--socket', o.socket, '--log-level', 'info'],
    logFile: join(dir, `fuse-server-${host}.log`),
    cwd: dir,
  });
  const stop = async (): Promise<void> => {
    if (!proc.running) return;
    const s = await proc.stop(20_000);
    if (s.forced) throw new Error(`${name} did not stop within 20 s of SIGTERM and was killed`);
  };
  scope.defer(`stop ${name} (host ${host})`, stop);
  const pidFile = async (): Promise<boolean> => Number.parseInt(await readFile(`${o.socket}.pid`, 'utf8').catch(() => ''), 10) === proc.pid;
  await waitUntil(async () => (await canConnect(o.socket)) && (await pidFile()) && isAlive(proc.pid),
    { what: `${name} to listen on ${o.socket}`, process: proc, timeoutMs: 20_000 });
  return { pid: proc.pid, stop };
}
