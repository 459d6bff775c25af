// Unpacks one verified layer blob (a file of the staging area) and puts the result into the
// store. The blob is decompressed and fed to GNU tar, which as root restores modes, owners,
// mtimes, xattrs, hardlinks, symlinks, devices and fifos exactly. Between the decompressor and
// tar, TarBounds counts the bytes and entries and stops a decompression bomb at its bound (see
// bounds.ts). tar writes into the staging area; only a completely unpacked tree is renamed into
// `.layers/<xx>/<hex>`, so a reader of the store sees the whole layer or none of it, and a
// refused layer leaves no directory there.
//
// Whiteouts are not interpreted: `.wh.` files stay as the tar has them, as DUCC keeps them.
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { errnoCode } from '../../errors.js';
import { spawnFilter, spawnPiped, type ExecResult, type FilterChild } from '../../sys/exec.js';
import type { LayerDigest } from '../digest.js';
import { LAYERFS_DIR, LAYERS_DIR, type LayerStore } from '../store.js';
import { BoundExceeded, maxUnpackedBytes, TarBounds, UNPACK_FLOOR_BYTES, type UnpackBound } from './bounds.js';
import { DiskFull, formatSize, LayerRefused, layerText, tarDiskFull, type LayerLabel } from './faults.js';
import { removeIfEmpty } from './staging.js';

export interface UnpackOptions {
  /** The blob, already verified against its descriptor. */
  file: string;
  compressedSize: number;
  /** The directory to make and unpack into; the caller removes it when this fails. */
  into: string;
  bound: UnpackBound;
  layer: LayerLabel;
  /** Named in a disk-full message. */
  storeRoot: string;
  /** Stops tar and the decompressor; the caller reports the interruption. */
  signal?: AbortSignal;
}

export interface UnpackStats {
  /** Bytes of the tar stream (the decompressed blob). */
  bytes: number;
  entries: number;
}

const TAR_ARGS = [
  '--extract', '--file=-',
  '--same-owner', '--numeric-owner', '--same-permissions',
  '--xattrs', '--xattrs-include=*',
  // Layers written by Go's archive/tar carry PAX keywords GNU tar does not know; they are harmless.
  '--warning=no-unknown-keyword', '--warning=no-timestamp',
];

// Bigger chunks than Node's 64 KiB (files) and 16 KiB (zlib): with the defaults, unpacking after
// the download made ingest of a 108 MiB image ~50% slower than unpacking while downloading;
// with these it is as fast.
const READ_CHUNK = 256 * 1024;

type Compression = 'gzip' | 'zstd' | 'none';

function sniff(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

// Node ≥ 22.15 decompresses zstd itself; on older Node the zstd program does, as a filter whose
// output still passes through TarBounds.
type ZstdFactory = () => Transform;
function nodeZstd(): ZstdFactory | undefined {
  const f: unknown = (zlib as unknown as Record<string, unknown>).createZstdDecompress;
  return typeof f === 'function' ? (f as ZstdFactory) : undefined;
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function isBrokenPipe(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-5).join('; ');
}

export async function unpackLayer(opts: UnpackOptions): Promise<UnpackStats> {
  const compression = sniff(await readHead(opts.file));
  await mkdir(opts.into, { mode: 0o755 });
  // The archive's "./" entry, when there is one, sets the root's real mode.
  await chmod(opts.into, 0o755);

  const maxBytes = maxUnpackedBytes(opts.compressedSize, opts.bound);
  const bounds = new TarBounds(maxBytes, opts.bound.maxEntries);
  const tar = spawnPiped('tar', [...TAR_ARGS, `--directory=${opts.into}`]);
  const zstdInNode = compression === 'zstd' ? nodeZstd() : undefined;
  let zstdProgram: FilterChild | undefined;
  let feed: Promise<unknown> = Promise.resolve();
  const stages: Array<Readable | Transform> = [];
  if (compression === 'zstd' && !zstdInNode) {
    zstdProgram = spawnFilter('zstd', ['--decompress', '--stdout', '--quiet']);
    feed = pipeline(createReadStream(opts.file, { highWaterMark: READ_CHUNK }), zstdProgram.stdin).catch((err: unknown) => err);
    stages.push(zstdProgram.stdout as Readable);
  } else {
    stages.push(createReadStream(opts.file, { highWaterMark: READ_CHUNK }));
    if (compression === 'gzip') stages.push(zlib.createGunzip({ chunkSize: READ_CHUNK }));
    if (zstdInNode) stages.push(zstdInNode());
  }

  const stopAll = (): void => {
    tar.kill('SIGKILL');
    zstdProgram?.kill('SIGKILL');
  };
  const onAbort = (): void => {
    stopAll();
    bounds.destroy(new Error('interrupted'));
  };
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let streamErr: unknown;
  await pipeline([...stages, bounds, tar.stdin] as unknown as [Readable, ...Transform[], NodeJS.WritableStream])
    .catch((err: unknown) => { streamErr = err; })
    .finally(() => opts.signal?.removeEventListener('abort', onAbort));
  if (streamErr !== undefined && !isBrokenPipe(streamErr)) stopAll();
  const [r, z] = await Promise.all([
    tar.done,
    zstdProgram?.done.catch((err: unknown): ExecResult => ({ code: null, signal: null, stdout: '', stderr: String(err) })),
    feed,
  ]);

  const label = opts.layer;
  if (streamErr instanceof BoundExceeded) {
    if (streamErr.what === 'entries') {
      throw new LayerRefused('ResourceExhausted', 'entry-bound', label,
        `holds more than ${streamErr.limit} files and directories; refused as a likely decompression bomb. Raise --max-unpack-entries if the layer is genuine`);
    }
    const floor = maxBytes === UNPACK_FLOOR_BYTES && opts.compressedSize * opts.bound.ratio < UNPACK_FLOOR_BYTES;
    const why = floor
      ? `the ${formatSize(UNPACK_FLOOR_BYTES)} every layer may unpack to; ${opts.bound.ratio} times its compressed size of ${formatSize(opts.compressedSize)} is less`
      : `${opts.bound.ratio} times its compressed size of ${formatSize(opts.compressedSize)}`;
    throw new LayerRefused('ResourceExhausted', 'unpack-bound', label,
      `unpacks to more than ${formatSize(maxBytes)} (${why}); refused as a likely decompression bomb. Raise --max-unpack-ratio if the layer is genuine`);
  }
  if (z && z.code !== 0) {
    const missing = /ENOENT/.test(z.stderr) ? ' (this layer is zstd-compressed: install the zstd program, or use Node ≥ 22.15)' : '';
    throw new LayerRefused('FailedPrecondition', 'undecompressable', label,
      `cannot be decompressed (zstd, ${z.signal ?? `exit ${z.code}`}): ${lastLines(z.stderr)}${missing}`);
  }
  if (streamErr !== undefined && !isBrokenPipe(streamErr)) {
    const msg = streamErr instanceof Error ? streamErr.message : String(streamErr);
    throw new LayerRefused('FailedPrecondition', 'undecompressable', label,
      `cannot be decompressed (${compression}): ${msg}; the blob matches its digest, so the image itself is broken`);
  }
  if (r.code !== 0) {
    const full = await tarDiskFull(r.stderr, opts.storeRoot);
    if (full) throw new DiskFull(opts.storeRoot, full, `unpacking ${layerText(label)}`, label);
    const hint = /Cannot change ownership|Operation not permitted/.test(r.stderr) && process.getuid?.() !== 0
      ? ' (owners, device files and trusted.* xattrs can only be restored as root: run ingest as root)'
      : '';
    throw new LayerRefused('FailedPrecondition', 'unpack-failed', label,
      `could not be unpacked: tar could not unpack the layer (${r.signal ?? `exit ${r.code}`}): ${lastLines(r.stderr)}${hint}`);
  }
  return { bytes: bounds.bytes, entries: bounds.entries };
}

export type PlaceOutcome = 'ingested' | 'present';

/**
 * Moves a staged layer directory (which holds `layerfs`) to `.layers/<xx>/<hex>` in one rename.
 * Resolves 'present' when another ingest put the layer there first. When the rename fails, the
 * `.layers` and `<xx>` directories it made are taken away again.
 */
export async function placeLayer(store: LayerStore, digest: LayerDigest, staged: string): Promise<PlaceOutcome> {
  const layerDir = store.layerDir(digest);
  const parent = path.dirname(layerDir);
  const created = await mkdir(parent, { recursive: true, mode: 0o755 });
  try {
    try {
      // An empty directory in the way (left by an older version) is replaced.
      await rename(staged, layerDir);
      return 'ingested';
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      if (await store.has(digest)) return 'present';
    }
    // The layer's directory holds something else, but no layerfs: put layerfs into it.
    try {
      await rename(path.join(staged, LAYERFS_DIR), path.join(layerDir, LAYERFS_DIR));
      return 'ingested';
    } catch (err) {
      const code = errnoCode(err);
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await store.has(digest))) return 'present';
      throw err;
    }
  } catch (err) {
    if (created !== undefined) {
      const layers = path.join(store.root, LAYERS_DIR);
      if (await removeIfEmpty(parent)) {
        if (created === layers) await removeIfEmpty(layers);
      }
    }
    throw err;
  }
}
