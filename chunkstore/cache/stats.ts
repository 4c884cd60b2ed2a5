import type { CacheStats } from '../types.js';

/** A zeroed counter set; each tier owns one and mutates it in place (no allocation per op). */
export function emptyStats(): CacheStats {
  return {
    hits: 0,
    misses: 0,
    hitBytes: 0,
    inserts: 0,
    insertBytes: 0,
    skipped: 0,
    evictions: 0,
    corrupt: 0,
    errors: 0,
    usedBytes: 0,
    capacityBytes: 0,
    entries: 0,
    bypassing: 0,
  };
}
