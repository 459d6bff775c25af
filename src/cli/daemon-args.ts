// The daemon's command line, apart from the daemon itself: printing the help or parsing the
// options must not load gRPC, SQLite and the snapshotter (other commands share this entry point).
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { defaultLogFormat, isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat } from '../log.js';
import { DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_ROOT } from './defaults.js';

export const DAEMON_USAGE = `Usage: cvmfs-snapshotter [options]

Serves containerd's snapshots API as the proxy plugin "cvmfs-snapshotter".

Options:
  --address SOCK     unix socket to serve on (default ${DEFAULT_ADDRESS})
  --root DIR         where snapshots and metadata live (default ${DEFAULT_ROOT})
  --config FILE      TOML config (default ${DEFAULT_CONFIG_PATH}, read when present)
  --log-level LEVEL  ${LOG_LEVELS.join(', ')} (default info)
  --fuse-socket SOCK the FUSE server's control socket (default: fuse-server.sock beside --address);
                     the daemon starts a FUSE server there when none answers
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
  fuseSocket: string;
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
      'fuse-socket': { type: 'string' },
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
  const address = values.address ?? DEFAULT_ADDRESS;
  const logFormat = values['log-format'] ?? defaultLogFormat();
  if (!isLogFormat(logFormat)) throw new Error(`--log-format ${logFormat}: expected one of ${LOG_FORMATS.join(', ')}`);
  return {
    address,
    fuseSocket: values['fuse-socket'] ?? join(dirname(address), 'fuse-server.sock'),
    root: values.root ?? DEFAULT_ROOT,
    configPath: values.config ?? DEFAULT_CONFIG_PATH,
    configRequired: values.config !== undefined,
    logLevel,
    logFormat,
  };
}
