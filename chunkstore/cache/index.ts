/** The block cache: memory and disk tiers, their composition, and the cache profiles. */
export { MemoryBlockCache, type MemoryCacheOptions } from './memory.js';
export { DiskBlockCache, type DiskCacheOptions, type EvictionPolicy } from './disk.js';
export { TieredBlockCache, createBlockCache } from './tiered.js';
export {
  CACHE_PROFILES,
  DEFAULT_CACHE_PROFILE,
  CacheConfigError,
  defaultCacheDir,
  parseBool,
  parseDuration,
  parseRatio,
  parseSize,
  profileDefaults,
  resolveCacheConfig,
  type CacheConfig,
  type CacheConfigSources,
  type CacheProfileName,
  type DiskCacheConfig,
} from './profiles.js';
export { cacheFileLength, checksumTrailer, verifyCacheFile } from './checksum.js';
export { cacheStatsToPrometheus } from './metrics.js';
