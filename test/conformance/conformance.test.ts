// containerd's own snapshotter conformance suite against the daemon: directly on its socket, and
// through a private containerd that has it as a proxy plugin. Every case the suite runs must pass:
// a failed case fails the test by name, whatever the suite's size; skipped cases are reported
// (containerd 1.6.20: 20 pass, Rename skips).
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { PROXY_SNAPSHOTTER } from '../helpers/containerd.js';
import type { Daemon } from '../helpers/daemon.js';
import { Harness } from '../helpers/harness.js';
import { describeFailures } from './go-test-output.js';
import { buildSuite, runSuite, type SuiteResult, type SuiteRun } from './suite-runner.js';

/** What to print beside a failed assertion: the failed cases' output, the suite's stderr, the daemon's log. */
function context(r: SuiteResult, daemon?: Daemon): string {
  return [
    describeFailures(r.report),
    r.stderr.trim() ? `suite stderr:\n${r.stderr.trim()}` : '',
    r.report.leaves.length === 0 ? `suite stdout:\n${r.stdout.slice(-4000)}` : '',
    daemon ? `daemon log tail:\n${daemon.process.logTail(30)}` : '',
  ].filter((d) => d !== '').join('\n\n');
}

function assertEveryCasePassed(t: TestContext, r: SuiteResult, daemon?: Daemon): void {
  const { report } = r;
  t.diagnostic(`suite: ${r.durationMs} ms, ${report.passed.length} passed, ${report.failed.length} failed, ${report.skipped.length} skipped`);
  if (report.skipped.length > 0) t.diagnostic(`skipped: ${report.skipped.join(', ')}`);
  assert.deepEqual(report.failed, [], `failed cases: ${report.failed.join(', ')}\n\n${context(r, daemon)}`);
  assert.deepEqual(report.unfinished, [], `cases that never finished (a crash or a timeout): ${report.unfinished.join(', ')}\n\n${context(r, daemon)}`);
  assert.ok(report.passed.length > 0, `the suite ran no case\n\n${context(r, daemon)}`);
  assert.equal(r.exitCode, 0, `the suite exited with ${r.exitCode} although no case failed\n\n${context(r, daemon)}`);
}

describe('containerd snapshotter conformance suite', () => {
  let h: Harness;

  before(async () => {
    const t0 = Date.now();
    const verdict = await buildSuite();
    process.stdout.write(`# ${verdict} (${Date.now() - t0} ms)\n`);
    h = await Harness.create('conformance');
  });
  after(() => h.teardown());

  const run = async (o: Omit<SuiteRun, 'tmpDir'>, name: string): Promise<SuiteResult> =>
    runSuite({ ...o, tmpDir: await h.scope.mkdir('suite-tmp', name) });

  test('directly against the daemon socket (-isolate purge)', async (t) => {
    const daemon = await h.startDaemon({ name: 'daemon-direct', logLevel: 'info' });
    const r = await run({ address: daemon.socket, snapshotter: PROXY_SNAPSHOTTER, isolate: 'purge' }, 'direct');
    assertEveryCasePassed(t, r, daemon);
    assert.deepEqual(h.mounts(), [], 'the suite unmounted everything it mounted');
  });

  test('through containerd with the daemon as proxy plugin (-isolate namespace)', async (t) => {
    const daemon = await h.startDaemon({ name: 'daemon-proxied', logLevel: 'info' });
    const ctd = await h.startContainerd({ name: 'containerd', snapshotterSocket: daemon.socket });
    t.diagnostic(`containerd started in ${ctd.startupMs} ms`);
    const r = await run({ address: ctd.socket, snapshotter: PROXY_SNAPSHOTTER, isolate: 'namespace' }, 'proxied');
    assertEveryCasePassed(t, r, daemon);
    assert.deepEqual(h.mounts(), [], 'the suite unmounted everything it mounted');
  });

  // The same suite against containerd's own overlayfs: shows the suite and this runner are sound.
  test('baseline: containerd\'s own overlayfs (CONFORMANCE_BASELINE=1)', { skip: process.env.CONFORMANCE_BASELINE !== '1' }, async (t) => {
    const ctd = await h.startContainerd({ name: 'containerd-baseline' });
    const r = await run({ address: ctd.socket, snapshotter: 'overlayfs', isolate: 'namespace' }, 'baseline');
    assertEveryCasePassed(t, r);
  });
});
