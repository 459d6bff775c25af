// The one logger. Modules take a Logger and bind their own context with child().
import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isLogLevel(v: string): v is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

/** JSON lines on stdout; a test or library user passes level 'silent'. */
export function createLogger(level: LevelWithSilent = 'info', name = 'cvmfs-snapshotter'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
