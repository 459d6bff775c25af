// Why ingest refused a layer or could not finish it, in words a user understands: every message
// names the image, the layer and the cause, and a full disk is called a full disk (tar alone says
// "Wrote only 4608 of 10240 bytes").
import { statfs } from 'node:fs/promises';
import { errnoCode, SnapshotterError, type ErrorKind } from '../../errors.js';
import type { LayerDigest } from '../digest.js';

export type RefusalReason =
  | 'digest-mismatch'
  | 'truncated'
  | 'oversized'
  | 'unpack-bound'
  | 'entry-bound'
  | 'undecompressable'
  | 'unpack-failed'
  | 'download-failed'
  | 'disk-full';

/** `layer sha256:… of image …`: how every message names what it is about. */
export interface LayerLabel {
  digest: LayerDigest;
  image: string;
}

export function layerText(l: LayerLabel): string {
  return `layer ${l.digest} of image ${l.image}`;
}

/** A layer that was not put into the store; nothing of it was kept. */
export class LayerRefused extends SnapshotterError {
  constructor(
    kind: ErrorKind,
    readonly reason: RefusalReason,
    readonly layer: LayerLabel,
    /** The cause alone, without the layer's name: for a line that already names the layer. */
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(kind, `${layerText(layer)} ${detail}`, options);
  }
}

/** The file system holding the store ran out of space (or inodes, or quota). */
export class DiskFull extends SnapshotterError {
  constructor(readonly path: string, readonly code: 'ENOSPC' | 'EDQUOT', readonly doing: string, readonly layer?: LayerLabel) {
    const what = code === 'EDQUOT' ? `the disk quota for ${path} is used up (EDQUOT)` : `the disk holding ${path} is full (ENOSPC)`;
    super('ResourceExhausted', `${what} while ${doing}; nothing of it was kept: free space there and run ingest again`);
  }
}

/** ENOSPC or EDQUOT from a system call, or undefined. */
export function diskFullCode(err: unknown): 'ENOSPC' | 'EDQUOT' | undefined {
  const code = errnoCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT' ? code : undefined;
}

/**
 * Whether tar failed because the disk filled. GNU tar says "No space left on device" when it
 * cannot create a file, but a short write of file data only gives "Wrote only N of M bytes",
 * without errno; then the file system itself is asked whether it is (nearly) full.
 */
export async function tarDiskFull(stderr: string, storeRoot: string): Promise<'ENOSPC' | 'EDQUOT' | undefined> {
  if (/No space left on device/.test(stderr)) return 'ENOSPC';
  if (/Disk quota exceeded/.test(stderr)) return 'EDQUOT';
  if (!/Wrote only \d+ of \d+ bytes/.test(stderr)) return undefined;
  try {
    const s = await statfs(storeRoot);
    // tar wrote a 10 KiB record short: less than a record's worth of room is left.
    if (s.bavail * s.bsize < 1024 * 1024 || s.ffree === 0) return 'ENOSPC';
  } catch {
    // cannot tell: report tar's own words
  }
  return undefined;
}

/**
 * The size in words: 204.8 KiB, 19.9 MiB; `brief` for a progress column: 512 B, 9.5 MiB, 205 KiB
 * (one decimal only below 10).
 */
export function formatSize(n: number, brief = false): string {
  if (n < 1024) return brief ? `${n} B` : `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(brief && v >= 10 ? 0 : 1)} ${units[i]}`;
}

/** The user stopped the run (Ctrl-C, SIGTERM); the unfinished layers were taken away. */
export class Interrupted extends SnapshotterError {
  constructor(readonly image: string) {
    super('Unavailable', `ingest of image ${image} was interrupted; the layers not yet complete were not kept, the complete ones stay`);
  }
}
