// Malformed FUSE requests on a raw connection: a layer served (serveLayer, as a mount is) on one
// end of a SOCK_SEQPACKET pair, which keeps message boundaries as /dev/fuse does, and the FUSE
// protocol spoken byte for byte on the other end by this test. Whatever arrives, the server
// answers what needs an answer with the right errno and the request's unique, answers nothing
// for what the kernel expects no answer to, logs what is malformed, keeps its node table
// exact, and goes on serving good requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { E } from '../../src/fuse/kernel/errno.js';
import { ATTR_SIZE, InitFlag, InitFlag2, Op } from '../../src/fuse/kernel/protocol.js';
import { finishServed, serveLayer, type Served } from '../../src/fuse/mounts/served.js';
import { openLayerRoot } from '../../src/fuse/store-access.js';
import { native } from '../../src/sys/native.js';
import { LogCapture } from '../helpers/log-capture.js';
import { Scope } from '../helpers/scope.js';

const IN_HEADER = 40;
const OUT_HEADER = 16;
const ROOT = 1n;
const FILE_TEXT = 'a file of the layer\n';
const HANG_MS = 20_000;

/** Lets the event loop run (the server reads and answers there): at once at first, then gently. */
function turn(turns: number): Promise<void> {
  return new Promise<void>((resolve) => (turns < 1000 ? setImmediate(resolve) : setTimeout(resolve, 1)));
}

interface Reply {
  len: number;
  /** -errno, or 0. */
  error: number;
  unique: bigint;
  body: Buffer;
}

/** A request as include/uapi/linux/fuse.h lays it out; `len` may lie about its size. */
function request(opcode: number, unique: bigint, nodeid: bigint, body: Buffer = Buffer.alloc(0), len?: number): Buffer {
  const h = Buffer.alloc(IN_HEADER);
  h.writeUInt32LE(len ?? IN_HEADER + body.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(unique, 8);
  h.writeBigUInt64LE(nodeid, 16);
  // uid, gid, pid, total_extlen, padding: zero (root, as the kernel sends for root's requests).
  return Buffer.concat([h, body]);
}

const cstr = (s: string | Buffer): Buffer => Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'latin1') : s, Buffer.from([0])]);

function initBody(major: number, minor: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(major, 0);
  b.writeUInt32LE(minor, 4);
  b.writeUInt32LE(128 * 1024, 8);
  b.writeUInt32LE((InitFlag.ASYNC_READ | InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO | InitFlag.PARALLEL_DIROPS
    | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS | InitFlag.NO_OPENDIR_SUPPORT | InitFlag.NO_OPEN_SUPPORT | InitFlag.INIT_EXT) >>> 0, 12);
  // Passthrough is offered; the tuning turns it down (a socket cannot register backing files).
  b.writeUInt32LE(InitFlag2.PASSTHROUGH | InitFlag2.HAS_RESEND, 16);
  return b;
}

const getattrBody = (): Buffer => Buffer.alloc(16);
function readBody(fh: bigint, offset: bigint, size: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(fh, 0);
  b.writeBigUInt64LE(offset, 8);
  b.writeUInt32LE(size, 16);
  return b;
}
function forgetBody(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n, 0);
  return b;
}
function batchForgetBody(claimed: number, entries: readonly (readonly [bigint, bigint])[]): Buffer {
  const b = Buffer.alloc(8 + 16 * entries.length);
  b.writeUInt32LE(claimed, 0);
  entries.forEach(([id, n], i) => {
    b.writeBigUInt64LE(id, 8 + 16 * i);
    b.writeBigUInt64LE(n, 16 + 16 * i);
  });
  return b;
}
function getxattrBody(size: number, name: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return Buffer.concat([b, name]);
}

/** The test's end of a pair: one request per write, one reply per read. */
class Wire {
  private readonly buf = Buffer.alloc(2 * 1024 * 1024);
  private nextUnique = 0x1000n;

  constructor(readonly fd: number) {
    // Replies are written on this process's event loop: a blocking read here would wait forever.
    assert.equal(native.setBlocking(fd, false), 0);
  }

  /** A fresh unique with bits set in both halves, so that an echo of 32 bits only would show. */
  unique(): bigint {
    this.nextUnique += 2n;
    return (0xa5n << 56n) | this.nextUnique;
  }

  send(msg: Buffer): void {
    assert.equal(fs.writeSync(this.fd, msg), msg.length, 'one message, whole');
  }

  /** The next reply; the event loop runs until it is there (the server answers on it). */
  async reply(): Promise<Reply> {
    const started = Date.now();
    for (let turns = 0; ; turns++) {
      const r = this.tryRead();
      if (r) return r;
      // Not a timing assertion: a reply that has not come in this long never will.
      if (Date.now() - started > HANG_MS) throw new Error('no reply came: the server left a request unanswered');
      await turn(turns);
    }
  }

  /** A reply if one is waiting now. */
  tryRead(): Reply | undefined {
    let n: number;
    try {
      n = fs.readSync(this.fd, this.buf, 0, this.buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined;
      throw err;
    }
    assert.ok(n >= OUT_HEADER, `a reply of ${n} bytes is shorter than its header`);
    const r: Reply = { len: this.buf.readUInt32LE(0), error: this.buf.readInt32LE(4), unique: this.buf.readBigUInt64LE(8), body: Buffer.from(this.buf.subarray(OUT_HEADER, n)) };
    assert.equal(r.len, n, 'the reply\'s header says its own length');
    return r;
  }

  /** Sends a request and returns its reply, checked to echo the request's unique. */
  async ask(opcode: number, nodeid: bigint, body?: Buffer, len?: number): Promise<Reply> {
    const u = this.unique();
    this.send(request(opcode, u, nodeid, body, len));
    const r = await this.reply();
    assert.equal(r.unique.toString(16), u.toString(16), `the reply to opcode ${opcode} echoes its unique`);
    return r;
  }

  /** Asks, and expects an error reply with no body. */
  async refused(errno: number, opcode: number, nodeid: bigint, body?: Buffer, len?: number): Promise<void> {
    const r = await this.ask(opcode, nodeid, body, len);
    assert.equal(r.error, -errno, `opcode ${opcode}: errno ${-r.error}, expected ${errno}`);
    assert.equal(r.len, OUT_HEADER, 'an error reply has no body');
  }

  /**
   * Sends a message that must get no reply: a request answered at once from memory (GETATTR of
   * the root) follows it, and the next reply must be that one's. The channel reads requests in
   * order, so a reply to the first would come before it.
   */
  async noReply(msg: Buffer): Promise<void> {
    this.send(msg);
    const u = this.unique();
    this.send(request(Op.GETATTR, u, ROOT, getattrBody()));
    const r = await this.reply();
    assert.equal(r.unique.toString(16), u.toString(16), 'no reply came to the message before');
    assert.equal(r.error, 0);
  }
}

interface Entry { nodeid: bigint; attr: Buffer }

function entryOf(r: Reply): Entry {
  assert.equal(r.error, 0, `an entry, not errno ${-r.error}`);
  assert.equal(r.body.length, 40 + ATTR_SIZE, 'fuse_entry_out');
  return { nodeid: r.body.readBigUInt64LE(0), attr: r.body.subarray(40, 40 + ATTR_SIZE) };
}

let scope: Scope;
let layer = '';
let mounter: FuseLayerMounter;
const log = new LogCapture();

/** A layer served on one end of a fresh pair; the test holds the other. */
async function servePair(): Promise<{ served: Served; wire: Wire; started: Promise<void>; close: () => void }> {
  const [ours, theirs] = native.seqpacketPair();
  const root = await openLayerRoot({ trusted: '/', relative: layer.slice(1) });
  const served = serveLayer(mounter.serveContext, {
    devFd: ours, rootFd: root.fd, rootInfo: root.root, location: { trusted: '/', relative: layer.slice(1) }, mountpoint: '/nowhere', log: log.logger,
  });
  const started = served.channel.start(true);
  // A refused INIT rejects it; the tests that cause that await it themselves.
  started.catch(() => undefined);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    // Stopped before the ends close: a socket whose peer is gone reads as end-of-file forever.
    finishServed(served);
    fs.closeSync(theirs);
  };
  scope.defer('close a FUSE pair', async () => close());
  return { served, wire: new Wire(theirs), started, close };
}

let main: Awaited<ReturnType<typeof servePair>>;
let wire: Wire;

before(async () => {
  scope = await Scope.create('fuse-malformed');
  layer = await scope.mkdir('layer');
  fs.writeFileSync(path.join(layer, 'file'), FILE_TEXT);
  fs.mkdirSync(path.join(layer, 'dir'));
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(layer, 'dir', `entry-${'x'.repeat(100)}-${i}`), `${i}\n`);
  fs.mkdirSync(path.join(layer, 'big-ask'));
  fs.writeFileSync(path.join(layer, 'big-ask', 'entry-0'), 'big\n');
  for (const n of ['counted', 'undelivered', 'batch']) fs.writeFileSync(path.join(layer, n), `${n}\n`);
  // No listing of subdirectories ahead of time, so a READDIR can be made to reach the store.
  mounter = new FuseLayerMounter({ log: log.logger, tuning: { passthrough: false, prefetchEntries: 0 } });
  main = await servePair();
  wire = main.wire;
});

after(() => scope.teardown());

test('a good INIT is answered with the protocol version and no flag that was not offered', async () => {
  const u = wire.unique();
  const offer = initBody(7, 41);
  wire.send(request(Op.INIT, u, 0n, offer));
  const r = await wire.reply();
  assert.equal(r.unique, u);
  assert.equal(r.error, 0);
  assert.equal(r.body.length, 64, 'fuse_init_out of 7.23 and later');
  assert.deepEqual([r.body.readUInt32LE(0), r.body.readUInt32LE(4)], [7, 41]);
  const flags = r.body.readUInt32LE(12);
  const offered = offer.readUInt32LE(12);
  assert.equal(flags & ~offered, 0, 'asks for nothing the kernel did not offer');
  assert.ok(flags & InitFlag.INIT_EXT, 'flags2 is in use');
  assert.ok(flags & InitFlag.NO_OPEN_SUPPORT, 'zero-message opens without passthrough');
  assert.equal(r.body.readUInt32LE(32) & InitFlag2.PASSTHROUGH, 0, 'passthrough turned down as tuned');
  await main.started;
});

test('a message shorter than a request header gets no reply, is logged, and the channel goes on', async () => {
  const mark = log.mark();
  await wire.noReply(Buffer.alloc(20, 0xff));
  await wire.noReply(Buffer.alloc(1));
  assert.equal(log.since(mark, /short FUSE request/).length, 2);
});

test('a header whose length is not the bytes that came is answered EIO', async () => {
  const mark = log.mark();
  await wire.refused(E.EIO, Op.GETATTR, ROOT, getattrBody(), IN_HEADER + 16 + 8);
  await wire.refused(E.EIO, Op.GETATTR, ROOT, getattrBody(), IN_HEADER + 8);
  await wire.refused(E.EIO, Op.GETATTR, ROOT, getattrBody(), 0);
  await wire.refused(E.EIO, Op.LOOKUP, ROOT, cstr('file'), 0xffffffff);
  // Longer than the server's reading buffer: the socket gives it cut short, as a device would not.
  await wire.refused(E.EIO, Op.LOOKUP, ROOT, cstr('y'.repeat(64 * 1024)));
  assert.equal(log.since(mark, /^malformed FUSE request: its header says/).length, 5);
});

test('an unknown opcode is answered ENOSYS', async () => {
  for (const op of [0, 7, 4242, 0xffffffff]) await wire.refused(E.ENOSYS, op, ROOT);
});

test('a LOOKUP whose name has no NUL is answered EINVAL and logged', async () => {
  const mark = log.mark();
  await wire.refused(E.EINVAL, Op.LOOKUP, ROOT, Buffer.from('file'));
  await wire.refused(E.EINVAL, Op.LOOKUP, ROOT);
  assert.equal(log.since(mark, /^malformed FUSE request: lookup has no NUL-terminated name/).length, 2);
});

test('a GETXATTR shorter than its fixed part, or without a NUL-terminated name, is answered EINVAL', async () => {
  const mark = log.mark();
  await wire.refused(E.EINVAL, Op.GETXATTR, ROOT, Buffer.alloc(4));
  await wire.refused(E.EINVAL, Op.GETXATTR, ROOT, Buffer.alloc(8));
  await wire.refused(E.EINVAL, Op.GETXATTR, ROOT, getxattrBody(100, Buffer.from('user.x')));
  // The NUL must be in the name, not in the fixed part before it.
  await wire.refused(E.EINVAL, Op.GETXATTR, ROOT, Buffer.concat([Buffer.alloc(8), Buffer.from('user.x')]));
  assert.equal(log.since(mark, /^malformed FUSE request: getxattr/).length, 4);
  // Control: a well-formed one is answered (the root has no such xattr).
  await wire.refused(E.ENODATA, Op.GETXATTR, ROOT, getxattrBody(100, cstr('user.none')));
});

test('a READ shorter than 40 bytes is answered EINVAL', async () => {
  await wire.refused(E.EINVAL, Op.READ, ROOT, Buffer.alloc(24));
  await wire.refused(E.EINVAL, Op.READ, ROOT, Buffer.alloc(39));
});

test('every other fixed-size request shorter than its fixed part is answered EINVAL, and forgets get no reply', async () => {
  for (const op of [Op.GETATTR, Op.OPEN, Op.RELEASE, Op.READDIR, Op.READDIRPLUS, Op.LISTXATTR, Op.RELEASEDIR, Op.LSEEK, Op.STATX]) {
    await wire.refused(E.EINVAL, op, ROOT, Buffer.alloc(4));
  }
  const mark = log.mark();
  await wire.noReply(request(Op.FORGET, wire.unique(), ROOT, Buffer.alloc(4)));
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, Buffer.alloc(4)));
  await wire.noReply(request(Op.INTERRUPT, wire.unique(), 0n, Buffer.alloc(4)));
  assert.equal(log.since(mark, /^malformed FUSE request: (forget|batch_forget|interrupt) needs/).length, 3);
});

test('a BATCH_FORGET that claims more entries than it carries gets no reply, is logged, and forgets what it carries', async () => {
  const before = main.served.bridge.nodes.size;
  const e = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('batch')));
  assert.equal(main.served.bridge.nodes.size, before + 1);
  const mark = log.mark();
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, batchForgetBody(1_000_000, [[e.nodeid, 1n]])));
  assert.equal(log.since(mark, /malformed BATCH_FORGET/).length, 1);
  assert.equal(main.served.bridge.nodes.size, before, 'the entry it did carry was forgotten');
  await wire.refused(E.ESTALE, Op.GETATTR, e.nodeid, getattrBody());
  // A count of 2^32 - 1 with no entries at all.
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, batchForgetBody(0xffffffff, [])));
});

test('a FORGET of an unknown node, or of the root, gets no reply and changes nothing', async () => {
  const before = main.served.bridge.nodes.size;
  await wire.noReply(request(Op.FORGET, wire.unique(), 987654321n, forgetBody(1n)));
  await wire.noReply(request(Op.FORGET, wire.unique(), ROOT, forgetBody(1000n)));
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, batchForgetBody(2, [[ROOT, 5n], [123456789n, 1n]])));
  assert.equal(main.served.bridge.nodes.size, before);
  const r = await wire.ask(Op.GETATTR, ROOT, getattrBody());
  assert.equal(r.error, 0, 'the root is still there');
});

test('an INTERRUPT of a request that is not waiting gets no reply', async () => {
  await wire.noReply(request(Op.INTERRUPT, wire.unique(), 0n, forgetBody(0xdeadbeefn)));
});

test('a second INIT is answered EIO', async () => {
  await wire.refused(E.EIO, Op.INIT, 0n, initBody(7, 41));
});

test('a LOOKUP of a name longer than 255 bytes is answered ENAMETOOLONG', async () => {
  await wire.refused(E.ENAMETOOLONG, Op.LOOKUP, ROOT, cstr('n'.repeat(256)));
  await wire.refused(E.ENAMETOOLONG, Op.LOOKUP, ROOT, cstr('n'.repeat(4000)));
  // 255 bytes is a name: absent, so a negative entry.
  const r = await wire.ask(Op.LOOKUP, ROOT, cstr('n'.repeat(255)));
  assert.equal(entryOf(r).nodeid, 0n);
});

test('LOOKUPs of ".", "..", "" and a name with a slash are answered EINVAL', async () => {
  for (const name of ['.', '..', '', 'dir/..', '../file', '/file']) await wire.refused(E.EINVAL, Op.LOOKUP, ROOT, cstr(name));
});

test('requests on a node id nobody was given are answered ESTALE', async () => {
  for (const id of [0n, 2n, 999_999n, 0xffffffffffffffffn]) {
    await wire.refused(E.ESTALE, Op.LOOKUP, id, cstr('file'));
    await wire.refused(E.ESTALE, Op.GETATTR, id, getattrBody());
    await wire.refused(E.ESTALE, Op.READ, id, readBody(0n, 0n, 4096));
  }
});

test('a READDIRPLUS asking for more than any reply can carry is answered, listed from the store or from memory', async () => {
  const d = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('big-ask')));
  const nodes = main.served.bridge.nodes.size;
  for (const why of ['the listing comes from the store', 'the listing is cached']) {
    const r = await wire.ask(Op.READDIRPLUS, d.nodeid, readBody(0n, 0n, 0xffffffff));
    assert.equal(r.error, 0, `${why}: errno ${-r.error}`);
    assert.ok(r.body.includes(Buffer.from('entry-0')), `${why}: entries are listed`);
  }
  // Each listing handed out its one entry: give them back with the directory.
  const entry = main.served.bridge.nodes.root.kids?.get('big-ask')?.kids?.get('entry-0');
  assert.ok(entry);
  assert.equal(main.served.bridge.nodes.size, nodes + 1);
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, batchForgetBody(2, [[BigInt(entry.id), 2n], [d.nodeid, 1n]])));
});

test('after all that, LOOKUP answers an entry, GETATTR the same attributes, and READ the file', async () => {
  const st = fs.statSync(path.join(layer, 'file'));
  const e = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('file')));
  assert.ok(e.nodeid > ROOT, `a node id: ${e.nodeid}`);
  assert.equal(e.attr.readBigUInt64LE(0), BigInt(st.ino), 'the store\'s inode number');
  assert.equal(e.attr.readBigUInt64LE(8), BigInt(FILE_TEXT.length), 'its size');
  assert.equal(e.attr.readUInt32LE(60), st.mode, 'its mode');
  const a = await wire.ask(Op.GETATTR, e.nodeid, getattrBody());
  assert.equal(a.error, 0);
  assert.equal(a.body.length, 16 + ATTR_SIZE, 'fuse_attr_out');
  assert.deepEqual(a.body.subarray(16), e.attr, 'the same attributes');
  const data = await wire.ask(Op.READ, e.nodeid, readBody(0n, 0n, 4096));
  assert.equal(data.error, 0);
  assert.equal(data.body.toString(), FILE_TEXT);
  const missing = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('missing')));
  assert.equal(missing.nodeid, 0n, 'an absent name is a negative entry');
  await wire.noReply(request(Op.FORGET, wire.unique(), e.nodeid, forgetBody(1n)));
});

test('LOOKUPs followed by FORGETs of the same count leave no node behind', async () => {
  const nodes = main.served.bridge.nodes;
  const before = nodes.size;
  const ids = new Set<bigint>();
  for (let i = 0; i < 3; i++) ids.add(entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('counted'))).nodeid);
  assert.equal(ids.size, 1, 'one node, looked up three times');
  const [id] = [...ids] as [bigint];
  assert.equal(nodes.size, before + 1);
  assert.equal(nodes.get(Number(id))?.nlookup, 3);
  await wire.noReply(request(Op.FORGET, wire.unique(), id, forgetBody(2n)));
  assert.equal(nodes.get(Number(id))?.nlookup, 1, 'two of three forgotten');
  await wire.noReply(request(Op.FORGET, wire.unique(), id, forgetBody(1n)));
  assert.equal(nodes.size, before, 'the last one forgotten: the node is gone');
  await wire.refused(E.ESTALE, Op.GETATTR, id, getattrBody());
  // READDIRPLUS hands out a reference per entry, which a BATCH_FORGET gives back.
  const dir = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('dir')));
  const listed = await wire.ask(Op.READDIRPLUS, dir.nodeid, readBody(0n, 0n, 64 * 1024));
  assert.equal(listed.error, 0);
  const handed: bigint[] = [];
  for (let at = 0; at < listed.body.length;) {
    const nodeid = listed.body.readBigUInt64LE(at);
    const nameLen = listed.body.readUInt32LE(at + 40 + ATTR_SIZE + 16);
    if (nodeid !== 0n) handed.push(nodeid);
    at += (40 + ATTR_SIZE + 24 + nameLen + 7) & ~7;
  }
  assert.equal(handed.length, 40, 'every entry but the dots carries a node');
  assert.equal(nodes.size, before + 1 + 40);
  await wire.noReply(request(Op.BATCH_FORGET, wire.unique(), 0n, batchForgetBody(41, [...handed.map((h) => [h, 1n] as const), [dir.nodeid, 1n]])));
  assert.equal(nodes.size, before, 'every node handed out was given back');
});

test('a LOOKUP whose reply cannot be delivered leaves no node behind', async () => {
  const nodes = main.served.bridge.nodes;
  const before = nodes.size;
  // Replies are left unread until the socket refuses the next one (EAGAIN: its buffer is full).
  const mark = log.mark();
  const refusedWrites = (): number => log.since(mark, /writing a FUSE reply failed/).length;
  let flood = 0;
  while (refusedWrites() === 0) {
    assert.ok(flood < 100_000, 'the socket never refused a reply');
    wire.send(request(Op.GETATTR, wire.unique(), ROOT, getattrBody()));
    flood++;
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const u = wire.unique();
  wire.send(request(Op.LOOKUP, u, ROOT, cstr('undelivered')));
  const sent = Date.now();
  for (let turns = 0; !log.since(mark, /writing a FUSE reply failed/).some((r) => r.op === 'lookup'); turns++) {
    assert.ok(Date.now() - sent < HANG_MS, 'the LOOKUP was never answered');
    await turn(turns);
  }
  assert.equal(nodes.size, before, 'the node of the reply that did not arrive was taken back');
  assert.equal(nodes.root.kids?.get('undelivered'), undefined);
  // Everything that was delivered is read now; the LOOKUP's reply is not among it.
  const got: Reply[] = [];
  for (let r = wire.tryRead(); r; r = wire.tryRead()) got.push(r);
  assert.ok(got.length > 0 && got.length < flood, `${got.length} of ${flood} replies delivered`);
  assert.ok(!got.some((r) => r.unique === u), 'the LOOKUP\'s reply was not delivered');
  // The name is there to be looked up again.
  const e = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('undelivered')));
  assert.equal(nodes.get(Number(e.nodeid))?.nlookup, 1);
  await wire.noReply(request(Op.FORGET, wire.unique(), e.nodeid, forgetBody(1n)));
  assert.equal(nodes.size, before);
});

test('on a fresh connection: a request before INIT is answered EIO, an INIT older than 7.23 EPROTO', async () => {
  const fresh = await servePair();
  try {
    const mark = log.mark();
    await fresh.wire.refused(E.EIO, Op.GETATTR, ROOT, getattrBody());
    await fresh.wire.refused(E.EIO, Op.LOOKUP, ROOT, cstr('file'));
    assert.equal(log.since(mark, /^malformed FUSE request: (getattr|lookup) before INIT/).length, 2);
    await fresh.wire.refused(E.EPROTO, Op.INIT, 0n, initBody(7, 22));
    await assert.rejects(fresh.started, /7\.22 is too old/);
    await fresh.wire.refused(E.EPROTO, Op.INIT, 0n, initBody(6, 41));
    // Still no INIT in force: nothing is served.
    await fresh.wire.refused(E.EIO, Op.GETATTR, ROOT, getattrBody());
    assert.equal(fresh.served.bridge.nodes.size, 1);
  } finally {
    fresh.close();
  }
});

test('the main connection still serves after everything, and closes cleanly', async () => {
  const e = entryOf(await wire.ask(Op.LOOKUP, ROOT, cstr('file')));
  assert.equal((await wire.ask(Op.READ, e.nodeid, readBody(0n, 0n, 4096))).body.toString(), FILE_TEXT);
  await wire.noReply(request(Op.FORGET, wire.unique(), e.nodeid, forgetBody(1n)));
  assert.equal(main.served.channel.pending, 0, 'no request is left unanswered');
  assert.equal(log.records.filter((r) => /threw/.test(String(r.msg))).length, 0, 'no handler threw');
  main.close();
  await main.served.channel.quiesced();
});
