// The ingest API: pull an image from a registry into a DUCC-layout layer store.
export { ingestImage, IngestFailed, type IngestEvent, type IngestOptions, type IngestResult, type LayerResult, type LayerStatus } from './ingest.js';
export { parseImageReference, formatImageReference, type ImageReference } from './reference.js';
export { parsePlatform, formatPlatform, DEFAULT_PLATFORM, type Platform } from './platform.js';
export { credentialsFromEnv, parseChallenge, type Credentials, type Challenge } from './auth.js';
export { placeLayer, unpackLayer } from './extract.js';
export { downloadBlob } from './download.js';
export { DiskFull, formatSize, Interrupted, LayerRefused, type RefusalReason } from './faults.js';
export { DEFAULT_MAX_UNPACK_ENTRIES, DEFAULT_MAX_UNPACK_RATIO, UNPACK_FLOOR_BYTES } from './bounds.js';
export { STAGING_DIR } from './staging.js';
export { imageMetadataDir, recordManifest, METADATA_DIR } from './metadata.js';
