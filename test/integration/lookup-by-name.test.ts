// A program searching its path (ld.so, python, a shell) asks a small directory for many names it
// does not hold. The server reads the directory's names once and answers those from them; a
// name the directory holds is then stat'ed alone. Before, the whole directory was stat'ed entry
// by entry to answer the first lookup: on a CernVM-FS store, one request to cvmfs2 per entry
// (on a cold disk, one inode read each) for entries nobody asked about.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter, NO_OBSERVER } from '../../src/fuse/index.js';
import type { StoreCall } from '../../src/fuse/observer.js';
import { silentLogger } from '../../src/log.js';
import { assertNothingMountedUnder, q, sh, shOk, tempRoot } from './fuse-kit.js';
import { FaultyStore } from './faulty-store.js';

const FILES = 40;
let root = '';
let store: FaultyStore;
let mounter: FuseLayerMounter;
const storeCalls = new Map<StoreCall, number>();
let mnt = '';

before(async () => {
  root = tempRoot('lookup-by-name');
  for (const layer of ['layer', 'untyped']) {
    const bin = path.join(root, 'backing', layer, 'bin');
    fs.mkdirSync(path.join(bin, 'sub'), { recursive: true });
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(bin, `f${String(i).padStart(2, '0')}`), 'x'.repeat(i));
    fs.writeFileSync(path.join(bin, '.wh.gone'), '');
    fs.symlinkSync('f07', path.join(bin, 'link'));
  }
  const storeMnt = path.join(root, 'store');
  fs.mkdirSync(storeMnt);
  store = await FaultyStore.start(path.join(root, 'backing'), storeMnt);
  // No census: its walk would list (and stat) the whole layer in the background.
  mounter = new FuseLayerMounter({ log: silentLogger(), tuning: { censusEntries: 0 }, observer: { ...NO_OBSERVER, storeCall: (c) => { storeCalls.set(c, (storeCalls.get(c) ?? 0) + 1); } } });
  mnt = path.join(root, 'mnt');
  await mounter.mount(path.join(storeMnt, 'layer'), mnt);
});

after(async () => {
  await mounter?.close();
  await store?.stop();
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

async function statType(p: string): Promise<{ code: number; out: string }> {
  const r = await sh(`stat -c '%F %s' ${q(p)}`);
  return { code: r.code ?? -1, out: r.stdout.trim() };
}

test('lookups in a small directory read its names once, and stat only the names it holds', async () => {
  // The way there first (the root is small too, and listed by name the same way).
  assert.equal((await statType(path.join(mnt, 'bin'))).code, 0);
  const getattr0 = await store.calls('getattr');
  const readdir0 = await store.calls('readdir');
  const lookups0 = storeCalls.get('lookup') ?? 0;
  const lists0 = storeCalls.get('list') ?? 0;

  for (let i = 0; i < 6; i++) assert.equal((await statType(path.join(mnt, 'bin', `missing${i}`))).code, 1, 'a name the directory lacks is not found');
  assert.deepEqual(await statType(path.join(mnt, 'bin/f07')), { code: 0, out: 'regular file 7' });
  const sub = await statType(path.join(mnt, 'bin/sub'));
  assert.equal(sub.code, 0);
  assert.match(sub.out, /^directory /);

  // Each store call opens the directory from the layer's root (a lookup and a stat of `bin`
  // in the store, whose kernel caches nothing), and each entry looked up is stat'ed: a handful,
  // where stat'ing the whole directory made one per entry (40 files and more).
  const getattrs = (await store.calls('getattr')) - getattr0;
  assert.ok(getattrs < 15, `the store stat'ed ${getattrs} times for 8 lookups in a directory of ${FILES + 3} entries`);
  assert.equal((storeCalls.get('list') ?? 0) - lists0, 1, 'the directory was listed once');
  assert.equal((await store.calls('readdir')) - readdir0, 1, 'the store listed it once');
  assert.equal((storeCalls.get('lookup') ?? 0) - lookups0, 2, 'only f07 and sub were looked up in the store; the six missing names were answered from the names');
});

test('a name the directory holds only as a whiteout is a whiteout, and the marker itself is not found', async () => {
  assert.deepEqual(await statType(path.join(mnt, 'bin/gone')), { code: 0, out: 'character special file 0' });
  assert.equal((await statType(path.join(mnt, 'bin/.wh.gone'))).code, 1);
  const l = await sh(`readlink ${q(path.join(mnt, 'bin/link'))}`);
  assert.equal(l.stdout.trim(), 'f07', 'a symlink found by name is a symlink');
});

test('a listing of the directory after lookups by name shows every entry with its own attributes', async () => {
  const out = await shOk(`find ${q(path.join(mnt, 'bin'))} -mindepth 1 -maxdepth 1 -printf '%f %y %s\\n'`);
  const sizes = new Map<string, string>();
  for (const line of out.trim().split('\n')) {
    const [name, type, size] = line.split(' ');
    sizes.set(name as string, `${type} ${size}`);
  }
  assert.equal(sizes.size, FILES + 3, `${FILES} files, sub, link and the whiteout gone: ${[...sizes.keys()].join(' ')}`);
  for (let i = 0; i < FILES; i++) assert.equal(sizes.get(`f${String(i).padStart(2, '0')}`), `f ${i}`);
  assert.equal(sizes.get('sub')?.[0], 'd');
  assert.equal(sizes.get('link'), 'l 3');
  assert.equal(sizes.get('gone'), 'c 0');
});

test('a store that lists names without their types still answers lookups by name, stat by stat', async () => {
  await store.listWithoutTypes();
  const other = path.join(root, 'mnt-untyped');
  await mounter.mount(path.join(root, 'store', 'untyped'), other);
  try {
    assert.equal((await statType(path.join(other, 'bin'))).code, 0);
    const getattr0 = await store.calls('getattr');
    assert.equal((await statType(path.join(other, 'bin/missing'))).code, 1);
    const getattrs = (await store.calls('getattr')) - getattr0;
    assert.ok(getattrs >= FILES, `with no type in the listing, each entry was stat'ed (${getattrs} stats)`);
    assert.deepEqual(await statType(path.join(other, 'bin/f07')), { code: 0, out: 'regular file 7' });
    assert.deepEqual(await statType(path.join(other, 'bin/gone')), { code: 0, out: 'character special file 0' });
    assert.equal((await statType(path.join(other, 'bin/.wh.gone'))).code, 1);
    assert.match((await statType(path.join(other, 'bin/sub'))).out, /^directory /);
  } finally {
    await mounter.unmount(other);
  }
});
