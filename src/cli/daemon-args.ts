// The daemon's command line, apart from the daemon itself: printing the help or parsing the
// options must not load gRPC, SQLite and the snapshotter (other commands share this entry point).
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { defaultLogFormat, isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogFormat } from '../log.js';
import { DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_ROOT } from './defaults.js';

/** The daemon's control socket (for --replace), beside --address. */
export const CONTROL_SOCKET_NAME = 'daemon-control.sock';
export const DEFAULT_REPLACE_TIMEOUT_SEC = 60;
const MAX_REPLACE_TIMEOUT_SEC = 3600;

export const DAEMON_USAGE = `Usage: cvmfs-snapshotter [options]

Serves containerd's snapshots API as the proxy plugin "cvmfs-snapshotter".

Options:
  --address SOCK     unix socket to serve on (default ${DEFAULT_ADDRESS})
  --root DIR         where snapshots and metadata live (default ${DEFAULT_ROOT})
  --config FILE      TOML config (default ${DEFAULT_CONFIG_PATH}, read when present)
  --log-level LEVEL  ${LOG_LEVELS.join(', ')} (default info)
  --fuse-socket SOCK the FUSE server's control socket (default: fuse-server.sock beside --address);
                     the daemon starts a FUSE server there when none answers
  --external-fuse-server
                     never start a FUSE server: wait (logging) until one of this host answers
                     on --fuse-socket, and reconnect to whichever answers there after a drop
  --replace          if another daemon serves on --address, ask it to step down (through
                     ${CONTROL_SOCKET_NAME} beside --address) and take over once it has; the old
                     one stays idle, removing nothing, until SIGTERM
  --replace-timeout SEC
                     how long --replace waits for the old daemon to step down (default ${DEFAULT_REPLACE_TIMEOUT_SEC})
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
  /** Take over from a daemon serving on address, instead of refusing to start. */
  replace: boolean;
  replaceTimeoutSec: number;
  /** Never start a FUSE server; wait for one on fuseSocket. */
  externalFuseServer: boolean;
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
      replace: { type: 'boolean' },
      'replace-timeout': { type: 'string' },
      'external-fuse-server': { type: 'boolean' },
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
  const timeoutText = values['replace-timeout'] ?? String(DEFAULT_REPLACE_TIMEOUT_SEC);
  const replaceTimeoutSec = /^[0-9]+$/.test(timeoutText) ? Number(timeoutText) : NaN;
  if (!(replaceTimeoutSec >= 1 && replaceTimeoutSec <= MAX_REPLACE_TIMEOUT_SEC)) {
    throw new Error(`--replace-timeout ${timeoutText}: expected whole seconds from 1 to ${MAX_REPLACE_TIMEOUT_SEC}`);
  }
  return {
    address,
    fuseSocket: values['fuse-socket'] ?? join(dirname(address), 'fuse-server.sock'),
    root: values.root ?? DEFAULT_ROOT,
    configPath: values.config ?? DEFAULT_CONFIG_PATH,
    configRequired: values.config !== undefined,
    logLevel,
    logFormat,
    replace: values.replace ?? false,
    replaceTimeoutSec,
    externalFuseServer: values['external-fuse-server'] ?? false,
  };
}
