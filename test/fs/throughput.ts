/**
 * Throughput of the VFS API (no FUSE) against the local SeaweedFS S3 gateway and real Redis:
 * a sequential write of SIZE (default 1 GiB) in 1 MiB writes, then a sequential read of it in
 * 1 MiB reads from a fresh mount (no block cache), like `juicefs bench`'s big-file phase.
 *
 *   npx tsx test/fs/throughput.ts [sizeMiB] [blockSizeKiB]
 */
import { ROOT_INODE } from '../../metadata/types.js';
import type { ObjectStore } from '../../chunkstore/types.js';
import { startRedis, startS3 } from '../helpers/servers.js';
import { MiB, O_CREAT, O_RDONLY, O_WRONLY, makeVolume, pattern, root } from './harness.js';

const sizeMiB = Number(process.argv[2] ?? 1024);
const bsKiB = Number(process.argv[3] ?? 4096);

/** The object store alone: 64 MiB of block-sized PUTs then GETs, 8 in parallel (the VFS's upload/readahead depth). */
async function rawBaseline(objects: ObjectStore): Promise<{ putMiBps: number; getMiBps: number }> {
  const bs = bsKiB * 1024;
  const n = Math.max(8, Math.floor((64 * MiB) / bs));
  const blk = pattern(bs, 99);
  const run = async (fn: (i: number) => Promise<unknown>) => {
    let next = 0;
    const t = performance.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < n) await fn(next++);
    }));
    return +((n * bs) / MiB / ((performance.now() - t) / 1000)).toFixed(1);
  };
  const putMiBps = await run((i) => objects.put(`baseline/${i}`, blk));
  const getMiBps = await run((i) => objects.get(`baseline/${i}`));
  for (let i = 0; i < n; i++) await objects.delete(`baseline/${i}`);
  return { putMiBps, getMiBps };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const s3 = await startS3();
  try {
    const vol = await makeVolume({ redis, db: 1, s3, blockSizeKiB: bsKiB });
    const baseline = await rawBaseline(vol.objects);
    // 16 distinct 1 MiB pieces, written round-robin; the read side compares with memcmp.
    const pieces = Array.from({ length: 16 }, (_, i) => pattern(MiB, i + 1));
    // Write.
    const w = await vol.mount();
    const f = await w.vfs.create(root, ROOT_INODE, Buffer.from('big'), 0o644, 0, O_WRONLY | O_CREAT);
    const t0 = performance.now();
    for (let i = 0; i < sizeMiB; i++) {
      const b = pieces[i % pieces.length]!;
      await w.vfs.write(root, f.ino, f.fh, i * MiB, b);
    }
    await w.vfs.flush(root, f.ino, f.fh, 1n);
    await w.vfs.release(root, f.ino, f.fh);
    const tw = (performance.now() - t0) / 1000;
    const puts = vol.fault.calls.put;
    const writeRetries = w.store.stats.retries;
    await w.close();
    // Read from a fresh mount (nothing cached).
    const r = await vol.mount();
    const o = await r.vfs.open(root, f.ino, O_RDONLY);
    const gets0 = vol.fault.calls.get;
    const t1 = performance.now();
    let got = 0;
    let same = true;
    for (;;) {
      const b = await r.vfs.read(root, f.ino, o.fh, got, MiB);
      if (b.length === 0) break;
      if (b.length !== MiB || !b.equals(pieces[(got / MiB) % pieces.length]!)) same = false;
      got += b.length;
    }
    const tr = (performance.now() - t1) / 1000;
    await r.vfs.release(root, f.ino, o.fh);
    const readRetries = r.store.stats.retries;
    await r.close();
    const ok = got === sizeMiB * MiB && same;
    console.log(
      JSON.stringify({
        sizeMiB,
        blockSizeKiB: bsKiB,
        writeMiBps: +(sizeMiB / tw).toFixed(1),
        readMiBps: +(sizeMiB / tr).toFixed(1),
        writeSeconds: +tw.toFixed(2),
        readSeconds: +tr.toFixed(2),
        puts,
        readGets: vol.fault.calls.get - gets0,
        writeRetries,
        readRetries,
        rawS3: baseline,
        verified: ok,
      }),
    );
    if (!ok) process.exitCode = 1;
  } finally {
    await s3.stop();
    await redis.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
