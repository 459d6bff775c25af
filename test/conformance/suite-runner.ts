// Builds containerd's snapshotter conformance suite (build.sh) and runs it against a socket.
import { join } from 'node:path';
import { exec, execOk } from '../../src/sys/exec.js';
import { repoRoot } from '../helpers/paths.js';
import { parseGoTestOutput, type GoTestReport } from './go-test-output.js';

export const CONFORMANCE_DIR = join(repoRoot, 'test', 'conformance');
/** build.sh's default output: gitignored, rebuilt only when stale. */
export const SUITE_BINARY = join(CONFORMANCE_DIR, 'suite.test');

/** Builds the suite binary if it is missing or stale; returns build.sh's one-line verdict. */
export async function buildSuite(): Promise<string> {
  const r = await execOk('sh', [join(CONFORMANCE_DIR, 'build.sh'), SUITE_BINARY], { timeoutMs: 600_000 });
  return r.stdout.trim();
}

export interface SuiteRun {
  /** Unix socket of a Snapshots server: the daemon or a containerd. */
  address: string;
  /** Value of the snapshotter field in every request (containerd routes on it). */
  snapshotter: string;
  /** purge for a raw snapshotter socket, namespace through containerd. */
  isolate: 'purge' | 'namespace';
  /** TMPDIR for the suite: where it makes and mounts its work directories. */
  tmpDir: string;
  /** A go test -run pattern, e.g. 'TestSnapshotterSuite/(Walk|Update)'. */
  run?: string;
  timeoutMs?: number;
}

export interface SuiteResult {
  report: GoTestReport;
  exitCode: number | null;
  durationMs: number;
  stdout: string;
  stderr: string;
}

export async function runSuite(o: SuiteRun): Promise<SuiteResult> {
  const args = ['-test.v', '-test.root', '-test.timeout', '10m', '-address', o.address, '-snapshotter', o.snapshotter, '-isolate', o.isolate];
  if (o.run !== undefined) args.push('-test.run', o.run);
  const t0 = Date.now();
  const r = await exec(SUITE_BINARY, args, { env: { ...process.env, TMPDIR: o.tmpDir }, timeoutMs: o.timeoutMs ?? 660_000 });
  return { report: parseGoTestOutput(r.stdout), exitCode: r.code, durationMs: Date.now() - t0, stdout: r.stdout, stderr: r.stderr };
}
