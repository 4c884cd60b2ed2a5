/**
 * The interactive profile end to end on a real object store: a second read of a file is served
 * by the block cache with zero object GETs — also by a fresh mount of the volume (disk tier) — and
 * a corrupted cache file is dropped and refetched, never served.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveCacheConfig } from '../../chunkstore/cache/profiles.js';
import { openVolume, type OpenVolume } from '../../fs/volume.js';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { ROOT_CTX, ROOT_INODE, type Ino } from '../../metadata/types.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';

let server: RedisHandle;
let url: string;
let cacheDir: string;
let uuid: string;
beforeAll(async () => {
  server = await startRedis();
  url = `${server.url}/1`;
  const bucket = await tmpDir('profile-bucket');
  cacheDir = await tmpDir('profile-cache');
  const admin = new Redis(url);
  const { format } = newFormat({ name: 'profiles', storage: 'file', bucket, trashDays: 0 });
  uuid = format.UUID;
  await formatMeta(admin, '', format);
  admin.disconnect();
});
afterAll(async () => server?.stop());

const open = () => openVolume({ metaUrl: url, cache: resolveCacheConfig({ profile: 'interactive', flags: { cacheDir, cacheSize: '1G' } }) });
const data = Buffer.alloc(10 * 1024 * 1024);
for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(v: OpenVolume, ino: Ino): Promise<Buffer> {
  const h = await v.vfs.open(ROOT_CTX, ino, 0);
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += 1 << 20) parts.push(await v.vfs.read(ROOT_CTX, ino, h.fh, off, 1 << 20));
  await v.vfs.release(ROOT_CTX, ino, h.fh);
  return Buffer.concat(parts);
}

describe('interactive profile', () => {
  let ino: Ino;
  it('a second read costs zero object GETs', async () => {
    const v = await open();
    try {
      const e = await v.vfs.create(ROOT_CTX, ROOT_INODE, Buffer.from('f'), 0o644, 0, 2);
      ino = e.ino;
      for (let off = 0; off < data.length; off += 1 << 20) await v.vfs.write(ROOT_CTX, ino, e.fh, off, data.subarray(off, off + (1 << 20)));
      await v.vfs.release(ROOT_CTX, ino, e.fh);
      const first = await readAll(v, ino);
      expect(sha(first)).toBe(sha(data));
      const before = v.store.stats.getRequests;
      const second = await readAll(v, ino);
      expect(sha(second)).toBe(sha(data));
      expect(v.store.stats.getRequests - before).toBe(0);
    } finally {
      await v.close();
    }
  });

  it('a fresh mount reads from the disk tier: zero GETs; a corrupt cache file is refetched, not served', async () => {
    const v = await open();
    try {
      const raw = path.join(cacheDir, uuid, 'raw');
      const files = (await fs.readdir(raw, { recursive: true, withFileTypes: true })).filter((d) => d.isFile());
      expect(files.length).toBe(3); // 4 + 4 + 2 MiB blocks
      const got = await readAll(v, ino);
      expect(sha(got)).toBe(sha(data));
      expect(v.store.stats.getRequests).toBe(0);
      // Flip one byte in the middle of every cached block, in a fresh process view (new mount).
      await v.close();
      for (const f of files) {
        const p = path.join(f.parentPath ?? (f as unknown as { path: string }).path, f.name);
        const b = await fs.readFile(p);
        b[100_000] ^= 0xff;
        await fs.writeFile(p, b);
      }
      const w = await open();
      try {
        const again = await readAll(w, ino);
        expect(sha(again)).toBe(sha(data));
        expect(w.store.stats.getRequests).toBeGreaterThanOrEqual(3);
        expect(w.cache!.stats().corrupt).toBe(3); // every flipped file was detected and dropped
      } finally {
        await w.close();
      }
    } finally {
      await v.close();
    }
  });
});
