/**
 * Unit tests of the read path (fs/reader.ts): chunk maps → block store reads, holes, clipping,
 * readahead growth and memory bounds, SEEK_DATA/SEEK_HOLE. Real block store over an in-memory
 * object store; a fake of Meta's data-path calls holds the slice records.
 */
import { describe, expect, it } from 'vitest';
import { ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { CHUNK_SIZE } from '../../metadata/types.js';
import { Reader, SEEK_DATA, SEEK_HOLE } from '../../fs/reader.js';
import { FakeDataMeta, MemoryObjectStore } from './fakes.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const BS = 64 * KiB;

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

async function setup(readaheadMax = 8 * BS, readaheadBudget = 64 * MiB) {
  const objects = new FaultObjectStore(new MemoryObjectStore());
  const store = new ObjectBlockStore(objects, { blockSize: BS, compression: 'none', hashPrefix: false });
  const meta = new FakeDataMeta();
  const reader = new Reader(meta.asMeta(), store, { readaheadMax, readaheadBudget });
  /** Store `data` as one slice at file offset `off` (within one chunk). */
  const put = async (ino: bigint, off: number, data: Buffer) => {
    const id = await meta.newSliceId();
    await store.writeSlice(id, data);
    const indx = Math.floor(off / CHUNK_SIZE);
    const pos = off - indx * CHUNK_SIZE;
    await meta.writeSlice(ino, indx, pos, { pos, id, size: data.length, off: 0, len: data.length }, { sec: 0, nsec: 0 });
  };
  return { objects, store, meta, reader, put };
}

describe('reader', () => {
  it('holes, gaps and the tail past the last segment read as zeros; reads clip to the length', async () => {
    const { reader, put } = await setup();
    await put(1n, 100, Buffer.from('abc'));
    await put(1n, CHUNK_SIZE + 10, Buffer.from('xyz'));
    const len = CHUNK_SIZE + 20;
    const s = reader.stream(1n);
    expect((await s.read(95, 10, len)).equals(Buffer.from('\0\0\0\0\0abc\0\0'))).toBe(true);
    expect((await s.read(CHUNK_SIZE - 2, 20, len)).equals(Buffer.from('\0\0\0\0\0\0\0\0\0\0\0\0xyz\0\0\0\0\0'))).toBe(true);
    expect((await s.read(len - 3, 100, len)).length).toBe(3);
    expect((await s.read(len, 100, len)).length).toBe(0);
    s.close();
  });

  it('later slices paint over earlier ones', async () => {
    const { reader, put } = await setup();
    await put(2n, 0, Buffer.alloc(100, 1));
    await put(2n, 50, Buffer.alloc(10, 2));
    const got = await reader.readRange(2n, 0, 100);
    expect(got.subarray(45, 65).toString('hex')).toBe('0101010101' + '02'.repeat(10) + '0101010101');
  });

  it('sequential reads: the window grows to readaheadMax, memory stays bounded, each block fetched once', async () => {
    const { reader, put, objects } = await setup(8 * BS);
    const data = pattern(4 * MiB, 1);
    await put(3n, 0, data);
    const g0 = objects.calls.get;
    const s = reader.stream(3n);
    let peak = 0;
    const out: Buffer[] = [];
    for (let off = 0; off < data.length; off += 16 * KiB) {
      out.push(Buffer.from(await s.read(off, 16 * KiB, data.length)));
      peak = Math.max(peak, reader.raUsed);
    }
    expect(Buffer.concat(out).equals(data)).toBe(true);
    expect(objects.calls.get - g0).toBe(data.length / BS);
    expect(peak).toBeGreaterThanOrEqual(8 * BS); // the window did grow to the maximum
    expect(peak).toBeLessThanOrEqual(8 * BS + 3 * BS);
    s.close();
    expect(reader.raUsed).toBe(0);
  });

  it('random reads do no readahead', async () => {
    const { reader, put, objects } = await setup(8 * BS);
    await put(4n, 0, pattern(2 * MiB, 2));
    const s = reader.stream(4n);
    await s.read(0, 100, 2 * MiB); // offset 0 counts as sequential: one block + readahead of one
    await new Promise((r) => setTimeout(r, 10));
    const g0 = objects.calls.get;
    for (const off of [MiB + 7, 300 * KiB, 1500 * KiB, 77]) await s.read(off, 1000, 2 * MiB);
    expect(objects.calls.get - g0).toBeLessThanOrEqual(4);
    expect(reader.raUsed).toBe(0);
    s.close();
  });

  it('the global budget caps readahead of many streams', async () => {
    const { reader, put } = await setup(16 * BS, 6 * BS);
    for (let i = 0; i < 4; i++) await put(BigInt(10 + i), 0, pattern(2 * MiB, i));
    const streams = [0, 1, 2, 3].map((i) => reader.stream(BigInt(10 + i)));
    let peak = 0;
    for (let off = 0; off < MiB; off += 32 * KiB) {
      for (const s of streams) {
        await s.read(off, 32 * KiB, 2 * MiB);
        peak = Math.max(peak, reader.raUsed);
      }
    }
    // Demand reads may exceed the budget by the blocks being read right now, never more.
    expect(peak).toBeLessThanOrEqual(6 * BS + 4 * 2 * BS);
    for (const s of streams) s.close();
  });

  it('invalidate drops cached chunk maps and readahead', async () => {
    const { reader, put } = await setup();
    await put(5n, 0, Buffer.from('old-data'));
    const s = reader.stream(5n);
    expect((await s.read(0, 8, 8)).toString()).toBe('old-data');
    await put(5n, 0, Buffer.from('NEW'));
    expect((await s.read(0, 8, 8)).toString()).toBe('old-data'); // cached map and block
    reader.invalidate(5n, 0);
    expect((await s.read(0, 8, 8)).toString()).toBe('NEW-data');
    s.close();
  });

  it('SEEK_DATA / SEEK_HOLE over slices, explicit holes and gaps', async () => {
    const { reader, put, meta } = await setup();
    await put(6n, 1000, Buffer.alloc(1000, 1)); // data [1000, 2000)
    // An explicit hole record (truncate/punch) over [1500, 1600).
    await meta.writeSlice(6n, 0, 1500, { pos: 1500, id: 0, size: 0, off: 0, len: 100 }, { sec: 0, nsec: 0 });
    await put(6n, 2 * CHUNK_SIZE + 5, Buffer.alloc(10, 2)); // data in chunk 2
    const len = 2 * CHUNK_SIZE + 15;
    expect(await reader.seek(6n, 0, len, SEEK_DATA)).toBe(1000);
    expect(await reader.seek(6n, 0, len, SEEK_HOLE)).toBe(0);
    expect(await reader.seek(6n, 1000, len, SEEK_HOLE)).toBe(1500);
    expect(await reader.seek(6n, 1550, len, SEEK_DATA)).toBe(1600);
    expect(await reader.seek(6n, 1600, len, SEEK_HOLE)).toBe(2000);
    expect(await reader.seek(6n, 2000, len, SEEK_DATA)).toBe(2 * CHUNK_SIZE + 5);
    expect(await reader.seek(6n, 2 * CHUNK_SIZE + 5, len, SEEK_HOLE)).toBe(len);
    await expect(reader.seek(6n, len, len, SEEK_DATA)).rejects.toMatchObject({ errno: 6 });
    await expect(reader.seek(6n, 2 * CHUNK_SIZE + 15 - 1, len - 1, SEEK_HOLE)).rejects.toMatchObject({ errno: 6 });
  });

  it('a failed block fetch is an error, and the next read retries', async () => {
    const { reader, put, objects } = await setup();
    await put(7n, 0, pattern(3 * BS, 3));
    const s = reader.stream(7n);
    objects.down(['get']);
    await expect(s.read(0, 100, 3 * BS)).rejects.toThrow();
    objects.up();
    expect((await s.read(0, 100, 3 * BS)).equals(pattern(3 * BS, 3).subarray(0, 100))).toBe(true);
    s.close();
  });
});
