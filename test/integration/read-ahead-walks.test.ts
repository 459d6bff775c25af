// The server reads directories ahead only for a walk. A program that lists one directory (python
// lists each directory on its path) gets that directory, and nothing below it is read from the
// store: on a cold disk every subdirectory read ahead is disk reads the program waits behind.
// A directory listed below one that was itself listed (find, du, a container's look at /usr) is
// a walk: its subdirectories come along, and the walk then meets no store call.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/mounts/lifecycle.js';
import { silentLogger } from '../../src/log.js';
import { execOk } from '../../src/sys/exec.js';
import { poolStats } from '../../src/sys/native.js';
import { Scope } from '../helpers/scope.js';

const SUBDIRS = ['s1', 's2', 's3', 's4', 's5'];

let scope: Scope;
let mnt = '';

before(async () => {
  scope = await Scope.create('read-ahead-walks');
  const layer = scope.path('layers', 'one');
  for (const top of ['alone', 'walked']) {
    for (const s of SUBDIRS) {
      mkdirSync(join(layer, top, s), { recursive: true });
      for (const f of ['f1', 'f2', 'f3']) writeFileSync(join(layer, top, s, f), `${top}/${s}/${f}\n`);
    }
  }
  // No xattr census: its walk of the layer would list everything ahead of the test.
  const mounter = new FuseLayerMounter({ log: silentLogger(), tuning: { censusEntries: 0 } });
  scope.defer('unmount the mounter', async () => {
    const r = await mounter.close();
    assert.deepEqual({ failed: r.failed, lazy: r.lazilyUnmounted }, { failed: [], lazy: [] });
  });
  mnt = scope.path('mnt');
  await mounter.mount(layer, mnt);
});

after(async () => {
  await scope?.teardown();
});

/** The names `ls -f` shows in dir (no stat of the entries), sorted, and the store calls it took. */
async function list(dir: string): Promise<{ names: string[]; storeCalls: number }> {
  const before = poolStats().done;
  const out = await execOk('ls', ['-f', dir]);
  const names = out.stdout.split('\n').filter((n) => n !== '' && n !== '.' && n !== '..').sort();
  return { names, storeCalls: poolStats().done - before };
}

test('a directory listed on its own is read alone: its subdirectories are read from the store when asked for', async () => {
  const top = await list(join(mnt, 'alone'));
  assert.deepEqual(top.names, SUBDIRS);
  const sub = await list(join(mnt, 'alone', 's1'));
  assert.deepEqual(sub.names, ['f1', 'f2', 'f3']);
  assert.ok(sub.storeCalls >= 1, `listing alone/s1 took ${sub.storeCalls} store calls: it was read ahead with alone/`);
});

test('a directory listed below a listed one is a walk: its subdirectories come along and the walk makes no store call', async () => {
  assert.ok((await list(mnt)).names.includes('walked'));
  const top = await list(join(mnt, 'walked'));
  assert.deepEqual(top.names, SUBDIRS);
  let calls = 0;
  for (const s of SUBDIRS) {
    const sub = await list(join(mnt, 'walked', s));
    assert.deepEqual(sub.names, ['f1', 'f2', 'f3']);
    calls += sub.storeCalls;
  }
  assert.equal(calls, 0, `the walk of walked/'s ${SUBDIRS.length} subdirectories took ${calls} store calls`);
});
