// The daemon: containerd's Snapshots API on a unix socket, until SIGTERM or SIGINT.
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

  // Each thing started pushes its stop; a failure during start undoes what was started so far,
  // and a signal undoes all of it, in reverse order.
  const started = new CleanupStack();
  try {
    // Before anything is mounted, so that a bad address stops the daemon with nothing to undo.
    if (config.metrics) {
      const metricsServer = await startMetricsServer({
        host: config.metrics.host,
        port: config.metrics.port,
        sources: [registrySource('daemon', daemonMetrics.registry), { name: 'fuse-server', collect: () => mounter.metrics() }],
        log: log.child({ component: 'metrics' }),
      });
      // A listening socket would keep the process alive after everything else stopped.
      started.push('metrics server', () => metricsServer.close());
      log.info({ url: metricsServer.url }, 'serving metrics');
    }

    // Layers are served by a separate long-lived process, so that this one can restart without
    // breaking a running container; it is started here when none answers.
    const scope = { root, store: resolve(config.absoluteMountpoint) };
    const mounter = new RemoteLayerMounter({
      socket: opts.fuseSocket,
      log: layerLog,
      scope,
      startServer: () => {
        const pid = spawnDetached(process.execPath, [...fuseServerNodeFlags(config.metadataCacheBytes), BIN_PATH, 'fuse-server', '--socket', opts.fuseSocket, '--log-level', opts.logLevel,
          '--root', scope.root, '--store', scope.store,
          '--cache-entries', String(config.metadataCacheEntries), '--cache-bytes', String(config.metadataCacheBytes),
          '--passthrough', config.fusePassthrough ? 'on' : 'off', '--store-timeout', String(config.storeTimeoutSec),
          '--walk-entries', String(config.layerWalkEntries)],
        { env: process.env });
        log.info({ pid, socket: opts.fuseSocket }, 'started a FUSE server');
        return pid;
      },
    });
    // Disconnects only: the FUSE server and its mounts outlive the daemon.
    started.push('FUSE server connection', () => mounter.disconnect());
    await mounter.connect();
    log.info({ fuseServer: mounter.server, mounts: mounter.mountpoints().length }, 'connected to the FUSE server');
    const remote = new CountingRemoteLayers(
      createStoreLayers({ storeRoot: config.absoluteMountpoint, mounter, log: layerLog, deadlineMs: config.storeCheckTimeoutSec * 1000 }),
      (isRemote, reason) => daemonMetrics.decision(isRemote, reason),
    );

    const sn = await Snapshotter.open({ root, log: log.child({ component: 'snapshotter' }), remote });
    started.push('snapshotter', () => sn.close());
    const server = new SocketServer(opts.address, log);
    // Pushed once it listens: closing unlinks the socket path, which may be another daemon's.
    await server.listen(snapshotsHandlers(sn, log.child({ component: 'grpc' }), daemonMetrics.call));
    started.push('gRPC server', () => server.close());
  } catch (err) {
    for (const f of await started.unwind()) log.error({ err: f.error, step: f.step }, 'stopping after a failed start');
    throw err;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'stopping: no new calls; snapshots are kept');
      void started.unwind().then((failures) => {
        for (const f of failures) log.error({ err: f.error, step: f.step }, 'error while stopping');
        if (failures.length === 0) log.info('stopped');
        resolve(failures.length === 0 ? 0 : 1);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
