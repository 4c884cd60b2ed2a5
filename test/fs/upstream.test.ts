/**
 * The VFS against the real upstream `juicefs` (1.4.2) on one volume: what our VfsImpl writes
 * passes `juicefs fsck` and reads back byte for byte through `juicefs mount`; what upstream writes
 * our VFS reads back; and an overwrite committed by our VFS is seen by an upstream mount that
 * re-opens the file (our commits change mtime, which is what makes upstream drop its chunk cache).
 */
import { readFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT_INODE, CHUNK_SIZE } from '../../metadata/types.js';
import { fsck, mount, type JuicefsMount } from '../helpers/juicefs.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';
import { type Mount, type Volume, MiB, O_CREAT, O_RDONLY, O_RDWR, makeVolume, pattern, readAll, root } from './harness.js';

let redis: RedisHandle;
let work: string;
let vol: Volume;
let ours: Mount;
let jfs: JuicefsMount | undefined;

beforeAll(async () => {
  redis = await startRedis();
  work = await tmpDir('vfs-upstream');
  vol = await makeVolume({ redis, db: 1, dir: path.join(work, 'objects'), blockSizeKiB: 1024 });
  ours = await vol.mount({ writer: { idleMs: 60_000, commitAfterMs: 60_000 } });
});
afterAll(async () => {
  await jfs?.unmount();
  await ours?.close();
  await redis?.stop();
});

const models = new Map<string, Buffer>();

describe('upstream juicefs and our VFS on one volume', () => {
  it('files written by our VFS (sequential, sparse across chunks, random overwrites + truncate) pass juicefs fsck', async () => {
    const v = ours.vfs;
    // Sequential, not block aligned.
    const seq = pattern(10 * MiB + 5, 1);
    let f = await v.create(root, ROOT_INODE, Buffer.from('seq.bin'), 0o644, 0, O_RDWR | O_CREAT);
    for (let off = 0; off < seq.length; off += 256 * 1024) await v.write(root, f.ino, f.fh, off, seq.subarray(off, off + 256 * 1024));
    await v.release(root, f.ino, f.fh);
    models.set('seq.bin', seq);
    // Sparse: data at both ends of chunk 0 and in chunk 1.
    const sparse = Buffer.alloc(CHUNK_SIZE + 3 * MiB);
    f = await v.create(root, ROOT_INODE, Buffer.from('sparse.bin'), 0o644, 0, O_RDWR | O_CREAT);
    for (const [off, seed] of [[100, 2], [CHUNK_SIZE - 1000, 3], [CHUNK_SIZE + 2 * MiB, 4]] as const) {
      const d = pattern(MiB, seed);
      d.copy(sparse, off);
      await v.write(root, f.ino, f.fh, off, d);
    }
    await v.release(root, f.ino, f.fh);
    models.set('sparse.bin', sparse);
    // Random overwrites through two handles with flushes in between, then a shrink and a grow.
    const rand = Buffer.alloc(4 * MiB);
    let len = 0;
    f = await v.create(root, ROOT_INODE, Buffer.from('rand.bin'), 0o644, 0, O_RDWR | O_CREAT);
    const g = await v.open(root, f.ino, O_RDWR);
    for (let i = 0; i < 60; i++) {
      const off = (i * 7919 * 613) % (3 * MiB);
      const n = 1 + ((i * 104729) % (200 * 1024));
      const d = pattern(n, 100 + i);
      await v.write(root, f.ino, i % 2 ? g.fh : f.fh, off, d);
      d.copy(rand, off);
      len = Math.max(len, off + n);
      if (i % 13 === 0) await v.flush(root, f.ino, f.fh, 1n);
    }
    await v.setattr(root, f.ino, { size: 2 * MiB + 3 });
    rand.fill(0, 2 * MiB + 3);
    await v.write(root, f.ino, f.fh, 3 * MiB, Buffer.from('end'));
    Buffer.from('end').copy(rand, 3 * MiB);
    len = 3 * MiB + 3;
    await v.release(root, f.ino, g.fh);
    await v.release(root, f.ino, f.fh);
    models.set('rand.bin', rand.subarray(0, len));

    const r = await fsck(vol.url);
    expect(r.output).not.toMatch(/lost|broken/i);
    expect(r.ok).toBe(true);
  });

  it('juicefs mount reads back exactly what our VFS wrote', async () => {
    jfs = await mount(vol.url, path.join(work, 'mnt'));
    for (const [name, want] of models) {
      const got = readFileSync(path.join(jfs.mountpoint, name));
      expect(got.length, name).toBe(want.length);
      expect(got.equals(want), name).toBe(true);
    }
  });

  it('our VFS reads back what juicefs wrote (random writes through the upstream mount)', async () => {
    const p = path.join(jfs!.mountpoint, 'up.bin');
    const model = Buffer.alloc(3 * MiB);
    const fh = await openFile(p, 'w+');
    for (let i = 0; i < 40; i++) {
      const off = (i * 48271 * 97) % (2 * MiB);
      const d = pattern(1 + ((i * 16807) % (300 * 1024)), 500 + i);
      await fh.write(d, 0, d.length, off);
      d.copy(model, off);
    }
    await fh.close();
    const st = (await openFile(p, 'r').then(async (h) => {
      const s = await h.stat();
      await h.close();
      return s;
    }));
    const e = await ours.vfs.lookup(root, ROOT_INODE, Buffer.from('up.bin'));
    expect(e.attr.length).toBe(st.size);
    const o = await ours.vfs.open(root, e.ino, O_RDONLY);
    const got = await readAll(ours.vfs, root, e.ino, o.fh, 0, st.size + 100, 1 << 20);
    await ours.vfs.release(root, e.ino, o.fh);
    expect(got.equals(model.subarray(0, st.size))).toBe(true);
  });

  it('an overwrite committed by our VFS is seen by the upstream mount on its next open', async () => {
    const p = path.join(jfs!.mountpoint, 'seq.bin');
    // Upstream reads (and caches) the file first.
    expect(readFileSync(p).subarray(0, 8).equals(models.get('seq.bin')!.subarray(0, 8))).toBe(true);
    const e = await ours.vfs.lookup(root, ROOT_INODE, Buffer.from('seq.bin'));
    const h = await ours.vfs.open(root, e.ino, O_RDWR);
    await ours.vfs.write(root, e.ino, h.fh, 4, Buffer.from('OVERWRITTEN'));
    await ours.vfs.release(root, e.ino, h.fh);
    const want = Buffer.from(models.get('seq.bin')!);
    Buffer.from('OVERWRITTEN').copy(want, 4);
    // Upstream's attr cache lives 1 s; after it the open revalidates and sees the new mtime.
    await new Promise((r) => setTimeout(r, 1500));
    const got = readFileSync(p);
    expect(got.subarray(0, 32).toString('latin1')).toBe(want.subarray(0, 32).toString('latin1'));
    expect(got.equals(want)).toBe(true);
    const r = await fsck(vol.url);
    expect(r.ok).toBe(true);
  });
});
