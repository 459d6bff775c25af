import { InvalidArgument, quote } from '../errors.js';
import type { Labels } from './types.js';

// containerd's own limit (labels.Validate): key and value together at most 4 KiB.
export const MAX_LABEL_BYTES = 4096;

/** The label that marks a snapshot served from the layer store, with the layer digest as its value. */
export const REMOTE_LABEL = 'containerd.io/snapshot/remote';
/** The target name containerd asks a remote snapshotter to commit a layer under. */
export const TARGET_REF_LABEL = 'containerd.io/snapshot.ref';
/** The compressed layer digest containerd's CRI plugin attaches to each layer's Prepare. */
export const LAYER_DIGEST_LABEL = 'containerd.io/snapshot/cri.layer-digest';

/**
 * Checks labels against containerd's limits and returns the ones to store. An empty value
 * means "no such label", as in containerd's metadata store.
 */
export function validateLabels(labels: Labels, key: string): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels)) {
    if (k === '') throw new InvalidArgument(`snapshot ${quote(key)}: label key must not be empty`);
    const bytes = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (bytes > MAX_LABEL_BYTES) {
      throw new InvalidArgument(
        `snapshot ${quote(key)}: label ${quote(k, 64)} is ${bytes} bytes, ` +
          `key and value together may be at most ${MAX_LABEL_BYTES} bytes`);
    }
    if (v !== '') out[k] = v;
  }
  return out;
}
