/**
 * The proof of the on-disk format: the real `juicefs` (1.4.2) writes a volume on a `file` bucket
 * with none/lz4/zstd compression (and hash-prefix naming, non-default block size); we read its
 * blocks back byte for byte with our codecs and keys. Then we replace its block objects by ones we
 * wrote, and the real `juicefs` mounts and reads the file back identically and fsck finds every block.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { blockCount, blockKey, blockSize } from '../../chunkstore/keys.js';
import { createObjectStore } from '../../chunkstore/object/index.js';
import type { Compression, ObjectStore } from '../../chunkstore/types.js';
import { dump, format, fsck, mount, type DumpEntry } from '../helpers/juicefs.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';

const CHUNK = 64 << 20;

/** ~10 MiB that compresses partly: words with interleaved hash bytes. */
function testData(n: number): Buffer {
  const words = ['alpha ', 'beta ', 'gamma ', 'delta\n', 'juicefs ', 'block ', 'chunk ', 'slice '];
  const out = Buffer.allocUnsafe(n);
  let pos = 0;
  let s = 1;
  while (pos < n) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    if (s % 5 === 0) pos += createHash('sha256').update(String(pos)).digest().copy(out, pos);
    else pos += out.write(words[s % words.length]!, pos);
  }
  return out;
}

interface SliceRef {
  indx: number;
  pos: number;
  id: number;
  size: number;
  off: number;
  len: number;
}

function slicesOf(entry: DumpEntry): SliceRef[] {
  const out: SliceRef[] = [];
  for (const c of entry.chunks ?? []) {
    for (const s of c.slices) out.push({ indx: c.index, pos: s.pos ?? 0, id: s.id, size: s.size, off: s.off ?? 0, len: s.len ?? s.size });
  }
  return out;
}

/** Rebuild a file from its slice records (later records win; unpainted = zeros). */
async function readFileFromSlices(bs: ObjectBlockStore, slices: SliceRef[], length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (const s of slices) {
    if (s.id === 0) continue;
    const piece = await bs.read(s.id, s.size, s.off, s.len);
    piece.copy(out, s.indx * CHUNK + s.pos);
  }
  return out;
}

async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

const variants: { compression: Compression; extra: string[]; blockKiB: number; hashPrefix: boolean }[] = [
  { compression: 'none', extra: [], blockKiB: 4096, hashPrefix: false },
  { compression: 'lz4', extra: [], blockKiB: 4096, hashPrefix: false },
  { compression: 'zstd', extra: [], blockKiB: 4096, hashPrefix: false },
  { compression: 'lz4', extra: ['--hash-prefix'], blockKiB: 1024, hashPrefix: true },
];

describe('interop with the real juicefs on a file bucket', () => {
  let redis: RedisHandle;
  const data = testData(10 * (1 << 20) + 12345);
  const small = Buffer.from('hello from juicefs\n'.repeat(50));

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it.each(variants.map((v, i) => [`${v.compression}${v.hashPrefix ? '+hash-prefix' : ''} ${v.blockKiB} KiB`, v, i + 1] as const))(
    '%s: we read what juicefs wrote, juicefs reads what we wrote',
    async (_label, v, db) => {
      const dir = await tmpDir(`interop-${v.compression}`);
      const bucket = path.join(dir, 'bucket') + '/';
      const meta = `${redis.url}/${db}`;
      const name = `vol-${v.compression}-${db}`;
      await format(meta, name, { storage: 'file', bucket, compress: v.compression, trashDays: 0, blockSizeKiB: v.blockKiB, extraArgs: v.extra });

      // 1. juicefs writes.
      let m = await mount(meta, path.join(dir, 'mnt'));
      try {
        await writeFile(path.join(m.mountpoint, 'data.bin'), data);
        await writeFile(path.join(m.mountpoint, 'small.txt'), small);
      } finally {
        await m.unmount();
      }

      // 2. We read its blocks through the Format it wrote.
      const d = await dump(meta);
      const setting = d.Setting;
      expect(setting.Compression).toBe(v.compression);
      expect(setting.BlockSize).toBe(v.blockKiB);
      const store = createObjectStore({ Storage: setting.Storage, Bucket: setting.Bucket, Name: setting.Name });
      const bs = new ObjectBlockStore(store, {
        blockSize: setting.BlockSize * 1024,
        compression: setting.Compression as Compression,
        hashPrefix: Boolean(setting.HashPrefix),
      });
      const files = d.FSTree.entries!;
      const bigSlices = slicesOf(files['data.bin']!);
      const smallSlices = slicesOf(files['small.txt']!);
      expect(bigSlices.length).toBeGreaterThan(0);
      // Every block key we derive exists, under the naming scheme of the volume.
      const stored = new Set(await listKeys(store, 'chunks/'));
      for (const s of [...bigSlices, ...smallSlices]) {
        for (let i = 0; i < blockCount(s.size, bs.config.blockSize); i++) {
          expect(stored.has(blockKey(s.id, i, blockSize(s.size, i, bs.config.blockSize), v.hashPrefix))).toBe(true);
        }
      }
      if (v.compression !== 'none') {
        const first = blockKey(bigSlices[0]!.id, 0, bs.config.blockSize, v.hashPrefix);
        expect((await store.get(first)).length).toBeLessThan(bs.config.blockSize); // really compressed
      }
      expect((await readFileFromSlices(bs, bigSlices, data.length)).equals(data)).toBe(true);
      expect((await readFileFromSlices(bs, smallSlices, small.length)).equals(small)).toBe(true);
      // A ranged read straddling a block boundary.
      const s0 = bigSlices.find((s) => s.size > bs.config.blockSize && s.indx === 0 && s.pos === 0 && s.off === 0)!;
      expect(s0).toBeDefined();
      const at = bs.config.blockSize - 100;
      expect((await bs.read(s0.id, s0.size, at, 300)).equals(data.subarray(at, at + 300))).toBe(true);

      // 3. We rewrite every block of every slice (delete theirs first), then juicefs reads ours.
      for (const s of [...bigSlices, ...smallSlices]) {
        const plain = await bs.read(s.id, s.size, 0, s.size);
        await bs.remove(s.id, s.size);
        const w = bs.newWriter(s.id);
        for (let off = 0; off < plain.length; off += 128 * 1024) w.write(off, plain.subarray(off, Math.min(plain.length, off + 128 * 1024)));
        await w.finish(plain.length);
      }
      expect(new Set(await listKeys(store, 'chunks/'))).toEqual(stored);
      const check = await fsck(meta);
      expect(check.ok, check.output).toBe(true);
      m = await mount(meta, path.join(dir, 'mnt2'), ['--cache-size', '0']);
      try {
        expect((await readFile(path.join(m.mountpoint, 'data.bin'))).equals(data)).toBe(true);
        expect((await readFile(path.join(m.mountpoint, 'small.txt'))).equals(small)).toBe(true);
      } finally {
        await m.unmount();
      }
    },
  );
});
