// The ingest API: pull an image from a registry into a DUCC-layout layer store.
export { ingestImage, IngestFailed, type IngestEvent, type IngestOptions, type IngestResult, type LayerResult, type LayerStatus } from './ingest.js';
export { parseImageReference, formatImageReference, type ImageReference } from './reference.js';
export { parsePlatform, formatPlatform, DEFAULT_PLATFORM, type Platform } from './platform.js';
export { credentialsFromEnv, parseChallenge, type Credentials, type Challenge } from './auth.js';
export { DigestMismatch, extractLayer } from './extract.js';
export { imageMetadataDir, recordManifest, METADATA_DIR } from './metadata.js';
