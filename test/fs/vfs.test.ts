/**
 * VfsImpl on a real redis-server (the Redis engine) and the real block store over a local
 * directory: POSIX behaviour of handles, the write and read paths, close-to-open consistency
 * between two mounts, virtual files, read-only mounts and upload failures.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { CHUNK_SIZE, F_UNLCK, F_WRLCK, FileType, ROOT_INODE, TRASH_INODE, type Ino } from '../../metadata/types.js';
import { decodeSlices } from '../../metadata/codec.js';
import { ACCESSLOG_INODE, CONFIG_INODE, STATS_INODE } from '../../fs/system.js';
import { VfsImpl } from '../../fs/vfs.js';
import type { Meta } from '../../metadata/interface.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';
import { type Mount, type Volume, MiB, O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, makeVolume, pattern, readAll, root, user } from './harness.js';

let redis: RedisHandle;
let admin: Redis;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
  dir = await tmpDir('vfs');
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

const name = (s: string) => Buffer.from(s);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function create(m: Mount, parent: Ino, n: string, flags = O_RDWR | O_CREAT, ctx = root) {
  return m.vfs.create(ctx, parent, name(n), 0o644, 0o022, flags);
}

async function chunkRecords(db: number, ino: Ino, indx: number) {
  await admin.select(db);
  const items = await admin.lrangeBuffer(`c${ino}_${indx}`, 0, -1);
  return decodeSlices(items);
}

describe('namespace and listings', () => {
  let vol: Volume;
  let m: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 1, dir: `${dir}/v1`, trashDays: 1 });
    m = await vol.mount();
  });
  afterAll(async () => m.close());

  it('readdir includes . and .., resumes at offsets, and lists .trash and the virtual files in the root', async () => {
    const d = await m.vfs.mkdir(root, ROOT_INODE, name('d'), 0o755, 0o022);
    for (let i = 0; i < 5; i++) {
      const f = await create(m, d.ino, `f${i}`);
      await m.vfs.release(root, f.ino, f.fh);
    }
    const fh = await m.vfs.opendir(root, d.ino, 0);
    const first = await m.vfs.readdir(root, d.ino, fh, 0, false, 3);
    expect(first.map((e) => e.name.toString())).toEqual(['.', '..', expect.any(String)]);
    expect(first[0]!.ino).toBe(d.ino);
    expect(first[1]!.ino).toBe(ROOT_INODE);
    const rest = await m.vfs.readdir(root, d.ino, fh, first[2]!.offset, false, 100);
    const names = [...first, ...rest].map((e) => e.name.toString()).slice(2).sort();
    expect(names).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
    expect(await m.vfs.readdir(root, d.ino, fh, rest[rest.length - 1]!.offset, false, 100)).toEqual([]);
    await m.vfs.releasedir(root, d.ino, fh);

    const rfh = await m.vfs.opendir(root, ROOT_INODE, 0);
    const rl = await m.vfs.readdir(root, ROOT_INODE, rfh, 0, true, 1000);
    const rnames = rl.map((e) => e.name.toString());
    expect(rnames).toEqual(expect.arrayContaining(['.', '..', 'd', '.trash', '.stats', '.config', '.accesslog']));
    expect(rnames).not.toContain('.control');
    const trash = rl.find((e) => e.name.toString() === '.trash')!;
    expect(trash.ino).toBe(TRASH_INODE);
    expect(trash.attr?.type).toBe(FileType.Dir);
    expect(rl.every((e) => e.attr !== undefined)).toBe(true);
    await m.vfs.releasedir(root, ROOT_INODE, rfh);
    expect((await m.vfs.lookup(root, ROOT_INODE, name('.trash'))).ino).toBe(TRASH_INODE);
  });

  it('virtual names in the root are reserved', async () => {
    await expect(create(m, ROOT_INODE, '.stats')).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(m.vfs.unlink(root, ROOT_INODE, name('.config'))).rejects.toMatchObject({ code: 'EPERM' });
    expect((await m.vfs.lookup(root, ROOT_INODE, name('.stats'))).ino).toBe(STATS_INODE);
  });

  it('a rewinddir (offset 0 again) sees entries created meanwhile', async () => {
    const d = await m.vfs.mkdir(root, ROOT_INODE, name('rw'), 0o755, 0o022);
    const fh = await m.vfs.opendir(root, d.ino, 0);
    expect((await m.vfs.readdir(root, d.ino, fh, 0, false, 100)).length).toBe(2);
    const f = await create(m, d.ino, 'new');
    await m.vfs.release(root, f.ino, f.fh);
    expect((await m.vfs.readdir(root, d.ino, fh, 0, false, 100)).map((e) => e.name.toString())).toContain('new');
    await m.vfs.releasedir(root, d.ino, fh);
  });
});

describe('security xattrs (upstream --enable-cap / --enable-selinux)', () => {
  it('are not stored by default, and are with the options on', async () => {
    const vol = await makeVolume({ redis, db: 9, dir: `${dir}/vcap`, trashDays: 0 });
    const off = await vol.mount();
    const on = await vol.mount({ enableCap: true, enableSelinux: true });
    try {
      const f = await create(off, ROOT_INODE, 'capfile');
      await off.vfs.release(root, f.ino, f.fh);
      const cap = Buffer.from([1, 0, 0, 2]);
      for (const n of ['security.capability', 'security.selinux']) {
        await expect(off.vfs.setxattr(root, f.ino, n, cap, 0)).rejects.toMatchObject({ code: 'ENOTSUP' });
        await expect(off.vfs.removexattr(root, f.ino, n)).rejects.toMatchObject({ code: 'ENOTSUP' });
        await on.vfs.setxattr(root, f.ino, n, cap, 0);
        expect(await on.vfs.getxattr(root, f.ino, n)).toEqual(cap);
        // Stored in Redis, yet a mount without the option answers ENODATA without looking.
        await expect(off.vfs.getxattr(root, f.ino, n)).rejects.toMatchObject({ code: 'ENODATA' });
      }
      await off.vfs.setxattr(root, f.ino, 'security.other', cap, 0);
      expect(await off.vfs.getxattr(root, f.ino, 'security.other')).toEqual(cap);
    } finally {
      await off.close();
      await on.close();
    }
  });
});

describe('data path on one mount', () => {
  let vol: Volume;
  let m: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 2, dir: `${dir}/v2`, blockSizeKiB: 1024 });
    m = await vol.mount({ writer: { commitAfterMs: 60_000, idleMs: 60_000 } });
  });
  afterAll(async () => m.close());

  it('read-after-write in the same process sees uncommitted data, from the same and another handle', async () => {
    const f = await create(m, ROOT_INODE, 'raw');
    const data = pattern(300_000, 1);
    expect(await m.vfs.write(root, f.ino, f.fh, 0, data)).toBe(data.length);
    expect((await m.vfs.getattr(root, f.ino)).attr.length).toBe(300_000); // pending length
    const other = await m.vfs.open(root, f.ino, O_RDONLY);
    expect(sha(await readAll(m.vfs, root, f.ino, other.fh, 0, 400_000))).toBe(sha(data));
    expect(sha(await readAll(m.vfs, root, f.ino, f.fh, 0, 300_000))).toBe(sha(data));
    await m.vfs.release(root, f.ino, other.fh);
    await m.vfs.release(root, f.ino, f.fh);
  });

  it('two handles writing different ranges of one file', async () => {
    const f = await create(m, ROOT_INODE, 'two');
    const h2 = await m.vfs.open(root, f.ino, O_WRONLY);
    const a = pattern(3 * MiB, 2);
    const b = pattern(3 * MiB, 3);
    // Interleave the two writers piece by piece.
    const w1 = (async () => {
      for (let i = 0; i < 3; i++) await m.vfs.write(root, f.ino, f.fh, i * MiB, a.subarray(i * MiB, (i + 1) * MiB));
    })();
    const w2 = (async () => {
      for (let i = 0; i < 3; i++) await m.vfs.write(root, f.ino, h2.fh, 3 * MiB + i * MiB, b.subarray(i * MiB, (i + 1) * MiB));
    })();
    await Promise.all([w1, w2]);
    await m.vfs.flush(root, f.ino, h2.fh, 1n);
    await m.vfs.release(root, f.ino, h2.fh);
    await m.vfs.release(root, f.ino, f.fh);
    const r = await m.vfs.open(root, f.ino, O_RDONLY);
    const got = await readAll(m.vfs, root, f.ino, r.fh, 0, 6 * MiB);
    expect(sha(got)).toBe(sha(Buffer.concat([a, b])));
    await m.vfs.release(root, f.ino, r.fh);
  });

  it('O_APPEND from two handles: every record lands whole, none overwritten', async () => {
    const f = await create(m, ROOT_INODE, 'log', O_WRONLY | O_CREAT | O_APPEND);
    const g = await m.vfs.open(root, f.ino, O_WRONLY | O_APPEND);
    const recs: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) {
      const line = Buffer.from(`${i % 2 ? 'B' : 'A'}${String(i).padStart(4, '0')}\n`);
      recs.push(m.vfs.write(root, f.ino, i % 2 ? g.fh : f.fh, 0 /* ignored with O_APPEND */, line));
    }
    await Promise.all(recs);
    await m.vfs.release(root, f.ino, g.fh);
    await m.vfs.release(root, f.ino, f.fh);
    const r = await m.vfs.open(root, f.ino, O_RDONLY);
    const text = (await readAll(m.vfs, root, f.ino, r.fh, 0, 10_000)).toString();
    await m.vfs.release(root, f.ino, r.fh);
    const lines = text.trim().split('\n');
    expect(lines.length).toBe(50);
    expect(new Set(lines).size).toBe(50);
    expect(lines.every((l) => /^[AB]\d{4}$/.test(l))).toBe(true);
  });

  it('truncate while open: shrink then grow reads zeros past the cut', async () => {
    const f = await create(m, ROOT_INODE, 'trunc');
    await m.vfs.write(root, f.ino, f.fh, 0, pattern(2 * MiB, 4)); // still pending
    const a = await m.vfs.setattr(root, f.ino, { size: 100 });
    expect(a.attr.length).toBe(100);
    expect((await m.vfs.read(root, f.ino, f.fh, 0, 1000)).length).toBe(100);
    await m.vfs.setattr(root, f.ino, { size: 300 }, f.fh);
    const got = await m.vfs.read(root, f.ino, f.fh, 0, 1000);
    expect(got.length).toBe(300);
    expect(got.subarray(0, 100).equals(pattern(2 * MiB, 4).subarray(0, 100))).toBe(true);
    expect(got.subarray(100).equals(Buffer.alloc(200))).toBe(true);
    // Writing after the truncate extends from the new length.
    await m.vfs.write(root, f.ino, f.fh, 300, Buffer.from('tail'));
    await m.vfs.release(root, f.ino, f.fh);
    expect((await m.meta.getAttr(f.ino)).length).toBe(304);
  });

  it('open with O_TRUNC empties the file and commits nothing stale', async () => {
    const f = await create(m, ROOT_INODE, 'otrunc');
    await m.vfs.write(root, f.ino, f.fh, 0, pattern(5000, 5));
    const g = await m.vfs.open(root, f.ino, O_WRONLY | O_TRUNC);
    expect(g.keepCache).toBe(false);
    await m.vfs.release(root, f.ino, f.fh);
    await m.vfs.release(root, f.ino, g.fh);
    expect((await m.meta.getAttr(f.ino)).length).toBe(0);
  });

  it('a 64 MiB + 1 byte file crosses into chunk 1 and reads back identically', async () => {
    const f = await create(m, ROOT_INODE, 'big');
    const total = CHUNK_SIZE + 1;
    const h = createHash('sha256');
    for (let off = 0, i = 0; off < total; i++) {
      const n = Math.min(MiB, total - off);
      const b = pattern(n, 100 + i);
      h.update(b);
      await m.vfs.write(root, f.ino, f.fh, off, b);
      off += n;
    }
    await m.vfs.release(root, f.ino, f.fh);
    const want = h.digest('hex');
    expect((await m.meta.getAttr(f.ino)).length).toBe(total);
    const c0 = await chunkRecords(2, f.ino, 0);
    const c1 = await chunkRecords(2, f.ino, 1);
    expect(c0.reduce((a, s) => a + s.len, 0)).toBe(CHUNK_SIZE);
    expect(c1).toEqual([{ pos: 0, id: expect.any(Number), size: 1, off: 0, len: 1 }]);
    const r = await m.vfs.open(root, f.ino, O_RDONLY);
    const rh = createHash('sha256');
    let got = 0;
    for (let off = 0; off < total + 10; ) {
      const b = await m.vfs.read(root, f.ino, r.fh, off, 1 << 20);
      if (b.length === 0) break;
      rh.update(b);
      got += b.length;
      off += b.length;
    }
    await m.vfs.release(root, f.ino, r.fh);
    expect(got).toBe(total);
    expect(rh.digest('hex')).toBe(want);
  });

  it('sparse file: holes read as zeros, SEEK_DATA/SEEK_HOLE follow the chunk maps', async () => {
    const f = await create(m, ROOT_INODE, 'sparse');
    await m.vfs.write(root, f.ino, f.fh, 10, Buffer.from('head'));
    const far = 3 * CHUNK_SIZE + 5 * MiB;
    await m.vfs.write(root, f.ino, f.fh, far, Buffer.from('tail'));
    const len = far + 4;
    expect((await m.vfs.getattr(root, f.ino)).attr.length).toBe(len);
    const mid = await m.vfs.read(root, f.ino, f.fh, CHUNK_SIZE + 7, 4096);
    expect(mid.equals(Buffer.alloc(4096))).toBe(true);
    const edge = await m.vfs.read(root, f.ino, f.fh, 0, 20);
    expect(edge.equals(Buffer.concat([Buffer.alloc(10), Buffer.from('head'), Buffer.alloc(6)]))).toBe(true);
    expect((await m.vfs.read(root, f.ino, f.fh, far - 2, 100)).equals(Buffer.from('\0\0tail'))).toBe(true);
    // lseek flushes pending data itself.
    expect(await m.vfs.lseek(root, f.ino, f.fh, 0, 3)).toBe(10);
    expect(await m.vfs.lseek(root, f.ino, f.fh, 0, 4)).toBe(0);
    expect(await m.vfs.lseek(root, f.ino, f.fh, 10, 4)).toBe(14);
    expect(await m.vfs.lseek(root, f.ino, f.fh, 15, 3)).toBe(far);
    expect(await m.vfs.lseek(root, f.ino, f.fh, far + 1, 4)).toBe(len);
    await expect(m.vfs.lseek(root, f.ino, f.fh, len, 3)).rejects.toMatchObject({ errno: 6 });
    await m.vfs.release(root, f.ino, f.fh);
    expect((await m.meta.getAttr(f.ino)).length).toBe(len);
  });

  it('unlink while open: the handle keeps reading; the inode goes away at the last close', async () => {
    const f = await create(m, ROOT_INODE, 'doomed');
    await m.vfs.write(root, f.ino, f.fh, 0, Buffer.from('still here'));
    await m.vfs.flush(root, f.ino, f.fh, 1n);
    await m.vfs.unlink(root, ROOT_INODE, name('doomed'));
    await expect(m.vfs.lookup(root, ROOT_INODE, name('doomed'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await m.vfs.read(root, f.ino, f.fh, 0, 100)).toString()).toBe('still here');
    await m.vfs.release(root, f.ino, f.fh);
    await expect(m.meta.getAttr(f.ino)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('POSIX locks are dropped on flush for their owner, flocks on release', async () => {
    const f = await create(m, ROOT_INODE, 'locked');
    const other = await m.vfs.open(root, f.ino, O_RDWR);
    await m.vfs.setlk(root, f.ino, f.fh, 11n, { type: F_WRLCK, pid: 1, start: 0, end: 99n }, false);
    await expect(m.vfs.setlk(root, f.ino, other.fh, 22n, { type: F_WRLCK, pid: 2, start: 50, end: 60n }, false)).rejects.toMatchObject({ code: 'EAGAIN' });
    await m.vfs.flush(root, f.ino, f.fh, 11n); // close(2) by owner 11
    await m.vfs.setlk(root, f.ino, other.fh, 22n, { type: F_WRLCK, pid: 2, start: 50, end: 60n }, false);
    await m.vfs.setlk(root, f.ino, other.fh, 22n, { type: F_UNLCK, pid: 2, start: 0, end: 0x7fffffffffffffffn }, false);
    await m.vfs.flock(root, f.ino, f.fh, 33n, F_WRLCK, false);
    await expect(m.vfs.flock(root, f.ino, other.fh, 44n, F_WRLCK, false)).rejects.toMatchObject({ code: 'EAGAIN' });
    await m.vfs.release(root, f.ino, f.fh, 33n, true);
    await m.vfs.flock(root, f.ino, other.fh, 44n, F_WRLCK, false);
    await m.vfs.release(root, f.ino, other.fh, 44n, true);
  });

  it('fallocate and copy_file_range see pending writes', async () => {
    const src = await create(m, ROOT_INODE, 'src');
    const dst = await create(m, ROOT_INODE, 'dst');
    const data = pattern(2 * MiB + 3, 9);
    await m.vfs.write(root, src.ino, src.fh, 0, data);
    await m.vfs.write(root, dst.ino, dst.fh, 0, Buffer.from('x'));
    expect(await m.vfs.copyFileRange(root, src.ino, src.fh, 0, dst.ino, dst.fh, 10, data.length, 0)).toBe(data.length);
    const got = await readAll(m.vfs, root, dst.ino, dst.fh, 0, 20 + data.length);
    expect(got.length).toBe(10 + data.length);
    expect(got.subarray(10).equals(data)).toBe(true);
    await m.vfs.fallocate(root, src.ino, src.fh, 0, 0, 8 * MiB);
    expect((await m.vfs.getattr(root, src.ino)).attr.length).toBe(8 * MiB);
    await m.vfs.release(root, src.ino, src.fh);
    await m.vfs.release(root, dst.ino, dst.fh);
  });

  it('a write to a read-only handle is EBADF; a stale fh is EBADF', async () => {
    const f = await create(m, ROOT_INODE, 'ro-handle');
    const r = await m.vfs.open(root, f.ino, O_RDONLY);
    await expect(m.vfs.write(root, f.ino, r.fh, 0, Buffer.from('x'))).rejects.toMatchObject({ code: 'EBADF' });
    await m.vfs.release(root, f.ino, r.fh);
    await m.vfs.release(root, f.ino, f.fh);
    await expect(m.vfs.read(root, f.ino, f.fh, 0, 1)).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('creat(2) of a 0444 file by a non-owner-writable mode still gives a writable handle', async () => {
    const d = await m.vfs.mkdir(root, ROOT_INODE, name('userdir'), 0o777, 0);
    const f = await m.vfs.create(user, d.ino, name('ro'), 0o444, 0o022, O_WRONLY | O_CREAT);
    expect(await m.vfs.write(user, f.ino, f.fh, 0, Buffer.from('ok'))).toBe(2);
    await m.vfs.release(user, f.ino, f.fh);
    await expect(m.vfs.open(user, f.ino, O_WRONLY)).rejects.toMatchObject({ code: 'EACCES' });
  });
});

describe('two mounts: close-to-open consistency and commit timers', () => {
  let vol: Volume;
  let a: Mount;
  let b: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 3, dir: `${dir}/v3` });
    a = await vol.mount({ writer: { idleMs: 300, commitAfterMs: 1000, tickMs: 50 } });
    b = await vol.mount();
  });
  afterAll(async () => {
    await a.close();
    await b.close();
  });

  it('after close on A, an open on B sees the new data and drops its cache (keepCache false)', async () => {
    const f = await create(a, ROOT_INODE, 'shared');
    await a.vfs.write(root, f.ino, f.fh, 0, Buffer.from('version-1'));
    await a.vfs.release(root, f.ino, f.fh);
    const e = await b.vfs.lookup(root, ROOT_INODE, name('shared'));
    const r1 = await b.vfs.open(root, e.ino, O_RDONLY);
    expect((await b.vfs.read(root, e.ino, r1.fh, 0, 100)).toString()).toBe('version-1');
    await b.vfs.release(root, e.ino, r1.fh);
    // Unchanged file: B may keep its page cache.
    const r2 = await b.vfs.open(root, e.ino, O_RDONLY);
    expect(r2.keepCache).toBe(true);
    // A rewrites while B still has it open (B cached the chunk map).
    const w = await a.vfs.open(root, f.ino, O_RDWR);
    await a.vfs.write(root, f.ino, w.fh, 0, Buffer.from('VERSION-2'));
    await a.vfs.release(root, f.ino, w.fh);
    await b.vfs.release(root, e.ino, r2.fh);
    const r3 = await b.vfs.open(root, e.ino, O_RDONLY);
    expect(r3.keepCache).toBe(false);
    expect((await b.vfs.read(root, e.ino, r3.fh, 0, 100)).toString()).toBe('VERSION-2');
    await b.vfs.release(root, e.ino, r3.fh);
  });

  it('a stat on B that sees a new mtime drops B\'s cached chunk maps and tells the kernel', async () => {
    const f = await create(a, ROOT_INODE, 'watched');
    await a.vfs.write(root, f.ino, f.fh, 0, Buffer.from('first'));
    await a.vfs.release(root, f.ino, f.fh);
    const invalidated: Ino[] = [];
    b.vfs.invalidator = { inode: (ino) => invalidated.push(ino), entry: () => {} };
    const r = await b.vfs.open(root, f.ino, O_RDONLY);
    expect((await b.vfs.read(root, f.ino, r.fh, 0, 100)).toString()).toBe('first');
    const w = await a.vfs.open(root, f.ino, O_WRONLY);
    await a.vfs.write(root, f.ino, w.fh, 0, Buffer.from('SECOND'));
    await a.vfs.release(root, f.ino, w.fh);
    // Still the cached view until B learns of the change...
    expect((await b.vfs.read(root, f.ino, r.fh, 0, 100)).toString()).toBe('first');
    expect((await b.vfs.getattr(root, f.ino)).attr.length).toBe(6);
    await new Promise((r) => setImmediate(r));
    expect(invalidated).toEqual([f.ino]);
    expect((await b.vfs.read(root, f.ino, r.fh, 0, 100)).toString()).toBe('SECOND');
    await b.vfs.release(root, f.ino, r.fh);
    b.vfs.invalidator = undefined;
  });

  it('without any close, a write becomes visible to the other mount after the idle timer', async () => {
    const f = await create(a, ROOT_INODE, 'timer');
    await a.vfs.write(root, f.ino, f.fh, 0, Buffer.from('committed by timer'));
    expect((await b.vfs.lookup(root, ROOT_INODE, name('timer'))).attr.length).toBe(0);
    let len = 0;
    const t0 = Date.now();
    while (len === 0 && Date.now() - t0 < 5000) {
      await new Promise((r) => setTimeout(r, 50));
      len = (await b.vfs.getattr(root, f.ino)).attr.length;
    }
    expect(len).toBe(18);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    const r = await b.vfs.open(root, f.ino, O_RDONLY);
    expect((await b.vfs.read(root, f.ino, r.fh, 0, 100)).toString()).toBe('committed by timer');
    await b.vfs.release(root, f.ino, r.fh);
    await a.vfs.release(root, f.ino, f.fh);
  });
});

describe('upload failure', () => {
  let vol: Volume;
  let m: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 4, dir: `${dir}/v4`, blockSizeKiB: 64 });
    m = await vol.mount({ writer: { commitAfterMs: 60_000, idleMs: 60_000 } });
  });
  afterAll(async () => m.close());

  it('a failed PUT: EIO on flush, no slice committed, uploaded blocks deleted, next write works', async () => {
    const f = await create(m, ROOT_INODE, 'fails');
    await m.vfs.write(root, f.ino, f.fh, 0, pattern(64 * 1024 * 3 + 100, 1)); // 3 full blocks go out now
    await new Promise((r) => setTimeout(r, 100));
    vol.fault.down(['put']);
    await expect(m.vfs.flush(root, f.ino, f.fh, 1n)).rejects.toMatchObject({ code: 'EIO' });
    vol.fault.up();
    expect(await chunkRecords(4, f.ino, 0)).toEqual([]);
    expect((await m.meta.getAttr(f.ino)).length).toBe(0);
    const left: string[] = [];
    for await (const o of vol.objects.list('chunks/')) left.push(o.key);
    expect(left).toEqual([]);
    // Reported once per handle: the next flush is clean and new writes commit.
    await m.vfs.write(root, f.ino, f.fh, 0, Buffer.from('again'));
    await m.vfs.flush(root, f.ino, f.fh, 1n);
    expect((await m.meta.getAttr(f.ino)).length).toBe(5);
    await m.vfs.release(root, f.ino, f.fh);
  });

  it('the error also surfaces on the next write and on close of another handle', async () => {
    const f = await create(m, ROOT_INODE, 'fails2');
    const g = await m.vfs.open(root, f.ino, O_WRONLY);
    vol.fault.down(['put']);
    await m.vfs.write(root, f.ino, f.fh, 0, Buffer.from('lost'));
    await m.vfs.fsync(root, f.ino, f.fh, false).catch((e) => expect(e.code).toBe('EIO'));
    vol.fault.up();
    await expect(m.vfs.write(root, f.ino, g.fh, 0, Buffer.from('x'))).rejects.toMatchObject({ code: 'EIO' });
    await m.vfs.release(root, f.ino, g.fh);
    await m.vfs.release(root, f.ino, f.fh);
    expect(await chunkRecords(4, f.ino, 0)).toEqual([]);
  });
});

describe('Redis outage during a commit', () => {
  it('a paused Redis delays close; nothing acknowledged is lost once it answers again', async () => {
    const own = await startRedis();
    try {
      const vol = await makeVolume({ redis: own, db: 1, dir: `${dir}/outage` });
      const m = await vol.mount({ writer: { idleMs: 60_000, commitAfterMs: 60_000 } });
      const f = await create(m, ROOT_INODE, 'survives');
      const data = pattern(3 * MiB + 17, 12);
      await m.vfs.write(root, f.ino, f.fh, 0, data);
      process.kill(own.pid, 'SIGSTOP');
      const t0 = Date.now();
      let released = false;
      const closing = m.vfs.release(root, f.ino, f.fh).then(() => (released = true));
      await new Promise((r) => setTimeout(r, 1500));
      expect(released).toBe(false);
      process.kill(own.pid, 'SIGCONT');
      await closing;
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      const other = await vol.mount();
      const r = await other.vfs.open(root, f.ino, O_RDONLY);
      expect(sha(await readAll(other.vfs, root, f.ino, r.fh, 0, 4 * MiB))).toBe(sha(data));
      await other.vfs.release(root, f.ino, r.fh);
      await other.close();
      await m.close();
    } finally {
      try {
        process.kill(own.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await own.stop();
    }
  });
});

describe('read-only mount', () => {
  it('every write op is EROFS without calling the engine', async () => {
    const vol = await makeVolume({ redis, db: 5, dir: `${dir}/v5` });
    const rw = await vol.mount();
    const f = await create(rw, ROOT_INODE, 'file');
    await rw.vfs.write(root, f.ino, f.fh, 0, Buffer.from('data'));
    await rw.vfs.release(root, f.ino, f.fh);
    const d = await rw.vfs.mkdir(root, ROOT_INODE, name('dir'), 0o755, 0);
    await rw.close();

    const ro = await vol.mount({}, { readOnly: true });
    const calls: string[] = [];
    const spy = new Proxy(ro.meta, {
      get(t, p, r) {
        const v = Reflect.get(t, p, r);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls.push(String(p));
          return (v as (...a: unknown[]) => unknown).apply(t, args);
        };
      },
    }) as unknown as Meta;
    const vfs = new VfsImpl(spy, ro.store, { readOnly: true, logger: () => {} });
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['create', () => vfs.create(root, ROOT_INODE, name('x'), 0o644, 0, O_RDWR | O_CREAT)],
      ['mkdir', () => vfs.mkdir(root, ROOT_INODE, name('x'), 0o755, 0)],
      ['mknod', () => vfs.mknod(root, ROOT_INODE, name('x'), 0o10644, 0, 0)],
      ['symlink', () => vfs.symlink(root, ROOT_INODE, name('x'), name('t'))],
      ['unlink', () => vfs.unlink(root, ROOT_INODE, name('file'))],
      ['rmdir', () => vfs.rmdir(root, ROOT_INODE, name('dir'))],
      ['rename', () => vfs.rename(root, ROOT_INODE, name('file'), ROOT_INODE, name('y'), 0)],
      ['link', () => vfs.link(root, f.ino, ROOT_INODE, name('z'))],
      ['setattr', () => vfs.setattr(root, f.ino, { mode: 0o600 })],
      ['truncate', () => vfs.setattr(root, f.ino, { size: 0 })],
      ['setxattr', () => vfs.setxattr(root, f.ino, 'user.a', Buffer.from('b'), 0)],
      ['removexattr', () => vfs.removexattr(root, f.ino, 'user.a')],
      ['open-w', () => vfs.open(root, f.ino, O_WRONLY)],
      ['open-trunc', () => vfs.open(root, f.ino, O_RDONLY | O_TRUNC)],
      ['access-w', () => vfs.access(root, f.ino, 2)],
    ];
    for (const [what, op] of ops) {
      await expect(op(), what).rejects.toMatchObject({ code: 'EROFS' });
    }
    expect(calls).toEqual([]);
    // Reads still work.
    const r = await vfs.open(root, f.ino, O_RDONLY);
    expect((await vfs.read(root, f.ino, r.fh, 0, 10)).toString()).toBe('data');
    await expect(vfs.write(root, f.ino, r.fh, 0, Buffer.from('x'))).rejects.toMatchObject({ code: 'EROFS' });
    await expect(vfs.fallocate(root, f.ino, r.fh, 0, 0, 10)).rejects.toMatchObject({ code: 'EROFS' });
    await vfs.release(root, f.ino, r.fh);
    expect(calls.filter((c) => ['writeSlice', 'truncate', 'setAttr', 'newSliceId'].includes(c))).toEqual([]);
    expect(d.ino).toBeGreaterThan(1n);
    await ro.close();
  });
});

describe('virtual files', () => {
  let vol: Volume;
  let m: Mount;
  beforeAll(async () => {
    vol = await makeVolume({ redis, db: 6, dir: `${dir}/v6`, trashDays: 0 });
    m = await vol.mount({ config: { metaUrl: 'redis://alice:s3cret@127.0.0.1:6379/6', cacheDir: '/tmp/c' } });
  });
  afterAll(async () => m.close());

  async function cat(ino: Ino): Promise<string> {
    const o = await m.vfs.open(root, ino, O_RDONLY);
    expect(o.directIo).toBe(true);
    const b = await readAll(m.vfs, root, ino, o.fh, 0, 10 << 20);
    await m.vfs.release(root, ino, o.fh);
    return b.toString();
  }

  it('.stats is Prometheus text: op latencies, meta calls, object requests, buffers', async () => {
    await m.vfs.getattr(root, ROOT_INODE);
    const f = await create(m, ROOT_INODE, 'counted');
    await m.vfs.write(root, f.ino, f.fh, 0, Buffer.from('abc'));
    await m.vfs.release(root, f.ino, f.fh);
    const text = await cat(STATS_INODE);
    expect(text).toMatch(/^# HELP juicefs_fuse_ops_durations_histogram_seconds/m);
    expect(text).toMatch(/juicefs_fuse_ops_durations_histogram_seconds_count\{method="getattr"\} [1-9]/);
    expect(text).toMatch(/juicefs_meta_ops_durations_histogram_seconds_count\{method="writeSlice"\} [1-9]/);
    expect(text).toMatch(/^artifacts_object_requests_total\{method="PUT"\} [1-9]/m);
    expect(text).toMatch(/^juicefs_object_request_data_bytes\{method="PUT"\} [1-9]/m);
    expect(text).toMatch(/^juicefs_used_buffer_size_bytes \d+$/m);
    // Every sample line parses as `name{labels} value`.
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+$/);
    }
  });

  it('.config is JSON without secrets', async () => {
    const cfg = JSON.parse(await cat(CONFIG_INODE));
    expect(cfg.Format.Name).toBe('vfs6');
    expect(cfg.metaUrl).toBe('redis://alice:removed@127.0.0.1:6379/6');
    expect(cfg.cacheDir).toBe('/tmp/c');
    expect(cfg.readOnly).toBe(false);
    expect(JSON.stringify(cfg)).not.toContain('s3cret');
  });

  it('.accesslog streams one line per operation while open', async () => {
    // 0400, owned by the mount's user (root here): others may not read it.
    await expect(m.vfs.open(user, ACCESSLOG_INODE, O_RDONLY)).rejects.toMatchObject({ code: 'EACCES' });
    const o = await m.vfs.open(root, ACCESSLOG_INODE, O_RDONLY);
    await m.vfs.lookup(root, ROOT_INODE, name('nothing-here')).catch(() => {});
    await m.vfs.getattr(root, ROOT_INODE);
    const text = (await m.vfs.read(root, ACCESSLOG_INODE, o.fh, 0, 65536)).toString();
    expect(text).toMatch(/^\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d\.\d{6} \[uid:0,gid:0,pid:1\] lookup \(1,nothing-here\): ENOENT <\d+\.\d{6}>$/m);
    expect(text).toMatch(/getattr \(1\): OK <\d+\.\d{6}>/);
    // Nothing new (reads of .accesslog itself are not logged): a keep-alive line after the wait.
    const t0 = Date.now();
    const idle = (await m.vfs.read(root, ACCESSLOG_INODE, o.fh, 0, 65536)).toString();
    expect(idle).toBe('#\n');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    await m.vfs.release(root, ACCESSLOG_INODE, o.fh);
  });

  it('without trash days the root lists no .trash', async () => {
    const fh = await m.vfs.opendir(root, ROOT_INODE, 0);
    const names = (await m.vfs.readdir(root, ROOT_INODE, fh, 0, false, 100)).map((e) => e.name.toString());
    await m.vfs.releasedir(root, ROOT_INODE, fh);
    expect(names).not.toContain('.trash');
    expect(names).toContain('.stats');
  });
});
