import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskBlockCache } from '../../chunkstore/cache/disk.js';
import { MemoryBlockCache } from '../../chunkstore/cache/memory.js';
import { resolveCacheConfig } from '../../chunkstore/cache/profiles.js';
import { createBlockCache, TieredBlockCache } from '../../chunkstore/cache/tiered.js';
import type { BlockCache } from '../../chunkstore/types.js';
import { block, blockKey, scratchDir, UUID } from './util.js';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

async function tiered(memBytes: number): Promise<{ t: TieredBlockCache; disk: DiskBlockCache; mem: MemoryBlockCache; dir: string }> {
  const dir = await scratchDir('tiered');
  dirs.push(dir);
  const mem = new MemoryBlockCache({ maxBytes: memBytes });
  const disk = new DiskBlockCache({ dir, uuid: UUID, capacityBytes: 64 << 20 });
  const t = new TieredBlockCache(mem, disk);
  closers.push(() => t.close());
  await disk.ready;
  return { t, disk, mem, dir };
}

describe('tiered block cache', () => {
  it('getRange: from memory when there, else the disk pieces, without promoting the block', async () => {
    const { t, mem } = await tiered(1 << 20);
    const data = block(300_000);
    const key = blockKey(5, 0, data.length);
    t.put(key, data);
    await t.idle();
    expect(await t.getRange(key, 1000, 4096)).toEqual(data.subarray(1000, 5096));
    mem.remove(key);
    expect(t.has(key)).toBe(true); // still on disk
    expect(await t.getRange(key, 200_000, 4096)).toEqual(data.subarray(200_000, 204_096));
    expect(mem.has(key)).toBe(false); // a partial read does not read the whole block into memory
    expect(await t.getRange(blockKey(6, 0, 10), 0, 4)).toBeUndefined();
    expect(t.has(blockKey(6, 0, 10))).toBe(false);
  });

  it('implements BlockCache: memory first, then disk, then miss', async () => {
    const { t } = await tiered(1 << 20);
    const cache: BlockCache = t;
    const data = block(100_000);
    const key = blockKey(1, 0, data.length);
    cache.put(key, data);
    await t.idle();
    expect(await cache.get(key)).toBe(data); // the very buffer, from memory
    expect(await cache.get(blockKey(2, 0, 10))).toBeUndefined();
    const s = cache.stats();
    expect(s).toMatchObject({ hits: 1, misses: 1, hitBytes: 100_000 });
    expect(s.tiers!['memory']).toMatchObject({ hits: 1, misses: 1, inserts: 1 });
    expect(s.tiers!['disk']).toMatchObject({ hits: 0, misses: 1, inserts: 1 });
  });

  it('promotes a disk hit into memory', async () => {
    const { t, mem, disk } = await tiered(1 << 20);
    const data = block(50_000);
    const key = blockKey(3, 0, data.length);
    t.put(key, data);
    await t.idle();
    mem.clear();
    const fromDisk = (await t.get(key))!;
    expect(fromDisk.equals(data)).toBe(true);
    expect(fromDisk).not.toBe(data);
    expect(disk.stats().hits).toBe(1);
    expect(await t.get(key)).toBe(fromDisk); // now from memory
    expect(disk.stats().hits).toBe(1);
    expect(t.stats()).toMatchObject({ hits: 2, misses: 0 });
  });

  it('shares one disk read between concurrent gets of a block', async () => {
    const { t, mem, disk } = await tiered(1 << 20);
    const data = block(200_000);
    const key = blockKey(4, 0, data.length);
    t.put(key, data);
    await t.idle();
    mem.clear();
    const got = await Promise.all([t.get(key), t.get(key), t.get(key)]);
    expect(got.every((b) => b !== undefined && b.equals(data))).toBe(true);
    expect(disk.stats().hits).toBe(1);
    expect(t.stats().hits).toBe(3);
  });

  it('remove() drops the block from both tiers', async () => {
    const { t } = await tiered(1 << 20);
    const key = blockKey(5, 0, 1000);
    t.put(key, block(1000));
    await t.idle();
    t.remove(key);
    expect(await t.get(key)).toBeUndefined();
    expect(t.stats()).toMatchObject({ entries: 0 });
  });

  it('a corrupt disk copy is a miss through the composite too', async () => {
    const { t, mem, disk } = await tiered(1 << 20);
    const key = blockKey(6, 0, 70_000);
    t.put(key, block(70_000));
    await t.idle();
    mem.clear();
    await fsp.truncate(join(disk.rawDir, key), 1000);
    expect(await t.get(key)).toBeUndefined();
    expect(t.stats()).toMatchObject({ corrupt: 1, misses: 1, hits: 0 });
  });

  it('createBlockCache builds the tiers a profile asks for', async () => {
    const dir = await scratchDir('factory');
    dirs.push(dir);
    const interactive = createBlockCache(resolveCacheConfig({ flags: { cacheDir: dir, cacheSize: '16M' } }), UUID);
    closers.push(() => interactive.close());
    expect(interactive.memory).toBeDefined();
    expect(interactive.disk).toBeDefined();
    expect(interactive.disk!.rawDir).toBe(join(dir, UUID, 'raw'));
    expect(interactive.stats().tiers!['disk']!.capacityBytes).toBe(16 << 20);

    const bench = createBlockCache(resolveCacheConfig({ profile: 'benchmark' }), UUID);
    expect(bench.memory).toBeUndefined();
    expect(bench.disk).toBeUndefined();
    bench.put(blockKey(1, 0, 10), block(10));
    expect(await bench.get(blockKey(1, 0, 10))).toBeUndefined();
    expect(bench.stats()).toMatchObject({ misses: 1, hits: 0, entries: 0 });
  });
});
