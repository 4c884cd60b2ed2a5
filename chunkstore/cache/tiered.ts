/**
 * The block cache the BlockStore talks to: memory → disk → miss. A disk hit is promoted into memory;
 * put() goes to both tiers. Either tier may be absent (the `benchmark` profile has neither, and
 * then every get() is a miss).
 */
import type { BlockCache, CacheStats } from '../types.js';
import { DiskBlockCache } from './disk.js';
import { MemoryBlockCache } from './memory.js';
import type { CacheConfig } from './profiles.js';
import { emptyStats } from './stats.js';

export class TieredBlockCache implements BlockCache {
  private readonly counters = { hits: 0, misses: 0, hitBytes: 0 };
  /** Concurrent disk reads of one key (read-ahead racing a read) share one file read. */
  private readonly diskReads = new Map<string, Promise<Buffer | undefined>>();

  constructor(
    readonly memory: MemoryBlockCache | undefined,
    readonly disk: DiskBlockCache | undefined,
  ) {}

  async get(key: string): Promise<Buffer | undefined> {
    if (this.memory !== undefined) {
      const b = await this.memory.get(key);
      if (b !== undefined) return this.hit(b);
    }
    if (this.disk !== undefined) {
      let read = this.diskReads.get(key);
      if (read === undefined) {
        read = this.disk.get(key).finally(() => this.diskReads.delete(key));
        this.diskReads.set(key, read);
        const b = await read;
        if (b !== undefined) {
          this.memory?.put(key, b);
          return this.hit(b);
        }
      } else {
        const b = await read;
        if (b !== undefined) return this.hit(b);
      }
    }
    this.counters.misses++;
    return undefined;
  }

  has(key: string): boolean {
    return this.memory?.has(key) === true || this.disk?.has(key) === true;
  }

  /**
   * A range of a block: the memory tier's copy if it has one, else the disk tier's pieces that
   * cover the range. A partial read does not promote the block into memory (that would mean
   * reading all of it from disk, the cost this method exists to avoid).
   */
  async getRange(key: string, off: number, len: number): Promise<Buffer | undefined> {
    if (this.memory !== undefined) {
      const b = await this.memory.get(key);
      if (b !== undefined) return this.hit(b.subarray(off, off + len));
    }
    if (this.disk !== undefined) {
      const pending = this.diskReads.get(key);
      const b = pending ? (await pending)?.subarray(off, off + len) : await this.disk.getRange(key, off, len);
      if (b !== undefined) return this.hit(b);
    }
    this.counters.misses++;
    return undefined;
  }

  put(key: string, block: Buffer): void {
    this.memory?.put(key, block);
    this.disk?.put(key, block);
  }

  remove(key: string): void {
    this.memory?.remove(key);
    this.disk?.remove(key);
  }

  /** Composite hits/misses as seen by the caller; the rest summed over tiers; per tier in `tiers`. */
  stats(): CacheStats {
    const out = emptyStats();
    out.hits = this.counters.hits;
    out.misses = this.counters.misses;
    out.hitBytes = this.counters.hitBytes;
    out.tiers = {};
    const tiers: Array<[string, BlockCache | undefined]> = [
      ['memory', this.memory],
      ['disk', this.disk],
    ];
    for (const [name, tier] of tiers) {
      if (tier === undefined) continue;
      const s = tier.stats();
      out.tiers[name] = s;
      out.inserts += s.inserts;
      out.insertBytes += s.insertBytes;
      out.skipped += s.skipped;
      out.evictions += s.evictions;
      out.corrupt += s.corrupt;
      out.errors += s.errors;
      out.usedBytes += s.usedBytes;
      out.capacityBytes += s.capacityBytes;
      out.entries += s.entries;
      out.bypassing = Math.max(out.bypassing, s.bypassing);
    }
    return out;
  }

  /** Waits for queued disk writes (tests, unmount). */
  async idle(): Promise<void> {
    await this.disk?.idle();
  }

  /** Stops disk inserts and waits for queued writes; the cache stays readable. */
  async close(): Promise<void> {
    await this.disk?.close();
  }

  private hit(b: Buffer): Buffer {
    this.counters.hits++;
    this.counters.hitBytes += b.length;
    return b;
  }
}

/** The block cache a mount of volume `volumeUuid` uses under `config` (from resolveCacheConfig). */
export function createBlockCache(config: CacheConfig, volumeUuid: string): TieredBlockCache {
  const memory = config.memoryCacheBytes > 0 ? new MemoryBlockCache({ maxBytes: config.memoryCacheBytes }) : undefined;
  const disk =
    config.disk !== null
      ? new DiskBlockCache({
          dir: config.disk.dir,
          uuid: volumeUuid,
          capacityBytes: config.disk.sizeBytes,
          freeRatio: config.disk.freeRatio,
          eviction: config.disk.eviction,
        })
      : undefined;
  return new TieredBlockCache(memory, disk);
}
