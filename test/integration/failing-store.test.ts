// A store that fails under a mounted layer, through the LayerMounter interface only.
// What issue 5 asks: the reader (a container) gets EIO for what cannot be read, never a hang and
// never ENOENT for a file the layer has (an ENOENT would also be cached by the kernel for a day,
// negative_timeout, and outlive the failure); the server logs it and stays up; and when the store
// is back, the same mount reads again.
//
// The store is what it is in production, a FUSE mount served by another process (cvmfs2 there,
// faulty-store-server.js here), so "the store goes away" can be made real: its server dies (the
// mount stays, dead, ENOTCONN for everyone), or it is unmounted lazily while the layer is served
// from it and its server goes. Either way no data of it is reachable any more, by path or by a
// descriptor opened earlier, so EIO is the only right answer whatever the layer server keeps open.
// Single files fail through the fault switches of that server (EIO or EACCES at lookup, open or
// read), or by changing under the mount on a plain directory store (removed, turned into a
// directory or a fifo): a layer is immutable, so a file that changed is the store failing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { execOk } from '../../src/sys/exec.js';
import { Scope } from '../helpers/scope.js';
import { listMounts } from '../helpers/mounts.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';
import { LogCapture } from './fault-kit.js';
import { dataText, probe, probeOne, readAll, readOrHang } from './fs-probe.js';

let scope: Scope;
let mounter: FuseLayerMounter;
const log = new LogCapture();
const HEX = 'ab'.repeat(32);
const LAYER_REL = `.layers/ab/${HEX}/layerfs`;
const FILES: Record<string, string> = {
  'seen.txt': 'read before the failure\n',
  'statted.txt': 'looked up before the failure, never read\n',
  'untouched.txt': 'never touched before the failure\n',
  'sub/deep.txt': 'in a directory never looked up\n',
  'other.txt': 'a neighbour that keeps working\n',
  'big.bin': 'x'.repeat(300_000),
};

function writeLayer(layerDir: string): void {
  for (const [rel, content] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(layerDir, rel)), { recursive: true });
    fs.writeFileSync(path.join(layerDir, rel), content);
  }
}

interface Setup {
  /** The layer directory as the daemon sees it, inside the store mount. */
  layer: string;
  mnt: string;
  at(rel: string): string;
  data(rel: string): string;
}

/** A backing directory served as a FUSE store, and the layer in it mounted through the mounter. */
interface FuseSetup extends Setup {
  /** The current server of the store (a new one after a restart). */
  store: FaultyStore;
  readonly backing: string;
  readonly storeMnt: string;
}

async function withFuseStore(name: string): Promise<FuseSetup> {
  const backing = await scope.mkdir(name, 'backing');
  const storeMnt = await scope.mkdir(name, 'store');
  writeLayer(path.join(backing, LAYER_REL));
  const store = await FaultyStore.start(backing, storeMnt);
  let current = store;
  scope.defer(`stop the ${name} store`, () => current.stop());
  const s = await mountLayer(name, path.join(storeMnt, LAYER_REL));
  return {
    ...s,
    backing,
    storeMnt,
    get store(): FaultyStore { return current; },
    set store(v: FaultyStore) { current = v; },
  };
}

async function mountLayer(name: string, layer: string): Promise<Setup> {
  const mnt = scope.path(name, 'mnt');
  await mounter.mount(layer, mnt, log.logger);
  scope.defer(`unmount the ${name} layer`, async () => { await mounter.unmount(mnt); });
  return {
    layer,
    mnt,
    at: (rel) => path.join(mnt, rel),
    data: (rel) => dataText(FILES[rel] ?? ''),
  };
}

before(async () => {
  scope = await Scope.create('failstore');
  mounter = new FuseLayerMounter({ log: log.logger });
  scope.defer('close the layer mounter', async () => {
    const r = await mounter.close();
    assert.deepEqual(r.failed, []);
  });
});

after(() => scope.teardown());

/** Whether the mounter still serves the layer and the kernel still has its mount. */
function stillServing(s: Setup): boolean {
  return mounter.isMounted(s.mnt) && listMounts().some((m) => m.mountPoint === s.mnt);
}

/** Whether a warning or error naming one of the needles was logged since mark (waits a little: a server in another process logs late). */
async function loggedSince(mark: number, needles: readonly string[]): Promise<boolean> {
  try {
    await waitUntil(() => log.problemsSince(mark, needles).length > 0, { what: 'a log record', timeoutMs: 5_000 });
    return true;
  } catch {
    return false;
  }
}

/** v when it is one of the allowed outcomes, named by label; v itself otherwise, so a diff shows it. */
function oneOf(v: string | undefined, allowed: readonly string[], label: string): string {
  return v !== undefined && allowed.includes(v) ? label : String(v);
}

async function outcomes(s: Setup, rels: readonly string[]): Promise<Record<string, string>> {
  const got = await readAll(rels.map((r) => s.at(r)));
  return Object.fromEntries(rels.map((r, i) => [r, got[i] ?? 'no result']));
}

const expectEach = (rels: readonly string[], f: (rel: string) => string): Record<string, string> =>
  Object.fromEntries(rels.map((r) => [r, f(r)]));

const NOT_CACHED = ['statted.txt', 'untouched.txt', 'sub/deep.txt', 'big.bin'];
const EVERY_FILE = Object.keys(FILES);

/**
 * The store goes away under a served layer, then comes back at the same place. Everything is
 * observed first and compared at the end, so one run shows every difference at once.
 */
async function storeGoesAwayAndReturns(name: string, goAway: (s: FuseSetup) => Promise<void>, comeBack: (s: FuseSetup) => Promise<void>): Promise<void> {
  const s = await withFuseStore(name);
  assert.deepEqual(await readAll([s.at('seen.txt')]), [s.data('seen.txt')]);
  const statted = await probeOne({ op: 'lstat', path: s.at('statted.txt') });
  assert.ok(statted.ok);

  const mark = log.mark();
  await goAway(s);
  const down = await outcomes(s, NOT_CACHED);
  const [missingDown] = await readAll([s.at('missing.txt')]);
  const [seenDown] = await readAll([s.at('seen.txt')]);
  const logged = await loggedSince(mark, [s.layer, s.mnt, ...NOT_CACHED]);
  const servingDown = stillServing(s);

  await comeBack(s);
  const back = await outcomes(s, EVERY_FILE);
  const [missingBack] = await readAll([s.at('missing.txt')]);

  assert.deepEqual({
    down,
    // A name the server cannot check now: EIO, or ENOENT only from a listing it read before.
    missingDown: oneOf(missingDown, ['EIO', 'ENOENT'], 'EIO or ENOENT'),
    // What was read before may still come from the page cache; it is never anything else.
    seenDown: oneOf(seenDown, [s.data('seen.txt'), 'EIO'], 'its content or EIO'),
    logged,
    servingDown,
    back,
    missingBack,
    servingBack: stillServing(s),
  }, {
    down: expectEach(NOT_CACHED, () => 'EIO'),
    missingDown: 'EIO or ENOENT',
    seenDown: 'its content or EIO',
    logged: true,
    servingDown: true,
    back: expectEach(EVERY_FILE, (r) => s.data(r)),
    missingBack: 'ENOENT',
    servingBack: true,
  });
}

test('the store\'s server dies (a dead mount, ENOTCONN): EIO for what is not cached, logged; the same mount reads again once the store is back', async () => {
  await storeGoesAwayAndReturns('crash', (s) => s.store.crash(), async (s) => {
    // cvmfs comes back the same way: the dead mount goes, a new server mounts the same place.
    await s.store.stop();
    s.store = await FaultyStore.start(s.backing, s.storeMnt);
  });
});

test('the store is unmounted (lazily) under the served layer: EIO, not ENOENT, and no stale answer once it is mounted again', async () => {
  await storeGoesAwayAndReturns('unmounted', (s) => s.store.detach(), async (s) => {
    s.store = await FaultyStore.start(s.backing, s.storeMnt);
  });
});

test('one store file fails (EIO at lookup, open or read; EACCES at open): EIO for it, its neighbours read, and it reads again once healed', async () => {
  const s = await withFuseStore('onefile');
  const storePath = (rel: string): string => `/${LAYER_REL}/${rel}`;
  // Looked up first, so that their failures come at open or read, not at lookup.
  const st = await probe(['statted.txt', 'big.bin', 'seen.txt'].map((r) => ({ op: 'lstat' as const, path: s.at(r) })));
  assert.ok(st.every((r) => r.ok));
  await s.store.fail(storePath('untouched.txt'), 'lookup', 'EIO');
  await s.store.fail(storePath('statted.txt'), 'open', 'EIO');
  await s.store.fail(storePath('big.bin'), 'read', 'EIO');
  // The store refusing a file is the store's trouble: the kernel already checked the layer's
  // modes (default_permissions) before asking, so EACCES from the store means nothing to the reader.
  await s.store.fail(storePath('seen.txt'), 'open', 'EACCES');
  const broken = ['untouched.txt', 'statted.txt', 'big.bin', 'seen.txt'];
  const fine = ['other.txt', 'sub/deep.txt'];

  const mark = log.mark();
  const failing = await outcomes(s, broken);
  const neighbours = await outcomes(s, fine);
  const logged = await loggedSince(mark, [s.layer, s.mnt, ...broken]);
  await s.store.heal();
  const healed = await outcomes(s, broken);
  assert.deepEqual({ failing, neighbours, logged, serving: stillServing(s), healed }, {
    failing: expectEach(broken, () => 'EIO'),
    neighbours: expectEach(fine, (r) => s.data(r)),
    logged: true,
    serving: true,
    healed: expectEach(broken, (r) => s.data(r)),
  });
});

/** A plain directory store whose files the test changes under the mount. */
async function withDirStore(name: string): Promise<Setup & { storeFile(rel: string): string }> {
  const layer = path.join(await scope.mkdir(name, 'store'), LAYER_REL);
  writeLayer(layer);
  const s = await mountLayer(name, layer);
  return { ...s, storeFile: (rel) => path.join(layer, rel) };
}

/**
 * statted.txt, looked up through the mount, then changed in the store by change(): the reader
 * gets EIO (the layer is immutable: a file that changed is the store failing), not a hang, the
 * failure is logged, and the neighbours read on.
 */
async function fileChangesUnderTheMount(name: string, change: (storeFile: string) => Promise<void>, undo: (storeFile: string) => Promise<void>): Promise<void> {
  const s = await withDirStore(name);
  const st = await probeOne({ op: 'lstat', path: s.at('statted.txt') });
  assert.equal(st.stat?.type, 'file');
  const f = s.storeFile('statted.txt');
  await change(f);
  try {
    const mark = log.mark();
    const changed = await readOrHang(s.at('statted.txt'), { timeoutMs: 15_000 });
    const neighbour = await outcomes(s, ['other.txt']);
    const logged = await loggedSince(mark, [s.layer, s.mnt, 'statted.txt']);
    assert.deepEqual({ changed, neighbour, logged, serving: stillServing(s) }, {
      changed: 'EIO',
      neighbour: { 'other.txt': s.data('other.txt') },
      logged: true,
      serving: true,
    });
  } finally {
    await undo(f);
  }
}

test('a store file that is removed after the layer was looked up: EIO, logged, neighbours read', async () => {
  await fileChangesUnderTheMount('removed', async (f) => fs.rmSync(f), async () => undefined);
});

test('a store file that turns into a directory after the layer was looked up: EIO, logged', async () => {
  await fileChangesUnderTheMount('retyped', async (f) => {
    fs.rmSync(f);
    fs.mkdirSync(f);
  }, async () => undefined);
});

test('a store file that turns into a fifo after the layer was looked up: EIO, not a hang', async () => {
  await fileChangesUnderTheMount('fifo', async (f) => {
    fs.rmSync(f);
    await execOk('mkfifo', [f]);
  }, async (f) => {
    // A server that opened the fifo waits for a writer; give it one, so nothing stays blocked.
    await probe([{ op: 'open', path: f, flags: ['O_WRONLY', 'O_NONBLOCK'] }]);
  });
});
