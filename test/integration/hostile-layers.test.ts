// Hostile layers served through the LayerMounter interface: whatever a layer holds (symlinks out
// of it, hardlinks, devices, fifos, sockets, odd names, whiteout look-alikes, setuid files),
// nothing of the host outside the layer directory is reachable through its mount.
//
// Two facts frame what is expected:
//  - A symlink is resolved by the kernel of the reader, in the reader's root: the FUSE server
//    only answers readlink with the target text. An absolute target ("/etc/passwd") therefore
//    means the container's own /etc/passwd when read in a container (its root is the overlay of
//    the layers), and the host's only for a host process that follows the link on purpose; the
//    tests read absolute links from a chroot onto the mount, as a container does. A relative
//    target climbs from where the link is seen, i.e. from the mountpoint, never from the layer's
//    place in the store: the layout below makes such climbs land on the canaries when counted
//    from the store and on nothing when counted from the mount, so a server that followed links
//    on the host would be caught even by a host reader.
//  - A hardlink is a second name of one inode. A layer entry hardlinked to a file outside the
//    layer (same filesystem) cannot be told apart from any other file of the layer: its content
//    is the layer's content, and its link count counts the outside name too. That is expected and
//    tested as such; the trust boundary is whoever writes the store (DUCC), not the mount.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { exec, execOk } from '../../src/sys/exec.js';
import { Scope } from '../helpers/scope.js';
import { listMounts } from '../helpers/mounts.js';
import { dataText, probe, probeOne, outcome, readAll, type ProbeResult, type WalkEntry } from './fs-probe.js';

const token = (what: string): string => `${what}-${crypto.randomBytes(12).toString('hex')}`;
const TOKEN_OUT = token('OUTSIDE');
const TOKEN_OUT2 = token('OUTSIDE-DIR');
const TOKEN_STORE = token('STORE-ROOT');
const TOKEN_SIB = token('SIBLING');
const TOKEN_SOCK = token('HOST-SOCKET');
const CANARIES = [TOKEN_OUT, TOKEN_OUT2, TOKEN_STORE, TOKEN_SIB, TOKEN_SOCK];
const LAYER_PASSWD = 'root:x:0:0:layer root:/root:/bin/sh\n';
const SHARED = 'one inode, two names: one in the layer, one outside it\n';

let scope: Scope;
let mounter: FuseLayerMounter;
const hexOf = (c: string): string => c.repeat(64);
// Filled in before(): the store, three layers in it and their mountpoints.
const at = { store: '', outside: '', hostile: '', names: '', sibling: '', mHostile: '', mNames: '' };

function layerPath(letter: string): string {
  return path.join(at.store, '.layers', letter + letter, hexOf(letter), 'layerfs');
}

async function run(cmd: string, args: string[]): Promise<void> {
  await execOk(cmd, args);
}

/** Names for the odd-names layer: raw bytes, each with its own content. */
const ODD_NAMES: Buffer[] = [
  Buffer.from('new\nline'), Buffer.from('tab\there'), Buffer.from('back\\slash'), Buffer.from('..\n'), Buffer.from('...'),
  Buffer.from('.. '), Buffer.from(' ..'), Buffer.from('.\n'), Buffer.from('\n'), Buffer.from('-rf'), Buffer.from('x'.repeat(255)),
  Buffer.from('é'.repeat(127) + 'x'), Buffer.from('quote\'"`$(id)'), Buffer.from('.wh'), Buffer.from('wh.x'),
];
const NON_UTF8_NAMES: Buffer[] = [
  Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe]), Buffer.from([0x80]), Buffer.from([0x63, 0x61, 0x66, 0xe9]),
  Buffer.concat([Buffer.from('trunc'), Buffer.from([0xe2, 0x82])]), Buffer.from([0xc0, 0xaf]),
];
const NON_UTF8_TARGET = Buffer.from([0x2e, 0x2e, 0x2f, 0xff, 0xfe]);
const contentOf = (name: Buffer): string => `content of ${name.toString('hex')}\n`;

async function buildOutsideAndSiblings(): Promise<void> {
  fs.mkdirSync(at.outside, { recursive: true });
  fs.writeFileSync(path.join(at.outside, 'canary'), TOKEN_OUT);
  fs.mkdirSync(path.join(at.outside, 'dir'));
  fs.writeFileSync(path.join(at.outside, 'dir', 'canary'), TOKEN_OUT2);
  fs.writeFileSync(path.join(at.outside, 'shared'), SHARED);
  fs.mkdirSync(at.store, { recursive: true });
  fs.writeFileSync(path.join(at.store, 'canary-root'), TOKEN_STORE);
  fs.mkdirSync(at.sibling, { recursive: true });
  fs.writeFileSync(path.join(at.sibling, 'secret'), TOKEN_SIB);
  fs.writeFileSync(path.join(at.sibling, 'shared-with-layer'), 'sibling layer file\n');
}

async function buildHostileLayer(l: string): Promise<void> {
  const p = (...x: string[]): string => path.join(l, ...x);
  fs.mkdirSync(p('etc'), { recursive: true });
  fs.writeFileSync(p('etc', 'passwd'), LAYER_PASSWD);
  fs.writeFileSync(p('file'), 'plain file\n');
  fs.mkdirSync(p('a', 'b', 'c'), { recursive: true });
  // Absolute targets: meaningful only in the reader's root.
  fs.symlinkSync('/etc/passwd', p('passwd-link'));
  fs.symlinkSync('/etc', p('etc-link'));
  fs.symlinkSync('/', p('root-link'));
  fs.symlinkSync(path.join(at.outside, 'canary'), p('abs-canary'));
  fs.symlinkSync(path.join(at.outside, 'dir'), p('abs-dir'));
  fs.symlinkSync(at.store, p('abs-store'));
  // Relative climbs: from the layer's place in the store they reach the canaries (5 levels up is
  // the scope dir); from the mountpoint (2 levels below the scope dir) they reach nothing.
  fs.symlinkSync('../../../../etc', p('up4'));
  fs.symlinkSync('../../../../../outside/canary', p('rel-canary'));
  fs.symlinkSync('../../../../../outside/dir', p('rel-dir'));
  fs.symlinkSync('../../../bb/' + hexOf('b') + '/layerfs', p('sibling'));
  fs.symlinkSync('../../../bb/' + hexOf('b') + '/layerfs/secret', p('sibling-secret'));
  fs.symlinkSync('../../../..', p('store-root'));
  fs.symlinkSync('../../../../../../../../etc', p('a', 'b', 'c', 'up'));
  fs.symlinkSync('../../../../../../../../outside/canary', p('a', 'b', 'c', 'rel-canary'));
  fs.symlinkSync('../'.repeat(40) + 'etc', p('a', 'b', 'c', 'far-up'));
  // Loops and odd targets.
  fs.symlinkSync('loop2', p('loop1'));
  fs.symlinkSync('loop1', p('loop2'));
  fs.symlinkSync('self', p('self'));
  fs.symlinkSync('loopdir/x', p('loopdir'));
  fs.symlinkSync('line\nbreak', p('nl-target'));
  fs.symlinkSync('d/'.repeat(2000) + 'end', p('long-target'));
  // Hardlinks: inside the layer, to a file outside it, and to a sibling layer's file.
  fs.writeFileSync(p('hl1'), 'hardlinked inside\n');
  fs.linkSync(p('hl1'), p('hl2'));
  fs.linkSync(path.join(at.outside, 'shared'), p('hl-out'));
  fs.linkSync(path.join(at.sibling, 'shared-with-layer'), p('hl-sibling'));
  // Devices a container must not get at through the mount, a fifo, and setuid/setgid files.
  await run('mknod', ['-m', '0666', p('null-like'), 'c', '1', '3']);
  await run('mknod', ['-m', '0666', p('zero-like'), 'c', '1', '5']);
  await run('mknod', ['-m', '0660', p('disk-like'), 'b', '8', '0']);
  await run('mknod', ['-m', '0660', p('loop-like'), 'b', '7', '0']);
  await run('mkfifo', ['-m', '0666', p('fifo')]);
  fs.copyFileSync('/usr/bin/id', p('suid-id'));
  fs.chmodSync(p('suid-id'), 0o4755);
  fs.writeFileSync(p('sgid'), '#!/bin/sh\n');
  fs.chmodSync(p('sgid'), 0o2755);
  // Whiteout look-alikes that no translation may turn into ".", "..", "" or a duplicate name.
  fs.mkdirSync(p('wh-dots'));
  for (const n of ['.wh.', '.wh..', '.wh...', 'kept']) fs.writeFileSync(p('wh-dots', n), '');
  fs.mkdirSync(p('wh-both'));
  fs.writeFileSync(p('wh-both', 'foo'), 'real foo\n');
  fs.writeFileSync(p('wh-both', '.wh.foo'), '');
  fs.mkdirSync(p('wh-opq-dir', '.wh..wh..opq'), { recursive: true });
  fs.writeFileSync(p('wh-opq-dir', '.wh..wh..opq', 'inside'), 'inside a directory named like the opaque marker\n');
  fs.writeFileSync(p('wh-opq-dir', 'kept'), 'kept\n');
  fs.mkdirSync(p('wh-opq-link'));
  fs.symlinkSync('/etc/passwd', p('wh-opq-link', '.wh..wh..opq'));
  fs.symlinkSync(path.join(at.outside, 'canary'), p('wh-opq-link', '.wh.evil'));
  fs.mkdirSync(p('wh-opq-data'));
  fs.writeFileSync(p('wh-opq-data', '.wh..wh..opq'), 'a marker with data in it\n');
  fs.mkdirSync(p('wh-odd'));
  fs.writeFileSync(p('wh-odd', '.wh.' + 'w'.repeat(251)), '');
  fs.writeFileSync(p('wh-odd', '.wh.line\nbreak'), '');
  fs.writeFileSync(p('wh-odd', '.wh..wh.plnk'), '');
}

async function buildNamesLayer(l: string): Promise<void> {
  fs.mkdirSync(l, { recursive: true });
  const base = Buffer.from(l + '/');
  for (const n of [...ODD_NAMES, ...NON_UTF8_NAMES]) fs.writeFileSync(Buffer.concat([base, n]), contentOf(n));
  // An odd name as a directory, with an odd name inside it, and a symlink with an odd name.
  const dir = Buffer.concat([base, Buffer.from('dir\nwith'), Buffer.from([0xff])]);
  fs.mkdirSync(dir);
  fs.writeFileSync(Buffer.concat([dir, Buffer.from('/in\tside')]), 'nested odd\n');
  fs.symlinkSync(Buffer.from([0x74, 0xfe]), Buffer.concat([base, Buffer.from('link'), Buffer.from([0xfe])]));
  fs.symlinkSync(NON_UTF8_TARGET, path.join(l, 'bin-target'));
}

/** A host service listening on a socket inside the layer (made before the mount: layers do not change). */
async function startSocketServer(): Promise<void> {
  const server = spawn('/usr/bin/python3', ['-c', `
import os, socket, sys
os.chdir(sys.argv[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('sock')
s.listen(8)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode())
    c.close()
`, at.hostile, TOKEN_SOCK], { stdio: ['ignore', 'pipe', 'inherit'] });
  scope.defer('stop the socket server', () => new Promise<void>((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) return resolve();
    server.once('exit', () => resolve());
    server.kill('SIGKILL');
  }));
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (b: Buffer) => { if (b.toString().includes('ready')) resolve(); });
    server.once('exit', (c) => reject(new Error(`socket server exited ${String(c)}`)));
  });
}

before(async () => {
  scope = await Scope.create('hostile');
  // Another user must reach the mountpoints (the setuid test runs as nobody).
  fs.chmodSync(scope.dir, 0o755);
  at.store = scope.path('store');
  at.outside = scope.path('outside');
  at.hostile = layerPath('a');
  at.sibling = layerPath('b');
  at.names = layerPath('c');
  at.mHostile = scope.path('m', 'H');
  at.mNames = scope.path('m', 'N');
  await buildOutsideAndSiblings();
  await buildHostileLayer(at.hostile);
  await buildNamesLayer(at.names);

  await startSocketServer();

  mounter = new FuseLayerMounter({ log: silentLogger() });
  scope.defer('close the layer mounter', async () => {
    const r = await mounter.close();
    assert.deepEqual(r.failed, []);
  });
  await mounter.mount(at.hostile, at.mHostile);
  await mounter.mount(at.names, at.mNames);
});

after(() => scope.teardown());

const inH = (...x: string[]): string => path.join(at.mHostile, ...x);

function mountEntry(mp: string): ReturnType<typeof listMounts>[number] {
  const m = listMounts().filter((e) => e.mountPoint === mp).pop();
  assert.ok(m, `${mp} is mounted`);
  return m;
}

test('the layer mounts are read-only, nodev and nosuid', () => {
  for (const mp of [at.mHostile, at.mNames]) {
    const opts = mountEntry(mp).options.split(',');
    for (const o of ['ro', 'nodev', 'nosuid']) assert.ok(opts.includes(o), `${mp} is mounted with ${o}: ${opts.join(',')}`);
  }
});

test('symlinks are symlinks through the mount, with their target bytes unchanged', async () => {
  const links = ['passwd-link', 'etc-link', 'root-link', 'abs-canary', 'abs-dir', 'abs-store', 'up4', 'rel-canary', 'rel-dir',
    'sibling', 'sibling-secret', 'store-root', 'a/b/c/up', 'a/b/c/rel-canary', 'a/b/c/far-up', 'loop1', 'loop2', 'self',
    'loopdir', 'nl-target', 'long-target'];
  const rs = await probe(links.flatMap((l) => [{ op: 'lstat' as const, path: inH(l) }, { op: 'readlink' as const, path: inH(l) }]));
  links.forEach((l, i) => {
    const st = rs[2 * i] as ProbeResult;
    const rl = rs[2 * i + 1] as ProbeResult;
    assert.equal(st.stat?.type, 'symlink', `${l}: lstat through the mount is the link itself (${outcome(st)})`);
    assert.ok(rl.ok, `${l}: readlink ${outcome(rl)}`);
    assert.deepEqual(rl.target, fs.readlinkSync(path.join(at.hostile, l), { encoding: 'buffer' }), `${l}: target bytes`);
  });
});

test('relative links that would reach the store, a sibling layer or the host when counted from the store reach nothing from the mount', async () => {
  const paths = ['rel-canary', 'rel-dir/canary', 'sibling-secret', 'sibling/secret', 'store-root/canary-root',
    'a/b/c/rel-canary'].map((x) => inH(x));
  // Controls: the same links read in the store do reach the canaries, so the layout is right.
  const inStore = await readAll(['rel-canary', 'sibling-secret', 'store-root/canary-root', 'a/b/c/rel-canary'].map((x) => path.join(at.hostile, x)));
  assert.deepEqual(inStore, [`data:${TOKEN_OUT}`, `data:${TOKEN_SIB}`, `data:${TOKEN_STORE}`, `data:${TOKEN_OUT}`]);
  // A host reader resolves them from the mountpoint, where they climb past "/" and find nothing.
  for (const p of ['/outside', '/bb', '/canary-root', '/tmp/bb']) assert.ok(!fs.existsSync(p), `${p} must not exist on this host`);
  assert.deepEqual(await readAll(paths), paths.map(() => 'ENOENT'));
});

test('in the reader\'s root (a chroot onto the mount, as in a container) no link leaves the layer', async () => {
  const chroot = { chroot: at.mHostile };
  const reads = ['/passwd-link', '/etc-link/passwd', '/up4/passwd', '/a/b/c/up/passwd', '/a/b/c/far-up/passwd', '/root-link/etc/passwd',
    '/store-root/etc/passwd', '/abs-canary', '/abs-dir/canary', '/abs-store/canary-root', '/rel-canary', '/rel-dir/canary',
    '/sibling-secret', '/a/b/c/rel-canary'];
  assert.deepEqual(await readAll(reads, chroot), [
    ...Array(7).fill(`data:${LAYER_PASSWD}`),
    ...Array(7).fill('ENOENT'),
  ], reads.join(' '));
  // "/" through a link is the layer's own root.
  const root = await probeOne({ op: 'listdir', path: '/root-link' }, chroot);
  assert.ok(root.ok, outcome(root));
  assert.deepEqual(root.names?.map((n) => n.toString('latin1')).sort(), fs.readdirSync(at.hostile).filter((n) => !n.startsWith('.wh.')).sort());
});

test('an intermediate symlink component is resolved by the reader: dir -> /etc then dir/passwd is the layer\'s /etc/passwd in its root', async () => {
  // Resolving etc-link/passwd takes two requests: readlink of etc-link, then a lookup of passwd in
  // the directory the reader resolved "/etc" to. A server that followed the link on the host
  // would answer a lookup of "etc-link/passwd" itself; the kernel never asks it that.
  const [viaLink, viaEtc] = await readAll(['/etc-link/passwd', '/etc/passwd'], { chroot: at.mHostile });
  assert.equal(viaLink, `data:${LAYER_PASSWD}`);
  assert.equal(viaEtc, `data:${LAYER_PASSWD}`);
  const st = await probeOne({ op: 'lstat', path: inH('etc-link') });
  assert.equal(st.stat?.type, 'symlink');
});

test('symlink loops give ELOOP; O_NOFOLLOW on a link gives ELOOP', async () => {
  assert.deepEqual(await readAll(['loop1', 'loop2', 'self', 'loopdir/x'].map((x) => inH(x))), ['ELOOP', 'ELOOP', 'ELOOP', 'ELOOP']);
  assert.deepEqual(await readAll(['/loop1', '/self'], { chroot: at.mHostile }), ['ELOOP', 'ELOOP']);
  const nofollow = await probeOne({ op: 'read', path: inH('passwd-link'), nofollow: true });
  assert.equal(outcome(nofollow), 'ELOOP');
});

test('hardlinks: one inode inside the layer; a name shared with a file outside is still just a file of the layer', async () => {
  const [a, b, out, sib] = await probe(['hl1', 'hl2', 'hl-out', 'hl-sibling'].map((x) => ({ op: 'lstat' as const, path: inH(x) })));
  assert.equal(a?.stat?.ino, b?.stat?.ino, 'hl1 and hl2 share an inode number');
  assert.equal(a?.stat?.nlink, 2);
  // The link count is the inode's: the name outside the layer counts.
  assert.equal(out?.stat?.nlink, fs.lstatSync(path.join(at.hostile, 'hl-out')).nlink);
  assert.equal(out?.stat?.nlink, 2);
  assert.equal(sib?.stat?.type, 'file');
  assert.deepEqual(await readAll(['hl1', 'hl2', 'hl-out', 'hl-sibling'].map((x) => inH(x))),
    ['data:hardlinked inside\n', 'data:hardlinked inside\n', `data:${SHARED}`, 'data:sibling layer file\n']);
});

test('device nodes show their numbers but cannot be opened through the mount (nodev): EACCES', async () => {
  const names = ['null-like', 'zero-like', 'disk-like', 'loop-like'];
  const st = await probe(names.map((n) => ({ op: 'lstat' as const, path: inH(n) })));
  assert.deepEqual(st.map((r) => r.stat && [r.stat.type, r.stat.rdevMajor, r.stat.rdevMinor, r.stat.mode]),
    [['char', 1, 3, 0o666], ['char', 1, 5, 0o666], ['block', 8, 0, 0o660], ['block', 7, 0, 0o660]]);
  const opened = await probe(names.map((n) => ({ op: 'open' as const, path: inH(n), flags: ['O_RDONLY', 'O_NONBLOCK'] })));
  assert.deepEqual(opened.map(outcome), ['EACCES', 'EACCES', 'EACCES', 'EACCES']);
  // And in a container's view (a chroot onto the mount) the same: the host's /dev/zero is not there.
  const inRoot = await probe([{ op: 'read', path: '/zero-like' }], { chroot: at.mHostile });
  assert.deepEqual(inRoot.map(outcome), ['EACCES']);
});

test('a fifo in the layer is a fifo of the mount, not the store\'s: a reader on one is no reader on the other', async () => {
  const storeFifo = path.join(at.hostile, 'fifo');
  const rs = await probe([
    { op: 'lstat', path: inH('fifo') },
    { op: 'open', path: inH('fifo'), flags: ['O_RDONLY', 'O_NONBLOCK'], keep: true },
    // No reader on the store's fifo although one is open through the mount: ENXIO.
    { op: 'open', path: storeFifo, flags: ['O_WRONLY', 'O_NONBLOCK'] },
    // Control: with a reader on the store's fifo, the same open succeeds.
    { op: 'open', path: storeFifo, flags: ['O_RDONLY', 'O_NONBLOCK'], keep: true },
    { op: 'open', path: storeFifo, flags: ['O_WRONLY', 'O_NONBLOCK'] },
  ]);
  assert.equal(rs[0]?.stat?.type, 'fifo');
  assert.deepEqual(rs.slice(1).map(outcome), ['ok', 'ENXIO', 'ok', 'ok']);
});

test('a socket in the layer does not connect to the host service bound to it in the store', async () => {
  const [direct, viaMount, st] = await probe([
    { op: 'connect', path: path.join(at.hostile, 'sock') },
    { op: 'connect', path: inH('sock') },
    { op: 'lstat', path: inH('sock') },
  ]);
  assert.equal(outcome(direct as ProbeResult), `data:${TOKEN_SOCK}`, 'control: the host service answers on the store path');
  assert.equal(st?.stat?.type, 'socket');
  assert.equal(outcome(viaMount as ProbeResult), 'ECONNREFUSED');
});

test('setuid and setgid bits are shown, but a setuid file run through the mount gains nothing (nosuid)', async () => {
  const st = await probe(['suid-id', 'sgid'].map((n) => ({ op: 'lstat' as const, path: inH(n) })));
  assert.deepEqual(st.map((r) => r.stat?.mode), [0o4755, 0o2755]);
  const asNobody = (file: string): Promise<string> =>
    exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', file, '-u']).then((r) => r.stdout.trim() || r.stderr);
  // Control: run from the store (a filesystem without nosuid here) the bit takes effect.
  const storeIsSuid = !mountEntryFor(at.hostile).options.split(',').includes('nosuid');
  if (storeIsSuid) assert.equal(await asNobody(path.join(at.hostile, 'suid-id')), '0');
  assert.equal(await asNobody(inH('suid-id')), '65534');
});

function mountEntryFor(p: string): ReturnType<typeof listMounts>[number] {
  const mounts = listMounts().filter((m) => p === m.mountPoint || p.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : m.mountPoint + '/'));
  const m = mounts.sort((x, y) => y.mountPoint.length - x.mountPoint.length)[0];
  assert.ok(m);
  return m;
}

test('whiteout look-alikes never become ".", "..", "" or a duplicate name, and every listed name can be looked up', async () => {
  for (const d of ['wh-dots', 'wh-both', 'wh-opq-dir', 'wh-opq-link', 'wh-opq-data', 'wh-odd', '']) {
    const r = await probeOne({ op: 'getdents', path: inH(d) });
    assert.ok(r.ok, `${d}: ${outcome(r)}`);
    const names = (r.dents ?? []).map((e) => e.name.toString('latin1'));
    assert.equal(names.filter((n) => n === '.').length, 1, `${d}: one "." in ${JSON.stringify(names)}`);
    assert.equal(names.filter((n) => n === '..').length, 1, `${d}: one ".." in ${JSON.stringify(names)}`);
    assert.ok(!names.includes(''), `${d}: no empty name`);
    assert.equal(new Set(names).size, names.length, `${d}: no duplicates in ${JSON.stringify(names)}`);
    const real = names.filter((n) => n !== '.' && n !== '..');
    const st = await probe(real.map((n) => ({ op: 'lstat' as const, path: Buffer.concat([Buffer.from(inH(d) + '/'), Buffer.from(n, 'latin1')]) })));
    real.forEach((n, i) => assert.ok(st[i]?.ok, `${d}/${JSON.stringify(n)} is listed but lstat gives ${outcome(st[i] as ProbeResult)}`));
  }
  // wh-both holds foo and .wh.foo: foo is listed once, whichever way it is shown.
  const both = await probeOne({ op: 'listdir', path: inH('wh-both') });
  assert.deepEqual(both.names?.map((n) => n.toString()).filter((n) => n === 'foo'), ['foo']);
});

/** Entries of a walk keyed by path (latin1, so any bytes round-trip). */
function byPath(entries: readonly WalkEntry[]): Map<string, WalkEntry> {
  return new Map(entries.map((e) => [e.path.toString('latin1'), e] as const));
}

function describe(e: WalkEntry | undefined): string {
  if (!e) return 'absent';
  const s = e.stat;
  return JSON.stringify({
    type: s?.type, mode: s?.mode, uid: s?.uid, gid: s?.gid, size: s?.type === 'dir' ? undefined : s?.size, nlink: s?.type === 'dir' ? undefined : s?.nlink,
    rdev: s ? `${s.rdevMajor}:${s.rdevMinor}` : undefined, target: e.target?.toString('hex'), data: e.data?.toString('hex'), error: e.error,
  });
}

/**
 * Walks a layer through its mount and directly; checks first that no canary byte came through
 * the mount, then that both walks agree, whiteouts aside.
 */
async function assertMountMirrorsLayer(mp: string, layer: string): Promise<WalkEntry[]> {
  const [viaMount, direct] = await probe([{ op: 'walk', path: mp }, { op: 'walk', path: layer }]);
  assert.ok(viaMount?.ok && direct?.ok);
  assertNoCanary(viaMount.entries ?? []);
  const m = byPath(viaMount.entries ?? []);
  const d = byPath(direct.entries ?? []);
  const problems: string[] = [];
  for (const [p, e] of d) {
    const comps = p.split('/');
    if (comps.some((c) => c.startsWith('.wh.'))) continue;
    // Inside a directory that has an opaque marker, or under a whiteout, nothing is hidden: only
    // the marker names themselves are translated.
    if (p === '') continue; // the root's mode is the mountpoint's
    if (describe(m.get(p)) !== describe(e)) problems.push(`${JSON.stringify(p)}: mount ${describe(m.get(p))} layer ${describe(e)}`);
  }
  for (const [p, e] of m) {
    if (d.has(p)) continue;
    const i = p.lastIndexOf('/');
    const marker = `${p.slice(0, i + 1)}.wh.${p.slice(i + 1)}`;
    const isWhiteout = d.has(marker) && e.stat?.type === 'char' && e.stat.rdevMajor === 0 && e.stat.rdevMinor === 0;
    if (!isWhiteout) problems.push(`${JSON.stringify(p)}: only in the mount: ${describe(e)}`);
  }
  assert.deepEqual(problems, []);
  return viaMount.entries ?? [];
}

function assertNoCanary(entries: readonly WalkEntry[]): void {
  for (const e of entries) {
    const bytes = Buffer.concat([e.path, e.target ?? Buffer.alloc(0), e.data ?? Buffer.alloc(0)]).toString('latin1');
    for (const c of CANARIES) assert.ok(!bytes.includes(c), `${JSON.stringify(e.path.toString('latin1'))} holds ${c}`);
  }
}

test('a walk of the whole mount (lstat, readdir, readlink, read) finds exactly the layer, and no byte from outside it', async () => {
  const entries = await assertMountMirrorsLayer(at.mHostile, at.hostile);
  assert.ok(entries.length > 40, `walked ${entries.length} entries`);
  // The walk read every regular file: hl-out is the one whose inode also has a name outside.
  assert.ok(entries.some((e) => e.data?.toString() === SHARED));
});

test('names with newlines, tabs, backslashes, dot look-alikes and 255 bytes are listed, stat-able and readable', async () => {
  const { got, want } = await namesServed(ODD_NAMES);
  assert.deepEqual(got, want);
});

test('names and link targets that are not UTF-8 are listed, stat-able and readable, with their bytes unchanged', async () => {
  const names = await namesServed(NON_UTF8_NAMES);
  const link = Buffer.concat([Buffer.from(at.mNames + '/link'), Buffer.from([0xfe])]);
  const [a, b] = await probe([{ op: 'readlink', path: link }, { op: 'readlink', path: path.join(at.mNames, 'bin-target') }]);
  assert.deepEqual({ names: names.got, targets: [a && (a.target?.toString('hex') ?? outcome(a)), b && (b.target?.toString('hex') ?? outcome(b))] },
    { names: names.want, targets: ['74fe', NON_UTF8_TARGET.toString('hex')] });
  await assertMountMirrorsLayer(at.mNames, at.names);
});

interface NameServed { name: string; listed: boolean; lstat: string; read: string }

/** For each name of the names layer: listed in the mount's root, lstat through the mount, read through it. */
async function namesServed(names: readonly Buffer[]): Promise<{ got: NameServed[]; want: NameServed[] }> {
  const listing = await probeOne({ op: 'listdir', path: at.mNames });
  assert.ok(listing.ok, outcome(listing));
  const listed = new Set((listing.names ?? []).map((n) => n.toString('hex')));
  const base = Buffer.from(at.mNames + '/');
  const rs = await probe(names.flatMap((n) => [
    { op: 'lstat' as const, path: Buffer.concat([base, n]) },
    { op: 'read' as const, path: Buffer.concat([base, n]) },
  ]));
  const got = names.map((n, i) => ({
    name: JSON.stringify(n.toString('latin1')),
    listed: listed.has(n.toString('hex')),
    lstat: rs[2 * i]?.ok ? 'ok' : outcome(rs[2 * i] as ProbeResult),
    read: outcome(rs[2 * i + 1] as ProbeResult),
  }));
  const want = names.map((n) => ({ name: JSON.stringify(n.toString('latin1')), listed: true, lstat: 'ok', read: dataText(contentOf(n)) }));
  return { got, want };
}
