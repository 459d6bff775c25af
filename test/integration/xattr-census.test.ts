// A layer with no xattr at all lets the kernel stop asking: overlayfs then sends no GETXATTR
// for the lower directories of a new container. A layer with one xattr somewhere, or one
// opaque directory, keeps answering them, so nothing is lost. Once a layer is known to hold
// none, the server stops asking the store too (a listxattr per entry, each one a request to
// cvmfs2 on a CernVM-FS store).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter, NO_OBSERVER, type FuseObserver } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { assertNothingMountedUnder, q, sh, shOk, tempRoot } from './fuse-kit.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';

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
  assert.equal(mounter.counters().xattrFree, 1, 'of the three layers, only the plain one is counted as holding no xattr');
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

test('once a layer is known to hold no xattr, its listings stop asking the store for any', async () => {
  const backing = path.join(root, 'store-backing');
  for (const l of ['plain', 'xattr']) tree(path.join(backing, l));
  await shOk(`setfattr -n user.deep -v 1 ${q(path.join(backing, 'xattr/a/b/c/f'))}`);
  const storeMnt = path.join(root, 'store');
  fs.mkdirSync(storeMnt);
  const store = await FaultyStore.start(backing, storeMnt);
  let lists = 0;
  const m = new FuseLayerMounter({ log: silentLogger(), observer: { ...NO_OBSERVER, storeCall: (call) => { if (call === 'list') lists++; } } });
  try {
    /** Store listxattr requests and layer listings while the layer is mounted again and walked. */
    const again = async (layer: string): Promise<{ listxattr: number; lists: number }> => {
      const mnt = path.join(root, 'mnt', `again-${layer}`);
      await m.mount(path.join(storeMnt, layer), mnt);
      // The first mount learns the verdict; the unmount forgets everything listed.
      await waitUntil(() => censusDone(m), { what: `the census of ${layer}`, timeoutMs: 20_000 });
      await m.unmount(mnt);
      const x0 = await store.calls('listxattr');
      const l0 = lists;
      await m.mount(path.join(storeMnt, layer), mnt);
      try {
        await shOk(`find ${q(mnt)} -exec stat -c %n {} + > /dev/null`);
        await waitUntil(() => censusDone(m), { what: `the read-ahead of ${layer}`, timeoutMs: 20_000 });
      } finally {
        await m.unmount(mnt);
      }
      return { listxattr: (await store.calls('listxattr')) - x0, lists: lists - l0 };
    };
    const plain = await again('plain');
    assert.ok(plain.lists > 0, 'the layer mounted again was listed from the store');
    assert.equal(plain.listxattr, 0, 'and the store was asked for no xattr list');
    const withXattr = await again('xattr');
    assert.ok(withXattr.lists > 0);
    assert.ok(withXattr.listxattr >= 9, `a layer with an xattr has the xattrs of each of its entries read (${withXattr.listxattr} lists)`);
  } finally {
    await m.close();
    await store.stop();
  }
});

/** The censuses run in the background on the pool; they are done when nothing is left for them. */
function censusDone(m = mounter): boolean {
  return m.counters().waitingForStore === 0 && [...(m.table.served.values())].every((s) => s.census.finished);
}
