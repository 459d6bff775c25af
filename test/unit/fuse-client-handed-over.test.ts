// A daemon's call that a FUSE server refuses because it handed its mounts over (while the call
// waited for that handover to end) is made again, once, on a connection to the server that
// serves now; a refusal of any other kind, or a second "handed over", reaches the caller. The
// servers here are plain unix-socket listeners speaking the control protocol, one after the
// other on the same path, as an old and a new server are at a handover.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';
import { SnapshotterError } from '../../src/errors.js';
import { RemoteLayerMounter } from '../../src/fuse/server/client.js';
import { silentLogger } from '../../src/log.js';

let dir = '';
before(async () => { dir = await mkdtemp(join(tmpdir(), 'cvmfs-client-handover-')); });
after(async () => { await rm(dir, { recursive: true, force: true }); });

interface Req { id: number; method: string; params: Record<string, unknown> }
type Reply = { result: unknown } | { error: { kind: string; message: string }; handedOver?: boolean };

/** A control server answering each request with what answer() gives; records what it was asked. */
async function fakeServer(socket: string, pid: number, answer: (r: Req) => Reply | Promise<Reply>): Promise<{ asked: string[]; stopListening(): Promise<void>; close(): Promise<void> }> {
  const asked: string[] = [];
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    readline.createInterface({ input: c }).on('line', (line) => {
      const r = JSON.parse(line) as Req;
      asked.push(r.method);
      void Promise.resolve(answer(r)).then((a) => reply(c, r, a));
    });
  });
  const reply = (c: net.Socket, r: Req, a: Reply): void => {
      const state = {
        pid, host: 'h', version: 'test', mountsVersion: 1, mountCount: 0, mounts: [],
        counters: { active: 0, mounts: 0, unmounts: 0, lazyUnmounts: 0, passthrough: 0, xattrFree: 0, waitingForStore: 0 },
        cache: { size: 0, bytes: 0, maxBytes: 1, maxEntries: 0, hits: 0, misses: 0, evictions: 0 },
        ...('error' in a && a.handedOver ? { handedOver: true } : {}),
      };
      c.write(`${JSON.stringify('error' in a ? { id: r.id, error: a.error, state } : { id: r.id, result: a.result, state })}\n`);
  };
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  let listening = true;
  const stopListening = (): Promise<void> => new Promise<void>((resolve) => {
    if (!listening) return resolve();
    listening = false;
    server.close(() => resolve());
    // close() calls back once the connections end too: the listener itself is gone at once.
    setImmediate(resolve);
  });
  return {
    asked,
    stopListening,
    close: async () => { for (const c of conns) c.destroy(); await stopListening(); },
  };
}

const HANDED = { error: { kind: 'Unavailable', message: 'this FUSE server handed its mounts over to another one; reconnect' }, handedOver: true };

function client(socket: string): RemoteLayerMounter {
  return new RemoteLayerMounter({ socket, log: silentLogger(), startServer: () => undefined, startTimeoutMs: 5000 });
}

test('a call the old server refuses as handed over is made again on the new server, and succeeds', async () => {
  const socket = join(dir, 'a.sock');
  let next: Awaited<ReturnType<typeof fakeServer>> | undefined;
  let handOver: () => void = () => undefined;
  const handedOver = new Promise<void>((resolve) => { handOver = resolve; });
  // The mount waits for the handover under way; once it is over the old server, which no longer
  // listens, refuses it.
  const old = await fakeServer(socket, 100, async (r) => (r.method === 'mount' ? (await handedOver, HANDED) : { result: {} }));
  const c = client(socket);
  try {
    await c.connect();
    const mounting = c.mount('/s/l', '/r/m');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await old.stopListening();
    next = await fakeServer(socket, 200, () => ({ result: {} }));
    handOver();
    await mounting;
    assert.deepEqual(old.asked, ['hello', 'mount']);
    assert.deepEqual(next.asked, ['mount']);
    assert.equal(c.server?.pid, 200);
  } finally {
    await c.disconnect();
    await old.close();
    await next?.close();
  }
});

test('a second "handed over" on the new connection, and any other Unavailable, reach the caller', async () => {
  const socket = join(dir, 'b.sock');
  const s = await fakeServer(socket, 300, (r) => (r.method === 'mount' ? HANDED : r.method === 'unmount'
    ? { error: { kind: 'Unavailable', message: 'the store does not answer' } } : { result: {} }));
  const c = client(socket);
  try {
    await c.connect();
    await assert.rejects(c.mount('/s/l', '/r/m'), (e: unknown) => e instanceof SnapshotterError && e.kind === 'Unavailable' && /handed its mounts over/.test(e.message));
    assert.deepEqual(s.asked.filter((m) => m === 'mount').length, 2, 'made once more, not again and again');
    await assert.rejects(c.unmount('/r/m'), /the store does not answer/);
    assert.equal(s.asked.filter((m) => m === 'unmount').length, 1, 'another refusal is not made again');
  } finally {
    await c.disconnect();
    await s.close();
  }
});
