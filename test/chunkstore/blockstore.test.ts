import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { BlockIOError, ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { blockKey } from '../../chunkstore/keys.js';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { FileObjectStore } from '../../chunkstore/object/file.js';
import { NotFoundError, type BlockCache, type CacheStats, type Compression, type ObjectInfo, type ObjectStore } from '../../chunkstore/types.js';
import { tmpDir } from '../helpers/servers.js';

const BS = 16 * 1024;

async function listKeys(store: ObjectStore, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

/** Text-like data so lz4/zstd actually compress. */
function data(n: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    out[i] = 97 + ((s >> 16) % 8);
  }
  return out;
}

/** Wraps a store to hold each put for a per-key delay and record concurrency. */
class SlowPuts implements ObjectStore {
  active = 0;
  maxActive = 0;
  order: string[] = [];
  constructor(
    readonly inner: ObjectStore,
    readonly delayFor: (key: string) => number,
  ) {}
  describe() {
    return 'slow+' + this.inner.describe();
  }
  get(key: string, offset?: number, length?: number) {
    return this.inner.get(key, offset, length);
  }
  async put(key: string, d: Buffer) {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await new Promise((r) => setTimeout(r, this.delayFor(key)));
      await this.inner.put(key, d);
      this.order.push(key);
    } finally {
      this.active--;
    }
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }
}

class MapCache implements BlockCache {
  readonly map = new Map<string, Buffer>();
  gets = 0;
  async get(key: string) {
    this.gets++;
    return this.map.get(key);
  }
  put(key: string, block: Buffer) {
    this.map.set(key, Buffer.from(block));
  }
  remove(key: string) {
    this.map.delete(key);
  }
  stats(): CacheStats {
    return { hits: 0, misses: 0, hitBytes: 0, inserts: 0, insertBytes: 0, skipped: 0, evictions: 0, corrupt: 0, errors: 0, usedBytes: 0, capacityBytes: 0, entries: this.map.size, bypassing: 0 };
  }
}

/** Buffer equality without vitest's per-byte deep diff (slow on blocks); reports the first difference. */
function sameBytes(actual: Buffer, expected: Buffer): void {
  if (actual.equals(expected)) return;
  let i = 0;
  while (i < Math.min(actual.length, expected.length) && actual[i] === expected[i]) i++;
  expect.fail(`buffers differ: lengths ${actual.length}/${expected.length}, first difference at byte ${i}`);
}

/** Retries an assertion for up to 10 s (background uploads on a loaded machine). */
async function eventually(check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

let file: FileObjectStore;
beforeEach(async () => {
  file = new FileObjectStore(await tmpDir('blockstore'));
});

function makeStore(inner: ObjectStore, compression: Compression = 'none', cache?: BlockCache, maxUploads = 4, recentBlocks = 0) {
  return new ObjectBlockStore(inner, { blockSize: BS, compression, hashPrefix: false, maxUploads }, cache, { retries: 3, retryBaseMs: 1, retryMaxMs: 5, recentBlocks });
}

describe.each(['none', 'lz4', 'zstd'] as const)('slice writer and reads (%s)', (compression) => {
  it('splits a slice into blocks named by their plaintext length and reads any range back', async () => {
    const bs = makeStore(file, compression);
    const size = 2 * BS + 5000;
    const src = data(size, 3);
    const w = bs.newWriter(77);
    // Sequential appends in uneven pieces, like FUSE writes.
    for (let off = 0; off < size; ) {
      const n = Math.min(3333, size - off);
      w.write(off, src.subarray(off, off + n));
      off += n;
    }
    await w.finish(size);
    expect(await listKeys(file)).toEqual([blockKey(77, 0, BS), blockKey(77, 1, BS), blockKey(77, 2, 5000)].sort());
    if (compression === 'none') sameBytes(await file.get(blockKey(77, 2, 5000)), src.subarray(2 * BS));
    else expect((await file.get(blockKey(77, 0, BS))).length).toBeLessThan(BS);
    sameBytes(await bs.read(77, size, 0, size), src);
    for (const [off, len] of [[0, 1], [BS - 10, 20], [BS, BS], [BS - 1, BS + 2], [2 * BS + 4999, 1], [100, 2 * BS + 100], [size - 10, 100]] as const) {
      sameBytes(await bs.read(77, size, off, len), src.subarray(off, Math.min(size, off + len)));
    }
    expect((await bs.read(77, size, size, 10)).length).toBe(0);
  });

  it('writeSlice stores a whole slice; remove deletes every block', async () => {
    const bs = makeStore(file, compression);
    const src = data(3 * BS + 1, 9);
    await bs.writeSlice(5, src);
    expect((await listKeys(file)).length).toBe(4);
    sameBytes(await bs.read(5, src.length, BS - 3, BS + 6), src.subarray(BS - 3, 2 * BS + 3));
    await bs.remove(5, src.length);
    expect(await listKeys(file)).toEqual([]);
    await bs.remove(5, src.length); // missing blocks are fine
  });
});

describe('slice writer', () => {
  it('uploads a block as soon as sequential writes fill it, before finish', async () => {
    const fault = new FaultObjectStore(file);
    const bs = makeStore(fault);
    const w = bs.newWriter(1);
    w.write(0, data(BS + 100));
    await w.drain();
    await eventually(async () => expect(await listKeys(file)).toEqual([blockKey(1, 0, BS)]));
    expect(w.writableFrom).toBe(BS);
    expect(() => w.write(BS - 1, Buffer.from('x'))).toThrow(/already uploaded.*new slice/);
    w.write(BS + 100, data(50));
    await w.finish(BS + 150);
    expect(fault.calls.put).toBe(2);
  });

  it('random writes inside the open region, gaps read as zeros, flushTo uploads complete blocks', async () => {
    const bs = makeStore(file);
    const model = Buffer.alloc(2 * BS + 10);
    const w = bs.newWriter(2);
    const put = (off: number, b: Buffer) => {
      w.write(off, b);
      b.copy(model, off);
    };
    put(BS + 10, data(30, 1)); // in block 1, leaving a gap
    put(5, data(100, 2)); // block 0, gap before
    put(BS - 50, data(100, 3)); // straddles the boundary (ends in block 1, block 0 not contiguous)
    put(2 * BS, data(10, 4));
    expect(await listKeys(file)).toEqual([]); // nothing was full and sequential
    w.flushTo(BS);
    await eventually(async () => expect(await listKeys(file)).toEqual([blockKey(2, 0, BS)]));
    await w.finish(model.length);
    sameBytes(await bs.read(2, model.length, 0, model.length), model);
  });

  it('bounded parallel uploads that may complete out of order', async () => {
    // Block 0 is slowest, later blocks finish first.
    const slow = new SlowPuts(file, (key) => (key.includes('_0_') ? 80 : key.includes('_1_') ? 40 : 5));
    const bs = makeStore(slow, 'lz4', undefined, 3);
    const src = data(8 * BS + 7, 5);
    const w = bs.newWriter(3);
    for (let off = 0; off < src.length; off += 4096) w.write(off, src.subarray(off, Math.min(src.length, off + 4096)));
    await w.finish(src.length);
    expect(slow.maxActive).toBeLessThanOrEqual(3);
    expect(slow.maxActive).toBeGreaterThan(1);
    expect(slow.order.indexOf(blockKey(3, 0, BS))).toBeGreaterThan(slow.order.indexOf(blockKey(3, 2, BS)));
    expect(slow.order.length).toBe(9);
    sameBytes(await bs.read(3, src.length, 0, src.length), src);
  });

  it('finish zero-fills an unwritten tail and refuses to shrink uploaded blocks', async () => {
    const bs = makeStore(file);
    const w = bs.newWriter(4);
    w.write(0, data(100));
    await w.finish(BS + 10);
    const back = await bs.read(4, BS + 10, 0, BS + 10);
    sameBytes(back.subarray(0, 100), data(100));
    expect(back.subarray(100).every((b) => b === 0)).toBe(true);

    const w2 = bs.newWriter(5);
    w2.write(0, data(BS));
    await w2.drain();
    await expect(w2.finish(BS - 1)).rejects.toThrow(/changes the length of uploaded block 0/);
    await w2.abort();
  });

  it('abort deletes uploaded blocks, including ones in flight', async () => {
    const slow = new SlowPuts(file, () => 30);
    const bs = makeStore(slow, 'zstd');
    const w = bs.newWriter(6);
    w.write(0, data(5 * BS));
    await new Promise((r) => setTimeout(r, 5)); // uploads in flight
    await w.abort();
    expect(await listKeys(file)).toEqual([]);
    expect(() => w.write(0, Buffer.from('x'))).toThrow(/after aborted/);
  });

  it('abort during finish makes finish reject', async () => {
    const slow = new SlowPuts(file, () => 30);
    const bs = makeStore(slow);
    const w = bs.newWriter(17);
    w.write(0, data(3 * BS));
    const finishing = w.finish(3 * BS).catch((e: unknown) => e);
    await w.abort();
    expect(String(await finishing)).toMatch(/aborted while finishing/);
    expect(await listKeys(file)).toEqual([]);
  });

  it('abort after a successful finish deletes the slice (failed metadata commit)', async () => {
    const bs = makeStore(file, 'lz4');
    const w = bs.newWriter(18);
    w.write(0, data(BS + 3));
    await w.finish(BS + 3);
    expect(await listKeys(file)).toHaveLength(2);
    await w.abort();
    expect(await listKeys(file)).toEqual([]);
  });

  it('transient put failures are retried with backoff', async () => {
    const fault = new FaultObjectStore(file).failNext(2, ['put']);
    const bs = makeStore(fault);
    const w = bs.newWriter(7);
    w.write(0, data(BS + 1));
    await w.finish(BS + 1);
    expect(bs.stats.retries).toBe(2);
    expect(await listKeys(file)).toHaveLength(2);
  });

  it('store down mid-upload: finish fails with a clear error, abort removes what was stored', async () => {
    const fault = new FaultObjectStore(file).failNext(1_000_000, ['put'], 2); // 2 puts succeed, then every put fails
    const bs = makeStore(fault, 'none', undefined, 1);
    const w = bs.newWriter(8);
    const src = data(6 * BS);
    for (let off = 0; off < src.length; off += BS / 2) w.write(off, src.subarray(off, off + BS / 2));
    const err = await w.finish(src.length).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockIOError);
    expect((err as Error).message).toMatch(/^put chunks\/0\/0\/8_2_16384 failed: injected fault/);
    expect(await listKeys(file)).toEqual([blockKey(8, 0, BS), blockKey(8, 1, BS)]);
    await expect(w.drain()).rejects.toBe(err);
    await w.abort();
    expect(await listKeys(file)).toEqual([]);
    expect(fault.calls.put).toBeLessThanOrEqual(2 + 4); // failed block tried 1 + 3 retries; nothing else started
  });

  it('writeSlice failure deletes the blocks it stored', async () => {
    const fault = new FaultObjectStore(file).failNext(1_000_000, ['put'], 3);
    const bs = makeStore(fault, 'none', undefined, 1);
    await expect(bs.writeSlice(9, data(6 * BS))).rejects.toBeInstanceOf(BlockIOError);
    expect(await listKeys(file)).toEqual([]);
  });
});

describe('reads', () => {
  it('a missing block is an error, never zeros, and is not retried', async () => {
    const fault = new FaultObjectStore(file);
    const bs = makeStore(fault, 'lz4');
    await expect(bs.read(10, BS, 0, 100)).rejects.toBeInstanceOf(NotFoundError);
    expect(fault.calls.get).toBe(1);
    const bs0 = makeStore(fault);
    await expect(bs0.read(10, BS, 10, 100)).rejects.toBeInstanceOf(NotFoundError); // range GET path
  });

  it('corrupt data is retried, then reported', async () => {
    const fault = new FaultObjectStore(file);
    const bs = makeStore(fault, 'zstd');
    const src = data(BS);
    await bs.writeSlice(11, src);
    fault.corruptNext(1);
    sameBytes(await bs.read(11, BS, 0, BS), src);
    expect(bs.stats.retries).toBe(1);
    fault.corruptNext(100);
    await expect(bs.read(11, BS, 0, BS)).rejects.toThrow(/get chunks\/0\/0\/11_0_16384 failed: zstd/);
  });

  it('an uncompressed object of the wrong length is an error', async () => {
    const bs = makeStore(file);
    await file.put(blockKey(12, 0, 100), Buffer.alloc(99));
    await expect(bs.read(12, 100, 0, 100)).rejects.toThrow(/99 bytes, expected 100/);
    await expect(bs.read(12, 100, 90, 10)).rejects.toThrow(/short read/);
  });

  it('concurrent readers of one block share one GET', async () => {
    const fault = new FaultObjectStore(file);
    const bs = makeStore(fault, 'lz4');
    const src = data(BS);
    await bs.writeSlice(13, src);
    fault.delay(20, ['get']);
    const reads = await Promise.all(Array.from({ length: 10 }, (_, i) => bs.read(13, BS, i * 100, 100)));
    reads.forEach((r, i) => sameBytes(r, src.subarray(i * 100, i * 100 + 100)));
    expect(fault.calls.get).toBe(1);
  });

  it('small pieces of uncompressed blocks are range GETs (whole block prefetched into the cache); big ones fetch and cache whole blocks', async () => {
    const cache = new MapCache();
    const bs = makeStore(file, 'none', cache);
    const src = data(2 * BS);
    await bs.writeSlice(14, src);
    expect(cache.map.size).toBe(0); // full blocks are not cached on write by default
    sameBytes(await bs.read(14, 2 * BS, 10, 100), src.subarray(10, 110));
    // The range GET answers at once; the whole block follows in the background (upstream --prefetch).
    for (let i = 0; i < 200 && cache.map.size === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(bs.stats.getBytes).toBe(100 + BS);
    expect([...cache.map.keys()]).toEqual([blockKey(14, 0, BS)]);
    sameBytes(await bs.read(14, 2 * BS, BS + 10, BS / 2), src.subarray(BS + 10, BS + 10 + BS / 2));
    expect(bs.stats.getBytes).toBe(100 + 2 * BS);
    expect([...cache.map.keys()].sort()).toEqual([blockKey(14, 0, BS), blockKey(14, 1, BS)].sort());
    const before = bs.stats.getRequests;
    sameBytes(await bs.read(14, 2 * BS, BS, 10), src.subarray(BS, BS + 10));
    expect(bs.stats.getRequests).toBe(before); // served by the cache
    expect(bs.stats.cacheHits).toBe(1);
  });

  it('writeSlice does not let the cache alias the caller\'s buffer', async () => {
    class RefCache extends MapCache {
      override put(key: string, block: Buffer) {
        this.map.set(key, block); // keeps the very Buffer it is given, like the memory tier may
      }
    }
    const cache = new RefCache();
    const bs = makeStore(file, 'none', cache);
    const src = data(BS + 10);
    const copy = Buffer.from(src);
    await bs.writeSlice(19, src);
    src.fill(0); // the caller reuses its buffer
    sameBytes(await bs.read(19, copy.length, BS, 10), copy.subarray(BS));
  });

  it('short blocks are cached on write; remove evicts them', async () => {
    const cache = new MapCache();
    const bs = makeStore(file, 'lz4', cache);
    const src = data(BS + 10);
    await bs.writeSlice(15, src);
    expect([...cache.map.keys()]).toEqual([blockKey(15, 1, 10)]);
    sameBytes(cache.map.get(blockKey(15, 1, 10))!, src.subarray(BS));
    await bs.remove(15, src.length);
    expect(cache.map.size).toBe(0);
  });

  it('without a cache, recently decoded blocks serve small sequential reads (one GET per block)', async () => {
    const fault = new FaultObjectStore(file);
    const bs = makeStore(fault, 'zstd', undefined, 4, 2);
    const src = data(3 * BS);
    await bs.writeSlice(16, src);
    for (let off = 0; off < 3 * BS; off += 1024) sameBytes(await bs.read(16, 3 * BS, off, 1024), src.subarray(off, off + 1024));
    expect(fault.calls.get).toBe(3);
    await bs.read(16, 3 * BS, 0, 10); // block 0 was evicted (2 kept)
    expect(fault.calls.get).toBe(4);
    await bs.remove(16, 3 * BS);
    await expect(bs.read(16, 3 * BS, 2 * BS, 10)).rejects.toBeInstanceOf(NotFoundError); // forgotten on remove
  });

  it('random slices of random sizes read back exactly (model check)', async () => {
    const bs = makeStore(file, 'lz4');
    for (let id = 100; id < 106; id++) {
      const size = 1 + Math.floor(Math.random() * 4 * BS);
      const src = randomBytes(size);
      await bs.writeSlice(id, src);
      for (let k = 0; k < 20; k++) {
        const off = Math.floor(Math.random() * size);
        const len = Math.floor(Math.random() * (size - off + 10));
        sameBytes(await bs.read(id, size, off, len), src.subarray(off, Math.min(size, off + len)));
      }
    }
  });
});
