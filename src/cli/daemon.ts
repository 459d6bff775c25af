// The daemon: containerd's Snapshots API on a unix socket, until SIGTERM or SIGINT.
import { parseArgs } from 'node:util';
import { createLogger, defaultLogFormat, isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger } from '../log.js';
import { realpath, mkdir } from 'node:fs/promises';
import { Snapshotter } from '../snapshotter/snapshotter.js';
import { StoreLayers } from '../snapshotter/store-layers.js';
import { LayerStore } from '../layers/store.js';
import { FuseLayerMounter } from '../fuse/index.js';
import { SocketServer } from '../server/server.js';
import { snapshotsHandlers } from '../server/service.js';
import { DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_ROOT, loadConfig } from './config.js';

export const DAEMON_USAGE = `Usage: cvmfs-snapshotter [options]

Serves containerd's snapshots API as the proxy plugin "cvmfs-snapshotter".

Options:
  --address SOCK     unix socket to serve on (default ${DEFAULT_ADDRESS})
  --root DIR         where snapshots and metadata live (default ${DEFAULT_ROOT})
  --config FILE      TOML config (default ${DEFAULT_CONFIG_PATH}, read when present)
  --log-level LEVEL  ${LOG_LEVELS.join(', ')} (default info)
  --log-format FMT   ${LOG_FORMATS.join(' or ')} (default: pretty on a terminal, json otherwise)
  --version          print the version
  --help             print this help
`;

export interface DaemonOptions {
  address: string;
  root: string;
  configPath: string;
  configRequired: boolean;
  logLevel: string;
  logFormat: LogFormat;
}

export function parseDaemonArgs(argv: string[]): DaemonOptions | 'help' | 'version' {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string' },
      root: { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  if (values.version) return 'version';
  const logLevel = values['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) throw new Error(`--log-level ${logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = values['log-format'] ?? defaultLogFormat();
  if (!isLogFormat(logFormat)) throw new Error(`--log-format ${logFormat}: expected one of ${LOG_FORMATS.join(', ')}`);
  return {
    address: values.address ?? DEFAULT_ADDRESS,
    root: values.root ?? DEFAULT_ROOT,
    configPath: values.config ?? DEFAULT_CONFIG_PATH,
    configRequired: values.config !== undefined,
    logLevel,
    logFormat,
  };
}

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
  const remote = new StoreLayers(
    new LayerStore(config.absoluteMountpoint),
    new FuseLayerMounter({ log: layerLog, cacheEntries: config.metadataCacheEntries }),
    layerLog,
  );
  const sn = await Snapshotter.open({ root, log: log.child({ component: 'snapshotter' }), remote });
  const server = new SocketServer(opts.address, log);
  try {
    await server.listen(snapshotsHandlers(sn, log.child({ component: 'grpc' })));
  } catch (err) {
    await sn.close();
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
      void server.close()
        .then(() => sn.close())
        .then(() => { log.info('stopped'); resolve(0); }, (err: unknown) => { log.error({ err }, 'error while stopping'); resolve(1); });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
