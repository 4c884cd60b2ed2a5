/**
 * Compaction (spec 4.16) through the real stack: many small committed writes fragment a chunk;
 * the engine merges them into one new slice written by the block store; the bytes read back are
 * unchanged, the record list shrinks, superseded slices lose their blocks, and the real
 * `juicefs fsck` finds every block of every slice.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { openVolume } from '../../fs/volume.js';
import { ROOT_CTX, ROOT_INODE } from '../../metadata/types.js';
import { juicefsBin, startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';
import { resolveCacheConfig } from '../../chunkstore/cache/profiles.js';

let server: RedisHandle;
beforeAll(async () => (server = await startRedis()));
afterAll(async () => server?.stop());

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n++;
  return n;
}

describe('compaction', () => {
  it('merges a fragmented chunk into one slice without changing a byte', async () => {
    const bucket = await tmpDir('compact-bucket');
    const url = `${server.url}/1`;
    const admin = new Redis(url);
    const { format } = newFormat({ name: 'compact', storage: 'file', bucket, trashDays: 0 });
    await formatMeta(admin, '', format);
    const vol = await openVolume({ metaUrl: url, cache: resolveCacheConfig({ profile: 'benchmark' }) });
    const ctx = ROOT_CTX;
    try {
      const { vfs } = vol;
      const e = await vfs.create(ctx, ROOT_INODE, Buffer.from('frag'), 0o644, 0, 2);
      const expected = Buffer.alloc(120 * 1000);
      for (let i = 0; i < 120; i++) {
        // Overlapping writes, each committed as its own slice by fsync.
        const piece = Buffer.alloc(1500, i + 1);
        const off = i * 1000;
        await vfs.write(ctx, e.ino, e.fh, off, piece);
        await vfs.fsync(ctx, e.ino, e.fh, false);
        piece.copy(expected, off, 0, Math.min(1500, expected.length - off));
      }
      await vfs.release(ctx, e.ino, e.fh);
      await vol.meta.drain();
      const records = await admin.llen(`c${e.ino}_0`);
      expect(records).toBeLessThan(60); // compacted at 99 records
      await vol.meta.compactChunk(e.ino, 0, true);
      await vol.meta.drain();
      expect(await admin.llen(`c${e.ino}_0`)).toBe(1);
      const h = await vfs.open(ctx, e.ino, 0);
      const got = await vfs.read(ctx, e.ino, h.fh, 0, 200_000);
      await vfs.release(ctx, e.ino, h.fh);
      expect(got.length).toBe(119 * 1000 + 1500);
      expect(got.subarray(0, expected.length).equals(expected)).toBe(true);
      expect(await admin.hgetall('sliceRef')).toEqual({}); // markers removed, old slices dereferenced and deleted
      expect(await countFiles(`${bucket}/compact/chunks`)).toBe(1);
    } finally {
      await vol.close();
      admin.disconnect();
    }
    const fsck = spawnSync(juicefsBin(), ['fsck', url], { encoding: 'utf8' });
    expect(fsck.status, fsck.stderr).toBe(0);
    expect(fsck.stderr).toMatch(/Used by 1 slices/);
  });
});
