// Image manifests and indexes (OCI and Docker schema 2), parsed from registry JSON into checked
// types. Everything here is untrusted input: digests go through parseDigest, sizes must be
// non-negative integers, and unknown media types are refused with a message naming them.
import { InvalidArgument, Unimplemented } from '../../errors.js';
import { parseDigest, type LayerDigest } from '../digest.js';

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What we ask registries for, in order of preference. */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(', ');

// Layers we know how to unpack. The compression itself is recognised from the blob's first
// bytes, so a mislabelled layer still unpacks; an encrypted or artifact layer does not.
const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

/** An image's platform, as OCI descriptors and image configs name it. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: LayerDigest;
  size: number;
  platform?: Platform;
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

export type ManifestDocument = ImageManifest | ImageIndex;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw new InvalidArgument(`${where} is not a descriptor object`);
  const { mediaType, digest, size, platform } = v;
  if (typeof mediaType !== 'string' || mediaType === '') throw new InvalidArgument(`${where} has no mediaType`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new InvalidArgument(`${where} has size ${JSON.stringify(size)}; expected a non-negative integer`);
  }
  const d: Descriptor = { mediaType, digest: parseDigest(digest, `${where} digest`), size };
  if (isObject(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string') {
    d.platform = { os: platform.os, architecture: platform.architecture };
    if (typeof platform.variant === 'string' && platform.variant !== '') d.platform.variant = platform.variant;
  }
  return d;
}

/**
 * Parses a manifest or index. `contentType` is the registry's Content-Type header; when it is
 * missing or generic the document's own mediaType field, then its shape, decides.
 */
export function parseManifest(body: Buffer, contentType: string | null): ManifestDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new InvalidArgument(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new InvalidArgument('manifest is not a JSON object');
  const header = (contentType ?? '').split(';')[0]?.trim() ?? '';
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : '';
  let mediaType = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].find((m) => m === header)
    ?? declared;
  if (mediaType === '') mediaType = Array.isArray(doc.manifests) ? MEDIA.ociIndex : MEDIA.ociManifest;

  if (mediaType === MEDIA.dockerSchema1 || mediaType === MEDIA.dockerSchema1Signed || doc.schemaVersion === 1) {
    throw new Unimplemented('Docker schema 1 manifests are not supported; push the image again with a current tool');
  }
  if (mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList) {
    if (!Array.isArray(doc.manifests)) throw new InvalidArgument(`${mediaType} has no "manifests" array`);
    return { kind: 'index', mediaType, manifests: doc.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`)) };
  }
  if (mediaType === MEDIA.ociManifest || mediaType === MEDIA.dockerManifest) {
    if (!Array.isArray(doc.layers)) throw new InvalidArgument(`${mediaType} has no "layers" array`);
    const layers = doc.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`));
    for (const [i, l] of layers.entries()) {
      if (!LAYER_TYPES.has(l.mediaType)) {
        throw new Unimplemented(`layers[${i}] (${l.digest}) has media type ${l.mediaType}, which is not an image layer this tool can unpack`);
      }
    }
    return { kind: 'manifest', mediaType, config: parseDescriptor(doc.config, 'config'), layers };
  }
  throw new Unimplemented(`manifest media type ${JSON.stringify(mediaType)} is not supported; expected an OCI or Docker schema 2 manifest or index`);
}
