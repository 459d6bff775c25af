// Busy polling (native/cvmfs_sys.c, busy_poll; fuse-busy-poll-us): a program that asks the
// server one thing after another (lstat after lstat of names a layer lacks, each one LOOKUP
// answered from memory) is answered without the server's thread going to sleep in epoll between
// its requests; with busy polling off, that thread sleeps and is woken for about every request.
// Sleeps are counted, not timed: the voluntary context switches of the server's event-loop
// thread (a yield to another task is not one). The server and the program run on different
// CPUs, where a request cannot come in while the server is busy returning to epoll.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { exec } from '../../src/sys/exec.js';
import { MiB, startMemoryServer, storeLayerDir } from '../helpers/memory-load.js';
import { daemonBin } from '../helpers/paths.js';
import { ManagedProcess } from '../helpers/process.js';
import { Scope } from '../helpers/scope.js';

const LOOKUPS = 3000;
// Lists the directory once (its listing then answers every lookup from memory), then lstats
// names it lacks, one after the other; prints how many were missing.
const LOOKUPS_PY = String.raw`
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.listdir(d)
missing = 0
for i in range(n):
    try: os.lstat(os.path.join(d, 'absent-%d' % i))
    except FileNotFoundError: missing += 1
print(missing)
`;

let scope: Scope;
let store = '';
let layer = '';

before(async () => {
  scope = await Scope.create('fuse-busy-poll');
  store = await scope.mkdir('store');
  layer = storeLayerDir(store, 'b0');
  await mkdir(join(layer, 'd'), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(layer, 'd', `present-${i}`), `${i}\n`);
});

after(() => scope.teardown());

/** Voluntary context switches of a thread so far (it went to sleep). */
async function sleepsOf(pid: number): Promise<number> {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(await readFile(`/proc/${pid}/task/${pid}/status`, 'utf8'));
  assert.ok(m, `no voluntary_ctxt_switches for ${pid}`);
  return Number(m[1]);
}

/** The sleeps of the server's event-loop thread during LOOKUPS lookups, with busy polling of us microseconds. */
async function sleepsDuringLookups(us: number): Promise<number> {
  const root = await scope.mkdir(`root-${us}`);
  const server = await startMemoryServer(scope, { name: `server-${us}`, root, store, cacheBytes: 64 * MiB, walkEntries: 0, logLevel: 'info', extraArgs: ['--busy-poll-us', String(us)] });
  try {
    const mnt = join(root, 'mnt');
    await server.client.mount(layer, mnt);
    try {
      const pid = server.process.pid;
      const settings = (await readFile(server.logFile, 'utf8')).split('\n').filter((l) => l.includes('FUSE server settings')).map((l) => JSON.parse(l) as { busyPollUs?: number })[0];
      assert.equal(settings?.busyPollUs, us, 'the server took --busy-poll-us');
      const pinned = await exec('taskset', ['--all-tasks', '--pid', '--cpu-list', '0', String(pid)]);
      assert.equal(pinned.code, 0, `taskset: ${pinned.stderr}`);
      const before = await sleepsOf(pid);
      const r = await exec('taskset', ['--cpu-list', '1', '/usr/bin/python3', '-c', LOOKUPS_PY, join(mnt, 'd'), String(LOOKUPS)], { timeoutMs: 120_000 });
      const sleeps = (await sleepsOf(pid)) - before;
      assert.equal(r.stdout.trim(), String(LOOKUPS), `every name was missing: ${r.stderr}`);
      return sleeps;
    } finally {
      await server.client.unmount(mnt);
    }
  } finally {
    await server.stop();
  }
}

const skip = availableParallelism() < 2 ? 'needs two CPUs: the server on one, the program on the other' : false;

test('a program looking names up one after another is answered without the server sleeping between its requests; with busy polling off it sleeps for about each one', { skip }, async (t) => {
  const polling = await sleepsDuringLookups(1000);
  const off = await sleepsDuringLookups(0);
  t.diagnostic(`server thread sleeps during ${LOOKUPS} lookups: ${polling} with --busy-poll-us 1000, ${off} with 0`);
  assert.ok(polling < LOOKUPS / 10, `busy polling: ${polling} sleeps for ${LOOKUPS} lookups`);
  assert.ok(off > LOOKUPS / 2, `no busy polling: ${off} sleeps for ${LOOKUPS} lookups`);
});

test('a --busy-poll-us that is not a whole number of microseconds from 0 to 1000 stops the server at start, naming the flag', async () => {
  for (const bad of ['1001', '-1', '2.5', 'fast']) {
    const p = await ManagedProcess.start({
      name: `bad-busy-poll-${bad}`, cmd: process.execPath, logFile: join(scope.dir, `bad-busy-poll-${bad}.log`), cwd: scope.dir,
      args: [daemonBin, 'fuse-server', '--root', scope.dir, '--store', store, '--socket', join(scope.dir, 'bad.sock'), `--busy-poll-us=${bad}`],
    });
    assert.equal((await p.exited).code, 2, p.log());
    assert.match(p.log(), new RegExp(`--busy-poll-us must be a whole number of microseconds from 0 \\(off\\) to 1000, got ${bad.replace('.', '\\.')}`));
  }
});
