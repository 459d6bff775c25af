// Bad input over the real socket: each case gets the right gRPC code and a message that names
// the key, and the daemon keeps serving afterwards.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { Scope } from '../helpers/scope.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { METHODS, RawSnapshotsClient } from '../helpers/fuzz/raw-client.js';

let scope: Scope;
let daemon: Daemon;
let c: SnapshotsClient;

before(async () => {
  scope = await Scope.create('grpc');
  daemon = await startDaemon(scope);
  c = new SnapshotsClient(daemon.socket);
});
after(async () => {
  c?.close();
  await scope?.teardown();
});

async function refused(p: Promise<unknown>, code: status, ...mentions: string[]): Promise<void> {
  await assert.rejects(p, (e: { code: number; details: string }) => {
    assert.equal(status[e.code], status[code], `got ${status[e.code]}: ${e.details}`);
    for (const m of mentions) assert.ok(e.details.includes(m), `"${e.details}" should mention ${m}`);
    return true;
  });
}

test('an unknown key is NotFound for every call that takes a key', async () => {
  const key = 'ns/1/no such snapshot';
  await refused(c.stat(key), status.NOT_FOUND, key);
  await refused(c.mounts(key), status.NOT_FOUND, key);
  await refused(c.usage(key), status.NOT_FOUND, key);
  await refused(c.remove(key), status.NOT_FOUND, key);
  await refused(c.commit('ns/1/name', key), status.NOT_FOUND, key);
  await refused(c.update({ name: key, labels: { a: 'b' } }), status.NOT_FOUND, key);
});

test('a missing parent is NotFound and names parent and key', async () => {
  await refused(c.prepare('ns/2/child', 'ns/2/no-parent'), status.NOT_FOUND, 'ns/2/no-parent', 'ns/2/child');
  await refused(c.stat('ns/2/child'), status.NOT_FOUND);
});

test('a parent that is still active is InvalidArgument', async () => {
  await c.prepare('ns/3/active parent');
  await refused(c.prepare('ns/3/child', 'ns/3/active parent'), status.INVALID_ARGUMENT, 'ns/3/active parent', 'not committed');
});

test('a duplicate key is AlreadyExists, for Prepare, View and Commit', async () => {
  await c.prepare('ns/4/dup');
  await refused(c.prepare('ns/4/dup'), status.ALREADY_EXISTS, 'ns/4/dup');
  await refused(c.view('ns/4/dup'), status.ALREADY_EXISTS, 'ns/4/dup');
  await c.prepare('ns/4/other');
  await refused(c.commit('ns/4/dup', 'ns/4/other'), status.ALREADY_EXISTS, 'ns/4/dup');
});

test('committing a view, or a committed snapshot, is FailedPrecondition', async () => {
  await c.prepare('ns/5/a');
  await c.commit('ns/5/base', 'ns/5/a');
  await c.view('ns/5/view', 'ns/5/base');
  await refused(c.commit('ns/5/x', 'ns/5/view'), status.FAILED_PRECONDITION, 'ns/5/view', 'not active');
  await refused(c.commit('ns/5/y', 'ns/5/base'), status.FAILED_PRECONDITION, 'ns/5/base');
  await refused(c.mounts('ns/5/base'), status.FAILED_PRECONDITION, 'ns/5/base');
  await refused(c.remove('ns/5/base'), status.FAILED_PRECONDITION, 'ns/5/base', 'children');
});

test('labels over 4 KiB are InvalidArgument and name the label and the key', async () => {
  const big = { 'containerd.io/huge': 'x'.repeat(4096) };
  await refused(c.prepare('ns/6/big', '', big), status.INVALID_ARGUMENT, 'containerd.io/huge', 'ns/6/big');
  await refused(c.stat('ns/6/big'), status.NOT_FOUND);
  await c.prepare('ns/6/ok');
  await refused(c.commit('ns/6/committed', 'ns/6/ok', big), status.INVALID_ARGUMENT, 'containerd.io/huge');
  await refused(c.update({ name: 'ns/6/ok', labels: big }), status.INVALID_ARGUMENT, 'containerd.io/huge');
});

test('a bad Update field path, an empty key, a NUL in a key and a bad filter are InvalidArgument', async () => {
  await c.prepare('ns/7/u');
  await refused(c.update({ name: 'ns/7/u', parent: 'x' }, ['parent']), status.INVALID_ARGUMENT, '"parent"', 'ns/7/u');
  await refused(c.prepare(''), status.INVALID_ARGUMENT, 'empty');
  await refused(c.prepare('ns/7/a\0b'), status.INVALID_ARGUMENT, 'NUL');
  await refused(c.list(['labels."unterminated==1']), status.INVALID_ARGUMENT, 'unterminated');
});

test('huge keys, field paths and filters get their code with a short message that still names them', { timeout: 120_000 }, async () => {
  // A message travels in an HTTP/2 trailer; one over the client's limit left the call unanswered.
  const short = async (p: Promise<unknown>, code: status, mention: string): Promise<void> => {
    await assert.rejects(p, (e: { code: number; details: string }) => {
      assert.equal(status[e.code], status[code], e.details.slice(0, 200));
      assert.ok(Buffer.byteLength(e.details) <= 1024, `${Buffer.byteLength(e.details)} bytes of message`);
      assert.ok(e.details.includes(mention), `"${e.details.slice(0, 200)}" should mention ${mention}`);
      return true;
    });
  };
  await c.prepare('ns/9/u');
  await short(c.update({ name: 'ns/9/u', labels: {} }, ['x'.repeat(100_000)]), status.INVALID_ARGUMENT, 'xxxxxxxxxx');
  await short(c.stat('k'.repeat(1 << 20)), status.NOT_FOUND, 'kkkkkkkkkk');
  await short(c.remove('€'.repeat(100_000)), status.NOT_FOUND, '€€€€€€€€€€');
  await short(c.prepare('é'.repeat(5000)), status.INVALID_ARGUMENT, 'longer than 4096 bytes');
  await short(c.list([`labels."${'x'.repeat(100_000)}`]), status.INVALID_ARGUMENT, 'unterminated');
  await short(c.list([`name~=${'(a)'.repeat(20_000)}\\1`]), status.INVALID_ARGUMENT, 'linear time');
  await c.remove('ns/9/u');
});

test('bytes that are not a protobuf message are InvalidArgument for every method, with the decoder\'s reason', async () => {
  const raw = new RawSnapshotsClient(daemon.socket);
  try {
    // A tag without its length; a varint that never ends; one longer than 64 bits. (The decoder
    // forgives much else: strings cut at the end of the buffer, wrong wire types of known fields.)
    for (const hex of ['12', 'ff', 'ffffffffffffffffffffff']) {
      const bytes = Buffer.from(hex, 'hex');
      for (const m of METHODS) {
        const a = await raw.call(m, bytes, 30_000);
        assert.equal(status[a.code], 'INVALID_ARGUMENT', `${m} ${hex}: ${a.details}`);
        assert.match(a.details, new RegExp(`the ${m} request is not a valid protobuf message`));
      }
    }
  } finally {
    raw.close();
  }
});

test('after all of that the daemon still serves, and nothing of the refused calls was kept', async () => {
  assert.equal(daemon.process.running, true);
  await c.prepare('ns/8/fine');
  assert.equal((await c.stat('ns/8/fine')).info.kind, 'ACTIVE');
  const names = (await c.list()).map((i) => i.name).sort();
  assert.deepEqual(names, ['ns/3/active parent', 'ns/4/dup', 'ns/4/other', 'ns/5/base', 'ns/5/view', 'ns/6/ok', 'ns/7/u', 'ns/8/fine']);
});
