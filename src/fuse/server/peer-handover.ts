// Handover between FUSE servers that are not parent and child: on Kubernetes the next server
// runs in the next pod, which shares only the socket directory (a hostPath) with this one. The
// new server (the taker) listens on a private socket beside the control socket and asks the
// running one (the giver), over the control socket, to hand over to it (handoverTo). The giver
// drains as for a child successor, connects, and sends the /dev/fuse descriptors (SCM_RIGHTS,
// FD_PASS_MAX_FDS a message) and the state (node tables, passthrough ids and handles, detached
// mounts, scope). Then, one message each way at a time:
//
//   taker → ready     everything arrived and checked; nothing is read from the kernel yet
//   giver → commit    the giver closed its listener (which removes the socket path)
//   taker → serving   the taker reads every connection and listens on the control socket
//
// Until commit the taker has read nothing, so a giver that gives up (timeout, a refusal) just
// serves again. After commit, a taker that goes away before `serving` closes the socket by
// exiting, and the giver serves again, asking the kernel to resend what the taker had read.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { hostname } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { SnapshotterError, errnoCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  FD_PASS_MAX_BYTES, FD_PASS_MAX_FDS, acceptSeqpacket, connectSeqpacket, listenSeqpacket, native, receiveWithFds, sendWithFds,
} from '../../sys/native.js';
import { isFuseDevice, type HandedMount } from '../mounts/handover.js';
import { checkHandoverState, type HandoverState } from './handover-state.js';
import { dialControlSocket, ForeignSocket } from './socket.js';
import { encodeLine, type ServerScope } from './wire.js';

/** How long each side waits for the other's next message before giving up. */
export const PEER_TIMEOUTS = {
  /** The giver drains first (up to 10 s for requests already read) and then connects. */
  connect: 30_000,
  message: 30_000,
  /** The taker checks every descriptor before it says ready. */
  ready: 60_000,
  /** The taker starts reading and listens before it says serving. */
  serving: 60_000,
};

/** The longest state a giver may send (the taker holds it as one string). */
const MAX_STATE_BYTES = 256 * 1024 * 1024;
const MAX_MOUNTS = 1_000_000;
/** The first byte of a message that carries a piece of the state; every other message is JSON. */
const STATE_TAG = 0x53;
/** The private socket's name: the taker's pid and 8 random hex digits. */
const PEER_SOCKET = /^\.handover-[0-9]{1,10}-[0-9a-f]{8}\.sock$/;

export interface PeerIdentity {
  readonly pid: number;
  readonly host: string;
  readonly version?: string;
}

type Message =
  | { kind: 'begin'; pid: number; host: string; version: string; mounts: number; stateBytes: number }
  | { kind: 'fds'; first: number; count: number }
  | { kind: 'commit' }
  | { kind: 'ready' }
  | { kind: 'refused'; reason: string }
  | { kind: 'serving'; pid: number; host: string };

function encode(m: Message): Buffer {
  return Buffer.from(JSON.stringify(m));
}

function decode(data: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch {
    throw new Error('the peer sent a message that is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { kind?: unknown }).kind !== 'string') {
    throw new Error('the peer sent a message without a kind');
  }
  return v as Record<string, unknown>;
}

function count(v: unknown, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw new Error(`${what} must be a whole number up to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) native.closeFd(fd);
}

/** The next JSON message, which must be of one of the kinds named; a refusal or the end of the connection is an error. */
async function expect(fd: number, kinds: readonly string[], timeoutMs: number, what: string): Promise<Record<string, unknown>> {
  const m = await receiveWithFds(fd, FD_PASS_MAX_BYTES, 0, timeoutMs).catch((err: unknown) => {
    throw new Error(`${what}: ${(err as Error).message}`);
  });
  if (m === 'closed') throw new PeerGone(`${what}: the other FUSE server closed the connection (it exited or gave up)`);
  const v = decode(m.data);
  if (v.kind === 'refused') throw new Error(`the other FUSE server refused the handover: ${String(v.reason).slice(0, 500)}`);
  if (!kinds.includes(v.kind as string)) throw new Error(`${what}: expected ${kinds.join(' or ')}, got ${JSON.stringify(v.kind)}`);
  return v;
}

/** The other side closed the connection: it is gone, or gave up on purpose. */
export class PeerGone extends Error {}

// ---- the giver ----------------------------------------------------------------------------------

/**
 * Checks the socket a taker named: a socket of our own user, with the name takers give theirs,
 * in the directory of our control socket (the directory both pods share, private to root).
 */
export function checkPeerSocket(socket: string, controlSocket: string): void {
  if (path.dirname(socket) !== path.resolve(path.dirname(controlSocket)) || !PEER_SOCKET.test(path.basename(socket))) {
    throw new SnapshotterError('InvalidArgument', `handoverTo: socket ${JSON.stringify(socket.slice(0, 300))} is not a handover socket `
      + `(.handover-<pid>-<8 hex>.sock) in ${path.dirname(controlSocket)}, the control socket's directory`);
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch (err) {
    throw new SnapshotterError('InvalidArgument', `handoverTo: socket ${socket}: ${(err as Error).message}`);
  }
  const uid = process.geteuid?.();
  if (!st.isSocket() || (uid !== undefined && st.uid !== uid)) {
    throw new SnapshotterError('InvalidArgument', `handoverTo: ${socket} is not a socket of uid ${uid ?? '?'}; refusing to send it descriptors`);
  }
}

/** The giver's side of one handover, once its mounts are drained. */
export class PeerGiver {
  private fd = -1;
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  /** Connects to the taker and sends every descriptor and the state; resolves once the taker says ready. */
  async send(socket: string, handed: readonly HandedMount[], scope: ServerScope | undefined, version: string): Promise<void> {
    this.fd = connectSeqpacket(socket, 5000);
    // The taker finds mount i's descriptor as the i-th it receives.
    const state: HandoverState = { mounts: handed.map((m, i) => ({ ...m, fd: i })), ...(scope ? { scope } : {}) };
    const bytes = Buffer.from(JSON.stringify(state));
    if (bytes.length > MAX_STATE_BYTES) throw new Error(`the handover state is ${bytes.length} bytes, more than the ${MAX_STATE_BYTES} a taker accepts`);
    await sendWithFds(this.fd, encode({ kind: 'begin', pid: process.pid, host: hostname(), version, mounts: handed.length, stateBytes: bytes.length }), [], PEER_TIMEOUTS.message);
    for (let first = 0; first < handed.length; first += FD_PASS_MAX_FDS) {
      const fds = handed.slice(first, first + FD_PASS_MAX_FDS).map((m) => m.fd);
      await sendWithFds(this.fd, encode({ kind: 'fds', first, count: fds.length }), fds, PEER_TIMEOUTS.message);
    }
    const piece = FD_PASS_MAX_BYTES - 1;
    for (let at = 0; at < bytes.length; at += piece) {
      const chunk = bytes.subarray(at, at + piece);
      await sendWithFds(this.fd, Buffer.concat([Buffer.from([STATE_TAG]), chunk]), [], PEER_TIMEOUTS.message);
    }
    this.log.info({ mounts: handed.length, stateBytes: bytes.length }, 'sent every descriptor and the state to the new FUSE server');
    await expect(this.fd, ['ready'], PEER_TIMEOUTS.ready, 'waiting for the new FUSE server to check what it received');
  }

  /** Tells the taker this server no longer listens; resolves with who serves once it says so. */
  async commit(): Promise<PeerIdentity | undefined> {
    await sendWithFds(this.fd, encode({ kind: 'commit' }), [], PEER_TIMEOUTS.message);
    try {
      const v = await expect(this.fd, ['serving'], PEER_TIMEOUTS.serving, 'waiting for the new FUSE server to serve');
      return { pid: count(v.pid, 2 ** 31, 'pid'), host: typeof v.host === 'string' ? v.host.slice(0, 253) : '?' };
    } catch (err) {
      // A taker that is still there after a timeout reads the connections now: taking them back
      // would make two readers of each. Only one that went away gives them back.
      if (err instanceof PeerGone) throw err;
      this.log.error({ err }, 'the new FUSE server did not confirm that it serves; it holds the connections, so they stay with it');
      return undefined;
    }
  }

  close(): void {
    if (this.fd >= 0) native.closeFd(this.fd);
    this.fd = -1;
  }
}

// ---- the taker ----------------------------------------------------------------------------------

/** What a taker received: the state with its own descriptor numbers in it, and who sent it. */
export interface Received {
  readonly state: HandoverState;
  readonly giver: PeerIdentity;
}

/**
 * The taker's side. ask() returns undefined when no server answers on the control socket (the
 * caller starts fresh); otherwise the handover has been received and checked, and the caller
 * calls ready(), adopts the mounts, listens, and calls serving() (or abort()).
 */
export class PeerTaker {
  private fd = -1;
  private fds: number[] = [];
  private control: net.Socket | undefined;
  private readonly log: Logger;
  received: Received | undefined;

  private constructor(log: Logger) {
    this.log = log;
  }

  static async ask(controlSocket: string, scope: ServerScope | undefined, log: Logger): Promise<PeerTaker | undefined> {
    let control: net.Socket;
    try {
      control = await dialControlSocket(controlSocket);
    } catch (err) {
      if (err instanceof ForeignSocket) throw err;
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return undefined;
      throw err;
    }
    const t = new PeerTaker(log);
    t.control = control;
    try {
      await t.receive(controlSocket, scope);
      return t;
    } catch (err) {
      t.abort(err instanceof Error ? err.message : String(err));
      throw err;
    }
  }

  private async receive(controlSocket: string, scope: ServerScope | undefined): Promise<void> {
    const control = this.control as net.Socket;
    const own = path.join(path.resolve(path.dirname(controlSocket)), `.handover-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
    const oldUmask = process.umask(0o177);
    let listener: number;
    try {
      listener = listenSeqpacket(own);
    } finally {
      process.umask(oldUmask);
    }
    // What the giver answers on the control socket: an early error means no handover.
    let answer: { error?: { kind: string; message: string }; state?: { pid?: number; version?: string } } | undefined;
    let controlClosed = false;
    const lines = readline.createInterface({ input: control, crlfDelay: Infinity });
    // readline passes the connection's errors on; a reset is seen as the close below.
    lines.on('error', () => undefined);
    lines.on('line', (line) => {
      try {
        answer = JSON.parse(line) as typeof answer;
      } catch {
        answer = { error: { kind: 'Internal', message: `unreadable answer: ${line.slice(0, 200)}` } };
      }
    });
    control.on('error', () => undefined);
    control.on('close', () => { controlClosed = true; });
    try {
      control.write(encodeLine({ id: 1, method: 'handoverTo', params: { socket: own, ...(scope ? { scope } : {}) } }));
      const deadline = Date.now() + PEER_TIMEOUTS.connect;
      for (;;) {
        const err = answer?.error;
        if (err) {
          const who = answer?.state ? ` (pid ${answer.state.pid ?? '?'}, version ${answer.state.version ?? '?'})` : '';
          const old = err.kind === 'InvalidArgument' && err.message.includes('unknown method') ? ': it is older than handoverTo; upgrade it in place first (fuse-server --handover)' : '';
          throw new Error(`the FUSE server on ${controlSocket}${who} refused to hand over: ${err.message}${old}`);
        }
        if (controlClosed) throw new Error(`the FUSE server on ${controlSocket} closed the control connection before it handed over`);
        if (Date.now() > deadline) throw new Error(`the FUSE server on ${controlSocket} did not connect to ${own} within ${PEER_TIMEOUTS.connect} ms`);
        try {
          this.fd = await acceptSeqpacket(listener, 200);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw e;
        }
      }
    } finally {
      native.closeFd(listener);
      fs.rmSync(own, { force: true });
    }
    const begin = await expect(this.fd, ['begin'], PEER_TIMEOUTS.message, 'waiting for the handover to begin');
    const mounts = count(begin.mounts, MAX_MOUNTS, 'begin.mounts');
    const stateBytes = count(begin.stateBytes, MAX_STATE_BYTES, 'begin.stateBytes');
    const giver: PeerIdentity = {
      pid: count(begin.pid, 2 ** 31, 'begin.pid'), host: typeof begin.host === 'string' ? begin.host.slice(0, 253) : '?',
      ...(typeof begin.version === 'string' ? { version: begin.version.slice(0, 100) } : {}),
    };
    this.log.info({ giver, mounts, stateBytes }, 'the running FUSE server is handing its mounts over');
    while (this.fds.length < mounts) {
      const m = await receiveWithFds(this.fd, FD_PASS_MAX_BYTES, FD_PASS_MAX_FDS, PEER_TIMEOUTS.message);
      if (m === 'closed') throw new PeerGone(`the FUSE server closed the connection after ${this.fds.length} of ${mounts} descriptors`);
      // Ours from now on, whatever the message says: closed with the rest if anything is wrong.
      this.fds.push(...m.fds);
      const v = decode(m.data);
      if (v.kind !== 'fds' || v.first !== this.fds.length - m.fds.length || v.count !== m.fds.length || m.fds.length === 0 || this.fds.length > mounts) {
        throw new Error(`descriptor message out of order: ${JSON.stringify(v).slice(0, 200)} with ${m.fds.length} descriptors after ${this.fds.length - m.fds.length} of ${mounts}`);
      }
    }
    const pieces: Buffer[] = [];
    let got = 0;
    while (got < stateBytes) {
      const m = await receiveWithFds(this.fd, FD_PASS_MAX_BYTES, 0, PEER_TIMEOUTS.message);
      if (m === 'closed') throw new PeerGone(`the FUSE server closed the connection after ${got} of ${stateBytes} bytes of state`);
      if (m.data[0] !== STATE_TAG) throw new Error('expected a piece of the handover state');
      got += m.data.length - 1;
      if (got > stateBytes) throw new Error(`the handover state is longer than the ${stateBytes} bytes announced`);
      pieces.push(m.data.subarray(1));
    }
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.concat(pieces).toString('utf8'));
    } catch {
      throw new Error('the handover state is not JSON');
    }
    const state = checkHandoverState(raw);
    if (state.mounts.length !== mounts) throw new Error(`the handover state holds ${state.mounts.length} mounts, not the ${mounts} announced`);
    if (scope && state.scope && (state.scope.root !== scope.root || state.scope.store !== scope.store)) {
      throw new Error(`the running FUSE server serves layers of ${state.scope.store} below ${state.scope.root}; this one was started for `
        + `${scope.store} below ${scope.root}`);
    }
    const adopted: HandedMount[] = state.mounts.map((m, i) => {
      if (m.fd !== i) throw new Error(`mount ${i} of the handover state names descriptor ${m.fd}, not ${i}`);
      const fd = this.fds[i] as number;
      if (!isFuseDevice(fd)) throw new Error(`the descriptor received for ${m.mountpoint} is not /dev/fuse`);
      return { ...m, fd };
    });
    this.received = { state: { mounts: adopted, ...(state.scope ? { scope: state.scope } : {}) }, giver };
  }

  /** Says ready and waits for the giver's commit: from then on this process must serve. */
  async ready(): Promise<void> {
    await sendWithFds(this.fd, encode({ kind: 'ready' }), [], PEER_TIMEOUTS.message);
    await expect(this.fd, ['commit'], PEER_TIMEOUTS.message, 'waiting for the running FUSE server to let go');
    // Adopted mounts own their descriptors now.
    this.fds = [];
  }

  /** Tells the giver this process serves every mount and listens; the handover is over. */
  async serving(): Promise<void> {
    await sendWithFds(this.fd, encode({ kind: 'serving', pid: process.pid, host: hostname() }), [], PEER_TIMEOUTS.message);
    this.close();
  }

  /** Gives up before commit: the giver is told why (if it still listens) and serves on; nothing received stays open. */
  abort(reason: string): void {
    if (this.fd >= 0) {
      void sendWithFds(this.fd, encode({ kind: 'refused', reason: reason.slice(0, 2000) }), [], 0).catch(() => undefined);
    }
    closeAll(this.fds);
    this.fds = [];
    this.close();
  }

  private close(): void {
    if (this.fd >= 0) native.closeFd(this.fd);
    this.fd = -1;
    this.control?.destroy();
    this.control = undefined;
  }
}
