// A pull that containerd fails because it cannot reach the snapshotter yet is tried again for a
// while (containerd's connection to a daemon that just came up may still be backing off);
// every other failure ends the pull at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pullWhileReachable, snapshotterUnreachable } from '../../src/cli/pull.js';

const serviceError = (code: number, details: string): Error => Object.assign(new Error(details), { code, details });
// What containerd 1.6 answers while its proxy plugin's connection to the daemon is down.
const UNREACHABLE = serviceError(14, 'failed to pull and unpack image "r/i:1": failed to prepare extraction snapshot "extract-1 sha256:ab": '
  + 'connection error: desc = "transport: Error while dialing dial unix:///run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock: timeout": unavailable');

/** A clock that moves only when the pull sleeps. */
function clock(): { now: () => number; sleep: (ms: number) => Promise<void> } {
  let t = 0;
  return { now: () => t, sleep: async (ms) => { t += ms; } };
}

test('containerd\'s dial errors of the snapshotter\'s socket are told apart from other failures', () => {
  assert.equal(snapshotterUnreachable(UNREACHABLE), true);
  assert.equal(snapshotterUnreachable(serviceError(14, 'failed to prepare extraction snapshot: connection error: desc = "transport: dial unix /x.sock: connect: connection refused"')), true);
  assert.equal(snapshotterUnreachable(serviceError(5, 'failed to resolve reference "r/i:1": r/i:1: not found')), false);
  assert.equal(snapshotterUnreachable(new Error('connection refused')), false, 'not an answer of containerd');
});

test('a pull is tried again while the snapshotter is unreachable, and goes through once it is reached', async () => {
  let calls = 0;
  const retries: number[] = [];
  const c = clock();
  const ref = await pullWhileReachable(async () => {
    calls++;
    if (calls <= 2) throw UNREACHABLE;
    return 'sha256:image';
  }, { ...c, onRetry: (n) => retries.push(n) });
  assert.equal(ref, 'sha256:image');
  assert.equal(calls, 3);
  assert.deepEqual(retries, [1, 2]);
});

test('it gives up after the wait with containerd\'s error, and any other failure ends it at once', async () => {
  let calls = 0;
  const c = clock();
  await assert.rejects(pullWhileReachable(async () => { calls++; throw UNREACHABLE; }, { ...c, waitMs: 10_000, retryMs: 500 }), (e) => e === UNREACHABLE);
  assert.equal(calls, 21, 'tried at 0, 0.5 ... 10 s');
  assert.equal(c.now(), 10_000);
  const notFound = serviceError(5, 'not found');
  let once = 0;
  await assert.rejects(pullWhileReachable(async () => { once++; throw notFound; }, clock()), (e) => e === notFound);
  assert.equal(once, 1);
});
