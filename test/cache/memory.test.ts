import { describe, expect, it } from 'vitest';
import { MemoryBlockCache } from '../../chunkstore/cache/memory.js';
import { block, blockKey } from './util.js';

const KiB = 1024;

describe('memory block cache', () => {
  it('returns what was put and counts hits, misses and bytes', async () => {
    const c = new MemoryBlockCache({ maxBytes: 1 << 20 });
    const b = block(10 * KiB);
    c.put(blockKey(1, 0, b.length), b);
    expect(await c.get(blockKey(1, 0, b.length))).toBe(b);
    expect(await c.get(blockKey(2, 0, b.length))).toBeUndefined();
    const s = c.stats();
    expect(s).toMatchObject({ hits: 1, misses: 1, hitBytes: 10 * KiB, inserts: 1, usedBytes: 10 * KiB, entries: 1 });
  });

  it('evicts least recently used first and stays within its byte bound', async () => {
    const c = new MemoryBlockCache({ maxBytes: 4 * 100 * KiB });
    const keys = [0, 1, 2, 3].map((i) => blockKey(10 + i, 0, 100 * KiB));
    for (const k of keys) c.put(k, block(100 * KiB));
    expect(c.stats().usedBytes).toBe(400 * KiB);
    await c.get(keys[0]!); // 0 becomes most recent; 1 is now the oldest
    c.put(blockKey(20, 0, 100 * KiB), block(100 * KiB));
    expect(await c.get(keys[1]!)).toBeUndefined();
    expect(await c.get(keys[0]!)).toBeDefined();
    expect(await c.get(keys[2]!)).toBeDefined();
    c.put(blockKey(21, 0, 100 * KiB), block(100 * KiB));
    expect(await c.get(keys[3]!)).toBeUndefined();
    const s = c.stats();
    expect(s.evictions).toBe(2);
    expect(s.usedBytes).toBeLessThanOrEqual(400 * KiB);
  });

  it('refuses a block larger than the whole cache, and remove() drops a block', async () => {
    const c = new MemoryBlockCache({ maxBytes: 64 * KiB });
    c.put('chunks/0/0/1_0_100000', block(100_000));
    expect(c.stats()).toMatchObject({ skipped: 1, entries: 0 });
    c.put('chunks/0/0/2_0_1000', block(1000));
    c.remove('chunks/0/0/2_0_1000');
    expect(await c.get('chunks/0/0/2_0_1000')).toBeUndefined();
    expect(c.stats().usedBytes).toBe(0);
  });

  it('copies a block that is a small view of a big buffer instead of pinning it', async () => {
    const c = new MemoryBlockCache({ maxBytes: 1 << 20 });
    const big = Buffer.alloc(8 << 20, 7);
    c.put('chunks/0/0/3_0_4096', big.subarray(0, 4096));
    const got = (await c.get('chunks/0/0/3_0_4096'))!;
    expect(got.equals(big.subarray(0, 4096))).toBe(true);
    expect(got.buffer.byteLength).toBeLessThan(1 << 20);
  });

  it('rejects a non-positive size', () => {
    expect(() => new MemoryBlockCache({ maxBytes: 0 })).toThrow(/positive/);
  });
});
