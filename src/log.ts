// The one logger. Modules take a Logger and bind their own context with child().
import { createRequire } from 'node:module';
import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';
import type PinoPretty from 'pino-pretty';

export type Logger = PinoLogger;
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isLogLevel(v: string): v is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

/** json: one JSON object per line (for journald, kubectl logs, log shippers); pretty: for people. */
export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export function isLogFormat(v: string): v is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(v);
}

/** Pretty when the logs go to a terminal (stdout), JSON everywhere else. */
export function defaultLogFormat(): LogFormat {
  return process.stdout.isTTY === true ? 'pretty' : 'json';
}

/** Log lines on stdout; a test or library user passes level 'silent'. */
export function createLogger(level: LevelWithSilent = 'info', format: LogFormat = defaultLogFormat(), name = 'cvmfs-snapshotter'): Logger {
  const opts = { name, level, base: { pid: process.pid } };
  if (format === 'json') return pino(opts);
  // Loaded only for people at a terminal: the long-lived processes log JSON and need not carry it.
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  // sync: a fatal line written just before process.exit() must not be lost in a buffer.
  return pino(opts, pretty({ sync: true, destination: 1, colorize: process.stdout.isTTY === true }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
