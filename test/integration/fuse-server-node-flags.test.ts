// A FUSE server started without its Node flags (by hand, or as the DaemonSet's container
// command, where no daemon starts it with them) starts again with them before it serves: the
// same process (its supervisor's pid, the pid file's), its output still going where it went. A
// flag the operator gave, in NODE_OPTIONS or on node's command line, keeps the operator's value.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fuseServerNodeFlags } from '../../src/cli/build-info.js';
import { startFuseServer } from '../helpers/fuse-server-process.js';
import { Scope } from '../helpers/scope.js';

let scope: Scope;

before(async () => {
  scope = await Scope.create('fuse-server-node-flags');
});

after(async () => {
  await scope?.teardown();
});

async function cmdline(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
}

const logLines = async (file: string): Promise<{ msg: string; pid: number; flags?: string[] }[]> =>
  (await readFile(file, 'utf8')).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; pid: number; flags?: string[] });

test('started without its Node flags, the server starts again with them, keeping its pid and its log', async () => {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const s = await startFuseServer(scope, { name: 'plain', root: await scope.mkdir('plain-root'), store: await scope.mkdir('plain-store'), env });
  const pid = await s.pid();
  assert.equal(pid, s.process.pid, 'the pid file names the process that was started');
  const args = await cmdline(pid);
  for (const f of fuseServerNodeFlags()) assert.ok(args.includes(f), `${f} on the command line: ${args.join(' ')}`);
  assert.ok(args.indexOf('fuse-server') > args.indexOf('--v8-pool-size=1'), 'the flags come before the script');
  assert.equal((await s.call('hello', {})).error, undefined);
  // What the server starts (its successor at a handover) gets no marker and says nothing of it.
  const handed = await s.call('handover', {});
  const successor = (handed.result as { pid: number } | undefined)?.pid;
  assert.ok(typeof successor === 'number' && successor !== pid, `a successor answered: ${JSON.stringify(handed)}`);
  const environ = (await readFile(`/proc/${successor}/environ`, 'latin1')).split('\0');
  assert.ok(!environ.some((e) => e.startsWith('CVMFS_SNAPSHOTTER_FUSE_SERVER_FLAGS_ADDED=')), 'the marker is not passed on');
  await s.stop();
  const lines = await logLines(s.logFile);
  const own = lines.filter((l) => l.pid === pid);
  assert.deepEqual(own.find((l) => l.msg.startsWith('started again'))?.flags, fuseServerNodeFlags());
  assert.equal(own.filter((l) => l.msg === 'FUSE server listening').length, 1);
  assert.ok(own.some((l) => l.msg.startsWith('handover done')), `the log goes on after the exec: ${own.map((l) => l.msg).join(' | ')}`);
  assert.ok(!lines.some((l) => l.pid === successor && l.msg.startsWith('started again')));
});

test('a flag given in NODE_OPTIONS keeps its value; only the others are added', async () => {
  const s = await startFuseServer(scope, {
    name: 'chosen', root: await scope.mkdir('chosen-root'), store: await scope.mkdir('chosen-store'),
    env: { ...process.env, NODE_OPTIONS: '--max-old-space-size=2048' },
  });
  const args = await cmdline(await s.pid());
  assert.ok(!args.some((a) => a.startsWith('--max-old-space-size')), `no second old-space limit: ${args.join(' ')}`);
  assert.ok(args.includes('--max-semi-space-size=1') && args.includes('--v8-pool-size=1'), args.join(' '));
  await s.stop();
});

test('started with every flag, the server runs as it was started', async () => {
  const env = { ...process.env, NODE_OPTIONS: fuseServerNodeFlags().join(' ') };
  const s = await startFuseServer(scope, { name: 'given', root: await scope.mkdir('given-root'), store: await scope.mkdir('given-store'), env });
  assert.ok(!(await cmdline(await s.pid())).some((a) => fuseServerNodeFlags().includes(a)), 'nothing was added');
  await s.stop();
  assert.ok(!(await logLines(s.logFile)).some((l) => l.msg.startsWith('started again')));
});
