// Runs the real entry point, bin/cvmfs-snapshotter, the way a user does.
import { exec, type ExecOptions, type ExecResult } from '../../src/sys/exec.js';
import { daemonBin } from './paths.js';

/** `bin/cvmfs-snapshotter ARGS`; the exit code is the caller's to judge. */
export function runCli(args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return exec(process.execPath, [daemonBin, ...args], { timeoutMs: 300_000, ...opts });
}
