// Passing descriptors between processes that are not parent and child (SCM_RIGHTS over an
// AF_UNIX SOCK_SEQPACKET socket): what a FUSE server in one pod uses to hand its /dev/fuse
// descriptors to the server of the next pod. What arrives must work, arrive close-on-exec, and a
// message with more descriptors than asked for must be refused without leaking any.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  FD_PASS_MAX_FDS, acceptSeqpacket, connectSeqpacket, listenSeqpacket, native, receiveWithFds, sendWithFds,
} from '../../src/sys/native.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A connected pair made the way the handover makes it: listen, connect, accept. */
async function pair(): Promise<{ a: number; b: number; close(): void }> {
  const p = path.join(dir, `s${++n}.sock`);
  const l = listenSeqpacket(p);
  const a = connectSeqpacket(p, 1000);
  const b = await acceptSeqpacket(l, 1000);
  native.closeFd(l);
  fs.unlinkSync(p);
  return { a, b, close: () => { native.closeFd(a); native.closeFd(b); } };
}

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
const target = (fd: number): string => fs.readlinkSync(`/proc/self/fd/${fd}`);
/** O_CLOEXEC as /proc/self/fdinfo shows it (octal flags). */
const cloexec = (fd: number): boolean => {
  const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return m !== null && (Number.parseInt(m[1] as string, 8) & 0o2000000) !== 0;
};

test('descriptors sent with a message arrive open, working and close-on-exec: /dev/null and both ends of a pipe', async () => {
  const { a, b, close } = await pair();
  const null1 = fs.openSync('/dev/null', 'r');
  const null2 = fs.openSync('/dev/null', 'w');
  const [rd, wr] = pipe();
  try {
    await sendWithFds(a, Buffer.from('{"kind":"fds"}'), [null1, null2, rd, wr], 1000);
    const m = await receiveWithFds(b, 1024, FD_PASS_MAX_FDS, 1000);
    assert.notEqual(m, 'closed');
    if (m === 'closed') return;
    assert.equal(m.data.toString(), '{"kind":"fds"}');
    assert.equal(m.fds.length, 4);
    const [n1, n2, r2, w2] = m.fds as [number, number, number, number];
    assert.ok(![null1, null2, rd, wr].includes(n1), 'new descriptor numbers, not the sender\'s');
    assert.equal(target(n1), '/dev/null');
    assert.equal(target(n2), '/dev/null');
    for (const fd of m.fds) assert.ok(cloexec(fd), `received descriptor ${fd} is close-on-exec`);
    // The received write end feeds the original read end, and the original write end the received read end.
    fs.writeSync(w2, 'through the copy');
    const buf = Buffer.alloc(64);
    assert.equal(buf.subarray(0, fs.readSync(rd, buf)).toString(), 'through the copy');
    fs.writeSync(wr, 'back');
    assert.equal(buf.subarray(0, fs.readSync(r2, buf)).toString(), 'back');
    assert.equal(fs.writeSync(n2, 'x'), 1, '/dev/null takes writes');
    for (const fd of m.fds) fs.closeSync(fd);
  } finally {
    for (const fd of [null1, null2, rd, wr]) fs.closeSync(fd);
    close();
  }
});

test('250 descriptors go in one message; 251 are refused before anything is sent', async () => {
  const { a, b, close } = await pair();
  const fd = fs.openSync('/dev/null', 'r');
  try {
    const many = new Array<number>(FD_PASS_MAX_FDS).fill(fd);
    await sendWithFds(a, Buffer.from('x'), many, 1000);
    const m = await receiveWithFds(b, 16, FD_PASS_MAX_FDS, 1000);
    if (m === 'closed') throw new Error('the peer closed instead of sending');
    assert.equal(m.fds.length, FD_PASS_MAX_FDS);
    for (const f of m.fds) fs.closeSync(f);
    await assert.rejects(sendWithFds(a, Buffer.from('x'), [...many, fd], 1000), RangeError);
    assert.throws(() => native.fdSend(a, Buffer.from('x'), [...many, fd], 1000), TypeError);
    assert.throws(() => native.fdSend(a, Buffer.from('x'), [-1], 1000), TypeError);
    assert.throws(() => native.fdSend(a, Buffer.alloc(0), [], 1000), TypeError);
    // Nothing of the refused sends arrived.
    await assert.rejects(receiveWithFds(b, 16, FD_PASS_MAX_FDS, 50), { code: 'ETIMEDOUT' });
  } finally {
    fs.closeSync(fd);
    close();
  }
});

test('a message with more descriptors than the receiver takes is refused, and the descriptors it brought are closed', async () => {
  const { a, b, close } = await pair();
  const fd = fs.openSync('/dev/null', 'r');
  try {
    await sendWithFds(a, Buffer.from('three'), [fd, fd, fd], 1000);
    const before = openFds();
    await assert.rejects(receiveWithFds(b, 16, 2, 1000), { code: 'ETOOMANYREFS' });
    assert.equal(openFds(), before, 'no received descriptor is left open');
    // A message longer than the receiver takes is refused the same way.
    await sendWithFds(a, Buffer.from('a long message'), [fd], 1000);
    await assert.rejects(receiveWithFds(b, 4, 2, 1000), { code: 'EMSGSIZE' });
    assert.equal(openFds(), before, 'no received descriptor is left open');
  } finally {
    fs.closeSync(fd);
    close();
  }
});

test('a peer that closes its end is seen as closed, one that says nothing as a timeout', async () => {
  const { a, b } = await pair();
  try {
    await assert.rejects(receiveWithFds(b, 16, 0, 60), { code: 'ETIMEDOUT' });
    native.closeFd(a);
    assert.equal(await receiveWithFds(b, 16, 0, 1000), 'closed');
    await assert.rejects(sendWithFds(b, Buffer.from('x'), [], 1000), { code: 'EPIPE' });
  } finally {
    native.closeFd(b);
  }
});

test('a socket path longer than a unix address holds, or one nobody listens on, is a clear error', async () => {
  assert.throws(() => listenSeqpacket(path.join(dir, 'x'.repeat(120))), { code: 'ENAMETOOLONG' });
  assert.throws(() => connectSeqpacket(path.join(dir, 'nobody.sock'), 100), { code: 'ENOENT' });
  const l = listenSeqpacket(path.join(dir, 'idle.sock'));
  try {
    await assert.rejects(acceptSeqpacket(l, 60), { code: 'ETIMEDOUT' });
  } finally {
    native.closeFd(l);
  }
});

/** A pipe's two ends as plain descriptors. */
function pipe(): [number, number] {
  // Node has no pipe(2) for plain descriptors; a FIFO opened both ways is the same kernel pipe.
  const fifo = path.join(dir, `fifo${++n}`);
  execFileSync('mkfifo', [fifo]);
  return [fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), fs.openSync(fifo, fs.constants.O_WRONLY)];
}
