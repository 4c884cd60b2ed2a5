/**
 * Memory tier: whole blocks in an LRU bounded in bytes. Same key space as the disk tier
 * (juicefs-format.md 6.2, "memory cache"), but LRU rather than 2-random: a JS Map gives LRU for free.
 */
import { LRUCache } from 'lru-cache';
import type { BlockCache, CacheStats } from '../types.js';
import { emptyStats } from './stats.js';

export interface MemoryCacheOptions {
  /** Upper bound on the sum of cached block lengths. Must be > 0 (use no memory tier for 0). */
  maxBytes: number;
}

export class MemoryBlockCache implements BlockCache {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly counters: CacheStats = emptyStats();

  constructor(readonly options: MemoryCacheOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0) {
      throw new RangeError(`memory cache size must be a positive integer of bytes, got ${options.maxBytes}`);
    }
    this.counters.capacityBytes = options.maxBytes;
    this.lru = new LRUCache<string, Buffer>({
      maxSize: options.maxBytes,
      // Zero-length blocks would break lru-cache's positive size rule; charge them one byte.
      sizeCalculation: (b) => Math.max(1, b.length),
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') this.counters.evictions++;
      },
    });
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  get(key: string): Promise<Buffer | undefined> {
    const block = this.lru.get(key);
    if (block === undefined) {
      this.counters.misses++;
      return Promise.resolve(undefined);
    }
    this.counters.hits++;
    this.counters.hitBytes += block.length;
    return Promise.resolve(block);
  }

  /** Synchronous lookup for callers that can use it (no promise on the hottest path). */
  peek(key: string): Buffer | undefined {
    return this.lru.get(key);
  }

  put(key: string, block: Buffer): void {
    if (block.length > this.options.maxBytes || this.lru.has(key)) {
      this.counters.skipped++;
      return;
    }
    // A block that is a view into a much larger allocation (e.g. a slice writer's buffer) would pin
    // the whole allocation while being charged only its own length: copy it out.
    const stored = block.buffer.byteLength > block.length * 2 + 8192 ? Buffer.from(block) : block;
    this.lru.set(key, stored);
    this.counters.inserts++;
    this.counters.insertBytes += block.length;
  }

  remove(key: string): void {
    this.lru.delete(key);
  }

  clear(): void {
    this.lru.clear();
  }

  stats(): CacheStats {
    return { ...this.counters, usedBytes: this.lru.calculatedSize, entries: this.lru.size };
  }
}
