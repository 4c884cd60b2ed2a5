/**
 * Random writes, truncates, reads, flushes and reopens through two handles of a VfsImpl on real
 * Redis + the real block store, checked against a Buffer model after every step and from a second
 * mount at the end. Offsets cluster in two windows below and around the 64 MiB chunk boundary (the
 * first 63 MiB stay a hole); the volume's 64 KiB blocks put many block edges in play, and the many
 * small slices make the engine compact chunks while the test writes (compaction rewrites the span
 * between the first and last byte of a chunk, so the windows are kept close together).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK_SIZE, ROOT_INODE } from '../../metadata/types.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';
import { type Mount, type Volume, O_CREAT, O_RDONLY, O_RDWR, makeVolume, pattern, readAll, root } from './harness.js';

const KiB = 1024;
const SPAN = 640 * KiB;
const MODEL_SIZE = CHUNK_SIZE + 2 * SPAN;

type Op =
  | { k: 'write'; h: 0 | 1; off: number; len: number; seed: number }
  | { k: 'truncate'; size: number }
  | { k: 'read'; h: 0 | 1; off: number; len: number }
  | { k: 'flush'; h: 0 | 1 }
  | { k: 'reopen'; h: 0 | 1 };

const LOW = CHUNK_SIZE - 3 * SPAN;
const offset = fc.oneof(fc.integer({ min: LOW, max: LOW + SPAN }), fc.integer({ min: CHUNK_SIZE - SPAN, max: CHUNK_SIZE + SPAN }));
const handle = fc.constantFrom<0 | 1>(0, 1);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('write' as const), h: handle, off: offset, len: fc.integer({ min: 1, max: 200 * KiB }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('truncate' as const), size: offset }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('read' as const), h: handle, off: offset, len: fc.integer({ min: 1, max: 300 * KiB }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('flush' as const), h: handle }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reopen' as const), h: handle }) },
);

async function runModel(vol: Volume, m: Mount, runs: number, seed: number): Promise<void> {
  const model = Buffer.alloc(MODEL_SIZE);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 30 }), async (ops) => {
      model.fill(0);
      let len = 0;
      const f = await m.vfs.create(root, ROOT_INODE, Buffer.from(`model-${seed}-${n++}`), 0o644, 0, O_RDWR | O_CREAT);
      const fhs: bigint[] = [f.fh, (await m.vfs.open(root, f.ino, O_RDWR)).fh];
      for (const op of ops) {
        switch (op.k) {
          case 'write': {
            const data = pattern(op.len, op.seed);
            expect(await m.vfs.write(root, f.ino, fhs[op.h]!, op.off, data)).toBe(op.len);
            data.copy(model, op.off);
            len = Math.max(len, op.off + op.len);
            break;
          }
          case 'truncate':
            await m.vfs.setattr(root, f.ino, { size: op.size });
            if (op.size < len) model.fill(0, op.size, len);
            len = op.size;
            break;
          case 'read': {
            const got = await readAll(m.vfs, root, f.ino, fhs[op.h]!, op.off, op.len);
            const want = model.subarray(op.off, Math.max(op.off, Math.min(op.off + op.len, len)));
            expect(got.length).toBe(want.length);
            expect(got.equals(want)).toBe(true);
            break;
          }
          case 'flush':
            await m.vfs.flush(root, f.ino, fhs[op.h]!, 7n);
            break;
          case 'reopen':
            await m.vfs.release(root, f.ino, fhs[op.h]!);
            fhs[op.h] = (await m.vfs.open(root, f.ino, O_RDWR)).fh;
            break;
        }
        expect((await m.vfs.getattr(root, f.ino)).attr.length).toBe(len);
      }
      for (const fh of fhs) await m.vfs.release(root, f.ino, fh);
      // Everything is committed now: another mount reads exactly the model.
      const other = await vol.mount();
      try {
        expect((await other.meta.getAttr(f.ino)).length).toBe(len);
        const o = await other.vfs.open(root, f.ino, O_RDONLY);
        for (const [a, b] of [[0, Math.min(len, 300 * KiB)], [Math.min(len, LOW), len]] as const) {
          const got = await readAll(other.vfs, root, f.ino, o.fh, a, b - a, 1 << 20);
          expect(got.equals(model.subarray(a, b))).toBe(true);
        }
        await other.vfs.release(root, f.ino, o.fh);
      } finally {
        await other.close();
      }
    }),
    { numRuns: runs, seed, endOnFailure: true },
  );
}

let redis: RedisHandle;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => redis?.stop());

describe('random operations against a Buffer model', () => {
  it('local file store, 64 KiB blocks', async () => {
    const vol = await makeVolume({ redis, db: 1, dir: `${await tmpDir('vfs-model')}/v`, blockSizeKiB: 64 });
    const m = await vol.mount({ writer: { idleMs: 60_000, commitAfterMs: 60_000 } });
    try {
      await runModel(vol, m, 40, 42);
    } finally {
      await m.close();
    }
  }, 600_000);

  it('S3 (SeaweedFS), lz4, 64 KiB blocks, short commit timers', async () => {
    let s3: S3Handle | undefined;
    try {
      s3 = await startS3();
      const vol = await makeVolume({ redis, db: 2, s3, blockSizeKiB: 64, compression: 'lz4' });
      const m = await vol.mount({ writer: { idleMs: 20, commitAfterMs: 100, tickMs: 10 } });
      try {
        await runModel(vol, m, 20, 7);
      } finally {
        await m.close();
      }
    } finally {
      await s3?.stop();
    }
  }, 600_000);
});
