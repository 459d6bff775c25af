// What the xattr census learns of a layer outlives the FUSE server (src/fuse/server/census-file.ts):
// a server started after another one (a node rebooted, a server that crashed) knows from its
// first request that a layer holds no xattr, and asks the store for none of them. The store is
// a FUSE mount served by another process, as CernVM-FS is, and counts what it is asked.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Scope } from '../helpers/scope.js';
import { startMemoryServer } from '../helpers/memory-load.js';
import { waitUntil } from '../helpers/wait.js';
import { listMounts } from '../helpers/mounts.js';
import { FaultyStore } from './faulty-store.js';
import { q, shOk } from './fuse-kit.js';

let scope: Scope;
let store: FaultyStore;
let storeMnt = '';
let root = '';
const LAYER_REL = `.layers/cd/${'cd'.repeat(32)}/layerfs`;

before(async () => {
  scope = await Scope.create('census-file');
  const backing = await scope.mkdir('backing');
  for (const d of ['a/b/c', 'a/d', 'e']) fs.mkdirSync(path.join(backing, LAYER_REL, d), { recursive: true });
  for (const f of ['a/b/c/f', 'a/d/g', 'e/h', 'top']) fs.writeFileSync(path.join(backing, LAYER_REL, f), f);
  storeMnt = await scope.mkdir('store');
  store = await FaultyStore.start(backing, storeMnt);
  scope.defer('stop the store', () => store.stop());
  root = await scope.mkdir('root');
});

after(async () => {
  await scope?.teardown();
  assert.deepEqual(listMounts().filter((m) => m.mountPoint.startsWith(root) || m.mountPoint === storeMnt), [], 'nothing left mounted');
});

interface Run {
  /** Whether the server counted the layer as holding no xattr when its mount was answered. */
  knownAtMount: boolean;
  /** Store requests while the layer was mounted, walked and walked by the census. */
  readdir: number;
  listxattr: number;
}

/** A server of its own mounts the layer, a program walks it, the census finishes; the server stops. */
async function serverRun(name: string): Promise<Run> {
  const s = await startMemoryServer(scope, { name, root, store: storeMnt, cacheBytes: 64 << 20 });
  const layer = path.join(storeMnt, LAYER_REL);
  const mnt = path.join(root, 'mnt');
  try {
    const r0 = await store.calls('readdir');
    const x0 = await store.calls('listxattr');
    await s.client.mount(layer, mnt);
    const knownAtMount = s.client.counters().xattrFree === 1;
    await shOk(`find ${q(mnt)} -exec stat -c %n {} + > /dev/null`);
    // The census, run or not, has given its verdict once the gauge says so.
    await waitUntil(async () => {
      await s.client.probe();
      return s.client.counters().xattrFree === 1 && s.client.counters().waitingForStore === 0;
    }, { what: `${name}: the layer counted as holding no xattr`, timeoutMs: 20_000 });
    // The census's read-ahead runs on after the verdict; it is done when the store is quiet.
    let last = -1;
    await waitUntil(async () => {
      const now = await store.calls('readdir');
      const quiet = now === last;
      last = now;
      return quiet;
    }, { what: `${name}: the census to stop listing`, timeoutMs: 20_000, intervalMs: 500 });
    await s.client.unmount(mnt);
    return { knownAtMount, readdir: (await store.calls('readdir')) - r0, listxattr: (await store.calls('listxattr')) - x0 };
  } finally {
    await s.stop();
  }
}

test('a layer found to hold no xattr is known so by the next FUSE server, which asks the store for none', async () => {
  const file = path.join(root, 'layer-xattr-census.json');
  const first = await serverRun('first');
  assert.equal(first.knownAtMount, false, 'the first server has to learn it');
  assert.ok(first.listxattr > 0, 'and asks the store for the xattrs of the entries it lists');
  const kept = JSON.parse(fs.readFileSync(file, 'utf8')) as { verdicts: Record<string, string> };
  assert.deepEqual(kept.verdicts, { [path.join(storeMnt, LAYER_REL)]: 'none' }, 'written to the daemon\'s root when the server stopped');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);

  const second = await serverRun('second');
  assert.equal(second.knownAtMount, true, 'the next server knows it from the mount on');
  assert.ok(second.readdir > 0, 'the layer was listed from the store');
  assert.equal(second.listxattr, 0, 'and the store was asked for no xattr');

  // Without the file, a server learns it again: what the file gave is not there by chance.
  fs.rmSync(file);
  const third = await serverRun('third');
  assert.equal(third.knownAtMount, false);
  assert.ok(third.listxattr > 0);
});

test('a census file that is damaged, or names layers outside the store, gives nothing and is written anew', async () => {
  const file = path.join(root, 'layer-xattr-census.json');
  const layer = path.join(storeMnt, LAYER_REL);
  for (const text of ['{"format":1,"verdicts":{', JSON.stringify({ format: 1, verdicts: { '/elsewhere/.layers/cd/x/layerfs': 'none', [`${storeMnt}/../x`]: 'none', [layer]: 'maybe' } })]) {
    fs.writeFileSync(file, text);
    const run = await serverRun(`damaged-${text.length}`);
    assert.equal(run.knownAtMount, false, `nothing taken from ${text.slice(0, 60)}`);
    assert.deepEqual((JSON.parse(fs.readFileSync(file, 'utf8')) as { verdicts: unknown }).verdicts, { [layer]: 'none' }, 'written anew with what this server learnt');
  }
});
