// A gRPC client for unary calls over a unix socket, on node:http2 alone. `cvmfs-snapshotter pull`
// makes four unary calls to containerd; loading @grpc/grpc-js for them cost ~85 ms of a command
// that should take 250 ms in all (measured on this project's 2-core machine). The protocol for a
// unary call is small: one POST with a length-prefixed message, one answer, the status in the
// trailers (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { createConnection } from 'node:net';
import { GrpcCode, grpcCodeName } from './grpc-codes.js';

/** A failed call, shaped like grpc-js's ServiceError: a status code and the server's message. */
export class GrpcCallError extends Error {
  override name = 'GrpcCallError';
  constructor(readonly code: GrpcCode, readonly details: string) {
    super(`${code} ${grpcCodeName(code)}: ${details}`);
  }
}

export function isGrpcCallError(err: unknown): err is GrpcCallError {
  return err instanceof GrpcCallError;
}

/** The most bytes of answer taken: an answer larger than this is refused, not buffered. */
const MAX_RESPONSE_BYTES = 16 << 20;

function statusFrom(headers: IncomingHttpHeaders): { code: GrpcCode; details: string } | undefined {
  const raw = headers['grpc-status'];
  if (raw === undefined) return undefined;
  const code = Number(Array.isArray(raw) ? raw[0] : raw);
  const message = headers['grpc-message'];
  let details = typeof message === 'string' ? message : '';
  try { details = decodeURIComponent(details); } catch { /* keep it as sent */ }
  return { code: Number.isInteger(code) && code >= 0 && code <= 16 ? code as GrpcCode : GrpcCode.UNKNOWN, details };
}

function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export class UnaryClient {
  private session: ClientHttp2Session | undefined;
  /** Why the connection failed (ECONNREFUSED, ENOENT, ...): the calls on it only see a cancel. */
  private sessionError: Error | undefined;

  constructor(readonly socket: string) {}

  private connection(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = connect('http://localhost', { createConnection: () => createConnection(this.socket) });
    // A failed connection fails the call that is waiting on it; the session's own error event
    // must not become an uncaught exception.
    session.on('error', (err: Error) => { this.sessionError = err; });
    this.sessionError = undefined;
    this.session = session;
    return session;
  }

  /** Sends one request message to path (/package.Service/Method) and returns the answer's bytes. */
  call(path: string, request: Buffer, timeoutMs?: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const session = this.connection();
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const done = (err: GrpcCallError | undefined, value?: Buffer): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        if (err) reject(err); else resolve(value as Buffer);
      };
      const headers: Record<string, string> = {
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: path,
        [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        te: 'trailers',
      };
      if (timeoutMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
      const stream = session.request(headers, { endStream: false });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done(new GrpcCallError(GrpcCode.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`));
          stream.close(constants.NGHTTP2_CANCEL);
        }, timeoutMs);
      }
      const chunks: Buffer[] = [];
      let received = 0;
      let httpStatus = 0;
      let status: { code: GrpcCode; details: string } | undefined;
      stream.on('response', (h) => {
        httpStatus = Number(h[constants.HTTP2_HEADER_STATUS]);
        status = statusFrom(h); // a trailers-only answer carries its status here
      });
      stream.on('trailers', (t) => { status = statusFrom(t) ?? status; });
      stream.on('data', (c: Buffer) => {
        received += c.length;
        if (received > MAX_RESPONSE_BYTES + 5) {
          done(new GrpcCallError(GrpcCode.RESOURCE_EXHAUSTED, `the answer to ${path} is larger than ${MAX_RESPONSE_BYTES} bytes`));
          stream.close(constants.NGHTTP2_CANCEL);
          return;
        }
        chunks.push(c);
      });
      const unavailable = (err: NodeJS.ErrnoException | undefined): GrpcCallError => {
        const cause = (this.sessionError ?? err) as NodeJS.ErrnoException | undefined;
        return new GrpcCallError(GrpcCode.UNAVAILABLE, cause ? `${cause.code ?? ''} ${cause.message}`.trim() : `the connection to ${this.socket} closed`);
      };
      stream.on('error', (err: NodeJS.ErrnoException) => done(unavailable(err)));
      stream.on('close', () => {
        if (settled) return;
        if (this.sessionError) { done(unavailable(undefined)); return; }
        if (status === undefined) {
          const why = httpStatus !== 0 && httpStatus !== 200 ? `HTTP status ${httpStatus}` : 'the stream ended without a gRPC status';
          done(new GrpcCallError(GrpcCode.UNAVAILABLE, `${why} (${path})`));
          return;
        }
        if (status.code !== GrpcCode.OK) { done(new GrpcCallError(status.code, status.details)); return; }
        const body = Buffer.concat(chunks);
        if (body.length < 5) { done(new GrpcCallError(GrpcCode.INTERNAL, `the answer to ${path} has no message`)); return; }
        if (body[0] !== 0) { done(new GrpcCallError(GrpcCode.INTERNAL, `the answer to ${path} is compressed, which was not asked for`)); return; }
        const len = body.readUInt32BE(1);
        if (body.length !== 5 + len) { done(new GrpcCallError(GrpcCode.INTERNAL, `the answer to ${path} is not one message of ${len} bytes (got ${body.length - 5})`)); return; }
        done(undefined, body.subarray(5));
      });
      stream.end(frame(request));
    });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
