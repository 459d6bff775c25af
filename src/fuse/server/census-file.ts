// The xattr census's lasting verdicts (xattr-census.ts), kept in a file of the daemon's root so
// that they outlive the FUSE server. A layer is immutable, so what one server learnt of it holds
// for the next: after a node reboots, or a server that crashed is started again, a layer that
// has no xattr is known so from its first request. The kernel is told at once to stop asking for
// xattrs (the first container's overlayfs sends no GETXATTR), the store is not asked for them
// (no listxattr per entry: on a CernVM-FS store, one request to cvmfs2 each), and the census
// walks the layer only to read it ahead.
//
// It is a cache, never trusted for more than that: a file that is missing, unreadable or not
// what this module writes is left aside with a warning and the verdicts are learnt again; an
// entry for a directory outside the configured store is ignored; a file that cannot be written
// is warned about and the server goes on.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.js';
import { adoptVerdicts, isLasting, lastingVerdicts, onLastingVerdict, type LastingVerdict } from '../xattr-census.js';

export const CENSUS_FILE_NAME = 'layer-xattr-census.json';
/** Layers a file remembers, the latest learnt kept: far more than a node holds. */
export const MAX_REMEMBERED = 20_000;
/** Verdicts learnt close together are written once. */
const SAVE_DELAY_MS = 2000;
const FORMAT = 1;

/** What a layer directory of store starts with. */
function prefixOf(store: string): string {
  return store.endsWith('/') ? store : `${store}/`;
}

/** The entries of the file's text that are layer directories of store, or a reason it is not usable. */
export function parseCensusFile(text: string, store: string): { entries: [string, LastingVerdict][]; ignored: number } | { error: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return { error: `not JSON: ${(err as Error).message}` };
  }
  if (typeof doc !== 'object' || doc === null || (doc as { format?: unknown }).format !== FORMAT) return { error: `not a census file of format ${FORMAT}` };
  const verdicts = (doc as { verdicts?: unknown }).verdicts;
  if (typeof verdicts !== 'object' || verdicts === null || Array.isArray(verdicts)) return { error: 'no verdicts object' };
  const entries: [string, LastingVerdict][] = [];
  let ignored = 0;
  const prefix = prefixOf(store);
  for (const [dir, v] of Object.entries(verdicts as Record<string, unknown>)) {
    const usable = isLasting(v) && dir.startsWith(prefix) && path.posix.normalize(dir) === dir && !dir.includes('\0') && entries.length < MAX_REMEMBERED;
    if (usable) entries.push([dir, v]);
    else ignored++;
  }
  return { entries, ignored };
}

export class CensusFile {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly stopListening: () => void;
  private readonly store: string;

  constructor(readonly file: string, store: string, private readonly log: Logger) {
    this.store = path.resolve(store);
    this.stopListening = onLastingVerdict(() => this.changed());
  }

  /** The file in the daemon's root, for the layers of store. */
  static inRoot(root: string, store: string, log: Logger): CensusFile {
    return new CensusFile(path.join(root, CENSUS_FILE_NAME), store, log);
  }

  /** Reads what earlier servers learnt; the verdicts of this process stay as they are. */
  load(): number {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, file: this.file }, 'could not read the layers\' xattr census; their verdicts are learnt again');
      return 0;
    }
    const parsed = parseCensusFile(text, this.store);
    if ('error' in parsed) {
      this.log.warn({ file: this.file, reason: parsed.error }, 'the layers\' xattr census file is not usable; it is left aside and written anew');
      return 0;
    }
    adoptVerdicts(parsed.entries);
    this.log.debug({ file: this.file, verdicts: parsed.entries.length, ignored: parsed.ignored }, 'layers\' xattr verdicts of earlier FUSE servers read');
    return parsed.entries.length;
  }

  /** Writes what is pending now (before a handover, at exit); never rejects. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write());
    }
    return this.writing;
  }

  /** No more writes after what is pending. */
  close(): Promise<void> {
    this.stopListening();
    return this.flush();
  }

  private changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => void this.flush(), SAVE_DELAY_MS);
    this.timer.unref();
  }

  /**
   * Merges with what the file holds (another server of the same root may have written it since:
   * a handover), this process's verdicts winning, the latest MAX_REMEMBERED kept; written to a
   * file of its own and renamed over, so a reader never sees half of it.
   */
  private async write(): Promise<void> {
    const merged = new Map<string, LastingVerdict>();
    const onDisk = await fs.promises.readFile(this.file, 'utf8').then((t) => parseCensusFile(t, this.store), () => undefined);
    if (onDisk && !('error' in onDisk)) for (const [d, v] of onDisk.entries) merged.set(d, v);
    for (const [d, v] of lastingVerdicts()) {
      if (!d.startsWith(prefixOf(this.store))) continue;
      merged.delete(d);
      merged.set(d, v);
    }
    const all = [...merged];
    const verdicts = Object.fromEntries(all.slice(Math.max(0, all.length - MAX_REMEMBERED)));
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      // A new file of its own (never through whatever a left-over name points to).
      await fs.promises.rm(tmp, { force: true });
      await fs.promises.writeFile(tmp, `${JSON.stringify({ format: FORMAT, verdicts })}\n`, { mode: 0o600, flag: 'wx' });
      await fs.promises.rename(tmp, this.file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      this.log.warn({ err, file: this.file }, 'could not write the layers\' xattr census; the next FUSE server learns the verdicts again');
    }
  }
}
