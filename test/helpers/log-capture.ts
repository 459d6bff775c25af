// A pino logger whose records a test can read back, for tests that check what was logged.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';

export type LogRecord = Record<string, unknown>;

export class LogCapture {
  readonly records: LogRecord[] = [];
  readonly logger: Logger;

  constructor(level: 'debug' | 'info' = 'debug') {
    const records = this.records;
    let partial = '';
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb): void {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) if (l.trim() !== '') records.push(JSON.parse(l) as LogRecord);
        cb();
      },
    });
    // The stream's write runs in the logging call, so a record is readable as soon as it returns.
    this.logger = pino({ level }, stream);
  }

  /** A position in the log, for since(). */
  mark(): number {
    return this.records.length;
  }

  /** Records since mark whose message matches. */
  since(mark: number, msg: RegExp): LogRecord[] {
    return this.records.slice(mark).filter((r) => typeof r.msg === 'string' && msg.test(r.msg));
  }
}
