/**
 * Unit tests of the write path (fs/writer.ts) with the real block store over an in-memory object
 * store and a fake of Meta's three data-path calls.
 */
import { describe, expect, it } from 'vitest';
import { ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { CHUNK_SIZE } from '../../metadata/types.js';
import { Writer, type WriterOptions } from '../../fs/writer.js';
import { FakeDataMeta, MemoryObjectStore } from './fakes.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const BS = 256 * KiB;

function setup(opts: Partial<WriterOptions> = {}, bs = BS) {
  const objects = new MemoryObjectStore();
  const fault = new FaultObjectStore(objects);
  const store = new ObjectBlockStore(fault, { blockSize: bs, compression: 'none', hashPrefix: false }, undefined, { retries: 0, retryBaseMs: 1 });
  const meta = new FakeDataMeta();
  const commits: Array<{ indx: number; end: number }> = [];
  const w = new Writer(meta.asMeta(), store, { commitAfterMs: 60_000, idleMs: 60_000, ...opts }, {
    onCommit: (_ino, indx, end) => commits.push({ indx, end }),
  });
  return { objects, fault, store, meta, w, commits };
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('slice writer', () => {
  it('contiguous appends extend one slice; a gap starts a new one', async () => {
    const { meta, w } = setup();
    for (let i = 0; i < 10; i++) await w.write(5n, i * 100 * KiB, pattern(100 * KiB, i));
    await w.write(5n, 5 * MiB, pattern(10, 99)); // not contiguous
    await w.flush(5n);
    expect(meta.commits.map((c) => [c.indx, c.pos, c.slice.len])).toEqual([
      [0, 0, 1000 * KiB],
      [0, 5 * MiB, 10],
    ]);
    expect(meta.commits[0]!.slice.id).not.toBe(meta.commits[1]!.slice.id);
    expect(meta.lengths.get(5n)).toBe(5 * MiB + 10);
  });

  it('overwrite inside the not-yet-uploaded tail stays in the slice; below it starts a new slice', async () => {
    const { meta, w } = setup();
    await w.write(1n, 0, pattern(BS + 100, 1)); // block 0 full → uploaded; tail open
    await w.write(1n, BS + 10, Buffer.from('xx')); // inside the open tail: same slice
    await w.write(1n, 10, Buffer.from('yy')); // inside an uploaded block: new slice
    await w.flush(1n);
    expect(meta.commits.length).toBe(2);
    expect(meta.commits[0]!.slice.len).toBe(BS + 100);
    expect(meta.commits[1]!.pos).toBe(10);
  });

  it('never crosses a chunk boundary and commits slices of a chunk in creation order', async () => {
    const { meta, w } = setup({}, 4 * MiB);
    const data = pattern(2 * MiB, 3);
    await w.write(9n, CHUNK_SIZE - MiB, data); // spans chunks 0 and 1
    await w.flush(9n);
    expect(meta.commits.map((c) => [c.indx, c.pos, c.slice.len])).toEqual([
      [0, CHUNK_SIZE - MiB, MiB],
      [1, 0, MiB],
    ]);
    // Creation order within a chunk even when the newer slice is frozen first.
    const m2 = setup();
    await m2.w.write(2n, 0, Buffer.alloc(10, 1));
    await m2.w.write(2n, 1000, Buffer.alloc(10, 2));
    await m2.w.write(2n, 5, Buffer.alloc(10, 3)); // open tail of the first slice, no newer overlap: same slice
    await m2.w.write(2n, 995, Buffer.alloc(10, 4)); // overlaps the newer slice at 1000: a third slice
    m2.meta.commitDelayMs = 5;
    await m2.w.flush(2n);
    expect(m2.meta.commits.map((c) => [c.pos, c.slice.len])).toEqual([[0, 15], [1000, 10], [995, 10]]);
    const segs = await m2.meta.readChunk(2n, 0);
    // The newest slice paints over the older one at 1000..1005.
    expect(segs.find((s) => s.pos === 995)?.id).toBe(m2.meta.commits[2]!.slice.id);
    expect(segs.find((s) => s.pos === 1005)?.id).toBe(m2.meta.commits[1]!.slice.id);
  });

  it('a slice reaching the chunk end is committed without a flush', async () => {
    const { meta, w } = setup({}, 4 * MiB);
    await w.write(3n, CHUNK_SIZE - 3 * MiB, pattern(3 * MiB, 4));
    for (let i = 0; i < 100 && meta.commits.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(meta.commits.length).toBe(1);
    expect(meta.commits[0]!.slice.len).toBe(3 * MiB);
  });

  it('commit timers: idle slices after idleMs, busy ones after commitAfterMs', async () => {
    const { meta, w } = setup({ commitAfterMs: 600, idleMs: 150, tickMs: 20 });
    const t0 = Date.now();
    await w.write(4n, 0, Buffer.from('idle'));
    for (let i = 0; i < 100 && meta.commits.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const idleAt = meta.commits[0]!.at - t0;
    expect(idleAt).toBeGreaterThanOrEqual(150);
    expect(idleAt).toBeLessThan(600);
    // A slice written every 50 ms never idles: it is committed by the 600 ms age rule.
    const t1 = Date.now();
    let off = 4;
    while (meta.commits.length < 2 && Date.now() - t1 < 3000) {
      await w.write(4n, off, Buffer.from('busy'));
      off += 4;
      await new Promise((r) => setTimeout(r, 50));
    }
    const busyAt = meta.commits[1]!.at - t1;
    expect(busyAt).toBeGreaterThanOrEqual(600);
    expect(busyAt).toBeLessThan(1200);
    // mtime is the time of the last modification, not of the commit.
    const c = meta.commits[0]!;
    expect(c.mtime.sec * 1000 + c.mtime.nsec / 1e6).toBeLessThanOrEqual(c.at);
    expect(c.mtime.sec * 1000 + c.mtime.nsec / 1e6).toBeGreaterThanOrEqual(t0 - 5);
    await w.flush(4n);
    w.close();
  });

  it('upload failure: slice aborted, blocks deleted, nothing committed, error recorded', async () => {
    const { meta, w, fault, objects } = setup();
    await w.write(7n, 0, pattern(BS, 5)); // block 0 uploaded fine
    await new Promise((r) => setTimeout(r, 20));
    fault.failNext(1, ['put']);
    await w.write(7n, BS, pattern(1000, 6)); // tail upload fails at flush
    await w.flush(7n);
    expect(meta.commits.length).toBe(0);
    expect(w.file(7n)!.errSeq).toBe(1);
    expect(w.file(7n)!.lastError?.code).toBe('EIO');
    expect([...objects.objects.keys()].filter((k) => k.startsWith('chunks/'))).toEqual([]);
    // The file keeps working afterwards.
    await w.write(7n, 0, Buffer.from('ok'));
    await w.flush(7n);
    expect(meta.commits.length).toBe(1);
  });

  it('commit failed with a POSIX error: blocks are deleted, error kept', async () => {
    const { meta, w, objects } = setup();
    meta.failCommit = Object.assign(new (await import('../../metadata/types.js')).MetaError('ENOSPC'));
    await w.write(8n, 0, pattern(BS + 5, 7));
    await w.flush(8n);
    expect(w.file(8n)!.lastError?.code).toBe('ENOSPC');
    expect(objects.objects.size).toBe(0);
  });

  it('back-pressure keeps buffered bytes near bufferSize', async () => {
    const { w, fault, meta } = setup({ idleMs: 60_000 });
    const limited = new Writer(meta.asMeta(), new ObjectBlockStore(fault, { blockSize: BS, compression: 'none', hashPrefix: false }), {
      bufferSize: 2 * MiB,
      commitAfterMs: 60_000,
      idleMs: 60_000,
    });
    fault.delay(5, ['put']);
    let peak = 0;
    const writes: Promise<number>[] = [];
    // Ten files written in parallel, 1 MiB each in 64 KiB pieces.
    for (let f = 0; f < 10; f++) {
      writes.push(
        (async () => {
          for (let i = 0; i < 16; i++) {
            await limited.write(BigInt(100 + f), i * 64 * KiB, pattern(64 * KiB, i));
            peak = Math.max(peak, limited.bufferUsed);
          }
          return 0;
        })(),
      );
    }
    await Promise.all(writes);
    for (let f = 0; f < 10; f++) await limited.flush(BigInt(100 + f));
    expect(peak).toBeLessThanOrEqual(2 * MiB + 10 * 64 * KiB);
    expect(limited.bufferUsed).toBe(0);
    const total = meta.commits.filter((c) => c.ino >= 100n).reduce((a, c) => a + c.slice.len, 0);
    expect(total).toBe(10 * MiB);
    w.close();
    limited.close();
  });

  it('O_APPEND offsets are chosen under the file lock', async () => {
    const { meta, w } = setup();
    const offs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => w.write(6n, (f) => f.length, Buffer.alloc(10, i))),
    );
    expect([...offs].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i * 10));
    await w.flush(6n);
    expect(meta.lengths.get(6n)).toBe(200);
  });
});
