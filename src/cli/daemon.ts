// The daemon: containerd's Snapshots API on a unix socket, until SIGTERM or SIGINT, or until a
// successor (--replace) asks it to step down; then it stays idle, holding nothing, until a signal.
import { createLogger, isLogLevel, type Logger } from '../log.js';
import type { DaemonOptions } from './daemon-args.js';
import { realpath, mkdir } from 'node:fs/promises';
import { Snapshotter } from '../snapshotter/snapshotter.js';
import { createStoreLayers } from '../remote/index.js';
import { RemoteLayerMounter } from '../fuse/server/client.js';
import { spawnDetached } from '../sys/exec.js';
import { BIN_PATH, fuseServerNodeFlags } from './build-info.js';
import { CleanupStack } from './cleanup-stack.js';
import { resolve } from 'node:path';
import { SocketServer } from '../server/server.js';
import { snapshotsHandlers } from '../server/service.js';
import {
  CountingRemoteLayers, createDaemonMetrics, registrySource, startMetricsServer,
} from '../metrics/index.js';
import { loadConfig } from './config.js';
import { hostname } from 'node:os';
import { askToStepDown, controlSocketPath, listenDaemonControl, NoControlSocket, type Successor } from './daemon-control.js';
import { phaseReason, readiness, StopRequested, waitForFuseServer, waitForOwnFuseServer, type Phase, type ServingView } from './daemon-health.js';
import { socketAnswers } from '../server/socket.js';

export async function runDaemon(opts: DaemonOptions, version: string): Promise<number> {
  if (!isLogLevel(opts.logLevel)) throw new Error(`bad log level ${opts.logLevel}`);
  const log: Logger = createLogger(opts.logLevel, opts.logFormat);
  // A bug must not die silently: log it as JSON, then exit; the next start clears dead mounts.
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting');
    process.exit(70);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled promise rejection; exiting');
    process.exit(70);
  });
  const config = await loadConfig(opts.configPath, opts.configRequired);
  log.info({ version, root: opts.root, config: opts.configPath, ...config }, 'starting');

  // Mountpoints are compared as the kernel reports them, so the root must be canonical.
  await mkdir(opts.root, { recursive: true, mode: 0o700 });
  const root = await realpath(opts.root);
  const layerLog = log.child({ component: 'layers' });
  const daemonMetrics = createDaemonMetrics();
  const controlPath = controlSocketPath(opts.address);

  let phase: Phase = { name: 'starting' };
  // Signals are taken from the start on: a daemon waiting for its FUSE server may wait for long.
  const stopRequested = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopRequested.signal.aborted) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'stopping: no new calls; snapshots are kept');
    stopRequested.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  // Each thing started pushes its stop; a failure during start undoes what was started so far,
  // and a signal undoes all of it, in reverse order. What serving needs is undone also when the
  // daemon steps down for a successor; the HTTP listener stays until the process exits.
  const base = new CleanupStack();
  const serving = new CleanupStack();
  let mounter: RemoteLayerMounter | undefined;
  let sn: Snapshotter | undefined;
  let steppingDown: Promise<void> | undefined;

  const stepDown = (successor: Successor): Promise<void> => {
    phase = { name: 'stepping-down', successor };
    log.info({ successor }, 'stepping down for a new daemon: no new calls; snapshots and mounts are kept');
    steppingDown = serving.unwind().then((failures) => {
      for (const f of failures) log.error({ err: f.error, step: f.step }, 'error while stepping down');
      phase = { name: 'stepped-down', successor };
      log.info({ successor }, 'stepped down: the new daemon serves; idle until SIGTERM or SIGINT');
      if (failures.length > 0) throw new Error(`failed steps: ${failures.map((f) => f.step).join(', ')} (see the log of pid ${process.pid})`);
    });
    return steppingDown;
  };
  const refusal = (): string | undefined => {
    if (phase.name === 'serving') return undefined;
    if (phase.name === 'stepping-down' || phase.name === 'stepped-down') {
      return `this daemon (pid ${process.pid}) already stepped down for the daemon with pid ${phase.successor.pid} on host ${phase.successor.host}`;
    }
    return `this daemon (pid ${process.pid}) is ${phaseReason(phase, { address: opts.address, fuseSocket: opts.fuseSocket }) ?? phase.name}`;
  };

  try {
    // Checked before anything is started: two daemons must never open one root at once.
    if (!opts.replace && await socketAnswers(opts.address)) {
      throw new Error(`another process is serving on ${opts.address}; stop it first, or start this daemon with --replace to take over from it`);
    }

    // Before anything is mounted, so that a bad address stops the daemon with nothing to undo.
    if (config.metrics) {
      const view: ServingView = {
        address: opts.address,
        fuseSocket: opts.fuseSocket,
        ownHost: hostname(),
        probe: () => (mounter ? mounter.probe() : Promise.reject(new Error('not connected yet'))),
        needed: () => sn?.layerMountsNeeded() ?? [],
      };
      const metricsServer = await startMetricsServer({
        host: config.metrics.host,
        port: config.metrics.port,
        sources: [
          registrySource('daemon', daemonMetrics.registry),
          // Only while serving: a daemon that stepped down has let go of the FUSE server.
          { name: 'fuse-server', collect: () => (phase.name === 'serving' && mounter ? mounter.metrics() : Promise.resolve([])) },
        ],
        readiness: () => readiness(() => phase, view),
        log: log.child({ component: 'metrics' }),
      });
      // A listening socket would keep the process alive after everything else stopped.
      base.push('metrics server', () => metricsServer.close());
      log.info({ url: metricsServer.url, health: ['/livez', '/readyz'] }, 'serving metrics');
    }

    // Layers are served by a separate long-lived process, so that this one can restart without
    // breaking a running container; it is started here when none answers, unless someone else
    // starts it (--external-fuse-server: the FUSE server's own container on Kubernetes, waited
    // for until the server answering is this pod's, not the old pod's it takes the mounts from).
    const scope = { root, store: resolve(config.absoluteMountpoint) };
    const startServer = (): number | undefined => {
      const pid = spawnDetached(process.execPath, [...fuseServerNodeFlags(config.metadataCacheBytes), BIN_PATH, 'fuse-server', '--socket', opts.fuseSocket, '--log-level', opts.logLevel,
        '--root', scope.root, '--store', scope.store,
        '--cache-entries', String(config.metadataCacheEntries), '--cache-bytes', String(config.metadataCacheBytes),
        '--passthrough', config.fusePassthrough ? 'on' : 'off', '--store-timeout', String(config.storeTimeoutSec),
        '--walk-entries', String(config.layerWalkEntries), '--busy-poll-us', String(config.fuseBusyPollUs)],
      { env: process.env });
      log.info({ pid, socket: opts.fuseSocket }, 'started a FUSE server');
      return pid;
    };
    const m = new RemoteLayerMounter({
      socket: opts.fuseSocket,
      log: layerLog,
      scope,
      ...(opts.externalFuseServer ? {} : { startServer }),
      // A fresh server (its container or process restarted after a crash) serves none of the
      // layers the running containers stand on, and their mounts are dead: mount them again.
      onServerChange: (now, before) => {
        const s = sn;
        if (!s || phase.name !== 'serving') return;
        log.info({ fuseServer: now, before }, 'another FUSE server answers now; mounting again any layer it does not serve');
        s.remountLayers().catch((err: unknown) => log.error({ err }, 'could not mount the layers again on the new FUSE server'));
      },
    });
    mounter = m;
    // Disconnects only: the FUSE server and its mounts outlive the daemon.
    serving.push('FUSE server connection', () => m.disconnect());
    if (opts.externalFuseServer) {
      phase = { name: 'waiting-for-fuse-server' };
      await waitForFuseServer(opts.fuseSocket, log, stopRequested.signal);
      await waitForOwnFuseServer(() => m.probe(), {
        socket: opts.fuseSocket, ownHost: hostname(), log, signal: stopRequested.signal,
        onForeign: (host) => { phase = { name: 'waiting-for-fuse-server', foreignHost: host }; },
      });
    }
    await m.connect();
    log.info({ fuseServer: m.server, mounts: m.mountpoints().length }, 'connected to the FUSE server');

    // Taking over comes last before opening the root, so containerd waits for as short a time as
    // can be; the root is opened only once the daemon that had it has let go of it.
    if (opts.replace) {
      phase = { name: 'replacing' };
      await takeOver(opts, controlPath, log);
    }
    if (stopRequested.signal.aborted) throw new StopRequested('stopped before opening the root');

    const remote = new CountingRemoteLayers(
      createStoreLayers({ storeRoot: config.absoluteMountpoint, mounter: m, log: layerLog, deadlineMs: config.storeCheckTimeoutSec * 1000 }),
      (isRemote, reason) => daemonMetrics.decision(isRemote, reason),
    );
    const opened = await Snapshotter.open({ root, log: log.child({ component: 'snapshotter' }), remote });
    sn = opened;
    serving.push('snapshotter', () => opened.close());
    const server = new SocketServer(opts.address, log);
    // Pushed once it listens: closing unlinks the socket path, which may be another daemon's.
    await server.listen(snapshotsHandlers(opened, log.child({ component: 'grpc' }), daemonMetrics.call));
    serving.push('gRPC server', () => server.close());
    // Last: a daemon asked to step down is one that serves.
    const control = await listenDaemonControl(controlPath, log.child({ component: 'control' }), stepDown, refusal);
    serving.push('control socket', () => control.close());
    phase = { name: 'serving' };
  } catch (err) {
    phase = { name: 'stopping' };
    const failures = [...await serving.unwind(), ...await base.unwind()];
    for (const f of failures) log.error({ err: f.error, step: f.step }, 'stopping after a failed start');
    if (err instanceof StopRequested) {
      log.info({ why: err.message }, 'stopped');
      return failures.length === 0 ? 0 : 1;
    }
    throw err;
  }

  // Held until a signal: after a step-down nothing else (without [metrics], not even a listener)
  // keeps the process alive, and it must stay, or its container would be restarted.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await new Promise<void>((resolve) => {
    if (stopRequested.signal.aborted) resolve();
    else stopRequested.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(keepAlive);
  // Read through a function: TypeScript cannot see that the control socket changed phase meanwhile.
  const now = ((): Phase => phase)();
  const stepped = now.name === 'stepping-down' || now.name === 'stepped-down';
  // A step-down under way finishes first (its successor waits for the answer).
  await steppingDown?.catch(() => undefined);
  if (!stepped) phase = { name: 'stopping' };
  const failures = [...await serving.unwind(), ...await base.unwind()];
  for (const f of failures) log.error({ err: f.error, step: f.step }, 'error while stopping');
  if (failures.length === 0) log.info(stepped ? 'stopped (had stepped down; removed and unmounted nothing)' : 'stopped');
  return failures.length === 0 ? 0 : 1;
}

/** How long a daemon that serves gRPC may take to listen on its control socket too (it does so right after). */
const CONTROL_SOCKET_GRACE_MS = 3000;

/** Asks the daemon serving on the address (if any) to step down, and waits until it has. */
async function takeOver(opts: DaemonOptions, controlPath: string, log: Logger): Promise<void> {
  const deadline = Date.now() + CONTROL_SOCKET_GRACE_MS;
  for (;;) {
    try {
      const { pid } = await askToStepDown(controlPath, { pid: process.pid, host: hostname() }, opts.replaceTimeoutSec * 1000);
      log.info({ predecessor: pid, address: opts.address }, 'the daemon that served before stepped down; taking over');
      return;
    } catch (err) {
      if (!(err instanceof NoControlSocket)) throw err;
      if (!await socketAnswers(opts.address)) {
        log.info({ address: opts.address }, 'no daemon serves on the address; starting (--replace had nothing to replace)');
        return;
      }
      // A daemon that has just started serving gRPC listens on its control socket a moment later.
      if (Date.now() > deadline) {
        throw new Error(`another process is serving on ${opts.address}, and nothing answers on its control socket ${controlPath}: `
          + 'it is not a daemon that can step down (one older than --replace?); stop it first');
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
