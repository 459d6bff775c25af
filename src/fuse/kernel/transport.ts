// One FUSE connection. Its /dev/fuse descriptor is watched by the event loop's epoll (see
// src/sys/native.ts): when the kernel has requests, they are read without blocking on this
// thread, checked against the opcode table, and handed to the handler, which answers them on
// this same thread — at once from memory, or later when a store call it started comes back.
// No thread waits on the device, so one process serves any number of mounts, and stopping a
// channel (a handover) leaves no read pending in the kernel.
import type { Logger } from '../../log.js';
import type { FuseObserver } from '../observer.js';
import { native, requestSlots, watchChannel } from '../../sys/native.js';
import { E, errnoName } from './errno.js';
import {
  FUSE_MIN_MINOR, IN_HEADER_SIZE, InitFlag, InitFlag2, NOTIFY_RESEND, OUT_HEADER_SIZE, Op, UNIQUE_RESEND_HI, encodeInitOut,
  opInfo, opName, readInitIn, type InitIn, type InitOut, type OpInfo,
} from './protocol.js';

/**
 * One request read from the device. `body` points into a buffer the next read reuses: it is
 * valid only during the handler's synchronous call; whatever is answered later copies what it needs.
 */
export interface FuseRequest {
  readonly opcode: number;
  readonly op: OpInfo;
  readonly uLo: number;
  readonly uHi: number;
  /**
   * The unique as one number, for tables: without the bit the kernel sets on a request it
   * resends (FUSE_UNIQUE_RESEND, bit 63), and the rest stays far below 2^53. uLo and uHi keep
   * the unique as it came, which is what the reply must carry.
   */
  readonly key: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  readonly body: Buffer;
  readonly started: number;
  /** Set once the request is answered (or, for those without a reply, handled). */
  done: boolean;
}

export interface FuseHandler {
  /** Answers FUSE_INIT: what we ask of the kernel, given what it offers. */
  init(offer: InitIn): InitOut;
  /** Every request but INIT and INTERRUPT; must answer through the channel, now or later. */
  handle(req: FuseRequest, ch: FuseChannel): void;
  /** The kernel gave up waiting for a request (a signal): answer it EINTR if it is still pending. */
  interrupt(key: number, ch: FuseChannel): void;
  /** The connection ended (unmounted or aborted). */
  ended(): void;
}

export interface ChannelOptions {
  log: Logger;
  observer: FuseObserver;
}

/** Whether a reply reached the kernel: 0, or -errno (-ENOENT: the request was interrupted meanwhile). */
export type Delivery = number;

const SCRATCH_BYTES = OUT_HEADER_SIZE + 1024 * 1024 + 4096;
/** Shared by every channel: a reply is built and written in one synchronous step. */
let scratch: Buffer | undefined;

export class FuseChannel {
  readonly fd: number;
  private readonly handler: FuseHandler;
  private readonly log: Logger;
  private readonly observer: FuseObserver;
  private watch: { stop(): void } | undefined;
  private initDone = false;
  private initWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private goneResolve: (() => void) | undefined;
  private ended = false;
  /** Settles only when the kernel ended the connection (unmounted or aborted), not on stop(). */
  readonly gone: Promise<void>;
  /** Requests read and not answered yet. */
  private inFlight = 0;
  private quiet: (() => void)[] = [];
  /**
   * Whether the kernel offered at INIT to resend unanswered requests (FUSE_HAS_RESEND, Linux
   * 6.9+). A connection taken over carries its predecessor's word; undefined when it had none
   * (a server of an earlier version): then only trying tells.
   */
  canResend: boolean | undefined = undefined;
  /** Requests read before abandonPending() are another reader's now: their late answers are dropped. */
  private abandoned = false;

  constructor(fd: number, handler: FuseHandler, opts: ChannelOptions) {
    this.fd = fd;
    this.handler = handler;
    this.log = opts.log;
    this.observer = opts.observer;
    this.gone = new Promise<void>((resolve) => { this.goneResolve = resolve; });
  }

  /**
   * Starts reading. With waitForInit, resolves once FUSE_INIT is answered (a fresh mount); a
   * channel taking over a live connection has no INIT to wait for.
   */
  start(waitForInit: boolean): Promise<void> {
    if (!waitForInit) this.initDone = true;
    this.watch = watchChannel(this.fd, (count, err) => this.onRequests(count, err));
    if (!waitForInit) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.initWaiters.push({ resolve, reject }));
  }

  /** Stops reading new requests; those already read are still answered (see quiesced()). */
  stop(): void {
    this.watch?.stop();
    this.watch = undefined;
    this.maybeQuiet();
  }

  get reading(): boolean {
    return this.watch !== undefined;
  }

  /** Requests read and not yet answered. */
  get pending(): number {
    return this.inFlight;
  }

  /** Settles when stopped and every request read so far is answered. */
  quiesced(): Promise<void> {
    if (this.watch === undefined && this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.quiet.push(resolve));
  }

  // ---- replies ------------------------------------------------------------------------------

  /** A buffer for building one reply: the body goes at OUT_HEADER_SIZE; use it before any await. */
  scratch(bodyBytes: number): Buffer {
    if (bodyBytes + OUT_HEADER_SIZE > SCRATCH_BYTES) throw new RangeError(`reply of ${bodyBytes} bytes is larger than any the kernel accepts`);
    scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    return scratch;
  }

  /** Answers with the body that sits at buf[OUT_HEADER_SIZE, OUT_HEADER_SIZE + bodyLen). */
  replyBuf(req: FuseRequest, buf: Buffer, bodyLen: number): Delivery {
    if (!this.finish(req, 0)) return -E.EINVAL;
    buf.writeUInt32LE(OUT_HEADER_SIZE + bodyLen, 0);
    buf.writeInt32LE(0, 4);
    buf.writeUInt32LE(req.uLo, 8);
    buf.writeUInt32LE(req.uHi, 12);
    return this.deliver(req, buf, OUT_HEADER_SIZE + bodyLen);
  }

  /** Answers with a body of its own (or none). */
  replyOk(req: FuseRequest, body?: Buffer): Delivery {
    const len = body?.length ?? 0;
    const b = this.scratch(len);
    if (body) body.copy(b, OUT_HEADER_SIZE);
    return this.replyBuf(req, b, len);
  }

  replyError(req: FuseRequest, errno: number): Delivery {
    if (!this.finish(req, errno)) return -E.EINVAL;
    const b = this.scratch(0);
    b.writeUInt32LE(OUT_HEADER_SIZE, 0);
    b.writeInt32LE(-Math.abs(errno), 4);
    b.writeUInt32LE(req.uLo, 8);
    b.writeUInt32LE(req.uHi, 12);
    return this.deliver(req, b, OUT_HEADER_SIZE);
  }

  /** A request that needs no reply (FORGET) has been handled. */
  noReply(req: FuseRequest): void {
    req.done = true;
  }

  /**
   * Asks the kernel to queue every request read and not answered on this connection again
   * (FUSE_NOTIFY_RESEND), so that whoever reads next answers them. Returns 0 or -errno.
   */
  resendUnanswered(): number {
    const b = this.scratch(0);
    b.writeUInt32LE(OUT_HEADER_SIZE, 0);
    b.writeInt32LE(NOTIFY_RESEND, 4);
    b.writeUInt32LE(0, 8);
    b.writeUInt32LE(0, 12);
    const r = native.write(this.fd, b, OUT_HEADER_SIZE);
    return r < 0 ? r : 0;
  }

  /**
   * Forgets requests still unanswered here (after a resend, another reader answers them; or
   * they were answered EIO). An answer that comes for one of them later (its store call came
   * back) is dropped, not written: the descriptor may be closed by then, or its number reused,
   * and the kernel has the request under another unique, or not at all. Only for a channel
   * that was stopped and reads no more.
   */
  abandonPending(): void {
    this.abandoned = true;
    this.inFlight = 0;
    this.maybeQuiet();
  }

  // ---- reading ------------------------------------------------------------------------------

  private onRequests(count: number, err: number): void {
    const { buffer, lengths, size } = requestSlots;
    for (let i = 0; i < count; i++) {
      const at = i * size;
      const n = lengths[i] as number;
      try {
        this.dispatch(at === 0 ? buffer : buffer.subarray(at, at + n), n);
      } catch (e) {
        this.log.error({ err: e }, 'FUSE request dispatch failed');
      }
    }
    if (err !== 0) {
      if (err === E.ENODEV || err === E.ECONNABORTED) this.log.debug({ errno: errnoName(err) }, 'the FUSE connection ended');
      else this.log.error({ errno: errnoName(err) }, 'reading /dev/fuse failed; this layer is no longer served');
      this.connectionEnded();
    }
  }

  private dispatch(buf: Buffer, n: number): void {
    if (n < IN_HEADER_SIZE) {
      this.log.error({ bytes: n }, 'short FUSE request: smaller than its header; dropped');
      return;
    }
    const len = buf.readUInt32LE(0);
    const opcode = buf.readUInt32LE(4);
    const uLo = buf.readUInt32LE(8);
    const uHi = buf.readUInt32LE(12);
    const info = opInfo(opcode);
    const req: FuseRequest = {
      opcode,
      op: info ?? { name: opName(opcode), inSize: 0, name0: false, noReply: false },
      uLo,
      uHi,
      key: uniqueKey(uLo, uHi),
      nodeid: buf.readUInt32LE(16) + buf.readUInt32LE(20) * 0x1_0000_0000,
      uid: buf.readUInt32LE(24),
      gid: buf.readUInt32LE(28),
      pid: buf.readUInt32LE(32),
      body: buf.subarray(IN_HEADER_SIZE, n),
      started: performance.now(),
      done: false,
    };
    const silent = info?.noReply === true;
    if (!silent) this.inFlight++;
    if (len !== n) {
      this.malformed(req, `its header says ${len} bytes, the device gave ${n}`, E.EIO);
      return;
    }
    if (!info) {
      this.log.debug({ opcode }, 'FUSE request with an unknown opcode; answered ENOSYS');
      this.replyError(req, E.ENOSYS);
      return;
    }
    if (req.body.length < info.inSize) {
      this.malformed(req, `${info.name} needs ${info.inSize} bytes of input, got ${req.body.length}`, E.EINVAL);
      return;
    }
    if (info.name0 && req.body.indexOf(0, info.inSize) < 0) {
      this.malformed(req, `${info.name} has no NUL-terminated name`, E.EINVAL);
      return;
    }
    if (opcode === Op.INIT) {
      this.answerInit(req);
      return;
    }
    if (!this.initDone) {
      this.malformed(req, `${info.name} before INIT`, E.EIO);
      return;
    }
    if (opcode === Op.INTERRUPT) {
      req.done = true;
      // The unique of the interrupted request, as the kernel has it (with the resend bit if it was resent).
      this.handler.interrupt(uniqueKey(req.body.readUInt32LE(0), req.body.readUInt32LE(4)), this);
      return;
    }
    try {
      this.handler.handle(req, this);
    } catch (err) {
      this.log.error({ err, op: info.name }, 'FUSE request handler threw; answered EIO');
      if (!req.done && !silent) this.replyError(req, E.EIO);
    }
  }

  private malformed(req: FuseRequest, why: string, errno: number): void {
    this.log.error({ op: req.op.name, unique: req.key }, `malformed FUSE request: ${why}; answered ${errnoName(errno)}`);
    if (req.op.noReply) {
      req.done = true;
      return;
    }
    this.replyError(req, errno);
  }

  private answerInit(req: FuseRequest): void {
    if (this.initDone) {
      this.malformed(req, 'a second INIT', E.EIO);
      return;
    }
    const offer = readInitIn(req.body);
    if (offer.major !== 7 || offer.minor < FUSE_MIN_MINOR) {
      this.log.error({ major: offer.major, minor: offer.minor }, `kernel FUSE protocol too old (need 7.${FUSE_MIN_MINOR} or later)`);
      this.replyError(req, E.EPROTO);
      this.rejectInit(new Error(`kernel FUSE protocol ${offer.major}.${offer.minor} is too old; 7.${FUSE_MIN_MINOR} or later is needed`));
      return;
    }
    this.canResend = (offer.flags & InitFlag.INIT_EXT) !== 0 && (offer.flags2 & InitFlag2.HAS_RESEND) !== 0;
    const out = this.handler.init(offer);
    this.replyOk(req, encodeInitOut(out));
    this.initDone = true;
    for (const w of this.initWaiters.splice(0)) w.resolve();
  }

  private rejectInit(err: Error): void {
    for (const w of this.initWaiters.splice(0)) w.reject(err);
  }

  private finish(req: FuseRequest, errno: number): boolean {
    if (req.done) {
      // An INTERRUPT or a deadline answered it first: the late answer has nowhere to go.
      return false;
    }
    if (this.abandoned) {
      // Read before a handover and left to the next reader (see abandonPending()).
      req.done = true;
      this.log.info({ op: req.op.name, errno: errno === 0 ? undefined : errnoName(errno) }, 'a late answer to a request left to the next FUSE server at handover was dropped');
      return false;
    }
    req.done = true;
    this.inFlight--;
    this.observer.op(req.op.name, (performance.now() - req.started) / 1000, errno);
    this.maybeQuiet();
    return true;
  }

  private deliver(req: FuseRequest, buf: Buffer, len: number): Delivery {
    const r = native.write(this.fd, buf, len);
    if (r >= 0) return 0;
    // ENOENT: interrupted or aborted meanwhile; ENODEV: the mount is gone.
    if (r !== -E.ENOENT && r !== -E.ENODEV && r !== -E.EBADF) {
      this.log.error({ op: req.op.name, errno: errnoName(r), len }, 'writing a FUSE reply failed');
    }
    return r;
  }

  private connectionEnded(): void {
    if (this.ended) return;
    this.ended = true;
    this.watch?.stop();
    this.watch = undefined;
    this.goneResolve?.();
    this.handler.ended();
    if (!this.initDone) this.rejectInit(new Error('the FUSE connection ended before FUSE_INIT'));
    this.inFlight = 0;
    this.maybeQuiet();
  }

  private maybeQuiet(): void {
    if (this.watch === undefined && this.inFlight === 0) for (const q of this.quiet.splice(0)) q();
  }
}

/**
 * A request's unique as a table key: bit 63 (FUSE_UNIQUE_RESEND) dropped, so that the key of a
 * resent request is exact (2^63 + n is not, as a double) and the same in its INTERRUPT.
 */
export function uniqueKey(lo: number, hi: number): number {
  return lo + ((hi & ~UNIQUE_RESEND_HI) >>> 0) * 0x1_0000_0000;
}
