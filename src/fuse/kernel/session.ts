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
  private endResolve: (() => void) | undefined;
  private goneResolve: (() => void) | undefined;
  /** Settles when reading has stopped (stop() or the connection's end) and no read is pending. */
  readonly ended: Promise<void>;
  /** Settles only when the kernel ended the connection (unmounted or aborted), not on stop(). */
  readonly gone: Promise<void>;
  /** Requests answered (for tests and handover). */
  answered = 0;
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
    this.ended = new Promise<void>((resolve) => { this.endResolve = resolve; });
    this.gone = new Promise<void>((resolve) => { this.goneResolve = resolve; });
  }

  /**
   * Starts reading. With waitForInit, resolves once FUSE_INIT is answered (a fresh mount);
   * a session taking over a live connection has no INIT to wait for.
   */
  start(waitForInit: boolean): Promise<void> {
    if (!waitForInit) this.initDone = true;
    for (let i = 0; i < this.readers; i++) this.readNext();
    if (!waitForInit) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.initWaiters.push({ resolve, reject }));
  }

  /**
   * Stops posting reads. Pending reads cannot be cancelled: each still answers the one request
   * it receives. `ended` settles when the last of them has returned.
   */
  stop(): void {
    this.stopped = true;
    this.maybeEnded();
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

  private readNext(): void {
    if (this.stopped) return;
    this.running++;
    const buf = Buffer.allocUnsafeSlow(this.bufferSize);
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      this.running--;
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the request was interrupted before we got it; EINTR: try again. (The device
        // is blocking: EAGAIN would mean a wrong descriptor, and retrying it would spin.)
        if (code === 'ENOENT' || code === 'EINTR') {
          this.readNext();
          return;
        }
        // ENODEV: unmounted or aborted; EBADF: the descriptor was closed under us.
        if (code !== 'ENODEV' && code !== 'EBADF') this.log.error({ err }, 'reading /dev/fuse failed; this layer is no longer served');
        else this.log.debug({ code }, 'the FUSE connection ended');
        this.connectionEnded();
        return;
      }
      // Keep the next read pending while this request is served.
      this.readNext();
      this.dispatch(buf, n);
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
      this.answered++;
      this.inFlight--;
      this.observer.op(opName(h.opcode), (performance.now() - started) / 1000, errnoValue);
      this.maybeEnded();
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
        this.writeRaw(h, out.subarray(0, OUT_HEADER_SIZE + bodyLen));
      },
      error: (e) => {
        if (answered) return this.doubleAnswer(h);
        finish(e);
        this.write(h, e, undefined);
      },
    };
    if (h.opcode === Op.INIT) {
      this.answerInit(h, body, reply);
      return;
    }
    try {
      this.handler.handle(h, body, reply);
    } catch (err) {
      this.log.error({ err, op: opName(h.opcode) }, 'FUSE request handler threw');
      if (!answered && !silent) reply.error(errno('EIO'));
    }
  }

  private answerInit(h: InHeader, body: Buffer, reply: Reply): void {
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
    void h;
  }

  private rejectInit(err: Error): void {
    for (const w of this.initWaiters.splice(0)) w.reject(err);
  }

  private write(h: InHeader, errnoValue: number, body: Buffer | undefined): void {
    const len = OUT_HEADER_SIZE + (errnoValue === 0 && body ? body.length : 0);
    const out = Buffer.allocUnsafe(len);
    out.writeUInt32LE(len, 0);
    out.writeInt32LE(errnoValue === 0 ? 0 : -errnoValue, 4);
    out.writeBigUInt64LE(h.unique, 8);
    if (errnoValue === 0 && body) body.copy(out, OUT_HEADER_SIZE);
    this.writeRaw(h, out);
  }

  private writeRaw(h: InHeader, out: Buffer): void {
    try {
      fs.writeSync(this.fd, out);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT: the request was interrupted or aborted meanwhile; ENODEV: the mount is gone.
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'EBADF') return;
      this.log.error({ err, op: opName(h.opcode), len: out.length }, 'writing a FUSE reply failed');
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
    this.maybeEnded();
  }

  private maybeEnded(): void {
    if (!this.stopped || this.running !== 0) return;
    this.endResolve?.();
    if (this.inFlight === 0) for (const q of this.quiet.splice(0)) q();
  }
}
