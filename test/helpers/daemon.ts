// The cvmfs-snapshotter daemon under test, with a private socket, root, config and log file.
import { writeFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from '../../src/sys/pid.js';
import { daemonBin } from './paths.js';
import { ManagedProcess, type ExitStatus } from './process.js';
import type { Scope } from './scope.js';
import { canConnect, waitUntil } from './wait.js';

export type DaemonLogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface DaemonOptions {
  /** The daemon's --root. Default: <scope>/<name>/root. */
  root?: string;
  /** The whole config file. Default: the repository and a private, empty absolute-mountpoint. */
  configToml?: string;
  logLevel?: DaemonLogLevel;
  /** Names the directory in the scope; use different names for several daemons. */
  name?: string;
  /** Extra command line arguments. */
  extraArgs?: readonly string[];
}

export interface Daemon {
  socket: string;
  root: string;
  configFile: string;
  /** stdout+stderr of every run, appended; pino JSON lines. */
  logFile: string;
  /** PID of the current run. */
  readonly pid: number;
  readonly process: ManagedProcess;
  /** Milliseconds from spawn to the socket accepting connections, for the last start. */
  readonly startupMs: number;
  /** Sends signal and waits for the process to exit. */
  kill(signal: NodeJS.Signals): Promise<ExitStatus>;
  /** Stops the current run if it is still running (SIGTERM), then starts it again with the same arguments. */
  restart(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; throws if it had to be forced or exited non-zero. */
  stop(): Promise<void>;
  /** The parsed JSON log lines so far (lines that are not JSON are skipped). */
  logRecords(): LogRecord[];
  /** The control socket of the FUSE server the daemon started (it outlives the daemon). */
  fuseSocket: string;
  /** PID of the FUSE server now, from its pid file; undefined when none runs. */
  fuseServerPid(): Promise<number | undefined>;
  /** Stops the FUSE server (SIGTERM: it unmounts every layer) and waits until it is gone. */
  stopFuseServer(): Promise<void>;
}

export type LogRecord = Record<string, unknown>;

function tomlString(s: string): string {
  return JSON.stringify(s);
}

export function defaultDaemonConfig(storeDir: string): string {
  return `repository = ${tomlString('unpacked.cern.ch')}\nabsolute-mountpoint = ${tomlString(storeDir)}\n`;
}

export async function startDaemon(scope: Scope, opts: DaemonOptions = {}): Promise<Daemon> {
  const name = opts.name ?? 'daemon';
  const dir = await scope.mkdir(name);
  const root = opts.root ?? join(dir, 'root');
  await mkdir(root, { recursive: true });
  const socket = join(dir, 'run', 'snapshotter.sock');
  const configFile = join(dir, 'config.toml');
  const logFile = join(dir, 'daemon.log');
  let config = opts.configToml;
  if (config === undefined) {
    const store = await scope.mkdir(name, 'store', 'unpacked.cern.ch');
    config = defaultDaemonConfig(store);
  }
  await writeFile(configFile, config);
  const args = ['--address', socket, '--root', root, '--config', configFile, '--log-level', opts.logLevel ?? 'debug', ...(opts.extraArgs ?? [])];

  const fuseSocket = join(dir, 'run', 'fuse-server.sock');
  const fuseServerPid = async (): Promise<number | undefined> => {
    const text = await readFile(`${fuseSocket}.pid`, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    return Number.isInteger(pid) && isAlive(pid) ? pid : undefined;
  };
  const stopFuseServer = async (): Promise<void> => {
    const pid = await fuseServerPid();
    if (pid === undefined) return;
    process.kill(pid, 'SIGTERM');
    const gone = await waitUntil(() => !isAlive(pid), { what: `FUSE server ${pid} to exit`, timeoutMs: 20_000 }).then(() => true, () => false);
    if (!gone) {
      process.kill(pid, 'SIGKILL');
      throw new Error(`FUSE server ${pid} did not stop within 20 s of SIGTERM and was killed`);
    }
  };
  // Deferred first, so it runs after the daemon has stopped: the server outlives the daemon.
  scope.defer(`stop ${name}'s FUSE server`, stopFuseServer);

  let current: ManagedProcess | undefined;
  let startupMs = 0;
  const start = async (): Promise<void> => {
    const t0 = Date.now();
    current = await ManagedProcess.start({ name, cmd: process.execPath, args: [daemonBin, ...args], logFile });
    await waitUntil(() => canConnect(socket), { what: `${name} socket ${socket}`, process: current, timeoutMs: 20_000 });
    startupMs = Date.now() - t0;
  };
  const proc = (): ManagedProcess => {
    if (current === undefined) throw new Error(`${name} was never started`);
    return current;
  };
  const stop = async (): Promise<void> => {
    if (current === undefined || !current.running) return;
    const s = await current.stop(10_000);
    if (s.forced) throw new Error(`${name} did not stop within 10 s of SIGTERM and was killed; log tail:\n${current.logTail()}`);
    if (s.code !== 0 && s.signal !== 'SIGTERM') throw new Error(`${name} exited with ${s.signal ?? `code ${s.code}`} on SIGTERM; log tail:\n${current.logTail()}`);
  };

  scope.defer(`stop ${name}`, stop);
  await start();
  return {
    socket,
    root,
    configFile,
    logFile,
    get pid() { return proc().pid; },
    get process() { return proc(); },
    get startupMs() { return startupMs; },
    kill: (signal) => proc().kill(signal),
    restart: async () => { await stop(); await start(); },
    stop,
    logRecords: () => parseJsonLines(proc().log()),
    fuseSocket,
    fuseServerPid,
    stopFuseServer,
  };
}

export function parseJsonLines(text: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(line);
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) out.push(v as LogRecord);
    } catch { /* a partial line at the end of a log that is still being written */ }
  }
  return out;
}
