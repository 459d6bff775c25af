// The go test -v parser the conformance tier judges by: each case's result, and each failed case's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeFailures, parseGoTestOutput } from '../conformance/go-test-output.js';

const SAMPLE = `=== RUN   TestSnapshotterSuite
=== RUN   TestSnapshotterSuite/Basic
=== PAUSE TestSnapshotterSuite/Basic
=== RUN   TestSnapshotterSuite/Rename
=== PAUSE TestSnapshotterSuite/Rename
=== RUN   TestSnapshotterSuite/Walk
=== PAUSE TestSnapshotterSuite/Walk
=== RUN   TestSnapshotterSuite/Crashy
=== CONT  TestSnapshotterSuite/Basic
    helpers_unix.go:33: unmount /tmp/x/work/preparing
=== CONT  TestSnapshotterSuite/Walk
    testsuite.go:979: walk: rpc error: code = Unknown desc = boom
=== CONT  TestSnapshotterSuite/Rename
    issues.go:118: rename test still fails on some kernels with overlay
=== CONT  TestSnapshotterSuite/Walk
    testsuite.go:107: Cleanup failed
--- FAIL: TestSnapshotterSuite (0.00s)
    --- PASS: TestSnapshotterSuite/Basic (0.04s)
    --- SKIP: TestSnapshotterSuite/Rename (0.00s)
    --- FAIL: TestSnapshotterSuite/Walk (0.02s)
FAIL
`;

test('counts leaf tests by result and keeps each test\'s output', () => {
  const r = parseGoTestOutput(SAMPLE);
  assert.deepEqual(r.passed, ['TestSnapshotterSuite/Basic']);
  assert.deepEqual(r.skipped, ['TestSnapshotterSuite/Rename']);
  assert.deepEqual(r.failed, ['TestSnapshotterSuite/Walk']);
  assert.deepEqual(r.unfinished, ['TestSnapshotterSuite/Crashy']);
  const walk = r.leaves.find((l) => l.name === 'TestSnapshotterSuite/Walk');
  assert.deepEqual(walk?.output.map((l) => l.trim()), ['testsuite.go:979: walk: rpc error: code = Unknown desc = boom', 'testsuite.go:107: Cleanup failed']);
  const text = describeFailures(r);
  assert.match(text, /--- FAIL: TestSnapshotterSuite\/Walk[\s\S]*boom/);
  assert.match(text, /never finished: TestSnapshotterSuite\/Crashy/);
});

test('output printed after a result line at deeper indentation belongs to that test', () => {
  const r = parseGoTestOutput('--- FAIL: TestX (0.10s)\n    x_test.go:5: wrong\nFAIL\n');
  assert.deepEqual(r.failed, ['TestX']);
  assert.deepEqual(r.leaves[0]?.output, ['    x_test.go:5: wrong']);
});

test('a parent that fails on its own while its subtests pass is a failed case', () => {
  const r = parseGoTestOutput([
    '=== RUN   TestSuite',
    '=== RUN   TestSuite/A',
    '    testsuite.go:50: cleanup: remove snapshot: boom',
    '--- FAIL: TestSuite (0.05s)',
    '    --- PASS: TestSuite/A (0.01s)',
    'FAIL',
  ].join('\n'));
  assert.deepEqual(r.passed, ['TestSuite/A']);
  assert.deepEqual(r.failed, ['TestSuite']);
  assert.match(describeFailures(r), /--- FAIL: TestSuite \(0.05s\)/);
});

test('a parent that fails because a subtest failed is not counted again', () => {
  const r = parseGoTestOutput('--- FAIL: TestSuite (0.05s)\n    --- FAIL: TestSuite/A (0.01s)\n    --- PASS: TestSuite/B (0.01s)\nFAIL\n');
  assert.deepEqual(r.failed, ['TestSuite/A']);
  assert.deepEqual(r.passed, ['TestSuite/B']);
});
