// A layer can hold a tree deeper than PATH_MAX (4,096 bytes): a tar names any depth, and overlayfs
// shows it. The FUSE server reaches the store beneath the layer's descriptor, and the kernel
// takes no path of PATH_MAX bytes or more in one call: such a path is resolved a part at a time,
// each part beneath the directory the one before it opened (native/cvmfs_sys.c, open_beneath).
// Before, every lookup past that depth answered EIO.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';
import { makeDeepTree, readDeepBottom, type DeepTree } from '../helpers/deep-tree.js';
import { dropDentries, startMemoryServer, storeLayerDir, type ServerUnderTest } from '../helpers/memory-load.js';
import { Scope } from '../helpers/scope.js';

// 40 x 251 bytes: about 10,000, so the bottom is three parts of a path away from the top.
const DEPTH = 40;
let scope: Scope;
let server: ServerUnderTest;
let layer = '';
let mnt = '';
let tree: DeepTree;

before(async () => {
  scope = await Scope.create('deep-paths');
  const store = await scope.mkdir('store');
  layer = storeLayerDir(store, 'de');
  mkdirSync(layer, { recursive: true });
  tree = await makeDeepTree(layer, DEPTH);
  const root = await scope.mkdir('root');
  server = await startMemoryServer(scope, { name: 'srv', root, store, cacheBytes: 32 << 20 });
  mnt = join(root, 'mnt');
  await server.client.mount(layer, mnt);
});

after(async () => {
  await server?.client.unmount(mnt).catch(() => undefined);
  await server?.stop();
  await scope.teardown();
});

test('the bottom of a tree deeper than PATH_MAX reads as in the store: listing, bytes, symlink, attributes, cold and warm', async () => {
  const want = await readDeepBottom(layer, tree);
  assert.ok(want.depth_bytes > 2 * 4096, `the tree is ${want.depth_bytes} bytes deep`);
  for (const pass of ['first', 'warm', 'after the kernel forgot it']) {
    if (pass === 'after the kernel forgot it') await dropDentries();
    const got = await readDeepBottom(mnt, tree);
    assert.deepEqual({ ...got, depth_bytes: 0 }, { ...want, depth_bytes: 0 }, `${pass}: the bottom directory through the mount`);
  }
});

test('a walk of the layer finds every entry of the deep tree', async () => {
  await dropDentries();
  const count = async (top: string): Promise<number> => (await execOk('find', [top, '-printf', '.'])).stdout.length;
  assert.equal(await count(mnt), await count(layer));
  assert.equal(await count(mnt), 1 + DEPTH + 2);
});
