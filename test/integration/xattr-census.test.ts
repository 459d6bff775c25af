// A layer with no xattr at all lets the kernel stop asking: overlayfs then sends no GETXATTR
// for the lower directories of a new container. A layer with one xattr somewhere, or one
// opaque directory, keeps answering them, so nothing is lost.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter, NO_OBSERVER, type FuseObserver } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { assertNothingMountedUnder, q, sh, shOk, tempRoot } from './fuse-kit.js';
import { waitUntil } from '../helpers/wait.js';

let root = '';
const ops = new Map<string, number>();
const observer: FuseObserver = { ...NO_OBSERVER, op: (name) => { ops.set(name, (ops.get(name) ?? 0) + 1); } };
let mounter: FuseLayerMounter;

function tree(dir: string): void {
  for (const d of ['a/b/c', 'a/d', 'e']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  for (const f of ['a/b/c/f', 'a/d/g', 'e/h', 'top']) fs.writeFileSync(path.join(dir, f), f);
}

before(async () => {
  root = tempRoot('xattr-census');
  tree(path.join(root, 'plain'));
  tree(path.join(root, 'xattr'));
  await shOk(`setfattr -n user.deep -v 1 ${q(path.join(root, 'xattr/a/b/c/f'))}`);
  tree(path.join(root, 'opaque'));
  fs.writeFileSync(path.join(root, 'opaque/a/d/.wh..wh..opq'), '');
  mounter = new FuseLayerMounter({ log: silentLogger(), observer });
  for (const l of ['plain', 'xattr', 'opaque']) await mounter.mount(path.join(root, l), path.join(root, 'mnt', l));
});

after(async () => {
  await mounter.close();
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

/** GETXATTR requests while an overlay on the layer is mounted and walked, as a container start does. */
async function getxattrsOfAnOverlay(layer: string, n: number): Promise<number> {
  const o = path.join(root, 'ovl', `${layer}-${n}`);
  for (const d of ['u', 'w', 'm']) fs.mkdirSync(path.join(o, d), { recursive: true });
  const before = ops.get('getxattr') ?? 0;
  await shOk(`mount -t overlay overlay -o ${q(`lowerdir=${path.join(root, 'mnt', layer)},upperdir=${o}/u,workdir=${o}/w,index=off`)} ${q(`${o}/m`)}`);
  try {
    await shOk(`find ${q(`${o}/m`)} > /dev/null`);
  } finally {
    await sh(`umount ${q(`${o}/m`)}`);
  }
  return (ops.get('getxattr') ?? 0) - before;
}

test('a layer without any xattr is found so, and a second container start sends no GETXATTR', async () => {
  await waitUntil(() => mounter.counters().active === 3 && censusDone(), { what: 'the censuses to finish', timeoutMs: 20_000 });
  // The first GETXATTR is answered ENOSYS; the kernel asks that connection no more.
  await getxattrsOfAnOverlay('plain', 1);
  assert.equal(await getxattrsOfAnOverlay('plain', 2), 0);
  // Reading xattrs through the mount gives "not supported", never a wrong value.
  const r = await sh(`getfattr -n user.any ${q(path.join(root, 'mnt/plain/top'))}`);
  assert.match(r.stderr, /Operation not supported|No such attribute/);
  // Listing them is not "not supported": a plain directory lists none, and so does the layer,
  // directly and through an overlay (tar --xattrs, rsync -X and getfattr -d list first).
  const o = path.join(root, 'ovl', 'plain-list');
  for (const d of ['u', 'w', 'm']) fs.mkdirSync(path.join(o, d), { recursive: true });
  await shOk(`mount -t overlay overlay -o ${q(`lowerdir=${path.join(root, 'mnt', 'plain')},upperdir=${o}/u,workdir=${o}/w,index=off`)} ${q(`${o}/m`)}`);
  try {
    for (const p of [path.join(root, 'mnt/plain'), `${o}/m`]) {
      const d = await sh(`getfattr --absolute-names --recursive --physical --dump --match=- ${q(p)}`);
      assert.deepEqual([d.code, d.stdout.trim(), d.stderr.trim()], [0, '', ''], `${p}: every entry lists no xattr, and listing is no error`);
    }
  } finally {
    await sh(`umount ${q(`${o}/m`)}`);
  }
});

test('a layer with one xattr deep down keeps serving xattrs', async () => {
  assert.ok(await getxattrsOfAnOverlay('xattr', 1) > 0);
  assert.ok(await getxattrsOfAnOverlay('xattr', 2) > 0, 'every container start still asks');
  assert.match(await shOk(`getfattr -n user.deep ${q(path.join(root, 'mnt/xattr/a/b/c/f'))}`), /user\.deep="1"/);
});

test('a layer with one opaque directory keeps serving trusted.overlay.opaque', async () => {
  assert.ok(await getxattrsOfAnOverlay('opaque', 1) > 0);
  assert.match(await shOk(`getfattr -n trusted.overlay.opaque ${q(path.join(root, 'mnt/opaque/a/d'))}`), /trusted\.overlay\.opaque="y"/);
});

/** The censuses run in the background on the pool; they are done when nothing is left for them. */
function censusDone(): boolean {
  return mounter.counters().waitingForStore === 0 && [...(mounter.table.served.values())].every((s) => s.census.finished);
}
