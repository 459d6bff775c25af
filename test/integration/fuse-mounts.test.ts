// The mount lifecycle with real mounts: counts, busy and stale mounts, reconcile, shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { FuseLayerMounter, probeMount } from '../../src/fuse/index.js';
import { isKind } from '../../src/errors.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { assertNothingMountedUnder, fuseUnder, mountInChild, q, sh, shOk, tempRoot } from './fuse-kit.js';

let root = '';
const layer = (n: string): string => path.join(root, 'store', n);
const mnt = (n: string): string => path.join(root, 'mnt', n);

before(async () => {
  root = tempRoot('fuse-mounts');
  for (const n of ['a', 'b', 'c']) {
    fs.mkdirSync(layer(n), { recursive: true });
    fs.writeFileSync(path.join(layer(n), 'file'), `layer ${n}\n`);
  }
});

after(async () => {
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

test('mount and unmount are counted; mounting the same layer again is a no-op; another layer there is refused', async () => {
  const m = new FuseLayerMounter({ log: silentLogger() });
  try {
    await m.mount(layer('a'), mnt('one'));
    await m.mount(layer('a'), mnt('one'));
    assert.equal(m.counters().mounts, 1);
    assert.ok(m.isMounted(mnt('one')));
    assert.ok(m.isMounted(mnt('one') + '/'), 'a trailing slash names the same mountpoint');
    assert.deepEqual(m.mountpoints(), [mnt('one')]);
    assert.equal(await shOk(`cat ${q(mnt('one'))}/file`), 'layer a\n');
    await assert.rejects(m.mount(layer('b'), mnt('one')), (e: unknown) => isKind(e, 'FailedPrecondition'));
    assert.equal(await m.unmount(mnt('one')), 'unmounted');
    assert.equal(await m.unmount(mnt('one')), 'not-mounted');
    assert.equal(m.isMounted(mnt('one')), false);
    assert.deepEqual(m.counters(), { mounts: 1, unmounts: 1, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 0, passthrough: 0, xattrFree: 0, waitingForStore: 0 });
    assert.deepEqual(await fuseUnder(root), []);
  } finally {
    await m.close();
  }
});

test('a missing layer directory is NotFound and leaves no mount', async () => {
  const m = new FuseLayerMounter({ log: silentLogger() });
  await assert.rejects(m.mount(layer('nope'), mnt('nope')), (e: unknown) => isKind(e, 'NotFound'));
  assert.deepEqual(await fuseUnder(root), []);
  assert.deepEqual(await m.close(), { unmounted: [], lazilyUnmounted: [], failed: [] });
});

test('a busy mount is detached lazily and reported so; its user keeps reading', async () => {
  const m = new FuseLayerMounter({ log: silentLogger() });
  await m.mount(layer('a'), mnt('busy'));
  // A process with an open file and its cwd on the mount. Never spawn with `cwd` on a mount this
  // process serves: libuv blocks the event loop until the child's exec, and the child's chdir
  // waits for this event loop to answer.
  const holder = spawn('sh', ['-c', `cd ${q(mnt('busy'))} && exec 3< file; echo ready; read line; cat <&3`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  holder.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  try {
    assert.equal(await m.unmount(mnt('busy')), 'lazy');
    assert.deepEqual(await fuseUnder(root), [], 'detached from the tree at once');
    assert.equal(m.counters().lazyUnmounts, 1);
    holder.stdin.end('go\n');
    await new Promise<void>((resolve) => holder.once('exit', () => resolve()));
    assert.equal(out, 'ready\nlayer a\n');
  } finally {
    holder.kill('SIGKILL');
    await m.close();
  }
});

test('a dead mount (server SIGKILLed) is probed as dead, and mounting over it clears it first', async () => {
  const child = await mountInChild(layer('b'), mnt('stale'));
  assert.equal((await probeMount(mnt('stale'))).health, 'alive');
  const m = new FuseLayerMounter({ log: silentLogger() });
  try {
    // Alive and not ours: not taken over.
    await assert.rejects(m.mount(layer('b'), mnt('stale')), (e: unknown) => isKind(e, 'FailedPrecondition'));
    await child.kill();
    const p = await probeMount(mnt('stale'));
    assert.equal(p.health, 'dead');
    assert.match(p.detail, /not connected/);
    await m.mount(layer('c'), mnt('stale'));
    assert.equal(m.counters().staleCleared, 1);
    assert.equal(await shOk(`cat ${q(mnt('stale'))}/file`), 'layer c\n');
    assert.equal((await fuseUnder(root)).length, 1, 'the stale mount is gone, not hidden under the new one');
  } finally {
    await child.kill();
    await m.close();
  }
});

test('reconcile: stale mounts go, unwanted ones go, wanted ones stay, and wanted but absent ones are reported', async () => {
  const prefix = path.join(root, 'mnt', 'rec');
  const deadChild = await mountInChild(layer('a'), path.join(prefix, 'dead-wanted'));
  const deadChild2 = await mountInChild(layer('a'), path.join(prefix, 'dead unwanted'));
  await deadChild.kill();
  await deadChild2.kill();
  const m = new FuseLayerMounter({ log: silentLogger() });
  try {
    await m.mount(layer('b'), path.join(prefix, 'kept'));
    await m.mount(layer('c'), path.join(prefix, 'unwanted'));
    await m.mount(layer('c'), path.join(prefix, 'gone-behind-our-back'));
    await shOk(`umount ${q(path.join(prefix, 'gone-behind-our-back'))}`);
    // Outside the prefix: never touched.
    await m.mount(layer('a'), mnt('outside'));

    const keep = new Set([path.join(prefix, 'kept'), path.join(prefix, 'dead-wanted'), path.join(prefix, 'never-mounted')]);
    const r = await m.reconcile(prefix, keep);
    assert.deepEqual(r.kept, [path.join(prefix, 'kept')]);
    assert.deepEqual([...r.unmounted].sort(), [path.join(prefix, 'dead unwanted'), path.join(prefix, 'unwanted')]);
    assert.deepEqual([...r.staleCleared].sort(), [path.join(prefix, 'dead unwanted'), path.join(prefix, 'dead-wanted')]);
    assert.deepEqual([...r.missing].sort(), [path.join(prefix, 'dead-wanted'), path.join(prefix, 'never-mounted')]);
    assert.deepEqual(r.failed, []);
    assert.deepEqual((await fuseUnder(prefix)), [path.join(prefix, 'kept')]);
    assert.ok(m.isMounted(mnt('outside')));
    assert.equal(m.isMounted(path.join(prefix, 'gone-behind-our-back')), false);

    // The caller mounts what is missing; a second reconcile changes nothing.
    await m.mount(layer('a'), path.join(prefix, 'dead-wanted'));
    await m.mount(layer('a'), path.join(prefix, 'never-mounted'));
    const again = await m.reconcile(prefix, keep);
    assert.deepEqual(again.missing, []);
    assert.deepEqual(again.unmounted, []);
    assert.equal(again.kept.length, 3);
  } finally {
    const c = await m.close();
    assert.deepEqual(c.failed, []);
    assert.equal(c.unmounted.length, 4);
  }
});

test('reconcile clears a hung mount (server stopped): it is aborted and unmounted, not waited on', async () => {
  const mp = path.join(root, 'mnt', 'hung', 'one');
  const child = await mountInChild(layer('a'), mp);
  const m = new FuseLayerMounter({ log: silentLogger(), probeTimeoutMs: 500 });
  try {
    child.child.kill('SIGSTOP');
    assert.equal((await probeMount(mp, 500)).health, 'unresponsive');
    const r = await m.reconcile(path.join(root, 'mnt', 'hung'), new Set());
    assert.deepEqual(r.staleCleared, [mp]);
    assert.deepEqual(r.unmounted, [mp]);
    assert.deepEqual(await fuseUnder(path.join(root, 'mnt', 'hung')), []);
  } finally {
    await child.kill();
    await m.close();
  }
});

test('a failing store reaches the caller as EIO, is logged, and the daemon keeps serving', async () => {
  // A dead FUSE mount inside the layer directory: every lstat of it fails with ENOTCONN.
  const broken = path.join(root, 'store', 'broken');
  fs.mkdirSync(path.join(broken, 'dead'), { recursive: true });
  fs.writeFileSync(path.join(broken, 'fine'), 'fine\n');
  const child = await mountInChild(layer('a'), path.join(broken, 'dead'));
  await child.kill();
  const lines: string[] = [];
  const sink = new Writable({ write(c: Buffer, _e, cb) { lines.push(c.toString()); cb(); } });
  const log: Logger = pino<never>({ level: 'warn' }, sink);
  const m = new FuseLayerMounter({ log });
  try {
    await m.mount(broken, mnt('broken'));
    const st = await sh(`stat ${q(mnt('broken'))}/dead`);
    assert.notEqual(st.code, 0);
    assert.match(st.stderr, /Input\/output error/);
    // The siblings are listed, and the broken entry is too (its lookup is what fails).
    const ls = await sh(`ls ${q(mnt('broken'))}`);
    assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['dead', 'fine']);
    assert.equal(await shOk(`cat ${q(mnt('broken'))}/fine`), 'fine\n');
    assert.ok(lines.some((l) => l.includes('ENOTCONN')), 'the real cause is in the log');
  } finally {
    await m.close();
    await sh(`umount -l ${q(path.join(broken, 'dead'))}`);
  }
});

test('close unmounts everything it mounted', async () => {
  const m = new FuseLayerMounter({ log: silentLogger() });
  await m.mount(layer('a'), mnt('x1'));
  await m.mount(layer('b'), mnt('x2'));
  await m.mount(layer('c'), mnt('x 3'));
  const r = await m.close();
  assert.deepEqual([...r.unmounted].sort(), [mnt('x 3'), mnt('x1'), mnt('x2')]);
  assert.deepEqual(await fuseUnder(root), []);
  assert.equal(m.counters().active, 0);
});
