// Ingests an image: resolves its manifest (through an index, for one platform), then puts each
// layer into the store, DUCC's way. The caller learns what happens through events, so the CLI
// can draw progress bars or print lines while this module writes nothing to the terminal.
import { performance } from 'node:perf_hooks';
import { FailedPrecondition, SnapshotterError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { LayerDigest } from '../digest.js';
import type { LayerStore } from '../store.js';
import type { Credentials } from './auth.js';
import { extractLayer } from './extract.js';
import { parseManifest, type Descriptor, type ImageManifest } from './manifest.js';
import { recordManifest } from './metadata.js';
import { DEFAULT_PLATFORM, formatPlatform, selectManifest, type Platform } from './platform.js';
import { formatImageReference, parseImageReference, type ImageReference } from './reference.js';
import { RegistryClient } from './registry.js';

export type LayerStatus = 'ingested' | 'skipped';

export type IngestEvent =
  | { type: 'resolved'; image: string; manifestDigest: LayerDigest; platform?: string; layers: Descriptor[] }
  | { type: 'layer-start'; digest: LayerDigest; size: number }
  | { type: 'layer-progress'; digest: LayerDigest; bytes: number; size: number }
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
  logger?: Logger;
  onEvent?: (event: IngestEvent) => void;
  fetch?: typeof fetch;
}

export interface LayerResult {
  digest: LayerDigest;
  size: number;
  status: LayerStatus;
  ms: number;
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
  constructor(readonly image: string, readonly failures: ReadonlyArray<{ digest: LayerDigest; error: Error }>) {
    super('FailedPrecondition', `${image}: ${failures.length} layer(s) could not be ingested:\n${failures.map((f) => `  ${f.digest}: ${f.error.message}`).join('\n')}`);
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

  const { manifest, body, digest, platform } = await resolveManifest(client, ref, opts.platform ?? DEFAULT_PLATFORM);
  const layers = uniqueLayers(manifest.layers);
  opts.onEvent?.({ type: 'resolved', image: name, manifestDigest: digest, layers, ...(platform ? { platform } : {}) });
  log?.info({ manifestDigest: digest, platform, layers: layers.length }, 'resolved image manifest');

  const results: LayerResult[] = [];
  const failures: Array<{ digest: LayerDigest; error: Error }> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < layers.length) {
      const layer = layers[next++] as Descriptor;
      try {
        results.push(await ingestLayer(client, ref, layer, opts, log));
      } catch (err) {
        failures.push({ digest: layer.digest, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? DEFAULT_CONCURRENCY, layers.length));
  await Promise.all(Array.from({ length: n }, worker));

  if (failures.length > 0) throw new IngestFailed(name, failures);
  // Recorded only when every layer is in: a recorded manifest means the whole image is usable.
  const manifestPath = await recordManifest(opts.store, ref, body);
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

async function resolveManifest(client: RegistryClient, ref: ImageReference, want: Platform): Promise<ResolvedManifest> {
  const top = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest');
  if (ref.digest && top.digest !== ref.digest) {
    throw new FailedPrecondition(`the registry's manifest for ${ref.digest} hashes to ${top.digest}; refusing it`);
  }
  const doc = parseManifest(top.body, top.contentType);
  if (doc.kind === 'manifest') return { manifest: doc, body: top.body, digest: top.digest };

  const chosen = selectManifest(doc.manifests, want);
  const child = await client.getManifest(ref.repository, chosen.digest);
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

async function ingestLayer(client: RegistryClient, ref: ImageReference, layer: Descriptor, opts: IngestOptions, log: Logger | undefined): Promise<LayerResult> {
  const { digest, size } = layer;
  const started = performance.now();
  const ms = (): number => Math.round(performance.now() - started);
  opts.onEvent?.({ type: 'layer-start', digest, size });
  try {
    let status: LayerStatus = 'skipped';
    if (!(await opts.store.has(digest))) {
      const blob = await client.openBlob(ref.repository, digest);
      let bytes = 0;
      const outcome = await extractLayer({
        store: opts.store,
        digest,
        size,
        body: blob.body,
        onBytes: (n) => {
          bytes += n;
          opts.onEvent?.({ type: 'layer-progress', digest, bytes, size });
        },
      });
      status = outcome === 'ingested' ? 'ingested' : 'skipped';
    }
    const result: LayerResult = { digest, size, status, ms: ms() };
    opts.onEvent?.({ type: 'layer-done', ...result });
    log?.info({ layer: digest, size, status, ms: result.ms }, 'layer');
    return result;
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    opts.onEvent?.({ type: 'layer-failed', digest, size, error, ms: ms() });
    log?.error({ layer: digest, err: error.message }, 'layer failed');
    throw error;
  }
}
