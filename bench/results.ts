// What the sections of a run collect: raw samples, the keys of latest.json, table rows, notes.
import { cell, fmt } from './report.js';
import { summarize, type Summary } from './stats.js';

export class Results {
  /** Every raw sample, by section (latest.json `samples`). */
  readonly raw: Record<string, unknown> = {};
  /** The top-level keys of latest.json: ratios and the figures the issues set targets on. */
  readonly ratios: Record<string, number | undefined> = {};
  /** Per file system case: bind's median and each FUSE server's, with its ratio to bind (latest.json `peers`). */
  readonly peers: Record<string, unknown> = {};
  /** Rows of the baseline/candidate table. */
  readonly rows: string[][] = [];
  /** Rows of the table of FUSE servers against bind. */
  readonly peerRows: string[][] = [];
  readonly notes: string[] = [];

  addRow(what: string, a: readonly number[] | undefined, b: readonly number[] | undefined, unit: string, ratio: number | undefined): void {
    const sa: Summary | undefined = a && a.length > 0 ? summarize(a) : undefined;
    const sb: Summary | undefined = b && b.length > 0 ? summarize(b) : undefined;
    this.rows.push([what, cell(sa), cell(sb), unit, fmt(ratio)]);
  }
}
