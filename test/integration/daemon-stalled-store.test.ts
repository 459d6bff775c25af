// The daemon in front of a layer store that stops answering (a cvmfs2 waiting for a proxy that
// never answers): a lazy Prepare whose store check passes its deadline becomes an ordinary
// download, logged and counted with its reason; calls that do not need the store (ordinary
// Prepare, Stat, List, Commit, Remove) answer meanwhile; Usage of a remote snapshot answers
// Unavailable instead of hanging; and once the store answers, the next lazy Prepare is lazy again.
//
// The store is a FaultyStore (a python FUSE server of its own) whose lookups block until heal().
// Liveness is shown by order, as in stalled-store.test.ts: the calls that must not wait for the
// store complete while the stall is still in place (the test heals it only afterwards); nothing
// here is timed beyond the daemon's own store deadline, set to 1 s.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import { defaultDaemonConfig, startDaemon, type Daemon, type LogRecord } from '../helpers/daemon.js';
import { samples } from '../helpers/metrics-text.js';
import { freePort } from '../helpers/ports.js';
import { Scope } from '../helpers/scope.js';
import { makeStoreLayers, type StoreLayer } from '../helpers/snapshot-cycles.js';
import { waitUntil } from '../helpers/wait.js';
import { FaultyStore } from './faulty-store.js';

/** More lazy Prepares at once than the daemon lets wait on the store (8): the rest fail fast. */
const LAZY_PREPARES = 12;

let scope: Scope;
let daemon: Daemon;
let client: SnapshotsClient;
let store: FaultyStore;
let port: number;
let lazy: StoreLayer;
let stalled = false;

before(async () => {
  scope = await Scope.create('daemon-stall');
  const backing = await scope.mkdir('backing');
  [lazy] = await makeStoreLayers(backing, 1) as [StoreLayer];
  const mnt = await scope.mkdir('store');
  store = await FaultyStore.start(backing, mnt);
  scope.defer('stop the faulty store', () => store.stop());
  port = await freePort();
  daemon = await startDaemon(scope, {
    logLevel: 'info',
    configToml: `${defaultDaemonConfig(mnt)}store-check-timeout = 1\n[metrics]\naddress = "127.0.0.1:${port}"\n`,
  });
  client = new SnapshotsClient(daemon.socket);
  scope.defer('close the client', async () => client.close());
  // Runs first: the daemon's stuck store calls, and the store's own requests, must end.
  scope.defer('heal the store', async () => { if (store.running) await store.heal(); });
});
after(() => scope.teardown());

const code = (err: unknown): number | undefined => (err as ServiceError).code;
const lazyLabels = (target: string): Record<string, string> => ({ [TARGET_REF_LABEL]: target, [LAYER_DIGEST_LABEL]: lazy.digest });

/** A call that must not wait for the store; a hang becomes a failure with a name, not a test timeout. */
async function meanwhile<T>(what: string, call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer while the store was stalled`)), 30_000);
  });
  try {
    const r = await Promise.race([call, hung]);
    assert.equal(stalled, true, `${what} answered while the store was still stalled`);
    return r;
  } finally {
    clearTimeout(timer);
  }
}

const decisionLines = (key: string): LogRecord[] => daemon.logRecords().filter((r) => r.key === key && typeof r.decision === 'string');

test('with the store stalled, lazy Prepares become downloads, other calls answer, Usage is Unavailable; once healed, Prepare is lazy again', async () => {
  // Before the stall: the layer is served from the store (AlreadyExists, containerd skips the download).
  await assert.rejects(client.prepare('ns/0/extract', '', lazyLabels('ns/0/layer')), (e) => code(e) === status.ALREADY_EXISTS);

  await store.stall('/.layers/', 'lookup');
  stalled = true;

  // Usage of the remote snapshot needs the store: an answer within bounded time, Unavailable.
  await meanwhile('Usage of a remote snapshot', assert.rejects(client.usage('ns/0/layer'),
    (e) => code(e) === status.UNAVAILABLE && /cannot be measured/.test((e as Error).message) && /did not answer within 1000 ms|still unanswered/.test((e as Error).message)));

  // Lazy Prepares: each answers as an ordinary snapshot (mounts, not AlreadyExists).
  const keys = Array.from({ length: LAZY_PREPARES }, (_, i) => `ns/${i + 1}/extract`);
  const answers = await meanwhile('the lazy Prepares', Promise.allSettled(keys.map((k, i) => client.prepare(k, '', lazyLabels(`ns/${i + 1}/layer`)))));
  for (const [i, a] of answers.entries()) {
    assert.equal(a.status, 'fulfilled', `${keys[i]} answered as an ordinary snapshot: ${a.status === 'rejected' ? String(a.reason) : ''}`);
    if (a.status === 'fulfilled') assert.equal(a.value.mounts[0]?.type, 'bind', `${keys[i]} has the mounts of a new empty snapshot`);
  }

  // Each is logged with the digest and why; some waited out the deadline, the rest failed fast.
  await waitUntil(() => keys.every((k) => decisionLines(k).length > 0), { what: 'a decision line for every lazy Prepare' });
  const codes = new Map<string, number>();
  for (const k of keys) {
    const lines = decisionLines(k);
    assert.equal(lines.length, 1, `one decision line for ${k}: ${JSON.stringify(lines)}`);
    const l = lines[0] as LogRecord;
    assert.equal(l.digest, lazy.digest);
    assert.equal(l.decision, 'downloaded');
    assert.ok(l.code === 'store_timeout' || l.code === 'store_busy', `${k}: code ${String(l.code)}`);
    assert.match(String(l.reason), l.code === 'store_timeout' ? /did not answer within 1000 ms/ : /calls into the layer store are still unanswered \(at most 8\)/);
    codes.set(String(l.code), (codes.get(String(l.code)) ?? 0) + 1);
  }
  assert.ok((codes.get('store_timeout') ?? 0) >= 1, 'some waited for the deadline');
  assert.ok((codes.get('store_busy') ?? 0) >= 1, `past the bound the rest failed at once: ${JSON.stringify([...codes])}`);

  const scraped = samples(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  const counted = (reason: string): number => scraped.get(`cvmfs_snapshotter_layer_decisions_total{decision="downloaded",reason="${reason}"}`) ?? 0;
  assert.equal(counted('store_timeout'), codes.get('store_timeout') ?? 0, 'the decisions metric counts store_timeout');
  assert.equal(counted('store_busy'), codes.get('store_busy') ?? 0, 'the decisions metric counts store_busy');

  // The calls that do not need the store, while the daemon's store calls are still stuck.
  await meanwhile('an ordinary Prepare', client.prepare('plain/1', ''));
  await meanwhile('a Prepare with a layer digest and no target', client.prepare('plain/2', '', { [LAYER_DIGEST_LABEL]: lazy.digest }));
  assert.equal((await meanwhile('Stat', client.stat('plain/1'))).info.name, 'plain/1');
  const listed = await meanwhile('List', client.list());
  assert.ok(listed.some((i) => i.name === 'plain/1') && listed.some((i) => i.name === 'ns/1/extract'), 'List shows the snapshots');
  await meanwhile('Commit', client.commit('plain/committed', 'plain/1'));
  await meanwhile('a View on a local parent', client.view('plain/view', 'plain/committed'));
  await meanwhile('Remove of a view', client.remove('plain/view'));
  await meanwhile('Remove of a committed snapshot', client.remove('plain/committed'));
  await meanwhile('Remove of a downloaded layer snapshot', client.remove('ns/1/extract'));
  await meanwhile('Remove of a remote snapshot', client.remove('ns/0/layer'));
  assert.equal((await meanwhile('Usage of an active snapshot', client.usage('plain/2'))).inodes, 1);

  await store.heal();
  stalled = false;

  // Once the store answers (and the daemon's stuck calls have come back), Prepare is lazy again.
  let n = 0;
  await waitUntil(async () => {
    n++;
    try {
      await client.prepare(`healed/${n}/extract`, '', lazyLabels(`healed/${n}/layer`));
      return false;
    } catch (err) {
      if (code(err) === status.ALREADY_EXISTS) return true;
      throw err;
    }
  }, { what: 'a lazy Prepare served from the healed store', timeoutMs: 30_000, intervalMs: 200, process: daemon.process });
  // The log is written by the daemon as it goes: wait for the line rather than race it.
  await waitUntil(() => decisionLines(`healed/${n}/extract`).length > 0, { what: 'the decision line of the healed Prepare' });
  assert.equal(decisionLines(`healed/${n}/extract`)[0]?.code, 'in_store');
  const usage = await client.usage(`healed/${n}/layer`);
  assert.ok(usage.inodes > 20, `Usage of the remote snapshot answers again (${usage.inodes} inodes)`);
});
