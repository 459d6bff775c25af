// One FUSE connection: reads requests from its /dev/fuse descriptor and writes the replies.
// A read on /dev/fuse blocks until the kernel has a request, so each pending read holds one
// libuv pool thread; the pool is sized for that by whoever starts the process (fuse-server).
// Requests are decoded and answered on the event loop; the store I/O they need runs on the
// pool like any other fs call. Replies are written synchronously: a write to /dev/fuse hands
// the answer to the kernel and never waits.
import fs from 'node:fs';
import { constants } from 'node:os';
import type { Logger } from '../../log.js';
import type { FuseObserver } from '../observer.js';
import {
  IN_HEADER_SIZE, MIN_READ_BUFFER, OUT_HEADER_SIZE, Op, encodeInitOut, opName, readInHeader, readInitIn,
  type InHeader, type InitIn, type InitOut,
} from './protocol.js';

const ERRNO: Readonly<Record<string, number>> = constants.errno;
const errno = (code: string): number => ERRNO[code] ?? 5;
export const ENOSYS = errno('ENOSYS');

/** How one request is answered; exactly one of these is called, once (FORGET gets none). */
export interface Reply {
  ok(body?: Buffer): void;
  /** A reply whose body already sits in buf after OUT_HEADER_SIZE reserved bytes. */
  okInPlace(buf: Buffer, bodyLen: number): void;
  error(errnoValue: number): void;
}

export interface RequestHandler {
  /** Answers FUSE_INIT: what we ask of the kernel, given what it offers. */
  init(offer: InitIn): InitOut;
  /** Every other request. Must answer through reply (or not at all for FORGET/INTERRUPT). */
  handle(h: InHeader, body: Buffer, reply: Reply): void;
  /** The connection ended (unmounted or aborted). */
  ended?(): void;
}

export interface SessionOptions {
  log: Logger;
  observer: FuseObserver;
  /** Reads kept pending on the device; each holds a pool thread while the mount is idle. */
  readers?: number;
  /** Large enough for any request a read-only mount gets (names, xattr names, small writes). */
  bufferSize?: number;
}

export class FuseSession {
  readonly fd: number;
  private readonly handler: RequestHandler;
  private readonly log: Logger;
  private readonly observer: FuseObserver;
  private readonly bufferSize: number;
  private readers: number;
  private running = 0;
  private stopped = false;
  private initDone = false;
  private readonly initWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private goneResolve: (() => void) | undefined;
  /** Settles only when the kernel ended the connection (unmounted or aborted), not on stop(). */
  readonly gone: Promise<void>;
  /** Requests read and not answered yet. */
  private inFlight = 0;
  private quiet: (() => void)[] = [];

  constructor(fd: number, handler: RequestHandler, opts: SessionOptions) {
    this.fd = fd;
    this.handler = handler;
    this.log = opts.log;
    this.observer = opts.observer;
    this.readers = Math.max(1, opts.readers ?? 1);
    this.bufferSize = Math.max(opts.bufferSize ?? 64 * 1024, MIN_READ_BUFFER + 4096);
    this.gone = new Promise<void>((resolve) => { this.goneResolve = resolve; });
  }

  /**
   * Starts reading. With waitForInit, resolves once FUSE_INIT is answered (a fresh mount);
   * a session taking over a live connection has no INIT to wait for.
   */
  start(waitForInit: boolean): Promise<void> {
    if (!waitForInit) this.initDone = true;
    for (let i = 0; i < this.readers; i++) this.readNext(Buffer.allocUnsafeSlow(this.bufferSize));
    if (!waitForInit) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.initWaiters.push({ resolve, reject }));
  }

  /**
   * Stops posting reads. Pending reads cannot be cancelled: each still answers the one request
   * it receives; quiesced() settles when the last of them has returned and been answered.
   */
  stop(): void {
    this.stopped = true;
    this.maybeQuiet();
  }

  /** Settles when stopped, with no read pending and every request read so far answered. */
  quiesced(): Promise<void> {
    if (this.stopped && this.running === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.quiet.push(resolve));
  }

  /** How many reads are pending in the pool right now. */
  get pendingReads(): number {
    return this.running;
  }

  /** Keeps one read pending with this reader's buffer, which is reused for its next read. */
  private readNext(buf: Buffer): void {
    if (this.stopped) return;
    this.running++;
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      this.running--;
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the request was interrupted before we got it; EINTR: try again. (The device
        // is blocking: EAGAIN would mean a wrong descriptor, and retrying it would spin.)
        if (code === 'ENOENT' || code === 'EINTR') {
          this.readNext(buf);
          return;
        }
        // ENODEV: unmounted or aborted; EBADF: the descriptor was closed under us.
        if (code !== 'ENODEV' && code !== 'EBADF') this.log.error({ err }, 'reading /dev/fuse failed; this layer is no longer served');
        else this.log.debug({ code }, 'the FUSE connection ended');
        this.connectionEnded();
        return;
      }
      // The request is copied out (it is small: WRITE, the only big one, never comes to a
      // read-only mount), so the buffer can take the next read while this one is served.
      const req = Buffer.from(buf.subarray(0, n));
      this.readNext(buf);
      this.dispatch(req, n);
    });
  }

  private dispatch(buf: Buffer, n: number): void {
    if (n < IN_HEADER_SIZE) {
      this.log.error({ bytes: n }, 'short FUSE request');
      return;
    }
    const h = readInHeader(buf);
    const body = buf.subarray(IN_HEADER_SIZE, Math.min(n, h.len));
    const started = performance.now();
    let answered = false;
    const silent = h.opcode === Op.FORGET || h.opcode === Op.BATCH_FORGET || h.opcode === Op.INTERRUPT;
    if (!silent) this.inFlight++;
    const finish = (errnoValue: number): void => {
      answered = true;
      this.inFlight--;
      this.observer.op(opName(h.opcode), (performance.now() - started) / 1000, errnoValue);
      this.maybeQuiet();
    };
    const reply: Reply = {
      ok: (out) => {
        if (answered) return this.doubleAnswer(h);
        finish(0);
        this.write(h, 0, out);
      },
      okInPlace: (out, bodyLen) => {
        if (answered) return this.doubleAnswer(h);
        finish(0);
        if (h.opcode === Op.READ) this.observer.bytesServed(bodyLen);
        out.writeUInt32LE(OUT_HEADER_SIZE + bodyLen, 0);
        out.writeInt32LE(0, 4);
        out.writeBigUInt64LE(h.unique, 8);
        this.writeRaw(h, [out.subarray(0, OUT_HEADER_SIZE + bodyLen)]);
      },
      error: (e) => {
        if (answered) return this.doubleAnswer(h);
        finish(e);
        this.write(h, e, undefined);
      },
    };
    if (h.opcode === Op.INIT) {
      this.answerInit(body, reply);
      return;
    }
    try {
      this.handler.handle(h, body, reply);
    } catch (err) {
      this.log.error({ err, op: opName(h.opcode) }, 'FUSE request handler threw');
      if (!answered && !silent) reply.error(errno('EIO'));
    }
  }

  private answerInit(body: Buffer, reply: Reply): void {
    const offer = readInitIn(body);
    if (offer.major !== 7 || offer.minor < 23) {
      this.log.error({ major: offer.major, minor: offer.minor }, 'kernel FUSE protocol too old (need 7.23 or later)');
      reply.error(errno('EPROTO'));
      this.rejectInit(new Error(`kernel FUSE protocol ${offer.major}.${offer.minor} is too old; 7.23 or later is needed`));
      return;
    }
    const out = this.handler.init(offer);
    reply.ok(encodeInitOut(out));
    this.initDone = true;
    for (const w of this.initWaiters.splice(0)) w.resolve();
  }

  private rejectInit(err: Error): void {
    for (const w of this.initWaiters.splice(0)) w.reject(err);
  }

  /** Header and body in one writev: the device takes a reply in a single write, without a copy. */
  private write(h: InHeader, errnoValue: number, body: Buffer | undefined): void {
    const withBody = errnoValue === 0 && body !== undefined && body.length > 0;
    const head = Buffer.allocUnsafe(OUT_HEADER_SIZE);
    head.writeUInt32LE(OUT_HEADER_SIZE + (withBody ? body.length : 0), 0);
    head.writeInt32LE(errnoValue === 0 ? 0 : -errnoValue, 4);
    head.writeBigUInt64LE(h.unique, 8);
    this.writeRaw(h, withBody ? [head, body] : [head]);
  }

  private writeRaw(h: InHeader, parts: Buffer[]): void {
    try {
      fs.writevSync(this.fd, parts);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT: the request was interrupted or aborted meanwhile; ENODEV: the mount is gone.
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'EBADF') return;
      this.log.error({ err, op: opName(h.opcode), len: parts.reduce((n, b) => n + b.length, 0) }, 'writing a FUSE reply failed');
    }
  }

  private doubleAnswer(h: InHeader): void {
    this.log.error({ op: opName(h.opcode) }, 'a FUSE request was answered twice; the second answer is dropped');
  }

  private connectionEnded(): void {
    this.goneResolve?.();
    if (!this.stopped) {
      this.stopped = true;
      this.handler.ended?.();
    }
    if (!this.initDone) this.rejectInit(new Error('the FUSE connection ended before FUSE_INIT'));
    this.maybeQuiet();
  }

  private maybeQuiet(): void {
    if (this.stopped && this.running === 0 && this.inFlight === 0) for (const q of this.quiet.splice(0)) q();
  }
}
