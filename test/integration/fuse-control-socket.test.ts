// The FUSE server's control socket refuses what a daemon never needs, against a real
// `fuse-server --root R --store S` process spoken to in raw JSON lines: layers that are not of
// its store in DUCC's form, digests that do not match, mountpoints that are not strictly below
// its root, paths not in normal form, bad lines of every kind, and a second scope. After every
// refusal nothing is mounted (the server holds no /dev/fuse descriptor, nothing new is mounted in
// the test's directory, a FUSE mount outside the root is untouched), no directory was made for
// the refused request, and the same server answers a good request on a new connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { isAlive } from '../../src/sys/pid.js';
import { Scope } from '../helpers/scope.js';
import { listMounts, mountsUnder } from '../helpers/mounts.js';
import { waitUntil } from '../helpers/wait.js';
import { ControlConnection, startFuseServer, type ControlAnswer, type FuseServerProcess } from '../helpers/fuse-server-process.js';
import { readAll } from './fs-probe.js';

const HEX = 'ab'.repeat(32);
const OTHER_HEX = 'cd'.repeat(32);

let scope: Scope;
let server: FuseServerProcess;
let serverPid = 0;
let bait: FuseLayerMounter;
// Filled in before(): the server's scope, a real layer of its store, look-alikes of it that are
// real directories too (so that only the form can be what refuses them), and a bait mount.
const at = { root: '', store: '', layer: '', elsewhere: '', baitMnt: '', foreignLayer: '' };

function line(method: string, params: unknown, id = 7): string {
  return `${JSON.stringify({ id, method, params })}\n`;
}

function writeLayer(dir: string, content: string): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'file'), content);
}

before(async () => {
  scope = await Scope.create('fuse-control');
  at.root = await scope.mkdir('root');
  at.store = await scope.mkdir('store');
  at.elsewhere = await scope.mkdir('elsewhere');
  at.layer = path.join(at.store, '.layers', 'ab', HEX, 'layerfs');
  writeLayer(at.layer, 'the layer\n');
  // Look-alikes inside the store: wrong xx, upper case, a digest that is not 64 hex digits.
  writeLayer(path.join(at.store, '.layers', 'cd', HEX, 'layerfs'), 'wrong xx\n');
  writeLayer(path.join(at.store, '.layers', 'AB', HEX.toUpperCase(), 'layerfs'), 'upper case\n');
  writeLayer(path.join(at.store, '.layers', 'ab', HEX.slice(0, 62), 'layerfs'), 'short digest\n');
  at.foreignLayer = path.join(at.elsewhere, 'store', '.layers', 'ab', HEX, 'layerfs');
  writeLayer(at.foreignLayer, 'a layer of another store\n');
  // A symlink inside the root that leads out of it: below the root by its name only.
  fs.symlinkSync(at.elsewhere, path.join(at.root, 'link'));

  // A live FUSE mount outside the root, served by this process: no request may touch it.
  const baitLayer = path.join(at.elsewhere, 'bait-layer');
  writeLayer(baitLayer, 'bait\n');
  at.baitMnt = path.join(at.elsewhere, 'bait');
  bait = new FuseLayerMounter({ log: silentLogger() });
  scope.defer('unmount the bait', async () => {
    const r = await bait.close();
    assert.deepEqual(r.failed, []);
  });
  await bait.mount(baitLayer, at.baitMnt);

  server = await startFuseServer(scope, { root: at.root, store: at.store });
  serverPid = await server.pid();
});

after(() => scope.teardown());

/** Everything a refusal must leave as it was, and a server that still answers. */
async function assertUntouched(why: string): Promise<void> {
  const mounts = mountsUnder(scope.dir).map((m) => m.mountPoint);
  assert.deepEqual(mounts, [at.baitMnt], `${why}: only the bait is mounted in the test's directory`);
  assert.equal(await server.fuseDescriptors(), 0, `${why}: the server holds no /dev/fuse descriptor, so it mounted nothing anywhere`);
  assert.equal(await server.pid(), serverPid, `${why}: the same server`);
  assert.ok(isAlive(serverPid), `${why}: the server is alive`);
  const hello = await server.call('hello', { scope: { root: at.root, store: at.store } }, 99);
  assert.deepEqual({ id: hello.id, result: hello.result, error: hello.error, mounts: hello.state?.mounts },
    { id: 99, result: null, error: undefined, mounts: [] }, `${why}: a good request on a new connection is answered`);
}

function assertRefused(a: ControlAnswer, kind: string, id: number, message: RegExp | undefined, why: string): void {
  assert.ok(a.error, `${why}: refused, not answered ${JSON.stringify(a).slice(0, 300)}`);
  assert.equal(a.error.kind, kind, `${why}: ${a.error.message}`);
  assert.equal(a.id, id, `${why}: the answer carries the request's id`);
  if (message) assert.match(a.error.message, message, why);
  if (a.state) assert.equal(a.state.mountCount, 0, `${why}: the server reports no mount`);
  assert.ok(a.error.message.length < 1000, `${why}: the message is bounded (${a.error.message.length} characters)`);
}

interface Refusal {
  title: string;
  line: () => string;
  kind: 'InvalidArgument' | 'FailedPrecondition';
  /** The id the answer carries: -1 when the line is not a request at all. */
  id?: number;
  message?: RegExp;
  /** Paths that must not exist afterwards (nothing made for a refused mount). */
  notMade?: () => string[];
}

const mp = (): string => path.join(at.root, 'snapshots', '1', 'fs');
const mount = (layerDir: unknown, mountpoint: unknown, extra: Record<string, unknown> = {}): string => line('mount', { layerDir, mountpoint, ...extra });

const LAYER_REFUSALS: Refusal[] = [
  { title: 'a layer directory outside the store', line: () => mount(at.foreignLayer, mp()), kind: 'InvalidArgument', message: /not a layer of the store/ },
  { title: 'a host directory', line: () => mount('/etc', mp()), kind: 'InvalidArgument', message: /not a layer of the store/ },
  { title: 'a layer under the wrong two-digit directory', line: () => mount(path.join(at.store, '.layers', 'cd', HEX, 'layerfs'), mp()), kind: 'InvalidArgument' },
  { title: 'upper-case hex', line: () => mount(path.join(at.store, '.layers', 'AB', HEX.toUpperCase(), 'layerfs'), mp()), kind: 'InvalidArgument' },
  { title: 'a digest of 62 hex digits', line: () => mount(path.join(at.store, '.layers', 'ab', HEX.slice(0, 62), 'layerfs'), mp()), kind: 'InvalidArgument' },
  { title: 'a directory inside a layer (an extra component)', line: () => mount(path.join(at.layer, 'sub'), mp()), kind: 'InvalidArgument' },
  { title: 'the layer\'s parent (no layerfs)', line: () => mount(path.dirname(at.layer), mp()), kind: 'InvalidArgument' },
  { title: 'the store itself', line: () => mount(at.store, mp()), kind: 'InvalidArgument' },
  { title: 'the store\'s .layers directory', line: () => mount(path.join(at.store, '.layers'), mp()), kind: 'InvalidArgument' },
  { title: 'a digest that does not match the layer directory', line: () => mount(at.layer, mp(), { digest: `sha256:${OTHER_HEX}` }), kind: 'InvalidArgument', message: /does not match/ },
  { title: 'a digest that is not a sha256 digest', line: () => mount(at.layer, mp(), { digest: HEX }), kind: 'InvalidArgument', message: /does not match/ },
  { title: 'a digest that is not a string', line: () => mount(at.layer, mp(), { digest: 7 }), kind: 'InvalidArgument' },
  { title: 'a relative layer directory', line: () => mount(path.relative(path.dirname(at.store), at.layer), mp()), kind: 'InvalidArgument', message: /absolute/ },
  { title: 'a layer directory with ..', line: () => mount(path.join(at.store, '.layers', 'ab', HEX, 'layerfs', 'sub') + '/..', mp()), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a layer directory that climbs out of the store with ..', line: () => mount(`${at.store}/.layers/ab/../../../elsewhere/store/.layers/ab/${HEX}/layerfs`, mp()), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a layer directory with //', line: () => mount(at.layer.replace('/.layers/', '//.layers/'), mp()), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a layer directory with /./', line: () => mount(at.layer.replace('/.layers/', '/./.layers/'), mp()), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a layer directory with a trailing slash', line: () => mount(`${at.layer}/`, mp()), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a layer directory with a NUL', line: () => mount(`${at.layer}\0/sub`, mp()), kind: 'InvalidArgument', message: /absolute path/ },
  { title: 'a layer directory that is not a string', line: () => mount(['/'], mp()), kind: 'InvalidArgument' },
  { title: 'no layer directory', line: () => line('mount', { mountpoint: mp() }), kind: 'InvalidArgument', message: /layerDir/ },
];

const outsideMp = (): string => path.join(at.elsewhere, 'mnt', 'x');
const MOUNTPOINT_REFUSALS: Refusal[] = [
  { title: 'a mountpoint outside the root', line: () => mount(at.layer, outsideMp()), kind: 'InvalidArgument', message: /not below the daemon's root/, notMade: () => [path.dirname(outsideMp())] },
  { title: 'the root itself as the mountpoint', line: () => mount(at.layer, at.root), kind: 'InvalidArgument', message: /not below/ },
  { title: 'the root\'s parent as the mountpoint', line: () => mount(at.layer, scope.dir), kind: 'InvalidArgument', message: /not below/ },
  { title: 'a mountpoint beside the root whose name starts like it', line: () => mount(at.layer, `${at.root}x/m`), kind: 'InvalidArgument', message: /not below/, notMade: () => [`${at.root}x`] },
  { title: 'a relative mountpoint (the server runs in the test\'s directory)', line: () => mount(at.layer, 'root/m'), kind: 'InvalidArgument', message: /absolute/, notMade: () => [path.join(at.root, 'm')] },
  { title: 'a mountpoint that climbs out of the root with ..', line: () => mount(at.layer, `${at.root}/../elsewhere/m`), kind: 'InvalidArgument', message: /normal form/, notMade: () => [path.join(at.elsewhere, 'm')] },
  { title: 'a mountpoint with .. that stays below the root', line: () => mount(at.layer, `${at.root}/a/../m`), kind: 'InvalidArgument', message: /normal form/, notMade: () => [path.join(at.root, 'a'), path.join(at.root, 'm')] },
  { title: 'a mountpoint with //', line: () => mount(at.layer, `${at.root}//m`), kind: 'InvalidArgument', message: /normal form/, notMade: () => [path.join(at.root, 'm')] },
  { title: 'a mountpoint with /./', line: () => mount(at.layer, `${at.root}/./m`), kind: 'InvalidArgument', message: /normal form/, notMade: () => [path.join(at.root, 'm')] },
  { title: 'a mountpoint with a trailing slash', line: () => mount(at.layer, `${at.root}/m/`), kind: 'InvalidArgument', message: /normal form/, notMade: () => [path.join(at.root, 'm')] },
  { title: 'a mountpoint with a NUL (a C string would end at it, inside the root)', line: () => mount(at.layer, `${at.root}/m\0/x`), kind: 'InvalidArgument', message: /absolute path/, notMade: () => [path.join(at.root, 'm')] },
  { title: 'a mountpoint of 5000 bytes', line: () => mount(at.layer, `${at.root}/${'m'.repeat(5000)}`), kind: 'InvalidArgument', message: /at most 4096/ },
  { title: 'a mountpoint that is not a string', line: () => mount(at.layer, { path: mp() }), kind: 'InvalidArgument' },
  { title: 'an unmount outside the root (a live FUSE mount is there)', line: () => line('unmount', { mountpoint: at.baitMnt }), kind: 'InvalidArgument', message: /not below/ },
  { title: 'an unmount of the root itself', line: () => line('unmount', { mountpoint: at.root }), kind: 'InvalidArgument', message: /not below/ },
  { title: 'an unmount with ..', line: () => line('unmount', { mountpoint: `${at.root}/../elsewhere/bait` }), kind: 'InvalidArgument', message: /normal form/ },
];

const RECONCILE_REFUSALS: Refusal[] = [
  { title: 'a reconcile of a prefix outside the root (a live FUSE mount is there)', line: () => line('reconcile', { prefix: at.elsewhere, keep: [] }), kind: 'InvalidArgument', message: /not the daemon's root/ },
  { title: 'a reconcile of /', line: () => line('reconcile', { prefix: '/', keep: [] }), kind: 'InvalidArgument', message: /not the daemon's root/ },
  { title: 'a reconcile whose prefix climbs out with ..', line: () => line('reconcile', { prefix: `${at.root}/..`, keep: [] }), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a keep list with a path outside the root', line: () => line('reconcile', { prefix: at.root, keep: [mp(), at.baitMnt] }), kind: 'InvalidArgument', message: /keep names/ },
  { title: 'a keep list with the root itself', line: () => line('reconcile', { prefix: at.root, keep: [at.root] }), kind: 'InvalidArgument', message: /keep names/ },
  { title: 'a keep list with a relative path', line: () => line('reconcile', { prefix: at.root, keep: ['snapshots/1/fs'] }), kind: 'InvalidArgument', message: /absolute/ },
  { title: 'a keep list with ..', line: () => line('reconcile', { prefix: at.root, keep: [`${at.root}/snapshots/../../elsewhere/bait`] }), kind: 'InvalidArgument', message: /normal form/ },
  { title: 'a keep list that is not a list', line: () => line('reconcile', { prefix: at.root, keep: mp() }), kind: 'InvalidArgument', message: /list/ },
  { title: 'a keep list of numbers', line: () => line('reconcile', { prefix: at.root, keep: [1, 2] }), kind: 'InvalidArgument' },
];

const LINE_REFUSALS: Refusal[] = [
  { title: 'a line that is not JSON', line: () => 'mount /etc /mnt\n', kind: 'InvalidArgument', id: -1, message: /JSON/ },
  { title: 'truncated JSON', line: () => '{"id":1,"method":"mount","params":{"layerDir":\n', kind: 'InvalidArgument', id: -1, message: /JSON/ },
  { title: 'a JSON array', line: () => `${JSON.stringify([1, 'mount', {}])}\n`, kind: 'InvalidArgument', id: -1, message: /object/ },
  { title: 'a JSON number', line: () => '42\n', kind: 'InvalidArgument', id: -1, message: /object/ },
  { title: 'a JSON string', line: () => '"hello"\n', kind: 'InvalidArgument', id: -1, message: /object/ },
  { title: 'JSON null', line: () => 'null\n', kind: 'InvalidArgument', id: -1, message: /object/ },
  { title: 'an id that is a string', line: () => '{"id":"1","method":"hello"}\n', kind: 'InvalidArgument', id: -1, message: /id/ },
  { title: 'an id that is not an integer', line: () => '{"id":1.5,"method":"hello"}\n', kind: 'InvalidArgument', id: -1, message: /id/ },
  { title: 'an unknown method', line: () => line('rm', { path: at.root }), kind: 'InvalidArgument', id: -1, message: /unknown method/ },
  { title: 'a method named after an Object property', line: () => line('constructor', {}), kind: 'InvalidArgument', id: -1, message: /unknown method/ },
  { title: 'a method named __proto__', line: () => '{"id":1,"method":"__proto__","params":{}}\n', kind: 'InvalidArgument', id: -1, message: /unknown method/ },
  { title: 'no method', line: () => '{"id":1}\n', kind: 'InvalidArgument', id: -1, message: /unknown method/ },
  { title: 'params that are a list', line: () => line('mount', [at.layer, mp()]), kind: 'InvalidArgument', id: -1, message: /params/ },
  { title: 'params that are a string', line: () => line('mount', 'x'), kind: 'InvalidArgument', id: -1, message: /params/ },
  { title: 'a hello whose scope has a relative root', line: () => line('hello', { scope: { root: 'root', store: at.store } }), kind: 'InvalidArgument', message: /absolute/ },
  { title: 'a hello whose scope is a string', line: () => line('hello', { scope: at.root }), kind: 'InvalidArgument', message: /scope/ },
  { title: 'a second hello with another root', line: () => line('hello', { scope: { root: at.elsewhere, store: at.store } }), kind: 'FailedPrecondition', message: /not of/ },
  { title: 'a second hello with another store', line: () => line('hello', { scope: { root: at.root, store: path.join(at.elsewhere, 'store') } }), kind: 'FailedPrecondition', message: /not of/ },
];

for (const [group, cases] of [['mount of', LAYER_REFUSALS], ['mountpoint:', MOUNTPOINT_REFUSALS], ['reconcile:', RECONCILE_REFUSALS], ['line:', LINE_REFUSALS]] as const) {
  for (const c of cases) {
    test(`refused, nothing mounted, server still answering — ${group} ${c.title}`, async () => {
      const a = await server.ask(c.line());
      assertRefused(a, c.kind, c.id ?? 7, c.message, c.title);
      for (const p of c.notMade?.() ?? []) assert.equal(fs.existsSync(p), false, `${c.title}: ${p} was not made`);
      await assertUntouched(c.title);
    });
  }
}

test('the scope stays the first one: after a refused second hello, a layer of the other store is still refused', async () => {
  const other = await server.call('hello', { scope: { root: at.elsewhere, store: path.join(at.elsewhere, 'store') } });
  assertRefused(other, 'FailedPrecondition', 1, /fuse-server --stop/, 'a second scope');
  const a = await server.call('mount', { layerDir: at.foreignLayer, mountpoint: path.join(at.elsewhere, 'm2') });
  assertRefused(a, 'InvalidArgument', 1, undefined, 'a layer of the refused scope');
  assert.equal(fs.existsSync(path.join(at.elsewhere, 'm2')), false);
  await assertUntouched('after a second scope');
});

test('a line longer than 8 MiB is answered InvalidArgument and its connection closed', async () => {
  const c = await ControlConnection.open(server.socket);
  try {
    // A valid request's beginning, so that only its length can be what is refused.
    c.send(`{"id":3,"method":"hello","params":{"x":"${'x'.repeat(9 * 1024 * 1024)}`);
    const a = await c.next();
    assertRefused(a, 'InvalidArgument', -1, /longer than 8388608 bytes/, 'an over-long line');
    await c.closed;
  } finally {
    c.close();
  }
  await assertUntouched('an over-long line');
});

test('several refused requests on one connection are each answered, with their ids', async () => {
  const c = await ControlConnection.open(server.socket);
  try {
    c.send([
      line('mount', { layerDir: '/etc', mountpoint: mp() }, 11),
      'nope\n',
      line('mount', { layerDir: at.layer, mountpoint: at.root }, 12),
      line('hello', {}, 13),
    ].join(''));
    // A line that is no request is answered at once, the others once handled: ids, not order, match them.
    const answers = [await c.next(), await c.next(), await c.next(), await c.next()];
    assert.deepEqual(answers.map((a) => [a.id, a.error?.kind ?? 'ok']).sort((x, y) => Number(x[0]) - Number(y[0])),
      [[-1, 'InvalidArgument'], [11, 'InvalidArgument'], [12, 'InvalidArgument'], [13, 'ok']]);
  } finally {
    c.close();
  }
  await assertUntouched('several on one connection');
});

test('a mountpoint below the root by name but through a symlink out of it mounts nothing outside the root', async () => {
  for (const [why, where, made] of [
    ['an ancestor is a symlink', path.join(at.root, 'link', 'escaped'), path.join(at.elsewhere, 'escaped')],
    ['a missing directory below a symlinked ancestor', path.join(at.root, 'link', 'new', 'escaped'), path.join(at.elsewhere, 'new')],
    // mount(2) follows a symlink at the mountpoint itself.
    ['the mountpoint itself is a symlink', path.join(at.root, 'link'), ''],
  ] as const) {
    const before = listMounts().filter((m) => m.mountPoint.startsWith(`${at.elsewhere}/`) || m.mountPoint === at.elsewhere).length;
    const a = await server.call('mount', { layerDir: at.layer, mountpoint: where });
    assertRefused(a, 'InvalidArgument', 1, /symlink/, why);
    if (made) assert.equal(fs.existsSync(made), false, `${why}: no directory was made outside the root`);
    assert.equal(listMounts().filter((m) => m.mountPoint.startsWith(`${at.elsewhere}/`) || m.mountPoint === at.elsewhere).length, before, `${why}: nothing new is mounted outside the root`);
    await assertUntouched(why);
  }
});

test('an unmount or a reconcile through a symlink in the root leaves a FUSE mount outside the root alone', async () => {
  const un = await server.call('unmount', { mountpoint: path.join(at.root, 'link', 'bait') });
  assertRefused(un, 'InvalidArgument', 1, /symlink/, 'an unmount through a symlink');
  const rec = await server.call('reconcile', { prefix: path.join(at.root, 'link'), keep: [] });
  assertRefused(rec, 'InvalidArgument', 1, /symlink/, 'a reconcile of a symlink');
  assert.deepEqual(await readAll([path.join(at.baitMnt, 'file')]), ['data:bait\n'], 'the bait is still served');
  await assertUntouched('unmount and reconcile through a symlink');
});

test('after all that, a real layer of the store mounts, is served, and unmounts', async () => {
  const where = mp();
  const a = await server.call('mount', { layerDir: at.layer, mountpoint: where, digest: `sha256:${HEX}` });
  assert.equal(a.error, undefined, JSON.stringify(a.error));
  assert.equal(a.state?.mountCount, 1, 'the server reports one mount');
  const hello = await server.call('hello', { scope: { root: at.root, store: at.store } }, 7);
  assert.deepEqual(hello.state?.mounts, [where], 'hello lists the mount');
  assert.equal(listMounts().filter((m) => m.mountPoint === where && m.fsType === 'fuse.cvmfs-layer').length, 1, 'mounted at the mountpoint asked for');
  assert.deepEqual(await readAll([path.join(where, 'file')]), ['data:the layer\n']);
  assert.equal(await server.fuseDescriptors(), 1);
  // A reconcile of the root that keeps it keeps it, and leaves the bait outside the root alone.
  const kept = await server.call('reconcile', { prefix: at.root, keep: [where] });
  assert.deepEqual((kept.result as { kept: string[] }).kept, [where]);
  const un = await server.call('unmount', { mountpoint: where });
  assert.equal(un.result, 'unmounted', JSON.stringify(un));
  assert.deepEqual(mountsUnder(at.root), [], 'nothing is left mounted below the root');
  await waitUntil(async () => (await server.fuseDescriptors()) === 0, { what: 'the server to close the unmounted layer\'s /dev/fuse descriptor', timeoutMs: 10_000 });
  await assertUntouched('after a good mount and unmount');
});
