// A layer store that stops answering (a cvmfs2 waiting for a proxy that never answers) under a
// served layer. What the server promises (DESIGN, the data plane): a stalled store stalls only
// what touches it and holds only a few store threads; a reader blocked on it can be
// interrupted; no store call waits longer than its deadline; and once the store answers again
// nothing stays pending and nothing wrong is remembered.
//
// The store is a FaultyStore (a python FUSE server in its own process) whose requests block
// until heal(); the readers are python children, because the server runs on this test's event
// loop. Liveness is shown by order: what must not wait for the stalled store completes while
// the stall is still in place; nothing here is timed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { DEFAULT_TUNING } from '../../src/fuse/tuning.js';
import { poolStats } from '../../src/sys/native.js';
import { Scope } from '../helpers/scope.js';
import { listMounts, mountsUnder } from '../helpers/mounts.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';
import { LogCapture, OpCounter, PyChild, eventually, percentile } from './fault-kit.js';
import { probeOne } from './fs-probe.js';
import { LAYER_REL, PARALLEL_LOOKUPS_PY, TIMED_LOOKUPS_PY, WIDE, WIDE_DATA, entry, writeWideLayer } from './stall-kit.js';

const STALLED_LOOKUPS = 600;
const HEALTHY_LOOKUPS = 1000;

let scope: Scope;
let mounter: FuseLayerMounter;
const log = new LogCapture();
const observer = new OpCounter();

before(async () => {
  scope = await Scope.create('stall');
  mounter = new FuseLayerMounter({ log: log.logger, observer });
  scope.defer('close the layer mounter', async () => {
    const r = await mounter.close();
    assert.deepEqual(r.failed, []);
  });
});

after(() => scope.teardown());

interface StoreLayer {
  store: FaultyStore;
  /** The layer directory inside the store mount, as the mounter is given it. */
  layer: string;
  mnt: string;
  /** The store's own path (what FaultyStore faults name) of a path in the layer. */
  storePath(rel: string): string;
}

/** A wide layer in a FaultyStore, mounted through `m`; healed before it is unmounted. */
async function stalledLayer(name: string, m: FuseLayerMounter = mounter): Promise<StoreLayer> {
  const backing = await scope.mkdir(name, 'backing');
  const storeMnt = await scope.mkdir(name, 'store');
  writeWideLayer(path.join(backing, LAYER_REL));
  const store = await FaultyStore.start(backing, storeMnt);
  scope.defer(`stop the ${name} store`, () => store.stop());
  stores.push(store);
  const layer = path.join(storeMnt, LAYER_REL);
  const mnt = scope.path(name, 'mnt');
  await m.mount(layer, mnt, log.logger);
  scope.defer(`unmount the ${name} layer`, async () => { await m.unmount(mnt); });
  // Runs first: a stalled request would keep the unmount waiting.
  scope.defer(`heal the ${name} store`, async () => { if (store.running) await store.heal(); });
  return { store, layer, mnt, storePath: (rel) => `/${LAYER_REL}/${rel}` };
}

const stores: FaultyStore[] = [];

/**
 * A reader stopped at the end whatever happened. The stores are healed first: a request the
 * server has read is waited out by the kernel even for SIGKILL, so a reader blocked on a stall
 * goes only once the store answers.
 */
function track(c: PyChild): PyChild {
  scope.defer(`stop reader ${c.pid}`, async () => {
    for (const s of stores) if (s.running) await s.heal();
    await c.stop();
  });
  return c;
}

const waiting = (): number => mounter.counters().waitingForStore;

test('a stalled store next to a healthy one: 600 lookups wait on at most storeCallsPerLayer store threads while another layer answers 1,000 lookups, a listing and a read; after heal all 600 answer right and nothing stays pending', async (t) => {
  const a = await stalledLayer('a');
  const bLayer = path.join(await scope.mkdir('b', 'store'), LAYER_REL);
  writeWideLayer(bLayer);
  const bMnt = scope.path('b', 'mnt');
  await mounter.mount(bLayer, bMnt, log.logger);
  scope.defer('unmount the b layer', async () => { await mounter.unmount(bMnt); });

  // D is looked up before the stall: looking a directory up reads inside it (its opaque
  // marker), and what is inside D is what stalls.
  assert.equal((await probeOne({ op: 'lstat', path: path.join(a.mnt, 'D') })).stat?.type, 'dir');
  await a.store.stall(a.storePath('D/'), 'lookup');

  // Half of them name files of D (the answer is their size), half names D does not have.
  const names = Array.from({ length: STALLED_LOOKUPS }, (_, i) => (i % 2 === 0 ? entry(i) : `absent-${i}`));
  const stalled = track(new PyChild(PARALLEL_LOOKUPS_PY, [], `${JSON.stringify(names.map((n) => path.join(a.mnt, 'D', n)))}\n`));
  await stalled.line('started');
  await eventually(() => waiting() >= STALLED_LOOKUPS, () => `all ${STALLED_LOOKUPS} lookups of the stalled layer to be waiting in the server (waiting: ${waiting()})`, 60_000);
  // Past the pool's stuck threshold (1 s), a thread blocked in the store counts as stuck.
  await waitUntil(() => poolStats().stuck > 0, { what: 'the store threads blocked by the stall to count as stuck', timeoutMs: 30_000 });
  const held = poolStats();
  t.diagnostic(`pool while stalled: ${JSON.stringify(held)}`);
  assert.ok(held.inflight <= DEFAULT_TUNING.storeCallsPerLayer && held.stuck <= DEFAULT_TUNING.storeCallsPerLayer,
    `the stall holds ${held.inflight} store calls (${held.stuck} stuck threads); at most storeCallsPerLayer = ${DEFAULT_TUNING.storeCallsPerLayer} may`);

  const healthy = track(new PyChild(TIMED_LOOKUPS_PY, [bMnt, String(HEALTHY_LOOKUPS), 'missing', 'and-read']));
  await waitUntil(() => !healthy.running, { what: 'the healthy layer to answer while the other one is stalled', timeoutMs: 120_000 });
  const hExit = await healthy.exited;
  // Read before anything is released: this is what "while A was still stalled" means.
  const stillStalled = { readerRunning: stalled.running, waiting: waiting() >= STALLED_LOOKUPS, answered: stalled.output.filter((l) => l.startsWith('results')).length };
  assert.equal(hExit.code, 0, hExit.stderr);
  const h = JSON.parse((hExit.stdout.find((l) => l.startsWith('done ')) ?? 'done {}').slice(5)) as { lat: number[]; wrong: string[][]; listed: number; sha: string };
  const ms = (ns: number): string => (ns / 1e6).toFixed(3);
  t.diagnostic(`healthy layer's lookups while ${STALLED_LOOKUPS} wait on the stalled one: p50 ${ms(percentile(h.lat, 50))} ms, p99 ${ms(percentile(h.lat, 99))} ms, max ${ms(Math.max(...h.lat))} ms`);
  assert.deepEqual({ ...stillStalled, lookups: h.lat.length, wrong: h.wrong, listed: h.listed, sha: h.sha }, {
    readerRunning: true, waiting: true, answered: 0,
    lookups: HEALTHY_LOOKUPS, wrong: [], listed: WIDE, sha: createHash('sha256').update(WIDE_DATA).digest('hex'),
  });

  await a.store.heal();
  await waitUntil(() => !stalled.running, { what: `the ${STALLED_LOOKUPS} stalled lookups to finish after heal`, timeoutMs: 120_000 });
  const sExit = await stalled.exited;
  assert.equal(sExit.code, 0, sExit.stderr);
  const got = JSON.parse((sExit.stdout.find((l) => l.startsWith('results ')) ?? 'results []').slice(8)) as string[];
  assert.deepEqual(got, names.map((n, i) => (n.startsWith('entry-') ? `size:${i}` : 'ENOENT')));
  await eventually(() => waiting() === 0, () => `no request left waiting for the store (waiting: ${waiting()})`, 30_000);

  const aAfter = await probeOne({ op: 'lstat', path: path.join(a.mnt, 'D', entry(999)) });
  const bAfter = await probeOne({ op: 'lstat', path: path.join(bMnt, 'D', entry(998)) });
  assert.deepEqual({ a: aAfter.stat?.size, b: bAfter.stat?.size, both: mounter.isMounted(a.mnt) && mounter.isMounted(bMnt) }, { a: 999, b: 998, both: true });

  await mounter.unmount(a.mnt);
  await mounter.unmount(bMnt);
  await a.store.stop();
  assert.deepEqual(mountsUnder(scope.dir).map((m) => m.mountPoint), [], 'mounts left after the test');
});

/** The names of one healthy-layer round: lookups of missing names, a listing, a read, all right. */
async function healthyRound(bMnt: string, prefix: string, what: string): Promise<{ lookups: number; wrong: string[][]; listed: number; sha: string }> {
  const c = track(new PyChild(TIMED_LOOKUPS_PY, [bMnt, '50', prefix, 'and-read']));
  await waitUntil(() => !c.running, { what, timeoutMs: 60_000 });
  const e = await c.exited;
  assert.equal(e.code, 0, e.stderr);
  const h = JSON.parse((e.stdout.find((l) => l.startsWith('done ')) ?? 'done {}').slice(5)) as { lat: number[]; wrong: string[][]; listed: number; sha: string };
  return { lookups: h.lat.length, wrong: h.wrong, listed: h.listed, sha: h.sha };
}

test('more stalled layers than the store pool has threads: a healthy layer still answers, before and after the stalled threads count as stuck', async () => {
  // One layer more than the pool's threads can hold at storeCallsPerLayer each: the stalled
  // calls then fill every thread and some wait in the pool's queue.
  const count = Math.floor(DEFAULT_TUNING.poolThreads / DEFAULT_TUNING.storeCallsPerLayer) + 1;
  const perLayer = DEFAULT_TUNING.storeCallsPerLayer * 2;
  const backing = await scope.mkdir('many', 'backing');
  const storeMnt = await scope.mkdir('many', 'store');
  const rel = (i: number): string => `.layers/ee/${String(i).padStart(64, 'e')}/layerfs`;
  for (let i = 0; i < count; i++) writeWideLayer(path.join(backing, rel(i)));
  const store = await FaultyStore.start(backing, storeMnt);
  scope.defer('stop the many store', () => store.stop());
  stores.push(store);
  const mnts: string[] = [];
  for (let i = 0; i < count; i++) {
    const mnt = scope.path('many', `mnt${i}`);
    await mounter.mount(path.join(storeMnt, rel(i)), mnt, log.logger);
    scope.defer(`unmount many layer ${i}`, async () => { await mounter.unmount(mnt); });
    mnts.push(mnt);
    assert.equal((await probeOne({ op: 'lstat', path: path.join(mnt, 'D') })).stat?.type, 'dir');
  }
  scope.defer('heal the many store', async () => { if (store.running) await store.heal(); });
  const bLayer = path.join(await scope.mkdir('many-b', 'store'), LAYER_REL);
  writeWideLayer(bLayer);
  const bMnt = scope.path('many-b', 'mnt');
  await mounter.mount(bLayer, bMnt, log.logger);
  scope.defer('unmount the many-b layer', async () => { await mounter.unmount(bMnt); });

  const w0 = waiting();
  for (let i = 0; i < count; i++) await store.stall(`/${rel(i)}/D/`, 'lookup');
  const stalled = mnts.map((mnt) => track(new PyChild(PARALLEL_LOOKUPS_PY, [],
    `${JSON.stringify(Array.from({ length: perLayer }, (_, k) => path.join(mnt, 'D', `absent-${k}`)))}\n`)));
  await eventually(() => waiting() - w0 >= count * perLayer, () => `${count * perLayer} lookups waiting on the stalled layers (waiting: ${waiting() - w0})`, 60_000);
  // At once, while the stalled calls may not count as stuck yet, and again once they all do.
  const early = await healthyRound(bMnt, 'early', 'the healthy layer to answer right after the stall began');
  await eventually(() => poolStats().stuck >= DEFAULT_TUNING.poolThreads, () => `every pool thread stuck in the stalled store (pool: ${JSON.stringify(poolStats())})`, 30_000);
  const late = await healthyRound(bMnt, 'late', 'the healthy layer to answer once every pool thread was stuck');
  const stillStalled = stalled.every((c) => c.running) && waiting() - w0 >= count * perLayer;
  const right = { lookups: 50, wrong: [], listed: WIDE, sha: createHash('sha256').update(WIDE_DATA).digest('hex') };
  assert.deepEqual({ early, late, stillStalled }, { early: right, late: right, stillStalled: true });

  await store.heal();
  await eventually(() => stalled.every((c) => !c.running) && waiting() === w0, () => `the stalled lookups to finish after heal (waiting: ${waiting() - w0})`, 120_000);
  for (const c of stalled) assert.equal((await c.exited).code, 0);
});

// Blocks in one raw system call and reports its errno. The SIGINT handler does nothing and
// returns, and a ctypes call is not retried, so an EINTR the server answered reaches python as
// it is (os.lstat would retry it, PEP 475).
const RAW_CALL_PY = String.raw`
import ctypes, errno, json, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
op, p = sys.argv[1], os.fsencode(sys.argv[2])
signal.signal(signal.SIGINT, lambda s, f: None)
print('ready', flush=True)
if op == 'lstat':
    r = libc.lstat(p, ctypes.create_string_buffer(256))
else:
    r = libc.open(p, os.O_RDONLY)
e = ctypes.get_errno()
out = {'ok': r >= 0, 'errno': None if r >= 0 else errno.errorcode.get(e, str(e))}
if r >= 0 and op == 'open':
    out['size'] = len(os.read(r, 1 << 20))
    os.close(r)
print('result ' + json.dumps(out), flush=True)
`;

interface Outcome { ok: boolean; errno: string | null; size?: number }

async function resultOf(c: PyChild): Promise<Outcome> {
  const e = await c.exited;
  assert.equal(e.code, 0, e.stderr);
  return JSON.parse((e.stdout.find((l) => l.startsWith('result ')) ?? 'result {}').slice(7)) as Outcome;
}

/**
 * A reader blocked in `op` on `rel` (whose store `storeOp` stalls) gets SIGINT: it sees EINTR
 * and exits, the server answered EINTR for `fuseOp`, and a second reader of the same path still
 * waits for the store until heal, then succeeds.
 */
async function interruptedWhileStalled(name: string, op: 'lstat' | 'open', fuseOp: string, rel: string, storeOp: 'lookup' | 'open', check?: (s: StoreLayer) => Promise<void>): Promise<Outcome> {
  const s = await stalledLayer(name);
  await check?.(s);
  const target = path.join(s.mnt, rel);
  await s.store.stall(s.storePath(rel), storeOp);
  const before = { eintr: observer.count(fuseOp, 4), waiting: waiting() };
  const mark = log.mark();

  const first = track(new PyChild(RAW_CALL_PY, [op, target]));
  await first.line('ready');
  await waitUntil(() => waiting() > before.waiting, { what: `the ${fuseOp} of ${rel} to wait for the stalled store`, timeoutMs: 30_000 });
  first.signal('SIGINT');
  await waitUntil(() => !first.running, { what: `the interrupted ${op} to return (it hangs: INTERRUPT was not answered)`, timeoutMs: 30_000 });
  const interrupted = await resultOf(first);
  const eintrAnswered = observer.count(fuseOp, 4) - before.eintr;
  const logged = log.withMessage(mark, 'interrupted').length > 0;

  // The same path for someone who is not interrupted: still the store's to answer.
  const second = track(new PyChild(RAW_CALL_PY, [op, target]));
  await second.line('ready');
  await waitUntil(() => waiting() > before.waiting, { what: `a second ${fuseOp} of ${rel} to wait for the store`, timeoutMs: 30_000 });
  const secondWaited = second.running;
  await s.store.heal();
  const healed = await resultOf(second);
  await waitUntil(() => waiting() === before.waiting, { what: 'nothing left waiting for the store after heal', timeoutMs: 30_000 });
  await eventually(() => poolStats().inflight === 0, () => `the stalled store calls to come back (pool: ${JSON.stringify(poolStats())})`, 30_000);

  assert.deepEqual({ interrupted, eintrAnswered, logged, secondWaited }, {
    interrupted: { ok: false, errno: 'EINTR' }, eintrAnswered: 1, logged: true, secondWaited: true,
  });
  return healed;
}

test('INTERRUPT: a stat blocked on a stalled store lookup returns EINTR on SIGINT; the lookup stays the store\'s until heal', async () => {
  const healed = await interruptedWhileStalled('intr-lookup', 'lstat', 'lookup', `D/${entry(7)}`, 'lookup');
  assert.deepEqual(healed, { ok: true, errno: null });
});

test('INTERRUPT: an open (passthrough) blocked on a stalled store open returns EINTR on SIGINT; the open stays the store\'s until heal', async () => {
  const healed = await interruptedWhileStalled('intr-open', 'open', 'open', `D/${entry(9)}`, 'open', async (s) => {
    const st = await probeOne({ op: 'lstat', path: path.join(s.mnt, 'D', entry(9)) });
    assert.equal(st.stat?.size, 9);
    assert.ok(mounter.counters().passthrough > 0, 'the layer does not read by passthrough: OPEN would not reach the server');
  });
  assert.deepEqual(healed, { ok: true, errno: null, size: 9 });
});

test('deadline: a lookup the store does not answer within storeDeadlineMs is EIO, logged with the layer; after heal the same name answers', async () => {
  const m = new FuseLayerMounter({ log: log.logger, observer, tuning: { storeDeadlineMs: 1500 } });
  scope.defer('close the deadline mounter', async () => { assert.deepEqual((await m.close()).failed, []); });
  const s = await stalledLayer('deadline', m);
  const rel = `D/${entry(11)}`;
  await s.store.stall(s.storePath(rel), 'lookup');
  const mark = log.mark();
  // Not fs-probe's reader: its time limit cannot end a request the server has read (the kernel
  // waits those out even for SIGKILL), so a missing deadline would hang the test instead of failing it.
  const reader = track(new PyChild(RAW_CALL_PY, ['lstat', path.join(s.mnt, rel)]));
  let stalled: string;
  let warned: unknown[] = [];
  try {
    await waitUntil(() => !reader.running, { what: 'the lookup to be answered', timeoutMs: 60_000 });
    // Taken when the reader returned: the warning came first.
    // The layer's background walk may meet the stalled entry too (its listing stats it): that
    // call gets its own warning, so the lookup's is picked by its call.
    warned = log.withMessage(mark, 'the layer store did not answer within the deadline')
      .filter((r) => r.call === `lookup ${rel}`).map((r) => ({ layer: r.layer, level: r.level }));
    const r = await resultOf(reader);
    stalled = r.ok ? 'answered' : String(r.errno);
  } catch {
    stalled = 'HANG';
  }
  await s.store.heal();
  const again = await probeOne({ op: 'lstat', path: path.join(s.mnt, rel) });
  assert.deepEqual({ stalled, warned, again: again.ok ? again.stat?.size : again.errno }, {
    stalled: 'EIO',
    warned: [{ layer: s.layer, level: 40 }],
    again: 11,
  });
  await m.unmount(s.mnt);
  assert.ok(!listMounts().some((x) => x.mountPoint === s.mnt), 'the deadline layer is still mounted');
});

// Opens a file and reads it; prints the outcome: 'read:<bytes>' or the errno of open or read.
const OPEN_READ_PY = String.raw`
import errno, json, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    try:
        out = 'read:%d' % len(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
except OSError as e:
    out = errno.errorcode.get(e.errno, str(e.errno))
print('result ' + json.dumps(out), flush=True)
`;

for (const passthrough of [true, false]) {
  const how = passthrough ? 'passthrough: OPEN' : 'served: the first READ';
  test(`deadline (${how}): a store open past the deadline is EIO; the file the store opens late is closed again, and the next open reads it`, async () => {
    const m = new FuseLayerMounter({ log: log.logger, observer, tuning: { storeDeadlineMs: 1500, passthrough } });
    scope.defer('close the late-open mounter', async () => { assert.deepEqual((await m.close()).failed, []); });
    const s = await stalledLayer(`late-open-${passthrough ? 'pt' : 'served'}`, m);
    const rel = `D/${entry(13)}`;
    const storeFile = s.storePath(rel);
    await s.store.stall(storeFile, 'open');
    const mark = log.mark();
    const reader = track(new PyChild(OPEN_READ_PY, [path.join(s.mnt, rel)]));
    let first: string;
    try {
      await waitUntil(() => !reader.running, { what: 'the open to be answered', timeoutMs: 60_000 });
      const e = await reader.exited;
      first = JSON.parse((e.stdout.find((l) => l.startsWith('result ')) ?? 'result "none"').slice(7)) as string;
    } catch {
      first = 'HANG';
    }
    await s.store.heal();
    // The store now opens the file for the call that passed its deadline; nobody wants it.
    await eventually(() => log.withMessage(mark, 'a store call that passed its deadline came back').length > 0, () => 'the late open to come back', 30_000);
    await eventually(() => s.store.openCount(storeFile) === 0, () => `the late-opened file to be closed (the store holds it ${s.store.openCount(storeFile)} times)`, 30_000);
    const again = await probeOne({ op: 'read', path: path.join(s.mnt, rel) });
    assert.deepEqual({ first, again: again.ok ? again.data?.length : again.errno }, {
      first: 'EIO', again: 13,
    });
    await m.unmount(s.mnt);
  });
}
