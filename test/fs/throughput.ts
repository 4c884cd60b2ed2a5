/**
 * Throughput of the VFS API (no FUSE) against the local SeaweedFS S3 gateway and real Redis:
 * a sequential write of SIZE (default 1 GiB) in 1 MiB writes, then a sequential read of it in
 * 1 MiB reads from a fresh mount (no block cache), like `juicefs bench`'s big-file phase.
 *
 *   npx tsx test/fs/throughput.ts [sizeMiB] [blockSizeKiB]
 */
import { createHash } from 'node:crypto';
import { ROOT_INODE } from '../../metadata/types.js';
import { startRedis, startS3 } from '../helpers/servers.js';
import { MiB, O_CREAT, O_RDONLY, O_WRONLY, makeVolume, pattern, root } from './harness.js';

const sizeMiB = Number(process.argv[2] ?? 1024);
const bsKiB = Number(process.argv[3] ?? 4096);

async function main(): Promise<void> {
  const redis = await startRedis();
  const s3 = await startS3();
  try {
    const vol = await makeVolume({ redis, db: 1, s3, blockSizeKiB: bsKiB });
    const piece = pattern(MiB, 1);
    const pieces = Array.from({ length: 16 }, (_, i) => pattern(MiB, i + 1));
    void piece;
    // Write.
    const w = await vol.mount();
    const f = await w.vfs.create(root, ROOT_INODE, Buffer.from('big'), 0o644, 0, O_WRONLY | O_CREAT);
    const wh = createHash('sha256');
    const t0 = performance.now();
    for (let i = 0; i < sizeMiB; i++) {
      const b = pieces[i % pieces.length]!;
      await w.vfs.write(root, f.ino, f.fh, i * MiB, b);
      wh.update(b);
    }
    await w.vfs.flush(root, f.ino, f.fh, 1n);
    await w.vfs.release(root, f.ino, f.fh);
    const tw = (performance.now() - t0) / 1000;
    const puts = vol.fault.calls.put;
    await w.close();
    // Read from a fresh mount (nothing cached).
    const r = await vol.mount();
    const o = await r.vfs.open(root, f.ino, O_RDONLY);
    const rh = createHash('sha256');
    const t1 = performance.now();
    let got = 0;
    for (;;) {
      const b = await r.vfs.read(root, f.ino, o.fh, got, MiB);
      if (b.length === 0) break;
      rh.update(b);
      got += b.length;
    }
    const tr = (performance.now() - t1) / 1000;
    await r.vfs.release(root, f.ino, o.fh);
    await r.close();
    const ok = got === sizeMiB * MiB && rh.digest('hex') === wh.digest('hex');
    console.log(
      JSON.stringify({
        sizeMiB,
        blockSizeKiB: bsKiB,
        writeMiBps: +(sizeMiB / tw).toFixed(1),
        readMiBps: +(sizeMiB / tr).toFixed(1),
        writeSeconds: +tw.toFixed(2),
        readSeconds: +tr.toFixed(2),
        puts,
        gets: vol.fault.calls.get,
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
