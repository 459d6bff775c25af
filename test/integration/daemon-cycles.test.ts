// The fast version of test/stress/load-cycles.test.ts: snapshot life cycles over the daemon's
// socket (plain, remote, and remote layers mounted through FUSE), and afterwards no record,
// directory, mount or file descriptor is left over.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotsClient } from '../../src/server/client.js';
import { defaultDaemonConfig, type Daemon } from '../helpers/daemon.js';
import { Harness } from '../helpers/harness.js';
import { mountpointsUnder, readRecords, serverUsage } from '../helpers/root-check.js';
import { emptyCounts, makeStoreLayers, runCycle, type CycleKind, type StoreLayer } from '../helpers/snapshot-cycles.js';

/** Descriptors that may differ between two idle moments without a leak. */
const FD_SLACK = 2;

let h: Harness;
let daemon: Daemon;
let client: SnapshotsClient;
let layers: StoreLayer[];

before(async () => {
  h = await Harness.create('it-cycles');
  const store = await h.scope.mkdir('store');
  layers = await makeStoreLayers(store, 2);
  daemon = await h.startDaemon({ logLevel: 'info', configToml: defaultDaemonConfig(store) });
  client = new SnapshotsClient(daemon.socket);
});
after(async () => {
  client?.close();
  await h.teardown();
});

test('60 prepare/mount/commit/remove cycles leave no record, directory, mount or descriptor behind', async () => {
  const counts = emptyCounts();
  const kinds: CycleKind[] = ['plain', 'remote', 'remote-mounted'];
  const pair: [StoreLayer, StoreLayer] = [layers[0] as StoreLayer, layers[1] as StoreLayer];
  // The first cycles open what stays open (the gRPC connection, the database's files).
  for (let i = 0; i < 6; i++) await runCycle(client, kinds[i % 3] as CycleKind, i, pair, counts);
  const u0 = await serverUsage(daemon.socket);
  for (let i = 6; i < 60; i++) await runCycle(client, kinds[i % 3] as CycleKind, i, pair, counts);
  assert.equal(counts.fuseMounts, 80, 'the mounted cycles mounted layers');
  assert.deepEqual(readRecords(daemon.root), [], 'no record');
  assert.deepEqual(await readdir(join(daemon.root, 'snapshots')), [], 'no directory under snapshots/');
  assert.deepEqual(await mountpointsUnder(daemon.root), [], 'nothing mounted under the root');
  const u1 = await serverUsage(daemon.socket);
  for (const a of u0) {
    const b = u1.find((x) => x.pid === a.pid);
    assert.ok(b, `the ${a.role} (pid ${a.pid}) still runs`);
    assert.ok(b.fds - a.fds <= FD_SLACK, `the ${a.role} holds ${b.fds - a.fds} more descriptors than after the first cycles (allowed ${FD_SLACK})`);
  }
});
