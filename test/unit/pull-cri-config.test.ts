// How `pull` judges the CRI config JSON that containerd reports (Status, verbose): pure logic;
// test/integration/pull.test.ts runs the command against a real containerd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkCriConfig } from '../../src/cli/pull.js';

test('CRI config judgement: snapshotter and annotations', () => {
  assert.deepEqual(checkCriConfig({ containerd: { snapshotter: 'cvmfs-snapshotter', disableSnapshotAnnotations: false } }), { ok: true });
  const wrong = checkCriConfig({ containerd: { snapshotter: 'overlayfs', disableSnapshotAnnotations: true } });
  assert.equal(wrong.ok, false);
  assert.match('problem' in wrong ? wrong.problem : '', /snapshotter is "overlayfs".*disable_snapshot_annotations is not false/);
  assert.equal(checkCriConfig({}).ok, undefined);
  assert.equal(checkCriConfig(null).ok, undefined);
});
