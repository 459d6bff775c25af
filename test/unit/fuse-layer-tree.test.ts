// LayerTree without FUSE: path safety, whiteout translation and caching on a temp directory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MetadataCache } from '../../src/cache/index.js';
import { LayerTree, type LayerMeta } from '../../src/fuse/layer-tree.js';
import { silentLogger } from '../../src/log.js';

let dir = '';
let outside = '';
let tree: LayerTree;
let cache: MetadataCache<LayerMeta>;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layer-tree-'));
  const l = path.join(dir, 'layer');
  outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'host secret');
  fs.mkdirSync(path.join(l, 'usr/bin'), { recursive: true });
  fs.writeFileSync(path.join(l, 'usr/bin/tool'), 'tool');
  fs.symlinkSync('/etc', path.join(l, 'etc'));
  fs.symlinkSync(outside, path.join(l, 'out'));
  fs.symlinkSync('../../../../..', path.join(l, 'up'));
  fs.symlinkSync('usr', path.join(l, 'usrlink'));
  fs.writeFileSync(path.join(l, '.wh.deleted'), '');
  fs.mkdirSync(path.join(l, 'opq'));
  fs.writeFileSync(path.join(l, 'opq/.wh..wh..opq'), '');
  fs.writeFileSync(path.join(l, 'opq/new'), 'n');
  cache = new MetadataCache<LayerMeta>({ maxEntries: 1000 });
  tree = new LayerTree({ root: l, cache, namespace: 't\0', log: silentLogger() });
});

after(async () => {
  await tree.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

test('a symlink anywhere in the parent chain is refused, never followed on the host', async () => {
  assert.equal(await code(tree.getattr('/etc/passwd')), 'ELOOP');
  assert.equal(await code(tree.getattr('/out/secret')), 'ELOOP');
  assert.equal(await code(tree.open('/out/secret', fs.constants.O_RDONLY)), 'ELOOP');
  assert.equal(await code(tree.getattr('/up/etc/passwd')), 'ELOOP');
  assert.equal(await code(tree.getattr('/usrlink/bin/tool')), 'ELOOP', 'even a link that stays inside the layer');
  assert.equal(await code(tree.readdir('/out')), 'ENOTDIR');
  assert.equal(await code(tree.listxattr('/out/secret')), 'ELOOP');
});

test('the links themselves are answered as links with their targets verbatim', async () => {
  assert.equal((await tree.getattr('/etc')).mode & fs.constants.S_IFMT, fs.constants.S_IFLNK);
  assert.equal(await tree.readlink('/etc'), '/etc');
  assert.equal(await tree.readlink('/up'), '../../../../..');
  assert.equal(await code(tree.readlink('/usr')), 'EINVAL');
});

test('dot-dot and empty components are refused before they reach the host', async () => {
  assert.equal(await code(tree.getattr('/../outside/secret')), 'EINVAL');
  assert.equal(await code(tree.getattr('/usr/../../outside/secret')), 'EINVAL');
  assert.equal(await code(tree.getattr('/usr//bin')), 'EINVAL');
  assert.equal(await code(tree.getattr('usr')), 'EINVAL');
});

test('an AUFS whiteout is a 0/0 char device, listed and looked up directly; its marker is invisible', async () => {
  const st = await tree.getattr('/deleted');
  assert.equal(st.mode, fs.constants.S_IFCHR);
  assert.equal(st.rdev, 0);
  assert.equal(await code(tree.getattr('/.wh.deleted')), 'ENOENT');
  const names = (await tree.readdir('/')).names;
  assert.ok(names.includes('deleted'));
  assert.ok(!names.some((n) => n.startsWith('.wh.')));
  assert.equal(await tree.getxattr('/deleted', 'trusted.overlay.opaque'), null);
});

test('a directory with the opaque marker says trusted.overlay.opaque=y and does not list the marker', async () => {
  assert.equal((await tree.getxattr('/opq', 'trusted.overlay.opaque'))?.toString(), 'y');
  assert.ok((await tree.listxattr('/opq')).includes('trusted.overlay.opaque'));
  assert.equal(await tree.getxattr('/usr', 'trusted.overlay.opaque'), null);
  assert.deepEqual((await tree.readdir('/opq')).names, ['.', '..', 'new']);
  // Asked again after the listing is cached: same answer from the listing.
  assert.equal((await tree.getxattr('/opq', 'trusted.overlay.opaque'))?.toString(), 'y');
});

test('absent names and absent xattrs are remembered: asking again is a cache hit', async () => {
  assert.equal(await code(tree.getattr('/usr/bin/nope')), 'ENOENT');
  assert.equal(await tree.getxattr('/usr/bin/tool', 'trusted.overlay.redirect'), null);
  const before = cache.stats();
  assert.equal(await code(tree.getattr('/usr/bin/nope')), 'ENOENT');
  assert.equal(await tree.getxattr('/usr/bin/tool', 'trusted.overlay.redirect'), null);
  const after = cache.stats();
  assert.equal(after.misses, before.misses, 'no new misses');
  assert.ok(after.negativeHits > before.negativeHits);
});

test('open refuses writing modes with EROFS and directories with EISDIR; reads fill and stop at EOF', async () => {
  assert.equal(await code(tree.open('/usr/bin/tool', fs.constants.O_WRONLY)), 'EROFS');
  assert.equal(await code(tree.open('/usr/bin/tool', fs.constants.O_RDWR)), 'EROFS');
  assert.equal(await code(tree.open('/usr/bin/tool', fs.constants.O_RDONLY | fs.constants.O_TRUNC)), 'EROFS');
  assert.equal(await code(tree.open('/usr', fs.constants.O_RDONLY)), 'EISDIR');
  const fh = await tree.open('/usr/bin/tool', fs.constants.O_RDONLY);
  assert.ok(fh > 0);
  const buf = Buffer.alloc(64);
  assert.equal(await tree.read(fh, buf, 64, 0), 4);
  assert.equal(buf.subarray(0, 4).toString(), 'tool');
  assert.equal(await tree.read(fh, buf, 64, 4), 0);
  assert.equal(tree.openHandles, 1);
  await tree.release(fh);
  assert.equal(tree.openHandles, 0);
  assert.equal(await code(tree.read(fh, buf, 1, 0)), 'EBADF');
});

test('a file that vanishes from the store after it was listed answers ENOENT, not a crash', async () => {
  const p = path.join(tree.root, 'usr/bin/gone-soon');
  fs.writeFileSync(p, 'x');
  await tree.readdir('/usr/bin');
  fs.rmSync(p);
  assert.equal(await code(tree.open('/usr/bin/gone-soon', fs.constants.O_RDONLY)), 'ENOENT');
});
