// Reads served by the server itself (no passthrough: an older kernel, or a store the kernel
// will not stack on), from store descriptors it keeps within a process-wide budget. With a
// budget of one file, reading a second file evicts the first one's descriptor; a read of the
// first still in flight must go on reading the same file, so its descriptor is closed only when
// that read is done (closed early, its number could be reused by the next file opened, and the
// reader would get another file's bytes). The store is slow (every read of the big file waits)
// so that reads of it are in flight while the others evict it; the reader's bytes are compared
// whole. And with passthrough on, a store read that fails reaches the reader as EIO.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { Scope } from '../helpers/scope.js';
import { mountsUnder } from '../helpers/mounts.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';
import { LogCapture, OpCounter, PyChild, descriptorsUnder, eventually } from './fault-kit.js';
import { dataText, readAll } from './fs-probe.js';

const HEX = 'ef'.repeat(32);
const LAYER_REL = `.layers/ef/${HEX}/layerfs`;
const BIG = 8 * 1024 * 1024;
/** Every store read of the big file waits this long (the store reads 128 KiB at a time). */
const SLOW_READ_MS = 300;

let scope: Scope;
const log = new LogCapture();

before(async () => {
  scope = await Scope.create('served');
});

after(() => scope.teardown());

interface Layer {
  store: FaultyStore;
  storeMnt: string;
  mnt: string;
  files: Record<string, Buffer>;
  storePath(rel: string): string;
}

/** The files in a FaultyStore, the layer mounted by m; healed before it is unmounted. */
async function storeLayer(name: string, m: FuseLayerMounter, files: Record<string, Buffer>): Promise<Layer> {
  const backing = await scope.mkdir(name, 'backing');
  const storeMnt = await scope.mkdir(name, 'store');
  const dir = path.join(backing, LAYER_REL);
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, data] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), data);
  const store = await FaultyStore.start(backing, storeMnt);
  scope.defer(`stop the ${name} store`, () => store.stop());
  const mnt = scope.path(name, 'mnt');
  await m.mount(path.join(storeMnt, LAYER_REL), mnt, log.logger);
  scope.defer(`unmount the ${name} layer`, async () => { await m.unmount(mnt); });
  scope.defer(`heal the ${name} store`, async () => { if (store.running) await store.heal(); });
  return { store, storeMnt, mnt, files, storePath: (rel) => `/${LAYER_REL}/${rel}` };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// Reads a file whole and prints its size and sha256; with drop, first asks the kernel to forget
// the file's cached pages, so every byte is read through the server again.
const READER_PY = String.raw`
import errno, hashlib, os, sys
p, drop = sys.argv[1], sys.argv[2] == '1'
h, n = hashlib.sha256(), 0
try:
    fd = os.open(p, os.O_RDONLY)
    if drop: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    while True:
        b = os.read(fd, 256 * 1024)
        if not b: break
        if n == 0: print('reading', flush=True)
        h.update(b)
        n += len(b)
    os.close(fd)
    print('done %d bytes, sha256 %s' % (n, h.hexdigest()), flush=True)
except OSError as e:
    print('done %s after %d bytes' % (errno.errorcode.get(e.errno, str(e.errno)), n), flush=True)
`;

function reader(p: string, drop: boolean): PyChild {
  const c = new PyChild(READER_PY, [p, drop ? '1' : '0']);
  scope.defer(`stop reader ${c.pid}`, () => c.stop());
  return c;
}

async function readResult(c: PyChild): Promise<string> {
  const e = await c.exited;
  assert.equal(e.code, 0, e.stderr);
  return (e.stdout.find((l) => l.startsWith('done ')) ?? 'done: nothing printed').slice(5);
}

const expected = (b: Buffer): string => `${b.length} bytes, sha256 ${sha(b)}`;

test('served reads: a read in flight while its file is evicted from a budget of one reads the right bytes, with and without the page cache dropped; no store descriptor leaks', async (t) => {
  const observer = new OpCounter();
  const m = new FuseLayerMounter({ log: log.logger, observer, tuning: { passthrough: false, openFiles: 1 } });
  scope.defer('close the served-reads mounter', async () => { assert.deepEqual((await m.close()).failed, []); });
  const files = { 'big.bin': randomBytes(BIG), 'one.bin': randomBytes(300_000), 'two.bin': randomBytes(200_000) };
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  const l = await storeLayer('evict', m, files);
  assert.equal(m.counters().passthrough, 0, 'the layer reads by passthrough: its reads would never reach the server');
  await l.store.delay(l.storePath('big.bin'), 'read', SLOW_READ_MS);

  const round = async (drop: boolean): Promise<Record<string, unknown>> => {
    const reads0 = observer.count('read');
    const bytes0 = observer.bytes;
    const slow = reader(path.join(l.mnt, 'big.bin'), drop);
    await slow.line('reading');
    // The slow reader's next READ is on the store now: it is in flight when the others come.
    await waitUntil(() => m.counters().waitingForStore > 0, { what: 'a READ of big.bin waiting for the store', timeoutMs: 60_000 });
    const others = await Promise.all(['one.bin', 'two.bin'].map((r) => readResult(reader(path.join(l.mnt, r), drop))));
    const slowStillReading = slow.running;
    return {
      slowStillReading,
      others,
      slow: await readResult(slow),
      readsServed: observer.count('read') - reads0 > 0,
      bigServedWhole: observer.bytes - bytes0 >= BIG,
    };
  };
  const want = {
    slowStillReading: true,
    others: [expected(files['one.bin']), expected(files['two.bin'])],
    slow: expected(files['big.bin']),
    readsServed: true,
    bigServedWhole: true,
  };
  // A fresh mount has nothing in the page cache; the second round drops what the first left there.
  const fresh = await round(false);
  const dropped = await round(true);
  t.diagnostic(`READs answered: ${observer.count('read')}, bytes served: ${observer.bytes}, failed READs: ${observer.count('read', 5)}`);
  assert.deepEqual({ fresh, dropped }, { fresh: want, dropped: want });

  // Every reader is gone: the store files held are what the budget allows, besides the layer's root.
  const layerRoot = path.join(l.storeMnt, LAYER_REL);
  const storeFiles = (): string[] => descriptorsUnder(l.storeMnt).filter((p) => p !== layerRoot);
  await eventually(() => storeFiles().length <= 1, () => `at most openFiles (1) store file held open (held: ${JSON.stringify(storeFiles())})`, 30_000);
  await m.unmount(l.mnt);
  await eventually(() => descriptorsUnder(l.storeMnt).length === 0, () => `no descriptor of the store left after unmount (left: ${JSON.stringify(descriptorsUnder(l.storeMnt))})`, 30_000);
  await l.store.stop();
  await eventually(() => fs.readdirSync('/proc/self/fd').length <= fdsBefore, () => `this process's descriptors back to ${fdsBefore} (now ${fs.readdirSync('/proc/self/fd').length})`, 30_000);
  assert.deepEqual(mountsUnder(path.join(scope.dir, 'evict')).map((x) => x.mountPoint), [], 'mounts left after the test');
});

test('passthrough: a file whose store read fails gives its reader EIO, and a neighbour reads fine', async () => {
  const observer = new OpCounter();
  const m = new FuseLayerMounter({ log: log.logger, observer });
  scope.defer('close the passthrough mounter', async () => { assert.deepEqual((await m.close()).failed, []); });
  const files = { 'bad.bin': randomBytes(200_000), 'good.bin': randomBytes(200_000) };
  const l = await storeLayer('pt', m, files);
  await l.store.fail(l.storePath('bad.bin'), 'read', 'EIO');
  const [bad, good] = await readAll([path.join(l.mnt, 'bad.bin'), path.join(l.mnt, 'good.bin')]);
  await l.store.heal();
  const [healed] = await readAll([path.join(l.mnt, 'bad.bin')]);
  assert.deepEqual({ passthrough: m.counters().passthrough, bad, good, readsServed: observer.count('read'), healed }, {
    passthrough: 1,
    bad: 'EIO',
    good: dataText(files['good.bin']),
    // Passthrough: the kernel read the store's file itself, the EIO came from there.
    readsServed: 0,
    healed: dataText(files['bad.bin']),
  });
});
