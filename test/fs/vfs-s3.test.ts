/**
 * VfsImpl on real Redis + the SeaweedFS S3 gateway: a file crossing chunks, sequential readahead
 * (whole-block GETs, bounded window), close-to-open between mounts, and an S3 PUT failure that
 * must leave no metadata behind.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { CHUNK_SIZE, ROOT_INODE } from '../../metadata/types.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/servers.js';
import { type Mount, type Volume, MiB, O_CREAT, O_RDONLY, O_RDWR, makeVolume, pattern, root } from './harness.js';

let redis: RedisHandle;
let s3: S3Handle;
let admin: Redis;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('S3 data path', () => {
  let vol: Volume;
  let a: Mount;
  let b: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 1, s3, blockSizeKiB: 1024 });
    a = await vol.mount();
    b = await vol.mount({ readaheadMax: 4 * MiB });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('writes 64 MiB + 1 MiB on mount A; mount B reads it back sequentially with bounded readahead', async () => {
    const f = await a.vfs.create(root, ROOT_INODE, Buffer.from('big'), 0o644, 0, O_RDWR | O_CREAT);
    const total = CHUNK_SIZE + MiB;
    const h = createHash('sha256');
    for (let off = 0, i = 0; off < total; off += MiB, i++) {
      const d = pattern(MiB, i);
      h.update(d);
      await a.vfs.write(root, f.ino, f.fh, off, d);
    }
    await a.vfs.release(root, f.ino, f.fh);
    const puts = vol.fault.calls.put;
    expect(puts).toBeGreaterThanOrEqual(65); // 65 blocks of 1 MiB (plus nothing else)
    const o = await b.vfs.open(root, f.ino, O_RDONLY);
    expect(o.keepCache).toBe(false);
    const rh = createHash('sha256');
    const gets0 = vol.fault.calls.get;
    let peak = 0;
    let off = 0;
    for (;;) {
      const d = await b.vfs.read(root, f.ino, o.fh, off, 256 * 1024);
      if (d.length === 0) break;
      rh.update(d);
      off += d.length;
      peak = Math.max(peak, b.vfs.reader.raUsed);
    }
    expect(off).toBe(total);
    expect(rh.digest('hex')).toBe(h.digest('hex'));
    // One whole-block GET per block, no re-fetches; readahead never held more than window + 2 blocks.
    expect(vol.fault.calls.get - gets0).toBe(65);
    expect(peak).toBeLessThanOrEqual(4 * MiB + 2 * MiB);
    await b.vfs.release(root, f.ino, o.fh);
    expect(b.vfs.reader.raUsed).toBe(0);
  });

  it('random reads on S3 return the right bytes without readahead', async () => {
    const f = await a.vfs.create(root, ROOT_INODE, Buffer.from('rand'), 0o644, 0, O_RDWR | O_CREAT);
    const data = pattern(5 * MiB + 123, 77);
    await a.vfs.write(root, f.ino, f.fh, 0, data);
    await a.vfs.release(root, f.ino, f.fh);
    const o = await b.vfs.open(root, f.ino, O_RDONLY);
    for (const [off, len] of [[4 * MiB + 5, 1000], [17, 3 * MiB], [MiB - 1, 2], [5 * MiB + 100, 100]] as const) {
      const got = await b.vfs.read(root, f.ino, o.fh, off, len);
      expect(sha(got)).toBe(sha(data.subarray(off, Math.min(off + len, data.length))));
    }
    await b.vfs.release(root, f.ino, o.fh);
  });
});

describe('S3 failure', () => {
  it('PUT failures: EIO at close, no chunk record, no length change, blocks cleaned up', async () => {
    const vol = await makeVolume({ redis, db: 2, s3, blockSizeKiB: 256 });
    const m = await vol.mount({ writer: { idleMs: 60_000, commitAfterMs: 60_000 } });
    try {
      const f = await m.vfs.create(root, ROOT_INODE, Buffer.from('f'), 0o644, 0, O_RDWR | O_CREAT);
      await m.vfs.write(root, f.ino, f.fh, 0, pattern(256 * 1024, 1));
      await m.vfs.flush(root, f.ino, f.fh, 1n); // first slice lands
      vol.fault.failNext(1000, ['put'], 1); // the next block goes through, then every PUT fails
      await m.vfs.write(root, f.ino, f.fh, 256 * 1024, pattern(3 * 256 * 1024, 2));
      await expect(m.vfs.release(root, f.ino, f.fh)).rejects.toMatchObject({ code: 'EIO' });
      vol.fault.up();
      await admin.select(2);
      expect(await admin.llen(`c${f.ino}_0`)).toBe(1);
      expect((await m.meta.getAttr(f.ino)).length).toBe(256 * 1024);
      const keys: string[] = [];
      for await (const o of vol.objects.list('chunks/')) keys.push(o.key);
      expect(keys.length).toBe(1); // only the committed slice's block
      const o = await m.vfs.open(root, f.ino, O_RDONLY);
      expect((await m.vfs.read(root, f.ino, o.fh, 0, 1 << 20)).equals(pattern(256 * 1024, 1))).toBe(true);
      await m.vfs.release(root, f.ino, o.fh);
    } finally {
      await m.close();
    }
  });
});
