// Unpacks one layer blob into the store. The blob is hashed while it streams from the registry,
// decompressed, and fed to GNU tar, which as root restores modes, owners, mtimes, xattrs,
// hardlinks, symlinks, devices and fifos exactly. tar writes into a temporary directory next to
// the final one, and only a verified, completely unpacked tree is renamed to `layerfs`: a
// reader of the store sees the whole layer or none of it.
//
// Whiteouts are not interpreted: `.wh.` files stay as the tar has them, as DUCC keeps them.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { errnoCode, FailedPrecondition, SnapshotterError } from '../../errors.js';
import { spawnPiped } from '../../sys/exec.js';
import { parseDigest, type LayerDigest } from '../digest.js';
import { LAYERFS_DIR, type LayerStore } from '../store.js';

/** The blob's bytes did not hash to the digest the manifest names. */
export class DigestMismatch extends SnapshotterError {
  constructor(readonly expected: LayerDigest, readonly actual: string, bytes: number) {
    super('FailedPrecondition', `blob ${expected} does not match its digest: ${bytes} bytes hash to ${actual}; the layer was discarded`);
  }
}

export interface ExtractOptions {
  store: LayerStore;
  digest: LayerDigest;
  /** Size from the manifest: a longer or shorter blob is rejected. */
  size: number;
  body: Readable;
  /** Called with the number of compressed bytes received since the last call. */
  onBytes?: (n: number) => void;
}

export type ExtractOutcome = 'ingested' | 'present';

const TAR_ARGS = [
  '--extract', '--file=-',
  '--same-owner', '--numeric-owner', '--same-permissions',
  '--xattrs', '--xattrs-include=*',
  // Layers written by Go's archive/tar carry PAX keywords GNU tar does not know; they are harmless.
  '--warning=no-unknown-keyword', '--warning=no-timestamp',
];

type Compression = 'gzip' | 'zstd' | 'none';

function sniff(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

// Node ≥ 22.15 decompresses zstd itself; on older Node, GNU tar runs the zstd program.
type ZstdFactory = () => Transform;
function nodeZstd(): ZstdFactory | undefined {
  const f: unknown = (zlib as unknown as Record<string, unknown>).createZstdDecompress;
  return typeof f === 'function' ? (f as ZstdFactory) : undefined;
}

/**
 * Ingests one layer. Resolves 'present' when the layer is already there (or another ingest won
 * the race to put it there), 'ingested' when this call put it there.
 */
export async function extractLayer(opts: ExtractOptions): Promise<ExtractOutcome> {
  const digest = parseDigest(opts.digest, 'layer digest');
  const { store } = opts;
  if (await store.has(digest)) {
    opts.body.destroy();
    return 'present';
  }
  const layerDir = store.layerDir(digest);
  await mkdir(layerDir, { recursive: true, mode: 0o755 });
  const tmp = await mkdtemp(path.join(layerDir, `.${LAYERFS_DIR}.tmp-`));
  try {
    // The archive's "./" entry, when there is one, sets the root's real mode.
    await chmod(tmp, 0o755);
    await streamIntoTar(opts, digest, tmp);
    try {
      await rename(tmp, path.join(layerDir, LAYERFS_DIR));
    } catch (err) {
      const code = errnoCode(err);
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await store.has(digest))) return 'present';
      throw err;
    }
    return 'ingested';
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function streamIntoTar(opts: ExtractOptions, digest: LayerDigest, dir: string): Promise<void> {
  const hash = createHash('sha256');
  let received = 0;
  const head: Buffer[] = [];
  let sink: Sink | undefined;
  const open = (): Sink => startSink(sniff(Buffer.concat(head)), dir);

  try {
    // Reading the blob is this loop's job alone, so when tar or the decompressor fails half-way
    // the rest of the blob is still read and hashed: a corrupt blob is then reported as a digest
    // mismatch, which is the real cause, rather than as "invalid gzip header".
    for await (const chunk of opts.body as AsyncIterable<Buffer>) {
      received += chunk.length;
      if (received > opts.size) {
        throw new FailedPrecondition(`blob ${digest} is longer than the ${opts.size} bytes its manifest says; the layer was discarded`);
      }
      hash.update(chunk);
      opts.onBytes?.(chunk.length);
      if (sink) {
        await sink.write(chunk);
        continue;
      }
      // The compression is recognised from the first four bytes.
      head.push(chunk);
      if (received < 4) continue;
      sink = open();
      for (const c of head.splice(0)) await sink.write(c);
    }
    sink ??= open();
    for (const c of head.splice(0)) await sink.write(c);

    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) throw new DigestMismatch(digest, actual, received);
    if (received !== opts.size) {
      throw new FailedPrecondition(`blob ${digest} is ${received} bytes, not the ${opts.size} its manifest says; the layer was discarded`);
    }
  } catch (err) {
    opts.body.destroy();
    if (sink) {
      sink.abort();
      await sink.done.catch(() => undefined);
    }
    throw err;
  }
  sink.end();
  await sink.done;
}

function isBrokenPipe(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

interface Sink {
  /** Writes with backpressure; after a failure further writes are dropped (the blob is still hashed). */
  write(chunk: Buffer): Promise<void>;
  end(): void;
  /** Stops tar: the input is known to be bad. */
  abort(): void;
  /** Settles when tar has exited: rejects with tar's or the decompressor's error. */
  done: Promise<void>;
}

function startSink(compression: Compression, dir: string): Sink {
  const zstdInNode = compression === 'zstd' ? nodeZstd() : undefined;
  const tarArgs = compression === 'zstd' && !zstdInNode ? ['--zstd', ...TAR_ARGS] : TAR_ARGS;
  const tar = spawnPiped('tar', [...tarArgs, `--directory=${dir}`]);
  const entry = new PassThrough();
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [entry];
  if (compression === 'gzip') stages.push(zlib.createGunzip());
  if (zstdInNode) stages.push(zstdInNode());

  let failed: unknown;
  let aborted = false;
  const flowed = pipeline([...stages, tar.stdin] as unknown as [Readable, ...Transform[], NodeJS.WritableStream])
    .catch((err: unknown) => { failed = err; });

  const done = (async () => {
    await flowed;
    const r = await tar.done;
    if (aborted) throw new Error('tar was stopped');
    // A broken pipe only means tar stopped reading: it may exit as soon as it reads the
    // end-of-archive blocks, before the padding after them (no error at all), or it failed,
    // which its exit status and stderr tell better. Any other failure is the decompressor's.
    if (failed !== undefined && !isBrokenPipe(failed)) {
      const msg = failed instanceof Error ? failed.message : String(failed);
      throw new FailedPrecondition(`cannot decompress the layer (${compression}): ${msg}`);
    }
    if (r.code !== 0) {
      const err = r.stderr.trim().split('\n').slice(-5).join('; ');
      const hint = /zstd: Cannot exec/.test(r.stderr)
        ? ' (this layer is zstd-compressed: install the zstd program, or use Node ≥ 22.15)'
        : /Cannot change ownership|Operation not permitted/.test(r.stderr) && process.getuid?.() !== 0
          ? ' (owners, device files and trusted.* xattrs can only be restored as root: run ingest as root)'
          : '';
      throw new FailedPrecondition(`tar could not unpack the layer (${r.signal ?? `exit ${r.code}`}): ${err}${hint}`);
    }
  })();
  // The outcome is awaited by the caller; this only keeps an early failure from being unhandled.
  done.catch(() => undefined);

  return {
    async write(chunk) {
      if (failed !== undefined || entry.destroyed) return;
      if (!entry.write(chunk)) {
        await Promise.race([once(entry, 'drain').catch(() => undefined), flowed]);
      }
    },
    end() {
      if (!entry.destroyed) entry.end();
    },
    abort() {
      aborted = true;
      entry.destroy();
      tar.kill('SIGKILL');
    },
    done,
  };
}
