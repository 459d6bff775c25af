// How many layers one server can take. No thread is held per mount: a layer costs two
// descriptors (its /dev/fuse connection and its root in the store), the files it keeps open,
// and a little memory. The limit that bites first is the process's descriptor limit, so a
// mount that would run the process out of descriptors is refused with a message that says
// what to raise, instead of failing some later open in the middle of a container's read.
import fs from 'node:fs';
import { SnapshotterError } from '../../errors.js';

/** Descriptors a layer holds for itself. */
export const FDS_PER_LAYER = 2;
/** Kept free for everything else: sockets, logs, store files being opened. */
const RESERVED_FDS = 256;

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start). */
export function openFileLimit(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return 1024;
    }
  }
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  if (soft === undefined) return 1024;
  return soft === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(soft) || 1024;
}

export interface CapacityUse {
  layers: number;
  openFiles: number;
}

/** Throws ResourceExhausted when one more layer would not fit in the descriptor limit. */
export function checkCapacity(use: CapacityUse, limit: number, maxLayers: number, mp: string): void {
  if (maxLayers > 0 && use.layers >= maxLayers) {
    throw new SnapshotterError('ResourceExhausted', `cannot serve another layer at ${mp}: this FUSE server serves ${use.layers} layers, its configured maximum`);
  }
  const need = (use.layers + 1) * FDS_PER_LAYER + use.openFiles + RESERVED_FDS;
  if (need > limit) {
    throw new SnapshotterError('ResourceExhausted',
      `cannot serve another layer at ${mp}: ${use.layers} layers and ${use.openFiles} open store files would need ${need} file descriptors, `
      + `and the FUSE server may have ${limit} (raise LimitNOFILE of its unit, or ulimit -n before starting it)`);
  }
}
