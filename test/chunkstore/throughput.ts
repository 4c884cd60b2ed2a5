/**
 * Throughput measurements of the chunk store (not a test: run by hand, prints a table).
 *   npx tsx test/chunkstore/throughput.ts [MiB per direction, default 256]
 * Codecs on 4 MiB blocks (text-like and random data), raw S3 PUT/GET of 4 MiB objects, and the
 * block store writing/reading 64 MiB slices against a local SeaweedFS S3 (test/helpers/servers.ts).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { codecFor } from '../../chunkstore/compress.js';
import { createObjectStore } from '../../chunkstore/object/index.js';
import type { Compression } from '../../chunkstore/types.js';
import { startS3 } from '../helpers/servers.js';

const MiB = 1 << 20;
const BS = 4 * MiB;
const total = Number(process.argv[2] ?? 256) * MiB;

function textish(n: number): Buffer {
  const words = ['alpha ', 'beta ', 'gamma ', 'delta\n', 'slice ', 'block ', 'chunk ', '0123456789 '];
  const out = Buffer.allocUnsafe(n);
  let pos = 0;
  let s = 7;
  while (pos < n) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    if (s % 7 === 0) pos += randomBytes(Math.min(16, n - pos)).copy(out, pos);
    else pos += out.write(words[s % words.length]!, pos);
  }
  return out;
}

let lastCpu = 0;
/** Wall seconds of fn; the CPU seconds it used (all threads of this process) go to lastCpu. */
async function timeIt(fn: () => Promise<void>): Promise<number> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const c = process.cpuUsage(c0);
  lastCpu = (c.user + c.system) / 1e6;
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const rate = (bytes: number, s: number) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;

async function codecs(): Promise<void> {
  for (const [label, block] of [['text', textish(BS)], ['random', randomBytes(BS)]] as const) {
    for (const name of ['lz4', 'zstd'] as const) {
      const c = codecFor(name);
      const packed = await c.compress(block);
      await c.decompress(packed, BS);
      const n = 16;
      const tc = await timeIt(async () => {
        for (let i = 0; i < n; i++) await c.compress(block);
      });
      const cc = lastCpu;
      const td = await timeIt(async () => {
        for (let i = 0; i < n; i++) await c.decompress(packed, BS);
      });
      const cd = lastCpu;
      console.log(
        `${name.padEnd(4)} ${label.padEnd(6)} ratio ${(packed.length / BS).toFixed(3)}  ` +
          `compress ${rate(n * BS, tc)} (${rate(n * BS, cc)} per CPU)  decompress ${rate(n * BS, td)} (${rate(n * BS, cd)} per CPU)`,
      );
    }
  }
}

async function main(): Promise<void> {
  console.log(`# load average at start: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cores`);
  console.log(`# codecs, 4 MiB blocks, one thread`);
  await codecs();
  const s3 = await startS3();
  try {
    await s3.createBucket('bench');
    const fmt = { Storage: 's3', Bucket: s3.bucketUrl('bench'), AccessKey: s3.accessKey, SecretKey: s3.secretKey, Name: 'bench' };
    const store = createObjectStore(fmt);
    console.log(`# S3 (SeaweedFS on loopback), ${total / MiB} MiB per run`);
    // Raw object store.
    const obj = randomBytes(BS);
    const nObj = total / BS;
    for (const par of [4, 16]) {
      let next = 0;
      const tput = await timeIt(async () => {
        await Promise.all(Array.from({ length: par }, async () => {
          while (next < nObj) await store.put(`raw/${par}/${next++}`, obj);
        }));
      });
      const cput = lastCpu;
      next = 0;
      const tget = await timeIt(async () => {
        await Promise.all(Array.from({ length: par }, async () => {
          while (next < nObj) await store.get(`raw/${par}/${next++}`);
        }));
      });
      const cget = lastCpu;
      console.log(
        `raw 4 MiB objects x${par}: PUT ${rate(total, tput)}  GET ${rate(total, tget)}  ` +
          `(client CPU per 4 MiB: PUT ${((cput / nObj) * 1000).toFixed(1)} ms, GET ${((cget / nObj) * 1000).toFixed(1)} ms)`,
      );
    }
    // Small object latency.
    const small = Buffer.from('x');
    const nSmall = 200;
    const tsmall = await timeIt(async () => {
      for (let i = 0; i < nSmall; i++) await store.put(`small/${i}`, small);
    });
    console.log(`small PUT, sequential: ${((tsmall / nSmall) * 1000).toFixed(1)} ms each`);
    // Block store: 64 MiB slices via SliceWriter (128 KiB writes), then whole-slice reads.
    const slice = textish(64 * MiB);
    const rnd = randomBytes(64 * MiB);
    for (const [compression, data] of [['none', rnd], ['lz4', slice], ['zstd', slice]] as [Compression, Buffer][]) {
      for (const maxUploads of [8, 20]) {
        const bs = new ObjectBlockStore(store, { blockSize: BS, compression, hashPrefix: false, maxUploads });
        const nSlices = Math.max(1, total / (64 * MiB));
        const base = maxUploads * 1000 + (compression === 'none' ? 0 : compression === 'lz4' ? 100 : 200);
        const tw = await timeIt(async () => {
          for (let s = 0; s < nSlices; s++) {
            const w = bs.newWriter(base + s);
            for (let off = 0; off < data.length; off += 128 * 1024) {
              w.write(off, data.subarray(off, off + 128 * 1024));
              if ((off & (BS - 1)) === 0) await w.drain();
            }
            await w.finish(data.length);
          }
        });
        const tr = await timeIt(async () => {
          for (let s = 0; s < nSlices; s++) {
            // Read-ahead style: 4 MiB reads, 8 in parallel.
            const parts = [];
            for (let off = 0; off < data.length; off += BS) parts.push(bs.read(base + s, data.length, off, BS));
            await Promise.all(parts);
          }
        });
        console.log(`blockstore ${compression.padEnd(4)} maxUploads=${maxUploads}: write ${rate(nSlices * 64 * MiB, tw)}  read ${rate(nSlices * 64 * MiB, tr)}`);
      }
    }
    store.close?.();
    console.log(`# load average at end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  } finally {
    await s3.stop();
  }
}

await main();
