// Downloads one blob into a file of the staging area and proves it is the blob the manifest
// names: exactly the descriptor's size, hashing to its digest. Nothing is unpacked before that,
// so a tampered or truncated blob never reaches tar, and a blob longer than its descriptor is
// cut off at the first byte too many.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SnapshotterError, Unavailable } from '../../errors.js';
import type { Descriptor } from './manifest.js';
import { causeText } from './auth.js';
import { DiskFull, diskFullCode, LayerRefused, layerText, type LayerLabel } from './faults.js';
import type { RegistryClient } from './registry.js';

export interface DownloadOptions {
  client: RegistryClient;
  repository: string;
  layer: Descriptor;
  image: string;
  /** The file to write; it must not exist. */
  file: string;
  /** Named in a disk-full message. */
  storeRoot: string;
  /** Called with the number of bytes received since the last call. */
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

class TooLong extends Error {}

export async function downloadBlob(opts: DownloadOptions): Promise<void> {
  const { digest, size } = opts.layer;
  const label: LayerLabel = { digest, image: opts.image };
  const blob = await opts.client.openBlob(opts.repository, digest, opts.signal);
  if (blob.contentLength !== undefined && blob.contentLength > size) {
    blob.body.destroy();
    throw new LayerRefused('FailedPrecondition', 'oversized', label,
      `is longer than its manifest says: the registry announces ${blob.contentLength} bytes, the manifest ${size}; the layer was discarded`);
  }

  const hash = createHash('sha256');
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      received += chunk.length;
      if (received > size) {
        cb(new TooLong());
        return;
      }
      hash.update(chunk);
      opts.onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(blob.body, meter, createWriteStream(opts.file, { flags: 'wx', mode: 0o600 }), ...(opts.signal ? [{ signal: opts.signal }] : []));
  } catch (err) {
    if (err instanceof TooLong) {
      throw new LayerRefused('FailedPrecondition', 'oversized', label,
        `is longer than its manifest says: the registry sent more than the ${size} bytes of its descriptor; the layer was discarded`);
    }
    const full = diskFullCode(err);
    if (full) throw new DiskFull(opts.storeRoot, full, `downloading ${layerText(label)}`, label);
    if (received < size) {
      throw new LayerRefused('Unavailable', 'truncated', label,
        `is truncated: the registry sent ${received} of ${size} bytes (the transfer broke off: ${causeText(err)}); the layer was discarded`, { cause: err });
    }
    if (err instanceof SnapshotterError) throw err;
    throw new Unavailable(`cannot download ${layerText(label)}: ${causeText(err)}`, err);
  }
  if (received < size) {
    throw new LayerRefused('FailedPrecondition', 'truncated', label,
      `is truncated: the registry sent ${received} of ${size} bytes; the layer was discarded`);
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest) {
    throw new LayerRefused('FailedPrecondition', 'digest-mismatch', label,
      `does not match its digest: the registry served ${actual} (${received} bytes); the layer was discarded`);
  }
}
