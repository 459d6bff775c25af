// A newly mounted layer is walked once in the background (xattr-census.ts): what the walk lists
// stays in the cache, so the first container's walk of the tree finds it listed and asks the
// store for nothing. A layer mounted again takes what an earlier mount learnt at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter, NO_OBSERVER, type FuseObserver } from '../../src/fuse/index.js';
import { poolStats } from '../../src/sys/native.js';
import { silentLogger } from '../../src/log.js';
import { assertNothingMountedUnder, q, sh, shOk, tempRoot } from './fuse-kit.js';
import { waitUntil } from '../helpers/wait.js';

const DIRS = 40;
const FILES = 25;

let root = '';
const ops = new Map<string, number>();
const observer: FuseObserver = { ...NO_OBSERVER, op: (name) => { ops.set(name, (ops.get(name) ?? 0) + 1); } };
let walking: FuseLayerMounter;
let notWalking: FuseLayerMounter;

before(async () => {
  root = tempRoot('layer-walk');
  const layer = path.join(root, 'layer');
  for (let d = 0; d < DIRS; d++) {
    const dir = path.join(layer, `d${d % 8}`, `sub${d}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(dir, `f${f}`), `${d}/${f}`);
  }
  walking = new FuseLayerMounter({ log: silentLogger(), observer });
  notWalking = new FuseLayerMounter({ log: silentLogger(), observer, tuning: { censusEntries: 0 } });
});

after(async () => {
  await walking.close();
  await notWalking.close();
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

function walked(m: FuseLayerMounter): boolean {
  return m.counters().waitingForStore === 0 && [...m.table.served.values()].every((s) => s.census.finished);
}

// Lists and lstats every entry below argv[1] (find itself also asks statfs, which is not a listing).
const WALK_PY = 'import os, sys\nn = 1\nfor top, dirs, files in os.walk(sys.argv[1]):\n    for e in dirs + files:\n        os.lstat(os.path.join(top, e))\n        n += 1\nprint(n)';

/** Store calls made while every entry of a fresh mount is listed and stat'ed. */
async function storeCallsOfAFind(mnt: string): Promise<{ calls: number; entries: number }> {
  const done = poolStats().done;
  const out = await shOk(`python3 -c ${q(WALK_PY)} ${q(mnt)}`);
  return { calls: poolStats().done - done, entries: Number(out.trim()) };
}

test('after the background walk of a new layer, listing and stating all of it asks the store for nothing; without the walk it asks', async () => {
  const mnt = path.join(root, 'mnt', 'walked');
  await walking.mount(path.join(root, 'layer'), mnt);
  await waitUntil(() => walked(walking), { what: 'the background walk to finish', timeoutMs: 20_000 });
  const withWalk = await storeCallsOfAFind(mnt);

  const cold = path.join(root, 'mnt', 'not-walked');
  await notWalking.mount(path.join(root, 'layer'), cold);
  const withoutWalk = await storeCallsOfAFind(cold);

  const entries = 1 + 8 + DIRS + DIRS * FILES;
  assert.deepEqual({ withWalk: withWalk.entries, withoutWalk: withoutWalk.entries }, { withWalk: entries, withoutWalk: entries }, 'both finds see every entry');
  assert.equal(withWalk.calls, 0, 'the walked layer was listed ahead');
  assert.ok(withoutWalk.calls > 0, `the layer that was not walked is listed when asked (${withoutWalk.calls} store calls)`);
  await walking.unmount(mnt);
  await notWalking.unmount(cold);
});

test('a layer mounted again knows at once that it has no xattr: an overlay on it sends at most one GETXATTR', async () => {
  const layer = path.join(root, 'layer');
  const first = path.join(root, 'mnt', 'first');
  await walking.mount(layer, first);
  await waitUntil(() => walked(walking), { what: 'the first mount\'s walk to finish', timeoutMs: 20_000 });
  const again = path.join(root, 'mnt', 'again');
  await walking.mount(layer, again);
  // At once: the walk of the new mount has not started (it waits CENSUS_DELAY_MS).
  const o = path.join(root, 'ovl');
  for (const d of ['u', 'w', 'm']) fs.mkdirSync(path.join(o, d), { recursive: true });
  const before = ops.get('getxattr') ?? 0;
  await shOk(`mount -t overlay overlay -o ${q(`lowerdir=${again},upperdir=${o}/u,workdir=${o}/w,index=off`)} ${q(`${o}/m`)}`);
  try {
    await shOk(`find ${q(`${o}/m`)} > /dev/null`);
  } finally {
    await sh(`umount ${q(`${o}/m`)}`);
  }
  assert.ok((ops.get('getxattr') ?? 0) - before <= 1, `${(ops.get('getxattr') ?? 0) - before} GETXATTR`);
  await walking.unmount(first);
  await walking.unmount(again);
});
