// Kernel overlayfs stacking FUSE layers, as a container's root filesystem does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { assertNothingMountedUnder, q, sh, shOk, tempRoot } from './fuse-kit.js';

let root = '';
let mounter: FuseLayerMounter;
const mnt = (n: string): string => path.join(root, 'mnt', n);

before(async () => {
  root = tempRoot('fuse-overlay');
  // l1 (bottom): plain files. l2: AUFS whiteouts as DUCC stores them. l3 (top): overlayfs-style ones.
  await shOk(`set -e; cd ${q(root)}; mkdir -p l1/dir l1/opq l1/keepdir l2/dir l2/opq l3/keepdir
    echo 'lower a' > l1/a; echo b > l1/b; echo x > l1/x; echo 1 > l1/dir/1; echo 2 > l1/dir/2
    echo old1 > l1/opq/old1; echo old2 > l1/opq/old2; echo k > l1/keepdir/k
    mkdir -p l1/gonedir/sub; echo g > l1/gonedir/sub/g; : > l2/.wh.gonedir
    echo 'upper a' > l2/a; : > l2/.wh.x; echo 3 > l2/dir/3; : > l2/dir/.wh.1
    : > l2/opq/.wh..wh..opq; echo new > l2/opq/new
    mknod l3/b c 0 0; setfattr -n trusted.overlay.opaque -v y l3/keepdir; echo n2 > l3/keepdir/new2
    mkdir -p merged rw/upper rw/work rw/merged`);
  mounter = new FuseLayerMounter({ log: silentLogger() });
  for (const l of ['l1', 'l2', 'l3']) await mounter.mount(path.join(root, l), mnt(l));
});

after(async () => {
  await sh(`umount ${q(path.join(root, 'merged'))} 2>/dev/null; umount ${q(path.join(root, 'rw/merged'))} 2>/dev/null`);
  const r = await mounter.close();
  assert.deepEqual(r.failed, []);
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

const lowerdir = (): string => [mnt('l3'), mnt('l2'), mnt('l1')].join(':');

async function tree(dir: string): Promise<string[]> {
  return (await shOk(`cd ${q(dir)} && find . -mindepth 1 | sort`)).trim().split('\n').map((l) => l.slice(2));
}

test('a read-only overlay of three FUSE layers: deletions, opaque dirs and no .wh. names', async () => {
  const merged = path.join(root, 'merged');
  await shOk(`mount -t overlay overlay -o ro,lowerdir=${lowerdir()} ${q(merged)}`);
  try {
    assert.deepEqual(await tree(merged), ['a', 'dir', 'dir/2', 'dir/3', 'keepdir', 'keepdir/new2', 'opq', 'opq/new']);
    assert.equal(await shOk(`cat ${q(merged)}/a`), 'upper a\n');
    assert.equal((await shOk(`find ${q(merged)} -name '.wh.*' -o -type c`)).trim(), '');
    assert.match((await sh(`cat ${q(merged)}/x`)).stderr, /No such file/);
    assert.match((await sh(`cat ${q(merged)}/opq/old1`)).stderr, /No such file/);
    assert.match((await sh(`ls ${q(merged)}/gonedir`)).stderr, /No such file/, 'a whole directory deleted');
  } finally {
    await shOk(`umount ${q(merged)}`);
  }
});

test('a container-style overlay with an upper dir: writes land in the upper, lower deletions become whiteouts', async () => {
  const rw = path.join(root, 'rw');
  await shOk(`mount -t overlay overlay -o lowerdir=${lowerdir()},upperdir=${q(rw)}/upper,workdir=${q(rw)}/work ${q(rw)}/merged`);
  try {
    await shOk(`cd ${q(rw)}/merged && echo mine > mine && rm dir/2 && echo more >> a`);
    assert.deepEqual(await tree(`${rw}/merged/dir`), ['3']);
    assert.equal(await shOk(`cat ${q(rw)}/merged/a`), 'upper a\nmore\n');
    assert.equal((await shOk(`stat -c '%F %t:%T' ${q(rw)}/upper/dir/2`)).trim(), 'character special file 0:0');
    // The layers themselves did not change.
    assert.equal(await shOk(`cat ${q(mnt('l2'))}/a`), 'upper a\n');
    assert.deepEqual(await tree(`${mnt('l1')}/dir`), ['1', '2']);
  } finally {
    await shOk(`umount ${q(rw)}/merged`);
  }
});

test('a layer still stacked by an overlay is detached lazily, not reported as gone, and keeps serving', async () => {
  const merged = path.join(root, 'merged');
  await shOk(`mount -t overlay overlay -o ro,lowerdir=${lowerdir()} ${q(merged)}`);
  try {
    const before = mounter.counters();
    assert.equal(await mounter.unmount(mnt('l1')), 'lazy');
    assert.equal(mounter.isMounted(mnt('l1')), false);
    assert.equal(mounter.counters().lazyUnmounts, before.lazyUnmounts + 1);
    assert.equal(await shOk(`cat ${q(merged)}/dir/2 ${q(merged)}/opq/new`), '2\nnew\n');
  } finally {
    await shOk(`umount ${q(merged)}`);
  }
});
