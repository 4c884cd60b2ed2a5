import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cacheFileLength } from '../../chunkstore/cache/checksum.js';
import { DiskBlockCache, type DiskCacheOptions } from '../../chunkstore/cache/disk.js';
import { block, blockKey, bytesOnDisk, listFiles, referenceCrc32c, scratchDir, UUID } from './util.js';

const KiB = 1024;
const caches: DiskBlockCache[] = [];
const dirs: string[] = [];

async function open(opts: Partial<DiskCacheOptions> & { dir: string }): Promise<DiskBlockCache> {
  const c = new DiskBlockCache({ uuid: UUID, capacityBytes: 64 << 20, ...opts });
  caches.push(c);
  return c;
}

async function fresh(tag: string, opts: Partial<DiskCacheOptions> = {}): Promise<{ c: DiskBlockCache; dir: string; raw: string }> {
  const dir = await scratchDir(tag);
  dirs.push(dir);
  const c = await open({ dir, ...opts });
  await c.ready;
  return { c, dir, raw: join(dir, UUID, 'raw') };
}

/** What upstream charges a block of `len` bytes: file size (data + checksums) + 4096. */
/** Flip the lowest bit of the byte at `at` of a file in place. */
async function flipByte(path: string, at: number): Promise<void> {
  const fh = await fsp.open(path, 'r+');
  const one = Buffer.alloc(1);
  await fh.read(one, 0, 1, at);
  one[0]! ^= 0x01;
  await fh.write(one, 0, 1, at);
  await fh.close();
}

const charge = (len: number) => cacheFileLength(len) + 4096;

afterEach(async () => {
  for (const c of caches.splice(0)) await c.close();
  for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

describe('disk block cache: layout and format', () => {
  it('stores <dir>/<uuid>/raw/<key> = block + BE CRC32-C per 32 KiB, mode 0600, via .tmp + rename', async () => {
    const { c, dir, raw } = await fresh('layout');
    const key = blockKey(1, 0, 100_000);
    const data = block(100_000);
    c.put(key, data);
    await c.idle();
    const path = join(raw, key);
    const file = await fsp.readFile(path);
    expect(file.length).toBe(100_000 + 16);
    expect(file.subarray(0, 100_000).equals(data)).toBe(true);
    for (let i = 0; i < 4; i++) {
      expect(file.readUInt32BE(100_000 + 4 * i)).toBe(referenceCrc32c(data.subarray(i * 32768, Math.min((i + 1) * 32768, 100_000))));
    }
    expect((await fsp.stat(path)).mode & 0o777).toBe(0o600);
    expect((await fsp.stat(join(raw, 'chunks/0/0'))).mode & 0o777).toBe(0o700);
    // .lock holds a random UUID naming this cache disk; no temp file is left behind.
    expect(await fsp.readFile(join(dir, UUID, '.lock'), 'utf8')).toMatch(/^[0-9a-f-]{36}$/);
    expect([...(await listFiles(dir)).keys()].sort()).toEqual([`${UUID}/.lock`, `${UUID}/raw/${key}`]);
    expect(c.stats()).toMatchObject({ inserts: 1, insertBytes: 100_000, entries: 1, usedBytes: charge(100_000) });
  });

  it('serves a hit, answers a miss, and serves a block still queued for writing', async () => {
    const { c } = await fresh('hit');
    const data = block(64 * KiB);
    const key = blockKey(7, 2, data.length);
    c.put(key, data);
    expect((await c.get(key))!.equals(data)).toBe(true); // from the write queue
    await c.idle();
    expect((await c.get(key))!.equals(data)).toBe(true); // from disk
    expect(await c.get(blockKey(8, 0, 4096))).toBeUndefined();
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1, hitBytes: 2 * data.length });
  });

  it('handles an empty block and keys without a length suffix', async () => {
    const { c } = await fresh('odd');
    c.put(blockKey(9, 0, 0), Buffer.alloc(0));
    const data = block(40_000);
    c.put('chunks/other/blob', data);
    await c.idle();
    expect((await c.get(blockKey(9, 0, 0)))!.length).toBe(0);
    expect((await c.get('chunks/other/blob'))!.equals(data)).toBe(true);
  });

  it('rejects keys that could escape the cache directory', async () => {
    const { c, dir } = await fresh('keys');
    for (const key of ['../escape_0_4', '/abs_0_4', 'chunks//x_0_4', 'chunks/../../x_0_4', 'chunks/x_0_4.tmp']) {
      c.put(key, block(4));
      expect(await c.get(key)).toBeUndefined();
    }
    await c.idle();
    expect(c.stats().skipped).toBe(5);
    expect([...(await listFiles(join(dir, '..'))).keys()].filter((p) => p.includes('escape') || p.includes('abs'))).toEqual([]);
  });

  it('remove() deletes an indexed block and cancels a queued one', async () => {
    const { c, raw } = await fresh('remove');
    const a = blockKey(1, 0, 8192);
    const b = blockKey(2, 0, 8192);
    c.put(a, block(8192));
    await c.idle();
    c.remove(a);
    c.put(b, block(8192));
    c.remove(b);
    await c.idle();
    await new Promise((r) => setTimeout(r, 20)); // the unlink of `a` is fire-and-forget
    expect(await c.get(a)).toBeUndefined();
    expect(await c.get(b)).toBeUndefined();
    expect(await listFiles(raw)).toEqual(new Map());
    expect(c.stats()).toMatchObject({ usedBytes: 0, entries: 0 });
  });
});

describe('disk block cache: verification', () => {
  async function cached(tag: string, len = 100_000) {
    const f = await fresh(tag);
    const data = block(len);
    const key = blockKey(3, 1, len);
    f.c.put(key, data);
    await f.c.idle();
    return { ...f, key, data, path: join(f.raw, key) };
  }

  for (const [what, at] of [
    ['first data byte', 0],
    ['a byte in the middle', 50_000],
    ['last data byte', 99_999],
    ['a checksum byte', 100_005],
  ] as const) {
    it(`drops a file with a flipped ${what} and answers a miss`, async () => {
      const { c, key, path } = await cached('flip');
      await flipByte(path, at);
      expect(await c.get(key)).toBeUndefined();
      const s = c.stats();
      expect(s).toMatchObject({ corrupt: 1, hits: 0, misses: 1, entries: 0, usedBytes: 0 });
      await new Promise((r) => setTimeout(r, 20));
      await expect(fsp.stat(path)).rejects.toThrow(/ENOENT/);
    });
  }

  for (const [what, cut] of [
    ['by one byte', 100_015],
    ['to the data only (no checksums)', 100_000],
    ['to half', 50_000],
    ['to zero', 0],
  ] as const) {
    it(`drops a file truncated ${what} and answers a miss`, async () => {
      const { c, key, path } = await cached('trunc');
      await fsp.truncate(path, cut);
      expect(await c.get(key)).toBeUndefined();
      expect(c.stats()).toMatchObject({ corrupt: 1, entries: 0 });
    });
  }

  it('drops a file with extra bytes appended', async () => {
    const { c, key, path } = await cached('long');
    await fsp.appendFile(path, Buffer.from([0, 0, 0, 0]));
    expect(await c.get(key)).toBeUndefined();
    expect(c.stats().corrupt).toBe(1);
  });

  it('after dropping a corrupt file, the refetched block can be cached again', async () => {
    const { c, key, path, data } = await cached('refetch');
    await fsp.truncate(path, 10);
    expect(await c.get(key)).toBeUndefined();
    c.put(key, data);
    await c.idle();
    expect((await c.get(key))!.equals(data)).toBe(true);
  });

  it('a file deleted behind its back is a plain miss, not corruption', async () => {
    const { c, key, path } = await cached('gone');
    await fsp.unlink(path);
    expect(await c.get(key)).toBeUndefined();
    expect(c.stats()).toMatchObject({ corrupt: 0, errors: 0, entries: 0, usedBytes: 0 });
  });
});

describe('disk block cache: ranged reads (getRange)', () => {
  async function cached(len = 100_000) {
    const f = await fresh('range');
    const data = block(len);
    const key = blockKey(4, 0, len);
    f.c.put(key, data);
    await f.c.idle();
    return { ...f, key, data, path: join(f.raw, key) };
  }

  it('serves ranges inside a piece, across pieces and in the short last piece', async () => {
    const { c, key, data } = await cached();
    for (const [off, len] of [[0, 4096], [30_000, 5000], [32_768, 32_768], [65_000, 35_000], [99_999, 1]] as const) {
      expect(await c.getRange(key, off, len)).toEqual(data.subarray(off, off + len));
    }
    expect(c.stats()).toMatchObject({ hits: 5, corrupt: 0 });
  });

  it('a flipped byte in a piece it reads: miss, and the file is dropped', async () => {
    const { c, key, path } = await cached();
    await flipByte(path, 40_000);
    expect(await c.getRange(key, 39_000, 4096)).toBeUndefined();
    expect(c.stats()).toMatchObject({ corrupt: 1, entries: 0 });
    await new Promise((r) => setTimeout(r, 20));
    await expect(fsp.stat(path)).rejects.toThrow(/ENOENT/);
  });

  it('a flipped byte elsewhere: the range is still right (its pieces verify); a whole read drops the file', async () => {
    const { c, key, data, path } = await cached();
    await flipByte(path, 90_000);
    expect(await c.getRange(key, 0, 4096)).toEqual(data.subarray(0, 4096));
    expect(await c.get(key)).toBeUndefined();
    expect(c.stats().corrupt).toBe(1);
  });

  it('a truncated file: a range whose checksums are gone is a miss', async () => {
    const { c, key, path } = await cached();
    await fsp.truncate(path, 50_000);
    expect(await c.getRange(key, 70_000, 100)).toBeUndefined();
    expect(c.stats()).toMatchObject({ corrupt: 1, entries: 0 });
  });

  it('a file damaged while kept open for ranged reads is still caught (same descriptor, same inode)', async () => {
    const { c, key, data, path } = await cached();
    expect(await c.getRange(key, 100, 200)).toEqual(data.subarray(100, 300));
    expect(await c.getRange(key, 5000, 200)).toEqual(data.subarray(5000, 5200)); // the kept descriptor
    await flipByte(path, 6000);
    expect(await c.getRange(key, 5000, 200)).toBeUndefined();
    expect(c.stats()).toMatchObject({ corrupt: 1, entries: 0 });
    // Cached again (a refetch), the new file is read, not the dropped descriptor's old inode.
    await new Promise((r) => setTimeout(r, 20));
    c.put(key, data);
    await c.idle();
    expect(await c.getRange(key, 5000, 200)).toEqual(data.subarray(5000, 5200));
  });

  it('has() knows cached and queued blocks without reading them', async () => {
    const { c, key } = await cached();
    const before = c.stats().hits;
    expect(c.has(key)).toBe(true);
    expect(c.has(blockKey(9, 9, 10))).toBe(false);
    expect(c.stats().hits).toBe(before);
  });
});

describe('disk block cache: limits and eviction', () => {
  const LEN = 64 * KiB;

  it('evicts least recently used first, shrinking to 95 % of the limit', async () => {
    const { c } = await fresh('lru', { capacityBytes: 4 * charge(LEN) });
    const keys = [0, 1, 2, 3].map((i) => blockKey(100 + i, 0, LEN));
    for (const k of keys) {
      c.put(k, block(LEN));
      await c.idle();
    }
    expect(c.stats().evictions).toBe(0);
    expect(await c.get(keys[0]!)).toBeDefined(); // 0 is now the most recently used
    c.put(blockKey(200, 0, LEN), block(LEN));
    await c.idle();
    // Room for one more at 95 %: 4 → 2.8 blocks before the insert, so the two oldest (1, 2) go.
    expect(c.stats().evictions).toBe(2);
    expect(await c.get(keys[1]!)).toBeUndefined();
    expect(await c.get(keys[2]!)).toBeUndefined();
    expect(await c.get(keys[0]!)).toBeDefined();
    expect(await c.get(keys[3]!)).toBeDefined();
    expect(await c.get(blockKey(200, 0, LEN))).toBeDefined();
    expect(c.stats().usedBytes).toBe(3 * charge(LEN));
  });

  for (const eviction of ['lru', '2-random'] as const) {
    it(`${eviction}: 300 concurrent inserts never take more than the limit + one block`, async () => {
      const BLOCK = 256 * KiB;
      const cap = 10 * charge(BLOCK) + 1000;
      const { c, raw } = await fresh(`conc-${eviction}`, { capacityBytes: cap, eviction, writeConcurrency: 8, maxPendingBytes: 128 << 20 });
      const written = new Map<string, Buffer>();
      let maxOnDisk = 0;
      let maxUsed = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          maxOnDisk = Math.max(maxOnDisk, await bytesOnDisk(raw));
          maxUsed = Math.max(maxUsed, c.stats().usedBytes);
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      for (let i = 0; i < 300; i++) {
        const key = blockKey(1000 + i, 0, BLOCK);
        const data = block(BLOCK);
        written.set(key, data);
        c.put(key, data);
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5)); // let writers interleave with new puts
      }
      await c.idle();
      sampling = false;
      await sampler;
      const s = c.stats();
      const oneBlock = charge(BLOCK);
      expect(s.inserts + s.skipped).toBe(300);
      expect(s.errors).toBe(0); // no write lost its file to eviction mid-way
      expect(s.inserts).toBeGreaterThan(250);
      expect(s.evictions).toBeGreaterThan(200);
      expect(c.peakUsedBytes).toBeLessThanOrEqual(cap + oneBlock);
      expect(maxUsed).toBeLessThanOrEqual(cap + oneBlock);
      expect(maxOnDisk).toBeLessThanOrEqual(cap + oneBlock);
      await new Promise((r) => setTimeout(r, 20));
      expect(await bytesOnDisk(raw)).toBeLessThanOrEqual(cap);
      // The index matches the disk and every survivor reads back intact.
      const files = await listFiles(raw);
      expect(files.size).toBe(s.entries);
      for (const key of files.keys()) expect((await c.get(key))!.equals(written.get(key)!)).toBe(true);
    });
  }

  it('skips inserts beyond the write-queue bound instead of buffering without limit', async () => {
    const { c } = await fresh('queue', { maxPendingBytes: 1 << 20, writeConcurrency: 1 });
    for (let i = 0; i < 10; i++) c.put(blockKey(50 + i, 0, 256 * KiB), block(256 * KiB));
    await c.idle();
    const s = c.stats();
    expect(s.inserts).toBe(4);
    expect(s.skipped).toBe(6);
  });

  it('refuses a block bigger than the whole cache', async () => {
    const { c } = await fresh('huge', { capacityBytes: 1 << 20 });
    c.put(blockKey(1, 0, 2 << 20), block(2 << 20));
    await c.idle();
    expect(c.stats()).toMatchObject({ skipped: 1, entries: 0 });
  });

  it('never evicts an upstream staging block (hard link count > 1)', async () => {
    const dir = await scratchDir('staging');
    dirs.push(dir);
    const raw = join(dir, UUID, 'raw');
    const stagingKey = blockKey(77, 0, LEN);
    const first = await open({ dir });
    first.put(stagingKey, block(LEN));
    await first.close();
    await fsp.mkdir(join(dir, UUID, 'rawstaging', 'chunks/0/0'), { recursive: true });
    await fsp.link(join(raw, stagingKey), join(dir, UUID, 'rawstaging', stagingKey));
    const c = await open({ dir, capacityBytes: 3 * charge(LEN) });
    await c.ready;
    for (let i = 0; i < 6; i++) {
      c.put(blockKey(300 + i, 0, LEN), block(LEN));
      await c.idle();
    }
    expect(c.stats().evictions).toBeGreaterThan(0);
    expect(await c.get(stagingKey)).toBeDefined();
  });
});

describe('disk block cache: restart', () => {
  it('a new instance finds the old blocks (usable before its scan ends), in the old LRU order', async () => {
    const dir = await scratchDir('restart');
    dirs.push(dir);
    const LEN = 64 * KiB;
    const first = await open({ dir });
    const data = new Map<string, Buffer>();
    for (let i = 0; i < 5; i++) {
      const k = blockKey(500 + i, 0, LEN);
      data.set(k, block(LEN));
      first.put(k, data.get(k)!);
      await first.idle();
      // Distinct mtimes so the rebuilt LRU order is defined.
      const t = new Date(Date.now() - (10 - i) * 60_000);
      await fsp.utimes(join(first.rawDir, k), t, t);
    }
    await first.close();

    const second = await open({ dir });
    const k0 = blockKey(500, 0, LEN);
    const early = second.get(k0); // issued before the scan finished
    expect((await early)!.equals(data.get(k0)!)).toBe(true);
    await second.ready;
    expect(second.stats()).toMatchObject({ entries: 5, usedBytes: 5 * charge(LEN) });
    for (const [k, v] of data) expect((await second.get(k))!.equals(v)).toBe(true);
    await second.close();

    // A smaller limit at startup evicts the oldest files down to 95 % of it.
    const third = await open({ dir, capacityBytes: 3 * charge(LEN) });
    await third.ready;
    await new Promise((r) => setTimeout(r, 20));
    expect(third.stats().entries).toBe(2);
    expect(await third.get(blockKey(503, 0, LEN))).toBeDefined();
    expect(await third.get(blockKey(504, 0, LEN))).toBeDefined();
    expect(await third.get(blockKey(500, 0, LEN))).toBeUndefined();
    expect(await bytesOnDisk(third.rawDir)).toBeLessThanOrEqual(3 * charge(LEN));
  });

  it('removes a crashed writer’s stale .tmp, keeps a fresh one, and keeps volumes apart', async () => {
    const dir = await scratchDir('tmp');
    dirs.push(dir);
    const raw = join(dir, UUID, 'raw', 'chunks/0/0');
    await fsp.mkdir(raw, { recursive: true });
    await fsp.writeFile(join(raw, '1_0_10.tmp'), 'x');
    const old = new Date(Date.now() - 2 * 3600_000);
    await fsp.utimes(join(raw, '1_0_10.tmp'), old, old);
    await fsp.writeFile(join(raw, '2_0_10.tmp'), 'y');
    const c = await open({ dir });
    await c.ready;
    expect([...(await listFiles(raw)).keys()]).toEqual(['2_0_10.tmp']);
    expect(c.stats().entries).toBe(0);

    c.put(blockKey(3, 0, 100), block(100));
    await c.idle();
    const other = await open({ dir, uuid: '00000000-0000-0000-0000-000000000002' });
    await other.ready;
    expect(await other.get(blockKey(3, 0, 100))).toBeUndefined();
  });

  it('a cache whose directory cannot be created is disabled but answers', async () => {
    const dir = await scratchDir('blocked');
    dirs.push(dir);
    await fsp.writeFile(join(dir, 'file'), 'not a directory');
    const c = await open({ dir: join(dir, 'file') });
    await c.ready;
    c.put(blockKey(1, 0, 10), block(10));
    expect(await c.get(blockKey(1, 0, 10))).toBeUndefined();
    expect(c.stats()).toMatchObject({ errors: 1, skipped: 1, misses: 1 });
  });
});
