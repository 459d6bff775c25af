// The parts of --replace, --external-fuse-server and /readyz that need no daemon: the options,
// the step-down request's checks, the control socket's conversation, and the readiness verdicts.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDaemonArgs, DEFAULT_REPLACE_TIMEOUT_SEC, type DaemonOptions } from '../../src/cli/daemon-args.js';
import { askToStepDown, controlSocketPath, listenDaemonControl, NoControlSocket, parseStepDown, type Successor } from '../../src/cli/daemon-control.js';
import { readiness, type Phase, type ServingView } from '../../src/cli/daemon-health.js';
import { silentLogger } from '../../src/log.js';

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cvmfs-replace-unit-'));
  dirs.push(d);
  return d;
}

test('--replace, --replace-timeout and --external-fuse-server parse, with defaults off and bad timeouts refused', () => {
  const d = parseDaemonArgs([]) as DaemonOptions;
  assert.equal(d.replace, false);
  assert.equal(d.externalFuseServer, false);
  assert.equal(d.replaceTimeoutSec, DEFAULT_REPLACE_TIMEOUT_SEC);
  const r = parseDaemonArgs(['--replace', '--replace-timeout', '5', '--external-fuse-server']) as DaemonOptions;
  assert.deepEqual([r.replace, r.replaceTimeoutSec, r.externalFuseServer], [true, 5, true]);
  for (const bad of ['0', '1.5', 'soon', '3601', '']) {
    assert.throws(() => parseDaemonArgs(['--replace-timeout', bad]), /--replace-timeout .*: expected whole seconds from 1 to 3600/, bad);
  }
  assert.equal(controlSocketPath('/run/x/snap.sock'), '/run/x/daemon-control.sock');
});

test('a step-down request is refused unless it is a JSON object with request "step-down", a positive pid and a host', () => {
  assert.deepEqual(parseStepDown('{"request":"step-down","pid":12,"host":"pod-b"}'), { request: 'step-down', pid: 12, host: 'pod-b' });
  const refused: Array<[string, RegExp]> = [
    ['step-down', /not JSON/],
    ['[1]', /not a JSON object/],
    ['{"request":"shutdown","pid":1,"host":"h"}', /unknown request "shutdown"; this socket takes only "step-down"/],
    ['{"request":"step-down","host":"h"}', /needs "pid"/],
    ['{"request":"step-down","pid":0,"host":"h"}', /needs "pid"/],
    ['{"request":"step-down","pid":1.5,"host":"h"}', /needs "pid"/],
    ['{"request":"step-down","pid":1}', /needs "host"/],
    ['{"request":"step-down","pid":1,"host":""}', /needs "host"/],
    [`{"request":"step-down","pid":1,"host":"${'h'.repeat(256)}"}`, /needs "host"/],
  ];
  for (const [line, why] of refused) assert.match(parseStepDown(line) as string, why, line);
});

test('the control socket: 0600, one step-down answered after it is done, a second refused, a silent daemon runs into the deadline', async () => {
  const dir = await tempDir();
  const path = join(dir, 'daemon-control.sock');
  const asked: Successor[] = [];
  let down: Successor | undefined;
  const control = await listenDaemonControl(path, silentLogger(), async (s) => {
    down = s;
    asked.push(s);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }, () => (down ? `already stepped down for pid ${down.pid}` : undefined));
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  // A connection made before the step-down: the listener closes, it stays.
  const early = net.createConnection(path);
  await new Promise((resolve) => early.once('connect', resolve));

  assert.deepEqual(await askToStepDown(path, { pid: 77, host: 'pod-b' }, 10_000), { pid: process.pid });
  assert.deepEqual(asked, [{ pid: 77, host: 'pod-b' }]);
  await control.close();
  const answer = await new Promise<string>((resolve) => {
    let text = '';
    early.setEncoding('utf8');
    early.on('data', (d: string) => { text += d; });
    early.on('close', () => resolve(text));
    early.write('{"request":"step-down","pid":78,"host":"pod-c"}\n');
  });
  assert.deepEqual(JSON.parse(answer), { error: 'already stepped down for pid 77' });
  assert.equal(asked.length, 1, 'stepped down once');
  await assert.rejects(askToStepDown(path, { pid: 79, host: 'pod-d' }, 1000), NoControlSocket, 'the path is gone once closed');

  // A daemon that takes the request and never answers.
  const silent = net.createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(path, resolve));
  try {
    await assert.rejects(askToStepDown(path, { pid: 80, host: 'pod-e' }, 1000), /did not say it stepped down within 1 s \(--replace-timeout\)/);
  } finally {
    silent.close();
  }
});

const view = (o: Partial<ServingView>): ServingView => ({
  address: '/run/x/snap.sock',
  fuseSocket: '/run/x/fuse-server.sock',
  ownHost: 'pod-b',
  probe: () => Promise.resolve({ server: { pid: 9, version: '1', host: 'pod-b' }, mounts: ['/r/1/fs', '/r/2/fs'] }),
  needed: () => ['/r/1/fs'],
  ...o,
});

test('readiness: not while starting, waiting or stepped down; not with a silent, hostless, foreign or short-handed server; else ready', async () => {
  const at = (p: Phase) => () => p;
  const serving = at({ name: 'serving' });
  const verdict = async (p: () => Phase, v: ServingView) => readiness(p, v);

  assert.deepEqual(await verdict(at({ name: 'waiting-for-fuse-server' }), view({})), { ready: false, reason: 'waiting for a FUSE server to answer on /run/x/fuse-server.sock' });
  assert.deepEqual(await verdict(at({ name: 'replacing' }), view({})), { ready: false, reason: 'waiting for the daemon serving on /run/x/snap.sock to step down' });
  assert.match((await verdict(at({ name: 'stepped-down', successor: { pid: 5, host: 'pod-c' } }), view({}))).reason, /^stepped down for the daemon with pid 5 on host pod-c/);
  assert.equal((await verdict(at({ name: 'starting' }), view({}))).ready, false);

  const silent = await verdict(serving, view({ probe: () => new Promise(() => undefined) }));
  assert.deepEqual(silent, { ready: false, reason: 'the FUSE server on /run/x/fuse-server.sock does not answer: no answer within 2000 ms (a hello)' });
  const hostless = await verdict(serving, view({ probe: () => Promise.resolve({ server: { pid: 9, version: '0.0.9' }, mounts: [] }) }));
  assert.match(hostless.reason, /\(pid 9, version 0\.0\.9\) does not say its host/);
  const foreign = await verdict(serving, view({ ownHost: 'pod-c' }));
  assert.match(foreign.reason, /runs on host "pod-b", not on this daemon's host "pod-c"/);
  const short = await verdict(serving, view({ needed: () => ['/r/1/fs', '/r/3/fs'] }));
  assert.deepEqual(short, { ready: false, reason: 'the FUSE server (pid 9) lacks 1 of the 2 layer mounts the snapshots in use need, e.g. /r/3/fs' });
  const ok = await verdict(serving, view({}));
  assert.equal(ok.ready, true, ok.reason);

  // A step-down while the server answered: the database is closed, the verdict says why.
  let phase: Phase = { name: 'serving' };
  const racing = await verdict(() => phase, view({ probe: async () => { phase = { name: 'stepping-down', successor: { pid: 6, host: 'pod-c' } }; return { server: { pid: 9, version: '1', host: 'pod-b' }, mounts: [] }; } }));
  assert.match(racing.reason, /^stepping down for the daemon with pid 6/);
});
