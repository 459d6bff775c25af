export { MetadataCache, valueAnswer, absentAnswer } from './metadata-cache.js';
export type { CacheAnswer, CacheStats, MetadataCacheOptions } from './metadata-cache.js';
