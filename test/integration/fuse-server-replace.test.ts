// `fuse-server --replace`: the handover a Kubernetes rolling update makes, between FUSE servers
// that are not parent and child (the next pod's server and the running one share only the
// socket directory). The descriptors go over a unix socket (SCM_RIGHTS); a reader keeps reading
// throughout; the old server stays, idle and holding nothing, until SIGTERM, and then exits 0
// leaving every mount in place. A taker that dies mid-handover leaves the old server serving.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from '../../src/sys/pid.js';
import { daemonBin } from '../helpers/paths.js';
import { ControlConnection, startFuseServer, type ControlAnswer, type FuseServerProcess } from '../helpers/fuse-server-process.js';
import { mountsUnder } from '../helpers/mounts.js';
import { ManagedProcess } from '../helpers/process.js';
import { Scope } from '../helpers/scope.js';
import { canConnect, waitUntil } from '../helpers/wait.js';

let scope: Scope;
let root = '';
let store = '';
const layers: { dir: string; mnt: string; text: string }[] = [];

before(async () => {
  scope = await Scope.create('fuse-replace');
  store = await scope.mkdir('store');
  root = await scope.mkdir('root');
  for (const [i, hex] of ['a1', 'b2', 'c3', 'd4'].entries()) {
    const h = hex.repeat(32);
    const dir = join(store, '.layers', hex, h, 'layerfs');
    await mkdir(join(dir, 'd'), { recursive: true });
    const text = `layer ${i} ${'x'.repeat(i * 1000)}\n`;
    await writeFile(join(dir, 'd', 'f'), text);
    layers.push({ dir, mnt: join(root, 'snapshots', String(i + 1), 'fs'), text });
  }
});

after(async () => {
  await scope?.teardown();
});

/** How many /dev/fuse descriptors a process holds. */
async function fuseDescriptors(pid: number): Promise<number> {
  let n = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    if (await readlink(`/proc/${pid}/fd/${fd}`).then((t) => t === '/dev/fuse', () => false)) n++;
  }
  return n;
}

function ok(a: ControlAnswer, what: string): ControlAnswer {
  assert.equal(a.error, undefined, `${what}: ${JSON.stringify(a.error)}`);
  return a;
}

/** A shell loop that reads a file every 10 ms, checks its bytes, and writes the time of each good read to a file; exit 3 at the first bad one. */
function reader(file: string, expected: string, counter: string, cwd?: string): ChildProcess {
  const want = join(scope.dir, `want-${counter.replace(/\W/g, '_')}`);
  return spawn('sh', ['-c', `printf %s "$WANT" > '${want}'; while :; do cmp -s '${file}' '${want}' || exit 3; date +%s%N >> '${counter}'; sleep 0.01; done`],
    { stdio: 'ignore', env: { ...process.env, WANT: expected }, ...(cwd ? { cwd } : {}) });
}

async function readTimes(file: string): Promise<number[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').map((l) => Number(l.slice(0, -6)));
}

async function lines(file: string): Promise<number> {
  return (await readTimes(file)).length;
}

/** The longest time between two good reads, in ms (a report, not an assertion: timing belongs in bench/). */
async function longestGap(file: string): Promise<number> {
  const t = await readTimes(file);
  let gap = 0;
  for (let i = 1; i < t.length; i++) gap = Math.max(gap, (t[i] as number) - (t[i - 1] as number));
  return gap;
}

async function mountAll(s: FuseServerProcess, which: readonly number[]): Promise<void> {
  for (const i of which) {
    const l = layers[i] as (typeof layers)[number];
    ok(await s.call('mount', { layerDir: l.dir, mountpoint: l.mnt }), `mount ${l.mnt}`);
  }
}

/** Starts `fuse-server --replace` on the server's socket as a process of its own (not the server's child). */
async function startTaker(s: FuseServerProcess, name: string, extra: readonly string[] = []): Promise<ManagedProcess> {
  return ManagedProcess.start({
    name, cmd: process.execPath, logFile: join(scope.dir, `${name}.log`), cwd: scope.dir,
    args: [daemonBin, 'fuse-server', '--replace', '--root', root, '--store', store, '--socket', s.socket, '--log-level', 'info', ...extra],
  });
}

test('fuse-server --replace takes every mount over from an unrelated running server: readers never fail, the old one idles until SIGTERM and exits 0 leaving the mounts', async (t) => {
  const old = await startFuseServer(scope, { root, store, name: 'old' });
  await mountAll(old, [0, 1, 2]);
  const [a, , c] = layers as [typeof layers[0], typeof layers[0], typeof layers[0]];
  const counterA = join(scope.dir, 'reads-a');
  const counterC = join(scope.dir, 'reads-c');
  const readA = reader(join(a.mnt, 'd', 'f'), a.text, counterA);
  // A reader standing in mount c keeps it busy: unmounted, it is detached lazily and served on.
  const readC = reader('d/f', c.text, counterC, c.mnt);
  const exits = new Map<ChildProcess, number | null>();
  for (const r of [readA, readC]) r.on('exit', (code) => exits.set(r, code));
  let taker: ManagedProcess | undefined;
  try {
    await waitUntil(async () => (await lines(counterC)) > 3, { what: 'the reader in mount c to read', timeoutMs: 10_000 });
    assert.equal(ok(await old.call('unmount', { mountpoint: c.mnt }), 'unmount c').result, 'lazy', 'mount c is detached lazily, still in use');
    const oldPid = await old.pid();
    assert.equal(await fuseDescriptors(oldPid), 3, 'the old server holds the two mounts and the detached one');
    const before = { a: await lines(counterA), c: await lines(counterC) };

    taker = await startTaker(old, 'taker');
    const newPid = taker.pid;
    await waitUntil(async () => (await old.pid().catch(() => 0)) === newPid && await canConnect(old.socket),
      { what: 'the new server to listen on the socket', process: taker, timeoutMs: 60_000 });

    // Every mount answers, from the new process.
    const hello = ok(await old.call('hello', {}), 'hello to the new server');
    assert.equal(hello.state?.pid, newPid, 'the server on the socket is the new one');
    assert.deepEqual([...(hello.state?.mounts ?? [])].sort(), [a.mnt, layers[1]?.mnt].sort(), 'it serves both mounts');
    assert.equal(await fuseDescriptors(newPid), 3, 'the new server holds the two mounts and the detached one');
    assert.equal(await readFile(join(layers[1]?.mnt as string, 'd', 'f'), 'utf8'), layers[1]?.text);
    // New work goes to the new server.
    await mountAll(old, [3]);
    assert.equal(await readFile(join(layers[3]?.mnt as string, 'd', 'f'), 'utf8'), layers[3]?.text);

    // The old one: alive, holding nothing, not listening.
    assert.ok(isAlive(oldPid), 'the old server is still running (its container must not exit by itself)');
    assert.equal(old.process.running, true);
    assert.equal(await fuseDescriptors(oldPid), 0, 'the old server holds no /dev/fuse descriptor');
    assert.match(old.process.log(), new RegExp(`handed every mount over to the FUSE server pid ${newPid} on host `));

    // The readers read on, through the new server, the right bytes.
    await waitUntil(async () => (await lines(counterA)) > before.a + 20 && (await lines(counterC)) > before.c + 20,
      { what: 'the readers to read through the new server', timeoutMs: 20_000 });
    assert.equal(exits.size, 0, `no reader failed a read (exits: ${[...exits.values()].join(', ')})`);

    // SIGTERM: the old server exits 0 and unmounts nothing.
    const st = await old.process.kill('SIGTERM', 20_000);
    assert.deepEqual(st, { code: 0, signal: null }, `the old server exits 0 after SIGTERM\n${old.process.logTail()}`);
    const mounted = mountsUnder(root).map((m) => m.mountPoint).sort();
    assert.deepEqual(mounted, [a.mnt, layers[1]?.mnt, layers[3]?.mnt].sort(), 'every mount is still in place');
    assert.equal(await readFile(join(a.mnt, 'd', 'f'), 'utf8'), a.text);
    const more = { a: await lines(counterA), c: await lines(counterC) };
    await waitUntil(async () => (await lines(counterA)) > more.a + 5 && (await lines(counterC)) > more.c + 5,
      { what: 'the readers to read after the old server exited', timeoutMs: 20_000 });
    assert.equal(exits.size, 0, 'no reader failed a read');
    const at = (log: string, msg: string): number => (JSON.parse(log.split('\n').find((x) => x.includes(msg)) ?? '{"time":NaN}') as { time: number }).time;
    const drained = at(old.process.log(), 'handing every layer mount to a new FUSE server in another process');
    t.diagnostic(`longest gap between two good reads: ${await longestGap(counterA)} ms in mount a, ${await longestGap(counterC)} ms in the detached mount c (reads every 10 ms); `
      + `from the old server's drain to the new one serving: ${at(taker.log(), 'took every mount over') - drained} ms, to the old one's log of it: ${at(old.process.log(), 'handed every mount over') - drained} ms`);
  } finally {
    readA.kill('SIGKILL');
    readC.kill('SIGKILL');
  }
  // The new server's SIGTERM unmounts everything.
  assert.ok(taker);
  const st = await taker.kill('SIGTERM', 30_000);
  assert.deepEqual(st, { code: 0, signal: null }, taker.logTail());
  assert.deepEqual(mountsUnder(root).map((m) => m.mountPoint), [], 'nothing is left mounted');
});

/**
 * A taker of our own: the project's PeerTaker in a process we can kill at a chosen step. At
 * 'read-lookup' it has been told to serve and has read a LOOKUP from the first mount's
 * connection, which it never answers.
 */
function fakeTaker(socket: string, step: 'received' | 'committed' | 'read-lookup', onCommitted?: () => void): Promise<ChildProcess> {
  const mod = new URL('../../src/fuse/server/peer-handover.js', import.meta.url).href;
  const logmod = new URL('../../src/log.js', import.meta.url).href;
  const code = `
    import fs from 'node:fs';
    import { PeerTaker } from ${JSON.stringify(mod)};
    import { silentLogger } from ${JSON.stringify(logmod)};
    const t = await PeerTaker.ask(process.argv[1], undefined, silentLogger());
    if (!t) { process.stdout.write('nobody\\n'); process.exit(1); }
    if (process.argv[2] !== 'received') await t.ready();
    if (process.argv[2] === 'read-lookup') {
      process.stdout.write('committed\\n');
      const fd = t.received.state.mounts[0].fd;
      const buf = Buffer.alloc((1 << 20) + 4096);
      // The connection is blocking (as handed over): each read waits for the kernel's next request.
      for (;;) {
        const n = fs.readSync(fd, buf);
        if (n >= 40 && buf.readUInt32LE(4) === 1) break;
      }
    }
    process.stdout.write(process.argv[2] + ' ' + t.received.state.mounts.length + '\\n');
    setInterval(() => {}, 1 << 30);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, socket, step], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      const text = d.toString();
      if (text.includes('committed') && onCommitted) onCommitted();
      if (text.split('\n').some((l) => l.startsWith(step))) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`the fake taker exited ${String(code)} before ${step}: ${err}`)));
  });
}

for (const step of ['received', 'committed'] as const) {
  test(`a taker killed after it ${step === 'received' ? 'received the descriptors' : 'was told to serve'} leaves the old server serving every mount`, async () => {
    const old = await startFuseServer(scope, { root, store, name: `giver-${step}` });
    const l = layers[0] as (typeof layers)[number];
    const mnt = join(root, step, 'fs');
    ok(await old.call('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
    const counter = join(scope.dir, `reads-${step}`);
    const r = reader(join(mnt, 'd', 'f'), l.text, counter);
    let exit: number | null | undefined;
    r.on('exit', (code) => { exit = code; });
    try {
      const oldPid = await old.pid();
      await waitUntil(async () => (await lines(counter)) > 3, { what: 'the reader to read', timeoutMs: 10_000 });
      const t = await fakeTaker(old.socket, step);
      t.kill('SIGKILL');
      await waitUntil(() => /serves its mounts again/.test(old.process.log()), { what: 'the old server to take its mounts back', process: old.process, timeoutMs: 60_000 });
      await waitUntil(() => canConnect(old.socket), { what: 'the old server to listen again', timeoutMs: 10_000 });
      assert.equal(await old.pid(), oldPid, 'the pid file names the old server');
      // Told to serve, the taker had the old server close its listener: it listens again. Before that it never stopped.
      const listened = old.process.log().split('\n').filter((x) => x.includes('"FUSE server listening"')).length;
      assert.equal(listened, step === 'committed' ? 2 : 1, 'times the old server started listening');
      const hello = ok(await old.call('hello', {}), 'hello');
      assert.equal(hello.state?.pid, oldPid);
      assert.deepEqual(hello.state?.mounts, [mnt]);
      assert.equal(await fuseDescriptors(oldPid), 1);
      const n = await lines(counter);
      await waitUntil(async () => (await lines(counter)) > n + 10, { what: 'the reader to read on', timeoutMs: 20_000 });
      assert.equal(exit, undefined, 'the reader never failed a read');
      assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), l.text);
    } finally {
      r.kill('SIGKILL');
    }
    await old.stop();
    assert.deepEqual(mountsUnder(join(root, step)).map((m) => m.mountPoint), [], 'its SIGTERM unmounted the layer');
  });
}

test('a request the taker read and never answered before it died is answered by the old server, which took the mounts back (the kernel resends it)', async () => {
  const old = await startFuseServer(scope, { root, store, name: 'giver-resend' });
  const l = layers[0] as (typeof layers)[number];
  // A file nobody has looked up yet: its LOOKUP has to reach a server.
  await writeFile(join(l.dir, 'd', 'unseen'), 'answered after all\n');
  const mnt = join(root, 'resend', 'fs');
  ok(await old.call('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
  assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), l.text);
  let cat: ChildProcess | undefined;
  let out = '';
  let catDone: Promise<number | null> = Promise.resolve(null);
  try {
    // Once the taker was told to serve, cat looks the file up; the taker reads that LOOKUP and sits on it.
    const taker = await fakeTaker(old.socket, 'read-lookup', () => {
      const c = spawn('cat', [join(mnt, 'd', 'unseen')], { stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
      catDone = new Promise((resolve) => c.on('exit', (code) => resolve(code)));
      cat = c;
    });
    assert.equal(cat?.exitCode, null, 'cat waits: its LOOKUP sits unanswered in the taker');
    taker.kill('SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([catDone, new Promise<string>((resolve) => { timer = setTimeout(() => resolve('still waiting after 30 s'), 30_000); })]);
    clearTimeout(timer);
    assert.equal(code, 0, 'cat finished: the old server answered the request the dead taker had read');
    assert.equal(out, 'answered after all\n');
    assert.match(old.process.log(), /serves its mounts again/);
  } finally {
    cat?.kill('SIGKILL');
  }
  await old.stop();
  assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), []);
});

test('--replace refuses a running server of another root or store, which serves on', async () => {
  const old = await startFuseServer(scope, { root, store, name: 'other-scope' });
  const l = layers[1] as (typeof layers)[number];
  const mnt = join(root, 'scope', 'fs');
  ok(await old.call('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
  const otherStore = await scope.mkdir('other-store');
  const t = await ManagedProcess.start({
    name: 'wrong-taker', cmd: process.execPath, logFile: join(scope.dir, 'wrong-taker.log'), cwd: scope.dir,
    args: [daemonBin, 'fuse-server', '--replace', '--root', root, '--store', otherStore, '--socket', old.socket],
  });
  const st = await t.exited;
  assert.equal(st.code, 1, t.logTail());
  assert.match(t.log(), new RegExp(`serves layers of ${store} below ${root}; the new one was started for ${otherStore}`));
  const hello = ok(await old.call('hello', {}), 'hello');
  assert.equal(hello.state?.pid, await old.pid());
  assert.deepEqual(hello.state?.mounts, [mnt]);
  assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), l.text);
  await old.stop();
  assert.deepEqual(mountsUnder(join(root, 'scope')).map((m) => m.mountPoint), []);
});

test('--replace with no server on the socket starts fresh', async () => {
  const socket = join(await scope.mkdir('fresh', 'run'), 'fuse.sock');
  const t = await ManagedProcess.start({
    name: 'fresh', cmd: process.execPath, logFile: join(scope.dir, 'fresh.log'), cwd: scope.dir,
    args: [daemonBin, 'fuse-server', '--replace', '--root', root, '--store', store, '--socket', socket],
  });
  try {
    await waitUntil(async () => (await canConnect(socket)) && (await readFile(`${socket}.pid`, 'utf8').catch(() => '')).trim() === String(t.pid),
      { what: 'the fresh server to listen', process: t, timeoutMs: 20_000 });
    assert.match(t.log(), /no FUSE server answers on the socket: starting without mounts/);
  } finally {
    assert.deepEqual(await t.kill('SIGTERM', 20_000), { code: 0, signal: null });
  }
});

test('--config takes the store and the tuning keys from the daemon\'s config file; flags win', async () => {
  const dir = await scope.mkdir('config');
  const file = join(dir, 'config.toml');
  await writeFile(file, [
    `absolute-mountpoint = "${store}"`, 'metadata-cache-bytes = 3145728', 'metadata-cache-entries = 1234',
    'fuse-passthrough = false', 'store-timeout = 77', 'layer-walk-entries = 0', 'fuse-busy-poll-us = 7', '',
  ].join('\n'));
  const socket = join(await scope.mkdir('config', 'run'), 'fuse.sock');
  const s = await ManagedProcess.start({
    name: 'configured', cmd: process.execPath, logFile: join(dir, 'server.log'), cwd: dir,
    args: [daemonBin, 'fuse-server', '--config', file, '--root', root, '--socket', socket, '--cache-entries', '999'],
  });
  const mnt = join(root, 'config', 'fs');
  try {
    await waitUntil(() => canConnect(socket), { what: 'the configured server to listen', process: s, timeoutMs: 20_000 });
    const ask = async (method: string, params: Record<string, unknown>): Promise<ControlAnswer> => {
      const c = await ControlConnection.open(socket);
      try {
        c.send(`${JSON.stringify({ id: 1, method, params })}\n`);
        return await c.next();
      } finally {
        c.close();
      }
    };
    const l = layers[2] as (typeof layers)[number];
    ok(await ask('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
    const st = ok(await ask('hello', {}), 'hello').state as ControlAnswer['state'] & {
      scope?: { root: string; store: string }; cache: { maxBytes: number; maxEntries: number }; reads?: string;
    };
    assert.deepEqual(st.scope, { root, store }, 'the store is the config\'s absolute-mountpoint');
    assert.equal(st.cache.maxBytes, 3145728, 'metadata-cache-bytes');
    assert.equal(st.cache.maxEntries, 999, '--cache-entries wins over metadata-cache-entries');
    assert.equal(st.reads, 'served', 'fuse-passthrough = false');
    const settings = s.log().split('\n').filter((x) => x.includes('FUSE server settings')).map((x) => JSON.parse(x) as Record<string, unknown>)[0];
    assert.ok(settings, s.logTail());
    assert.equal(settings.storeTimeoutSec, 77, 'store-timeout');
    assert.equal(settings.walkEntries, 0, 'layer-walk-entries');
    assert.equal(settings.busyPollUs, 7, 'fuse-busy-poll-us');
    assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), l.text);
  } finally {
    assert.deepEqual(await s.kill('SIGTERM', 20_000), { code: 0, signal: null });
  }
  assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), []);
  // A config that is wrong stops the server at start, naming the key.
  await writeFile(file, 'store-timeout = "soon"\n');
  const bad = await ManagedProcess.start({
    name: 'misconfigured', cmd: process.execPath, logFile: join(dir, 'bad.log'), cwd: dir,
    args: [daemonBin, 'fuse-server', '--config', file, '--root', root, '--socket', socket],
  });
  assert.equal((await bad.exited).code, 2);
  assert.match(bad.log(), /"store-timeout" must be a whole number of seconds/);
});

test('handoverTo sends descriptors only to a handover socket of its own user beside the control socket; anything else is refused with nothing drained', async () => {
  const old = await startFuseServer(scope, { root, store, name: 'refuses' });
  const l = layers[0] as (typeof layers)[number];
  const mnt = join(root, 'refuses', 'fs');
  ok(await old.call('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
  const dir = join(old.socket, '..');
  await writeFile(join(dir, '.handover-1-0badc0de.sock'), 'not a socket');
  const cases: [string, unknown][] = [
    ['a socket in another directory', join(scope.dir, '.handover-1-00000000.sock')],
    ['the control socket itself', old.socket],
    ['a handover name that nothing has', join(dir, '.handover-1-12345678.sock')],
    ['a plain file with a handover name', join(dir, '.handover-1-0badc0de.sock')],
    ['a relative path', '.handover-1-00000000.sock'],
    ['no socket at all', undefined],
  ];
  for (const [what, socket] of cases) {
    const a = await old.call('handoverTo', socket === undefined ? {} : { socket });
    assert.equal(a.error?.kind, 'InvalidArgument', `${what}: ${JSON.stringify(a)}`);
    assert.equal(await fuseDescriptors(await old.pid()), 1, `${what}: the mount was not drained`);
  }
  const other = await old.call('handoverTo', { socket: join(dir, '.handover-1-12345678.sock'), scope: { root, store: '/elsewhere' } });
  assert.equal(other.error?.kind, 'FailedPrecondition', 'a taker of another store is refused first');
  assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), l.text);
  await old.stop();
  assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), []);
});

/** The process's exit, or a failure after ms. */
async function exitWithin(p: ManagedProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${p.spec.name} did not exit within ${ms} ms\n${p.logTail()}`)), ms); });
  try {
    return await Promise.race([p.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

test('--successor-wait: asked to stop, the server serves on until the next pod\'s server takes the mounts over, then exits 0 leaving them; readers never fail', async () => {
  const old = await startFuseServer(scope, { root, store, name: 'waits', extraArgs: ['--successor-wait', '120'] });
  const l = layers[2] as (typeof layers)[number];
  const mnt = join(root, 'waits', 'fs');
  ok(await old.call('mount', { layerDir: l.dir, mountpoint: mnt }), 'mount');
  const counter = join(scope.dir, 'reads-waits');
  const r = reader(join(mnt, 'd', 'f'), l.text, counter);
  let exit: number | null | undefined;
  r.on('exit', (code) => { exit = code; });
  let taker: ManagedProcess | undefined;
  try {
    await waitUntil(async () => (await lines(counter)) > 3, { what: 'the reader to read', timeoutMs: 10_000 });
    old.process.signal('SIGTERM');
    await waitUntil(() => old.process.log().includes('serving on, for a successor'), { what: 'the server to wait for a successor', timeoutMs: 10_000 });
    const before = await lines(counter);
    await waitUntil(async () => (await lines(counter)) > before + 10, { what: 'reads while the asked-to-stop server serves on', timeoutMs: 10_000 });
    assert.equal(old.process.running, true);
    assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), [mnt]);

    taker = await startTaker(old, 'successor');
    assert.deepEqual(await exitWithin(old.process, 30_000), { code: 0, signal: null }, 'the old server exits by itself once the mounts went over');
    assert.match(old.process.log(), /handed its mounts over and unmounts nothing/);
    assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), [mnt], 'the mount is still in place');
    const after = await lines(counter);
    await waitUntil(async () => (await lines(counter)) > after + 10, { what: 'the reader to read through the successor', timeoutMs: 20_000 });
    assert.equal(exit, undefined, 'the reader never failed a read');
    assert.equal(ok(await old.call('hello', {}), 'hello').state?.pid, taker.pid, 'the successor answers on the socket');
  } finally {
    r.kill('SIGKILL');
  }
  assert.deepEqual(await taker.kill('SIGTERM', 30_000), { code: 0, signal: null }, taker.logTail());
  assert.deepEqual(mountsUnder(mnt).map((m) => m.mountPoint), [], 'the successor\'s SIGTERM unmounts it');
});

test('--successor-wait: a bad value is refused; with no successor the server unmounts every layer once the wait is over; a second SIGTERM, or --stop, does not wait', async () => {
  const l = layers[1] as (typeof layers)[number];
  const serve = async (name: string, wait: string): Promise<{ s: FuseServerProcess; mnt: string }> => {
    const s = await startFuseServer(scope, { root, store, name, extraArgs: ['--successor-wait', wait] });
    const mnt = join(root, name, 'fs');
    ok(await s.call('mount', { layerDir: l.dir, mountpoint: mnt }), `mount ${name}`);
    return { s, mnt };
  };
  const bad = await ManagedProcess.start({
    name: 'bad-wait', cmd: process.execPath, logFile: join(scope.dir, 'bad-wait.log'), cwd: scope.dir,
    args: [daemonBin, 'fuse-server', '--root', root, '--store', store, '--socket', join(scope.dir, 'bad-wait.sock'), '--successor-wait', 'soon'],
  });
  assert.equal((await bad.exited).code, 2);
  assert.match(bad.log(), /--successor-wait must be a whole number of seconds from 0 to 3600, got soon/);
  // Nobody comes within 2 s.
  const a = await serve('no-successor', '2');
  a.s.process.signal('SIGTERM');
  assert.deepEqual(await exitWithin(a.s.process, 30_000), { code: 0, signal: null });
  assert.match(a.s.process.log(), /no successor took the mounts over/);
  assert.deepEqual(mountsUnder(a.mnt).map((m) => m.mountPoint), []);
  // Asked twice: the second time it stops waiting.
  const b = await serve('asked-twice', '600');
  b.s.process.signal('SIGTERM');
  await waitUntil(() => b.s.process.log().includes('serving on, for a successor'), { what: 'the server to wait for a successor', timeoutMs: 10_000 });
  b.s.process.signal('SIGTERM');
  assert.deepEqual(await exitWithin(b.s.process, 30_000), { code: 0, signal: null });
  assert.deepEqual(mountsUnder(b.mnt).map((m) => m.mountPoint), []);
  // The uninstall never waits.
  const c = await serve('stopped', '600');
  ok(await c.s.call('shutdown', {}), 'shutdown');
  assert.deepEqual(await exitWithin(c.s.process, 30_000), { code: 0, signal: null });
  assert.ok(!c.s.process.log().includes('serving on, for a successor'));
  assert.deepEqual(mountsUnder(c.mnt).map((m) => m.mountPoint), []);
});
