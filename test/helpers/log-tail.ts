// Following the daemon's JSON log from a byte offset: the calls it answered since then.
import { open, stat } from 'node:fs/promises';
import { parseJsonLines, type LogRecord } from './daemon.js';

/** One answered gRPC call, as the daemon logs it (src/server/service.ts). */
export interface RpcRecord {
  pid: number;
  method: string;
  key: string;
  code: string;
}

export function asRpc(r: LogRecord): RpcRecord | undefined {
  if (typeof r.method !== 'string' || typeof r.code !== 'string') return undefined;
  return { pid: Number(r.pid), method: r.method, key: typeof r.key === 'string' ? r.key : '', code: r.code };
}

export async function logSize(file: string): Promise<number> {
  return (await stat(file)).size;
}

/** Reads the complete lines appended to file after a byte offset. */
export class LogTail {
  private offset: number;
  private partial = '';
  readonly records: LogRecord[] = [];

  constructor(readonly file: string, offset: number) {
    this.offset = offset;
  }

  /** Reads what was appended since the last poll; returns the new records. */
  async poll(): Promise<LogRecord[]> {
    const fh = await open(this.file, 'r');
    try {
      const chunks: Buffer[] = [];
      for (;;) {
        const buf = Buffer.alloc(64 * 1024);
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        chunks.push(buf.subarray(0, bytesRead));
      }
      const text = this.partial + Buffer.concat(chunks).toString('utf8');
      const cut = text.lastIndexOf('\n');
      this.partial = cut < 0 ? text : text.slice(cut + 1);
      const fresh = cut < 0 ? [] : parseJsonLines(text.slice(0, cut));
      this.records.push(...fresh);
      return fresh;
    } finally {
      await fh.close();
    }
  }

  rpcs(): RpcRecord[] {
    return this.records.map(asRpc).filter((r): r is RpcRecord => r !== undefined);
  }
}
