/**
 * Sequential I/O like `dd bs=1M conv=fsync`, run as a child process by the harness:
 *
 *   node dist/bench/seqio.js write <file> <bytes> [blockBytes]   # create, write, fsync, close
 *   node dist/bench/seqio.js read <file> [blockBytes]            # read to EOF
 *
 * Prints {bytes, seconds, mibPerSec}. Timed from open to close, fsync included (fio's own
 * bandwidth leaves end_fsync out, which flatters a client that buffers writes). The data is
 * pseudo-random (a 16 MiB pattern repeated at shifting offsets), so neither compression nor
 * zero detection can help anyone.
 */
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const MiB = 1 << 20;

function pattern(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

export function seqWrite(file: string, bytes: number, block = MiB): { bytes: number; seconds: number } {
  const pat = pattern(16 * MiB + block);
  const t = performance.now();
  const fd = openSync(file, 'w', 0o644);
  let done = 0;
  let i = 0;
  while (done < bytes) {
    const n = Math.min(block, bytes - done);
    // Shift by a prime number of bytes per block so no two blocks are identical.
    const off = (i++ * 4099) % (16 * MiB);
    done += writeSync(fd, pat, off, n, done);
  }
  fsyncSync(fd);
  closeSync(fd);
  return { bytes: done, seconds: (performance.now() - t) / 1000 };
}

export function seqRead(file: string, block = MiB): { bytes: number; seconds: number } {
  const buf = Buffer.allocUnsafe(block);
  const t = performance.now();
  const fd = openSync(file, 'r');
  let done = 0;
  for (let n; (n = readSync(fd, buf, 0, block, done)) > 0; ) done += n;
  closeSync(fd);
  return { bytes: done, seconds: (performance.now() - t) / 1000 };
}

if (process.argv[1] && /seqio\.(js|ts)$/.test(process.argv[1])) {
  const [mode, file, a, b] = process.argv.slice(2);
  let r: { bytes: number; seconds: number };
  if (mode === 'write' && file && a) r = seqWrite(file, Number(a), b ? Number(b) : MiB);
  else if (mode === 'read' && file) r = seqRead(file, a ? Number(a) : MiB);
  else {
    console.error('usage: seqio write <file> <bytes> [block] | seqio read <file> [block]');
    process.exit(2);
  }
  console.log(JSON.stringify({ ...r, mibPerSec: r.bytes / MiB / r.seconds }));
}
