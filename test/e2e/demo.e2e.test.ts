// The README's first command, `npm run demo`, end to end: it prints the container's hello line and
// the timings of both pulls, and leaves nothing behind (no process, no mount, no work directory),
// also when Ctrl-C stops it half way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';
import { mountsUnder, describeMount, mountsReferencing } from '../helpers/mounts.js';
import { repoRoot } from '../helpers/paths.js';
import { describeProcess, killPid, processesMentioning } from '../helpers/processes.js';
import { waitUntil } from '../helpers/wait.js';

const DEMO = join(repoRoot, 'dist', 'demo', 'demo.js');

interface DemoRun {
  pid: number;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the demo in a process group of its own, as a shell in a terminal would. */
function startDemo(env: NodeJS.ProcessEnv = process.env): DemoRun {
  const child = spawn(process.execPath, [DEMO], { cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })));
  if (child.pid === undefined) throw new Error('the demo did not start');
  return { pid: child.pid, output: () => out, exited };
}

function workDir(output: string): string {
  const m = /^work directory: (\/tmp\/cvmfs-demo-\S+)/m.exec(output);
  assert.ok(m, `the demo names its work directory:\n${output}`);
  return m[1] as string;
}

/** Nothing of the demo's is left: no process mentioning its directory, no mount under it, no directory. */
function assertNothingLeft(dir: string, output: string): void {
  const procs = processesMentioning(dir);
  for (const p of procs) killPid(p.pid);
  assert.deepEqual(procs.map(describeProcess), [], `no process left:\n${output}`);
  assert.deepEqual(mountsUnder(dir).map(describeMount), [], `nothing left mounted:\n${output}`);
  const standing = mountsReferencing(dir);
  for (const m of standing) spawnSync('umount', ['-l', m.mountPoint]);
  assert.deepEqual(standing.map(describeMount), [], `no mount elsewhere stands on it (a containerd temporary mount):\n${output}`);
  assert.equal(existsSync(dir), false, `${dir} was removed:\n${output}`);
}

test('the demo pulls lazily, runs python3, prints both timings, and cleans up', { timeout: 20 * 60_000 }, async () => {
  const run = startDemo();
  const { code } = await run.exited;
  const out = run.output();
  assert.equal(code, 0, out);
  assert.match(out, /^ {6}hello from a lazy container$/m, 'the lazy container\'s output');
  assert.match(out, /^ {6}hello from an overlayfs container$/m, 'the ordinary container\'s output');
  assert.match(out, /lazy pull .*: \d+\.\d\d s, 1 of 1 layers lazy$/m, 'containerd downloaded no layer');
  assert.match(out, /^ {6}containerd's first container \(busybox, not counted below\): \d+\.\d\d s$/m, 'containerd\'s first container start is paid before the timed runs');
  const seconds = String.raw`\s+\d+\.\d\d s`;
  assert.match(out, new RegExp(`^\\s+pull\\s+start\\+run\\s+total$`, 'm'), 'the timing table has a header');
  assert.match(out, new RegExp(`^lazy \\(cvmfs-snapshotter, CRI\\)${seconds}${seconds}${seconds}$`, 'm'), 'lazy timings');
  assert.match(out, new RegExp(`^overlayfs \\(ctr pull\\)${seconds}${seconds}${seconds}$`, 'm'), 'overlayfs timings');
  assert.match(out, /^cleaned up: /m);
  assertNothingLeft(workDir(out), out);
});

test('Ctrl-C half way stops the demo and leaves nothing behind', { timeout: 20 * 60_000 }, async (t) => {
  const run = startDemo();
  // Once the daemon and containerd run and the lazy pull is done: mounts come and go from here.
  await waitUntil(() => /^\[5\/6\]/m.test(run.output()), { what: 'the demo to reach its lazy pull', timeoutMs: 15 * 60_000, intervalMs: 50 })
    .catch(async (err: unknown) => { process.kill(-run.pid, 'SIGKILL'); await run.exited; throw err; });
  // A terminal's Ctrl-C: SIGINT to the whole foreground process group, the demo's servers included.
  process.kill(-run.pid, 'SIGINT');
  const { code } = await run.exited;
  const out = run.output();
  t.diagnostic(out.split('\n').slice(-4).join(' | '));
  assert.equal(code, 130, `exit code 130 after SIGINT:\n${out}`);
  assert.match(out, /^SIGINT: stopping and cleaning up/m);
  assert.match(out, /^cleaned up: /m);
  assertNothingLeft(workDir(out), out);
});

test('a failure half way (an image without python3) ends in an error and leaves nothing behind', { timeout: 20 * 60_000 }, async () => {
  // The demo takes its root filesystem from the test cache (CVMFS_TEST_CACHE): give it one with
  // only busybox, so that everything starts and the lazy pull works, but python3 cannot run.
  const cache = await mkdtemp(join(tmpdir(), 'cvmfs-demo-cache-'));
  try {
    const rootfs = join(cache, 'rootfs');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await execOk('cp', ['/bin/busybox', join(rootfs, 'bin', 'busybox')]);
    await execOk('tar', ['--create', '--file', join(cache, 'debian-bookworm-minbase-python3.tar'), '--numeric-owner', '-C', rootfs, '.']);
    const run = startDemo({ ...process.env, CVMFS_TEST_CACHE: cache });
    const { code } = await run.exited;
    const out = run.output();
    assert.equal(code, 1, out);
    assert.match(out, /^\[5\/6\] lazy pull/m, 'it failed after the daemon and containerd had started and the pull was done');
    assert.match(out, /^error: ctr run .*exec: "python3": executable file not found/m, 'the error says what failed');
    assert.doesNotMatch(out, /hello from a lazy container$/m);
    assert.match(out, /^cleaned up: /m);
    assertNothingLeft(workDir(out), out);
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});
