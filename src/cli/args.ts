// Argument parsing shared by the subcommands: --help, and one form of usage error (exit 2).
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true }>>;

/** Prints a usage error for `cvmfs-snapshotter COMMAND` and returns its exit code. */
export function usageError(command: string, message: string): number {
  process.stderr.write(`cvmfs-snapshotter ${command}: ${message}\nRun 'cvmfs-snapshotter ${command} --help' for usage.\n`);
  return 2;
}

/**
 * Parses a subcommand's arguments, with -h/--help added. Returns the parsed values, or the exit
 * code when there is nothing more to do (help printed: 0; bad arguments: 2).
 */
export function parseCommand<O extends Options>(command: string, usage: string, args: string[], options: O): Parsed<O> | number {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true }) as Parsed<O>;
  } catch (err) {
    return usageError(command, (err as Error).message);
  }
  if ((parsed.values as Record<string, unknown>)['help'] === true) {
    process.stdout.write(usage);
    return 0;
  }
  return parsed;
}
