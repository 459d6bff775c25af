// The upgrade guarantee for a reader that waits for a stalled layer store while the FUSE server
// hands its mounts over: its request is given back to the kernel (FUSE_NOTIFY_RESEND, Linux 6.9+)
// and answered by the next server once the store answers, with the right bytes, never EIO. Both
// handovers: to a child (`fuse-server --handover`, an upgrade in place) and to an unrelated
// process (`fuse-server --replace`, the next Kubernetes pod). The store is a FaultyStore (a
// python FUSE server in its own process) whose opens of the file block until heal(); the old
// server's own store call comes back after the heal too, and its answer must go nowhere.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { daemonBin } from '../helpers/paths.js';
import { startFuseServer, type ControlAnswer, type FuseServerProcess } from '../helpers/fuse-server-process.js';
import { mountsUnder } from '../helpers/mounts.js';
import { ManagedProcess } from '../helpers/process.js';
import { Scope } from '../helpers/scope.js';
import { canConnect, waitUntil } from '../helpers/wait.js';
import { RESEND_GRACE_MS } from '../../src/fuse/mounts/handover.js';
import { FaultyStore } from './faulty-store.js';

let scope: Scope;

before(async () => {
  scope = await Scope.create('handover-resend');
});

after(async () => {
  await scope?.teardown();
});

/** FUSE_NOTIFY_RESEND came with Linux 6.9. */
function kernelCanResend(): boolean {
  const [major = 0, minor = 0] = release().split('.').map((x) => Number.parseInt(x, 10));
  return major > 6 || (major === 6 && minor >= 9);
}

const TEXT = 'read through a handover while the store was stalled\n';

function ok(a: ControlAnswer, what: string): ControlAnswer {
  assert.equal(a.error, undefined, `${what}: ${JSON.stringify(a.error)}`);
  return a;
}

/** Requests of a FUSE server waiting for the store now, as it reports them. */
async function waitingForStore(s: FuseServerProcess): Promise<number> {
  const a = ok(await s.call('hello', {}), 'hello');
  return (a.state as { counters?: { waitingForStore?: number } } | undefined)?.counters?.waitingForStore ?? 0;
}

interface Reader {
  child: ChildProcess;
  out: string;
  err: string;
  exit: number | null | undefined;
  exited: Promise<number | null>;
}

function cat(file: string): Reader {
  const child = spawn('cat', [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Reader = { child, out: '', err: '', exit: undefined, exited: Promise.resolve(null) };
  child.stdout?.on('data', (d: Buffer) => { r.out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { r.err += d.toString(); });
  r.exited = new Promise((resolve) => child.on('exit', (code) => { r.exit = code; resolve(code); }));
  return r;
}

for (const how of ['handover', 'replace'] as const) {
  const title = how === 'handover' ? 'fuse-server --handover (a child)' : 'fuse-server --replace (another process)';
  test(`${title}: a read waiting for a stalled store at the handover is resent to the new server and gets the right bytes once the store heals, not EIO`, { skip: kernelCanResend() ? false : 'the kernel cannot resend FUSE requests (Linux 6.9 or later can)' }, async (t) => {
    const hex = (how === 'handover' ? '5a' : '5b').repeat(32);
    const rel = `.layers/${hex.slice(0, 2)}/${hex}/layerfs`;
    const backing = await scope.mkdir(how, 'backing');
    await mkdir(join(backing, rel, 'd'), { recursive: true });
    await writeFile(join(backing, rel, 'd', 'f'), TEXT);
    const storeMnt = await scope.mkdir(how, 'store');
    const store = await FaultyStore.start(backing, storeMnt);
    scope.defer(`stop the ${how} store`, () => store.stop());
    const root = await scope.mkdir(how, 'root');
    const old = await startFuseServer(scope, { root, store: storeMnt, name: `old-${how}` });
    // After a --replace the old server idles, and the pid file names the new one.
    scope.defer(`stop the old ${how} server`, async () => { if (old.process.running) await old.process.kill('SIGTERM', 20_000); });
    // Runs before the servers are stopped: a request waiting for the store would hold an unmount.
    scope.defer(`heal the ${how} store`, async () => { if (store.running) await store.heal(); });
    const mnt = join(root, 'snapshots', '1', 'fs');
    ok(await old.call('mount', { layerDir: join(storeMnt, rel), mountpoint: mnt }), 'mount');
    // Looked up before the stall (lookups are not stalled); only opening the file waits.
    assert.equal(lstatSync(join(mnt, 'd', 'f')).size, TEXT.length);
    await store.stall(`/${rel}/d/f`, 'open');

    const reader = cat(join(mnt, 'd', 'f'));
    scope.defer(`stop the ${how} reader`, async () => {
      if (store.running) await store.heal();
      reader.child.kill('SIGKILL');
    });
    await waitUntil(async () => (await waitingForStore(old)) >= 1, { what: 'the open to wait for the stalled store in the old server', process: old.process, timeoutMs: 30_000 });
    const oldPid = await old.pid();

    // The handover, while the store is still stalled.
    const began = Date.now();
    let taker: ManagedProcess | undefined;
    if (how === 'handover') {
      const a = ok(await old.call('handover', {}), 'handover');
      t.diagnostic(`successor: ${JSON.stringify(a.result)}`);
    } else {
      taker = await ManagedProcess.start({
        name: 'taker', cmd: process.execPath, logFile: join(scope.dir, how, 'taker.log'), cwd: join(scope.dir, how),
        args: [daemonBin, 'fuse-server', '--replace', '--root', root, '--store', storeMnt, '--socket', old.socket, '--log-level', 'info'],
      });
      const tk = taker;
      scope.defer('stop the taker', async () => { if (tk.running) await tk.kill('SIGTERM', 30_000); });
    }
    await waitUntil(async () => (await old.pid().catch(() => oldPid)) !== oldPid && await canConnect(old.socket),
      { what: 'the new server to listen on the socket', timeoutMs: 60_000, ...(taker ? { process: taker } : {}) });
    const newPid = await old.pid();
    const handoverMs = Date.now() - began;
    // The new server has the request (resent by the kernel) and waits for the store with it;
    // or the reader already got its answer from the old server: EIO, what must not happen.
    await waitUntil(async () => reader.exit !== undefined || (await waitingForStore(old)) >= 1,
      { what: 'the new server to wait for the store with the resent open, or the reader to fail', timeoutMs: 60_000 });
    assert.deepEqual({ exit: reader.exit, err: reader.err }, { exit: undefined, err: '' }, 'the reader still waits: nobody answered its open EIO at the handover');
    assert.match(old.process.log(), /given back to the kernel for the next server/);

    await store.heal();
    const code = await reader.exited;
    assert.deepEqual({ code, out: reader.out, err: reader.err }, { code: 0, out: TEXT, err: '' }, 'the reader got the file, answered by the new server');
    assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), TEXT);
    assert.equal(await waitingForStore(old), 0, 'nothing left waiting in the new server');

    if (taker) {
      // The old server lives on, idle: its own store call came back after the heal, and its
      // answer, for a request that is the new server's now, was dropped, not written.
      await waitUntil(() => /a late answer to a request left to the next FUSE server at handover was dropped/.test(old.process.log()),
        { what: 'the old server\'s store call to come back and its answer to be dropped', process: old.process, timeoutMs: 30_000 });
      assert.doesNotMatch(old.process.log(), /writing a FUSE reply failed/);
      assert.deepEqual(await old.process.kill('SIGTERM', 20_000), { code: 0, signal: null }, old.process.logTail());
      assert.equal(await readFile(join(mnt, 'd', 'f'), 'utf8'), TEXT, 'the mount is served on after the old server exited');
      assert.deepEqual(await taker.kill('SIGTERM', 30_000), { code: 0, signal: null }, taker.logTail());
    } else {
      // The old process exits once its own store call is back (the kernel holds it until then).
      await waitUntil(() => !old.process.running, { what: 'the old server to exit after the handover', timeoutMs: 30_000 });
      assert.equal(old.process.exitStatus?.code, 0, old.process.logTail());
      assert.doesNotMatch(old.process.log(), /answered EIO|writing a FUSE reply failed/);
      await old.stop();
    }
    t.diagnostic(`old server ${oldPid}, new server ${newPid}; from asking for the handover to the new server listening: ${handoverMs} ms `
      + `(the old server waits up to ${RESEND_GRACE_MS} ms for the request to be answered before it gives it back)`);
    assert.deepEqual(mountsUnder(root).map((m) => m.mountPoint), [], 'the new server\'s SIGTERM unmounted the layer');
  });
}
