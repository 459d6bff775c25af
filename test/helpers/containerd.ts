// A private containerd 1.6 (own root, state, sockets, config), with ctr bound to it.
import { existsSync } from 'node:fs';
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, type ExecResult } from '../../src/sys/exec.js';
import { PROXY_SNAPSHOTTER, renderContainerdConfig, renderRegistryHosts, type ContainerdPaths } from './containerd-config.js';
import { ManagedProcess } from './process.js';
import type { Registry } from './registry.js';
import type { Scope } from './scope.js';
import { canConnect, waitUntil } from './wait.js';

export { PROXY_SNAPSHOTTER };

export interface ContainerdOptions {
  /** The snapshotter daemon's socket, configured as proxy plugin "cvmfs-snapshotter". */
  snapshotterSocket?: string;
  criEnabled?: boolean;
  /** CRI's snapshotter; default the proxy plugin when there is one. */
  criSnapshotter?: string;
  /** Registries reachable as plain HTTP through the hosts directory (CRI, ctr --hosts-dir). */
  registries?: readonly Registry[];
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Names the directory in the scope. */
  name?: string;
}

export interface CtrOptions {
  namespace?: string;
  timeoutMs?: number;
  input?: string;
}

export interface Containerd {
  socket: string;
  paths: ContainerdPaths;
  configFile: string;
  logFile: string;
  process: ManagedProcess;
  /** Milliseconds from spawn until `ctr version` answered. */
  startupMs: number;
  /** Flags that keep `ctr run` state in our directories: --runc-root, --fifo-dir. */
  runFlags: readonly string[];
  /** Flags for `ctr images pull` from the private registries: --hosts-dir. */
  pullFlags: readonly string[];
  /** Runs ctr --address <socket> args; throws with stderr on a non-zero exit. */
  ctr(args: readonly string[], opts?: CtrOptions): Promise<string>;
  /** Like ctr, but returns the result whatever the exit code. */
  ctrResult(args: readonly string[], opts?: CtrOptions): Promise<ExecResult>;
  /**
   * Runs containerd's garbage collector now and waits for it, snapshotter removals included
   * (by deleting a fresh lease with --sync). Otherwise GC runs on its own schedule, about a
   * second after something was deleted.
   */
  gc(namespace?: string): Promise<void>;
  /** Kills and deletes every task and container in every namespace (best effort). */
  drain(): Promise<void>;
  /** drain(), then SIGTERM (SIGKILL after a grace period). */
  stop(): Promise<void>;
}

export async function startContainerd(scope: Scope, opts: ContainerdOptions = {}): Promise<Containerd> {
  const name = opts.name ?? 'containerd';
  const dir = await scope.mkdir(name);
  const paths: ContainerdPaths = {
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    temp: join(dir, 'tmp'),
    socket: join(dir, 'containerd.sock'),
    runcRoot: join(dir, 'runc'),
    opt: join(dir, 'opt'),
    hostsDir: join(dir, 'certs.d'),
    cniBin: join(dir, 'cni', 'bin'),
    cniConf: join(dir, 'cni', 'net.d'),
  };
  const fifoDir = join(dir, 'fifo');
  for (const d of [paths.root, paths.state, paths.temp, paths.runcRoot, paths.opt, paths.hostsDir, paths.cniBin, paths.cniConf, fifoDir]) {
    await mkdir(d, { recursive: true });
  }
  for (const r of opts.registries ?? []) {
    await mkdir(join(paths.hostsDir, r.host), { recursive: true });
    await writeFile(join(paths.hostsDir, r.host, 'hosts.toml'), renderRegistryHosts(r.host));
  }
  const configFile = join(dir, 'config.toml');
  await writeFile(configFile, renderContainerdConfig({
    paths,
    snapshotterSocket: opts.snapshotterSocket,
    criEnabled: opts.criEnabled ?? false,
    criSnapshotter: opts.criSnapshotter,
    logLevel: opts.logLevel ?? 'info',
  }));

  const ctrResult = (args: readonly string[], o: CtrOptions = {}): Promise<ExecResult> =>
    exec('ctr', ['--address', paths.socket, ...(o.namespace ? ['--namespace', o.namespace] : []), ...args],
      { timeoutMs: o.timeoutMs ?? 120_000, input: o.input });
  const ctr = async (args: readonly string[], o: CtrOptions = {}): Promise<string> => {
    const r = await ctrResult(args, o);
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };

  // containerd 1.6's shims always put their sockets in /run/containerd/s (named by a hash of our
  // socket path, so they never collide with a system containerd's). Remove the directories again
  // if they were not there before and are empty.
  const shimSocketDirs = existsSync('/run/containerd') ? [] : ['/run/containerd/s', '/run/containerd'];

  const t0 = Date.now();
  const logFile = join(dir, 'containerd.log');
  const proc = await ManagedProcess.start({ name, cmd: 'containerd', args: ['--config', configFile], logFile });
  const ready = async (): Promise<boolean> => (await canConnect(paths.socket)) && (await ctrResult(['version'], { timeoutMs: 5_000 })).code === 0;
  await waitUntil(ready, { what: `${name} at ${paths.socket}`, process: proc, timeoutMs: 30_000, intervalMs: 50 });
  const startupMs = Date.now() - t0;
  if (opts.criEnabled) await checkCriConfig(proc, opts.criSnapshotter ?? (opts.snapshotterSocket !== undefined ? PROXY_SNAPSHOTTER : 'overlayfs'));

  const lines = async (args: readonly string[], namespace?: string): Promise<string[]> => {
    const r = await ctrResult(args, { namespace, timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '') : [];
  };
  const drain = async (): Promise<void> => {
    if (!proc.running) return;
    for (const ns of await lines(['namespaces', 'ls', '-q'])) {
      for (const task of await lines(['tasks', 'ls', '-q'], ns)) {
        await ctrResult(['tasks', 'delete', '--force', task], { namespace: ns, timeoutMs: 30_000 });
      }
      for (const c of await lines(['containers', 'ls', '-q'], ns)) {
        await ctrResult(['containers', 'delete', c], { namespace: ns, timeoutMs: 30_000 });
      }
    }
  };
  let leaseCounter = 0;
  const gc = async (namespace?: string): Promise<void> => {
    const id = `test-gc-${process.pid}-${++leaseCounter}`;
    await ctr(['leases', 'create', '--id', id], { namespace });
    await ctr(['leases', 'delete', '--sync', id], { namespace });
  };
  const stop = async (): Promise<void> => {
    await drain();
    const s = await proc.stop(10_000);
    for (const d of shimSocketDirs) await rmdir(d).catch(() => undefined);
    if (s.forced) throw new Error(`${name} did not stop within 10 s of SIGTERM and was killed`);
  };
  scope.defer(`stop ${name}`, stop);

  return {
    socket: paths.socket,
    paths,
    configFile,
    logFile,
    process: proc,
    startupMs,
    runFlags: ['--runc-root', paths.runcRoot, '--fifo-dir', fifoDir],
    pullFlags: ['--hosts-dir', paths.hostsDir],
    ctr,
    ctrResult,
    gc,
    drain,
    stop,
  };
}

/**
 * CRI logs the config really in force; a setting in the wrong table is silently ignored (NOTES:
 * disable_snapshot_annotations one level too high), so check what CRI says it uses.
 */
async function checkCriConfig(proc: ManagedProcess, snapshotter: string): Promise<void> {
  const line = (): string | undefined => proc.log().split('\n').find((l) => l.includes('Start cri plugin with config'));
  await waitUntil(() => line() !== undefined, { what: 'CRI to log its config', process: proc, timeoutMs: 10_000 });
  const l = line() ?? '';
  for (const want of ['DisableSnapshotAnnotations:false', `Snapshotter:${snapshotter} `]) {
    if (!l.includes(want)) throw new Error(`CRI is not configured as asked: no ${want.trim()} in: ${l.slice(0, 2000)}`);
  }
}
