// Ingests an image: resolves its manifest (through an index, for one platform), then puts each
// layer into the store, DUCC's way. The caller learns what happens through events, so the CLI
// can draw progress bars or print lines while this module writes nothing to the terminal.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { FailedPrecondition, SnapshotterError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { digestHex, type LayerDigest } from '../digest.js';
import { LAYERFS_DIR, type LayerStore } from '../store.js';
import type { Credentials } from './auth.js';
import { DEFAULT_MAX_UNPACK_ENTRIES, DEFAULT_MAX_UNPACK_RATIO, type UnpackBound } from './bounds.js';
import { downloadBlob } from './download.js';
import { placeLayer, unpackLayer } from './extract.js';
import { DiskFull, diskFullCode, Interrupted, layerText, type LayerLabel } from './faults.js';
import { parseManifest, type Descriptor, type ImageManifest } from './manifest.js';
import { recordManifest } from './metadata.js';
import { removeTree } from '../../sys/remove-tree.js';
import { Staging } from './staging.js';
import { DEFAULT_PLATFORM, formatPlatform, selectManifest, type Platform } from './platform.js';
import { formatImageReference, parseImageReference, type ImageReference } from './reference.js';
import { RegistryClient } from './registry.js';

export type LayerStatus = 'ingested' | 'skipped';

export type IngestEvent =
  | { type: 'resolved'; image: string; manifestDigest: LayerDigest; platform?: string; layers: Descriptor[] }
  | { type: 'layer-start'; digest: LayerDigest; size: number }
  | { type: 'layer-progress'; digest: LayerDigest; bytes: number; size: number }
  | { type: 'layer-unpacking'; digest: LayerDigest; size: number }
  | { type: 'layer-done'; digest: LayerDigest; size: number; status: LayerStatus; ms: number }
  | { type: 'layer-failed'; digest: LayerDigest; size: number; error: Error; ms: number };

export interface IngestOptions {
  store: LayerStore;
  plainHttp?: boolean;
  /** Which manifest of an index to take; linux/amd64 when absent. */
  platform?: Platform;
  credentials?: Credentials;
  /** Layers downloaded at once. */
  concurrency?: number;
  /** A layer may unpack to this many times its compressed size (see bounds.ts); 100 when absent. */
  maxUnpackRatio?: number;
  /** A layer may hold this many entries; 2,000,000 when absent. */
  maxUnpackEntries?: number;
  logger?: Logger;
  onEvent?: (event: IngestEvent) => void;
  fetch?: typeof fetch;
  /** Aborting stops the run: no new layer is started, unfinished ones are removed, Interrupted is thrown. */
  signal?: AbortSignal;
}

export interface LayerResult {
  digest: LayerDigest;
  size: number;
  status: LayerStatus;
  ms: number;
  /** Bytes of the layer's tar stream, when this run unpacked it. */
  unpackedBytes?: number;
}

export interface IngestResult {
  /** Canonical reference, e.g. `docker.io/library/busybox:latest`. */
  image: string;
  /** Digest of the image manifest whose layers were ingested (not of the index). */
  manifestDigest: LayerDigest;
  /** The platform chosen from an index, when the reference named one. */
  platform?: string;
  layers: LayerResult[];
  /** Where manifest.json was recorded. */
  manifestPath: string;
}

/** Some layers could not be ingested; the others are in the store. */
export class IngestFailed extends SnapshotterError {
  constructor(readonly image: string, readonly failures: ReadonlyArray<{ digest: LayerDigest; error: Error }>, total: number) {
    const kept = total - failures.length;
    super(
      failures.every((f) => f.error instanceof SnapshotterError && f.error.kind === 'ResourceExhausted') ? 'ResourceExhausted' : 'FailedPrecondition',
      `${failures.length} of ${total} layer(s) of ${image} could not be ingested${kept > 0 ? ` (the other ${kept} ${kept === 1 ? 'is' : 'are'} in the store)` : ''}; its manifest was not recorded:\n${failures.map((f) => `  ${f.error.message}`).join('\n')}`,
    );
  }
}

const DEFAULT_CONCURRENCY = 3;

export async function ingestImage(image: string, opts: IngestOptions): Promise<IngestResult> {
  const ref = parseImageReference(image);
  const name = formatImageReference(ref);
  const log = opts.logger?.child({ image: name });
  const client = new RegistryClient(ref.apiHost, {
    plainHttp: opts.plainHttp ?? false,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
    ...(log ? { logger: log } : {}),
  });

  const { manifest, body, digest, platform } = await resolveManifest(client, ref, opts.platform ?? DEFAULT_PLATFORM, opts.signal);
  const layers = uniqueLayers(manifest.layers);
  opts.onEvent?.({ type: 'resolved', image: name, manifestDigest: digest, layers, ...(platform ? { platform } : {}) });
  log?.info({ manifestDigest: digest, platform, layers: layers.length }, 'resolved image manifest');

  const bound: UnpackBound = {
    ratio: opts.maxUnpackRatio ?? DEFAULT_MAX_UNPACK_RATIO,
    maxEntries: opts.maxUnpackEntries ?? DEFAULT_MAX_UNPACK_ENTRIES,
  };
  const staging = await openStaging(opts.store, name, log);
  const results: LayerResult[] = [];
  let manifestPath: string;
  try {
    const failures: Array<{ digest: LayerDigest; error: Error }> = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < layers.length && !opts.signal?.aborted) {
        const layer = layers[next++] as Descriptor;
        try {
          results.push(await ingestLayer({ client, ref, image: name, layer, bound, staging, opts, log }));
        } catch (err) {
          failures.push({ digest: layer.digest, error: err instanceof Error ? err : new Error(String(err)) });
        }
      }
    };
    const n = Math.max(1, Math.min(opts.concurrency ?? DEFAULT_CONCURRENCY, layers.length));
    await Promise.all(Array.from({ length: n }, worker));

    if (opts.signal?.aborted) throw new Interrupted(name);
    if (failures.length > 0) {
      const order = new Map(layers.map((l, i) => [l.digest, i]));
      failures.sort((a, b) => (order.get(a.digest) ?? 0) - (order.get(b.digest) ?? 0));
      throw new IngestFailed(name, failures, layers.length);
    }
    // Recorded only when every layer is in: a recorded manifest means the whole image is usable.
    try {
      manifestPath = await recordManifest(opts.store, ref, body, staging.dir);
    } catch (err) {
      const full = diskFullCode(err);
      if (full) throw new DiskFull(opts.store.root, full, `recording the manifest of image ${name}`);
      throw err;
    }
  } finally {
    await staging.close();
  }
  const order = new Map(layers.map((l, i) => [l.digest, i]));
  results.sort((a, b) => (order.get(a.digest) ?? 0) - (order.get(b.digest) ?? 0));
  return { image: name, manifestDigest: digest, ...(platform ? { platform } : {}), layers: results, manifestPath };
}

interface ResolvedManifest {
  manifest: ImageManifest;
  body: Buffer;
  digest: LayerDigest;
  platform?: string;
}

async function resolveManifest(client: RegistryClient, ref: ImageReference, want: Platform, signal: AbortSignal | undefined): Promise<ResolvedManifest> {
  const top = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest', signal);
  if (ref.digest && top.digest !== ref.digest) {
    throw new FailedPrecondition(`the registry's manifest for ${ref.digest} hashes to ${top.digest}; refusing it`);
  }
  const doc = parseManifest(top.body, top.contentType);
  if (doc.kind === 'manifest') return { manifest: doc, body: top.body, digest: top.digest };

  const chosen = selectManifest(doc.manifests, want);
  const child = await client.getManifest(ref.repository, chosen.digest, signal);
  if (child.digest !== chosen.digest) {
    throw new FailedPrecondition(`the registry's manifest for ${chosen.digest} hashes to ${child.digest}; refusing it`);
  }
  const inner = parseManifest(child.body, child.contentType);
  if (inner.kind !== 'manifest') throw new FailedPrecondition(`index entry ${chosen.digest} is itself an index; nested indexes are not supported`);
  return { manifest: inner, body: child.body, digest: child.digest, platform: formatPlatform(chosen.platform ?? want) };
}

// An image may list one blob twice (Docker's empty layers); it is unpacked once.
function uniqueLayers(layers: readonly Descriptor[]): Descriptor[] {
  const seen = new Set<string>();
  return layers.filter((l) => (seen.has(l.digest) ? false : (seen.add(l.digest), true)));
}

async function openStaging(store: LayerStore, image: string, log: Logger | undefined): Promise<Staging> {
  try {
    return await Staging.open(store, log);
  } catch (err) {
    const full = diskFullCode(err);
    if (full) throw new DiskFull(store.root, full, `preparing to ingest image ${image}`);
    throw err;
  }
}

interface LayerJob {
  client: RegistryClient;
  ref: ImageReference;
  image: string;
  layer: Descriptor;
  bound: UnpackBound;
  staging: Staging;
  opts: IngestOptions;
  log: Logger | undefined;
}

async function ingestLayer(job: LayerJob): Promise<LayerResult> {
  const { opts, layer: { digest, size } } = job;
  const started = performance.now();
  const ms = (): number => Math.round(performance.now() - started);
  opts.onEvent?.({ type: 'layer-start', digest, size });
  const log = job.log?.child({ layer: digest });
  try {
    const result: LayerResult = await (await opts.store.has(digest)
      ? { digest, size, status: 'skipped' as const, ms: 0 }
      : fetchAndUnpack(job));
    result.ms = ms();
    opts.onEvent?.({ type: 'layer-done', ...result });
    log?.info({ size, status: result.status, unpackedBytes: result.unpackedBytes, ms: result.ms }, 'layer');
    return result;
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    opts.onEvent?.({ type: 'layer-failed', digest, size, error, ms: ms() });
    log?.error({ err: error.message }, 'layer failed');
    throw error;
  }
}

// Download to a file, verify digest and size, unpack into the staging area, rename into the
// store. Whatever fails, the layer's files in the staging area are removed before this returns.
async function fetchAndUnpack(job: LayerJob): Promise<LayerResult> {
  const { opts, layer, staging } = job;
  const { digest, size } = layer;
  const label: LayerLabel = { digest, image: job.image };
  const hex = digestHex(digest);
  const blobFile = staging.path(`${hex}.blob`);
  const stagedDir = staging.path(hex);
  const root = opts.store.root;
  let phase = 'downloading';
  try {
    let bytes = 0;
    await downloadBlob({
      client: job.client,
      repository: job.ref.repository,
      layer,
      image: job.image,
      file: blobFile,
      storeRoot: root,
      onBytes: (n) => {
        bytes += n;
        opts.onEvent?.({ type: 'layer-progress', digest, bytes, size });
      },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    phase = 'unpacking';
    opts.onEvent?.({ type: 'layer-unpacking', digest, size });
    await mkdirStaged(stagedDir);
    const stats = await unpackLayer({
      file: blobFile,
      compressedSize: size,
      into: `${stagedDir}/${LAYERFS_DIR}`,
      bound: job.bound,
      layer: label,
      storeRoot: root,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    // The blob is not needed any more: free its space before the next layer needs it.
    await rm(blobFile, { force: true });
    phase = 'moving into the store';
    const outcome = await placeLayer(opts.store, digest, stagedDir);
    return { digest, size, status: outcome === 'ingested' ? 'ingested' : 'skipped', ms: 0, ...(outcome === 'ingested' ? { unpackedBytes: stats.bytes } : {}) };
  } catch (err) {
    // Whatever the interruption broke (a transfer, tar) is not the layer's fault.
    if (opts.signal?.aborted) throw new Interrupted(job.image);
    const full = diskFullCode(err);
    if (full) throw new DiskFull(root, full, `${phase} ${layerText(label)}`, label);
    throw err;
  } finally {
    await rm(blobFile, { force: true });
    await removeTree(stagedDir);
  }
}

async function mkdirStaged(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o755 });
  // This directory becomes .layers/<xx>/<hex>: readable by all whatever the umask.
  await chmod(dir, 0o755);
}
