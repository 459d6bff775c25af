// Reading an image back out of an OCI image layout directory (what umoci writes).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface LayerInfo {
  /** Digest of the blob as stored (compressed): the key of the DUCC layer store. */
  digest: string;
  mediaType: string;
  size: number;
  /** Digest of the uncompressed tar. */
  diffId: string;
}

export interface LayoutImage {
  manifest: Descriptor;
  config: Descriptor;
  layers: LayerInfo[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asDescriptor(v: unknown, what: string): Descriptor {
  if (!isRecord(v) || typeof v.mediaType !== 'string' || typeof v.digest !== 'string' || typeof v.size !== 'number') {
    throw new Error(`${what} is not an OCI descriptor: ${JSON.stringify(v)}`);
  }
  const annotations = isRecord(v.annotations) ? Object.fromEntries(Object.entries(v.annotations).map(([k, x]) => [k, String(x)])) : undefined;
  return { mediaType: v.mediaType, digest: v.digest, size: v.size, annotations };
}

export function blobPath(layout: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (alg === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(layout, 'blobs', alg, hex);
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

export async function readLayoutImage(layout: string, tag: string): Promise<LayoutImage> {
  const index = await readJson(join(layout, 'index.json'));
  if (!isRecord(index) || !Array.isArray(index.manifests)) throw new Error(`${layout}/index.json has no manifests`);
  const manifest = index.manifests.map((m, i) => asDescriptor(m, `index.json manifests[${i}]`))
    .find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (manifest === undefined) throw new Error(`no manifest tagged ${tag} in ${layout}`);
  const m = await readJson(blobPath(layout, manifest.digest));
  if (!isRecord(m) || !Array.isArray(m.layers)) throw new Error(`manifest ${manifest.digest} has no layers`);
  const config = asDescriptor(m.config, 'manifest config');
  const c = await readJson(blobPath(layout, config.digest));
  const diffIds = isRecord(c) && isRecord(c.rootfs) && Array.isArray(c.rootfs.diff_ids) ? c.rootfs.diff_ids.map(String) : [];
  const layers = m.layers.map((l, i) => {
    const d = asDescriptor(l, `manifest layers[${i}]`);
    const diffId = diffIds[i];
    if (diffId === undefined) throw new Error(`config ${config.digest} has no diff_id for layer ${i}`);
    return { digest: d.digest, mediaType: d.mediaType, size: d.size, diffId };
  });
  return { manifest, config, layers };
}
