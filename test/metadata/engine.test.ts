/**
 * The Redis engine on a real redis-server: every namespace/data operation and its side effects
 * on the JuiceFS keyspace (counters, delfiles, sliceRef, p-keys, sustained inodes, locks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { newFormat, formatMeta } from '../../metadata/format.js';
import { openMeta } from '../../metadata/index.js';
import type { RedisMeta } from '../../metadata/redis/engine.js';
import { CHUNK_SIZE, type Ctx, F_RDLCK, F_UNLCK, F_WRLCK, FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FileType, RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_CTX, ROOT_INODE, TRASH_INODE } from '../../metadata/types.js';
import { startRedis, type RedisHandle } from '../helpers/servers.js';

let server: RedisHandle;
let admin: Redis;
const deleted: string[] = [];

async function volume(db: number, trashDays = 0): Promise<RedisMeta> {
  const url = `${server.url}/${db}`;
  const r = new Redis(url);
  await r.flushdb();
  const { format } = newFormat({ name: `vol${db}`, storage: 'file', bucket: `/tmp/artifacts-engine-test-${db}`, trashDays });
  await formatMeta(r, '', format);
  r.disconnect();
  const m = await openMeta(url, { onDeleteSlice: async (id, size) => void deleted.push(`${id}_${size}`), heartbeat: 1 });
  await m.newSession();
  return m;
}

const user: Ctx = { uid: 1000, gid: 1000, gids: [1000], pid: 1 };
const other: Ctx = { uid: 2000, gid: 2000, gids: [2000], pid: 2 };

beforeAll(async () => {
  server = await startRedis();
  admin = new Redis(server.url);
});
afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});

describe('namespace', () => {
  let m: RedisMeta;
  beforeAll(async () => (m = await volume(1)));
  afterAll(async () => m.shutdown());

  it('mkdir/create/lookup/readdir keep counters and dir stats', async () => {
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'dir', 0o755);
    expect(d.attr.type).toBe(FileType.Dir);
    expect(d.attr.nlink).toBe(2);
    const f = await m.create(ROOT_CTX, d.ino, 'f', 0o644, true);
    expect(f.created).toBe(true);
    await expect(m.create(ROOT_CTX, d.ino, 'f', 0o644, true)).rejects.toMatchObject({ code: 'EEXIST' });
    const again = await m.create(ROOT_CTX, d.ino, 'f', 0o644, false);
    expect(again.ino).toBe(f.ino);
    expect((await m.lookup(ROOT_CTX, d.ino, 'f')).ino).toBe(f.ino);
    expect((await m.lookup(ROOT_CTX, d.ino, '..')).ino).toBe(ROOT_INODE);
    expect((await m.getAttr(ROOT_INODE)).nlink).toBe(3);
    const ls = await m.readdir(ROOT_CTX, d.ino, true);
    expect(ls.map((e) => e.name.toString())).toEqual(['f']);
    expect(ls[0].attr?.mode).toBe(0o644);
    expect(await admin.select(1).then(() => admin.mget('usedSpace', 'totalInodes'))).toEqual(['8192', '2']);
    expect(await admin.hget('dirUsedInodes', String(d.ino))).toBe('0');
    await m.drain();
    expect(await admin.hget('dirUsedInodes', String(d.ino))).toBe('1');
  });

  it('rejects bad names and missing parents with errno', async () => {
    await expect(m.mkdir(ROOT_CTX, ROOT_INODE, 'a/b', 0o755)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(m.mkdir(ROOT_CTX, ROOT_INODE, 'x'.repeat(256), 0o755)).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
    await expect(m.mkdir(ROOT_CTX, ROOT_INODE, '.trash', 0o755)).rejects.toMatchObject({ code: 'EPERM' });
    await expect(m.lookup(ROOT_CTX, ROOT_INODE, 'nope')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(m.mkdir(ROOT_CTX, 999999n, 'x', 0o755)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('permissions: a non-owner cannot create in a 0755 dir, sticky protects entries', async () => {
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'perm', 0o755);
    await expect(m.create(user, d.ino, 'x', 0o644, true)).rejects.toMatchObject({ code: 'EACCES' });
    const t = await m.mkdir(ROOT_CTX, ROOT_INODE, 'tmp', 0o1777);
    await m.create(user, t.ino, 'mine', 0o644, true);
    await expect(m.unlink(other, t.ino, 'mine')).rejects.toMatchObject({ code: 'EPERM' });
    await m.unlink(user, t.ino, 'mine');
  });

  it('hard links: parent 0 and p-keys; unlink keeps the inode until the last link', async () => {
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'links', 0o755);
    const f = await m.create(ROOT_CTX, d.ino, 'a', 0o644, true);
    const a = await m.link(ROOT_CTX, f.ino, d.ino, 'b');
    expect(a.nlink).toBe(2);
    expect(a.parent).toBe(0n);
    expect(await admin.hgetall(`p${f.ino}`)).toEqual({ [String(d.ino)]: '2' });
    await m.unlink(ROOT_CTX, d.ino, 'a');
    expect((await m.getAttr(f.ino)).nlink).toBe(1);
    expect(await admin.hgetall(`p${f.ino}`)).toEqual({ [String(d.ino)]: '1' });
    await m.unlink(ROOT_CTX, d.ino, 'b');
    await expect(m.getAttr(f.ino)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await admin.exists(`p${f.ino}`)).toBe(0);
  });

  it('symlink/readlink', async () => {
    const s = await m.symlink(ROOT_CTX, ROOT_INODE, 'ln', '/some/where');
    expect(s.attr.length).toBe(11);
    expect((await m.readlink(ROOT_CTX, s.ino)).toString()).toBe('/some/where');
    await m.unlink(ROOT_CTX, ROOT_INODE, 'ln');
    expect(await admin.exists(`s${s.ino}`)).toBe(0);
  });

  it('rmdir: ENOTEMPTY, ENOTDIR, and removes dir-stat fields', async () => {
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'rd', 0o755);
    await m.create(ROOT_CTX, d.ino, 'x', 0o644, true);
    await expect(m.rmdir(ROOT_CTX, ROOT_INODE, 'rd')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await expect(m.rmdir(ROOT_CTX, d.ino, 'x')).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(m.unlink(ROOT_CTX, ROOT_INODE, 'rd')).rejects.toMatchObject({ code: 'EISDIR' });
    await m.unlink(ROOT_CTX, d.ino, 'x');
    await m.rmdir(ROOT_CTX, ROOT_INODE, 'rd');
    expect(await admin.hexists('dirUsedInodes', String(d.ino))).toBe(0);
  });

  it('rename: plain, over a file, NOREPLACE, EXCHANGE, dir into itself', async () => {
    const a = await m.mkdir(ROOT_CTX, ROOT_INODE, 'ra', 0o755);
    const b = await m.mkdir(ROOT_CTX, ROOT_INODE, 'rb', 0o755);
    const f1 = await m.create(ROOT_CTX, a.ino, 'f1', 0o644, true);
    const f2 = await m.create(ROOT_CTX, b.ino, 'f2', 0o644, true);
    await m.rename(ROOT_CTX, a.ino, 'f1', b.ino, 'g', 0);
    expect((await m.lookup(ROOT_CTX, b.ino, 'g')).ino).toBe(f1.ino);
    expect((await m.getAttr(f1.ino)).parent).toBe(b.ino);
    await expect(m.rename(ROOT_CTX, b.ino, 'g', b.ino, 'f2', RENAME_NOREPLACE)).rejects.toMatchObject({ code: 'EEXIST' });
    await m.rename(ROOT_CTX, b.ino, 'g', b.ino, 'f2', RENAME_EXCHANGE);
    expect((await m.lookup(ROOT_CTX, b.ino, 'f2')).ino).toBe(f1.ino);
    expect((await m.lookup(ROOT_CTX, b.ino, 'g')).ino).toBe(f2.ino);
    await m.rename(ROOT_CTX, b.ino, 'g', b.ino, 'f2', 0); // replaces f1
    await expect(m.getAttr(f1.ino)).rejects.toMatchObject({ code: 'ENOENT' });
    const sub = await m.mkdir(ROOT_CTX, a.ino, 'sub', 0o755);
    await expect(m.rename(ROOT_CTX, ROOT_INODE, 'ra', sub.ino, 'x', 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await m.rename(ROOT_CTX, a.ino, 'sub', b.ino, 'sub', 0);
    expect((await m.getAttr(a.ino)).nlink).toBe(2);
    expect((await m.getAttr(b.ino)).nlink).toBe(3);
    expect((await m.lookup(ROOT_CTX, sub.ino, '..')).ino).toBe(b.ino);
  });

  it('setattr: chmod/chown/utimens rules', async () => {
    const f = await m.create(user, ROOT_INODE, 'owned', 0o644, true);
    expect(f.attr.uid).toBe(1000);
    expect((await m.setAttr(user, f.ino, { mode: 0o600 })).mode).toBe(0o600);
    await expect(m.setAttr(other, f.ino, { mode: 0o777 })).rejects.toMatchObject({ code: 'EPERM' });
    await expect(m.setAttr(user, f.ino, { uid: 0 })).rejects.toMatchObject({ code: 'EPERM' });
    const t = await m.setAttr(user, f.ino, { mtime: { sec: 1000, nsec: 5 } });
    expect([t.mtime, t.mtimensec]).toEqual([1000, 5]);
    await expect(m.setAttr(other, f.ino, { mtime: { sec: 1, nsec: 0 } })).rejects.toMatchObject({ code: 'EPERM' });
    expect((await m.setAttr(ROOT_CTX, f.ino, { uid: 5, gid: 6 })).uid).toBe(5);
  });

  it('xattrs with CREATE/REPLACE', async () => {
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'xa', 0o644, true);
    await m.setXattr(ROOT_CTX, f.ino, 'user.a', Buffer.from('1'), 0);
    await expect(m.setXattr(ROOT_CTX, f.ino, 'user.a', Buffer.from('2'), 1)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(m.setXattr(ROOT_CTX, f.ino, 'user.b', Buffer.from('2'), 2)).rejects.toMatchObject({ code: 'ENODATA' });
    expect((await m.getXattr(ROOT_CTX, f.ino, 'user.a')).toString()).toBe('1');
    expect(await m.listXattr(ROOT_CTX, f.ino)).toEqual(['user.a']);
    await m.removeXattr(ROOT_CTX, f.ino, 'user.a');
    await expect(m.getXattr(ROOT_CTX, f.ino, 'user.a')).rejects.toMatchObject({ code: 'ENODATA' });
  });
});

describe('data', () => {
  let m: RedisMeta;
  beforeAll(async () => (m = await volume(2)));
  afterAll(async () => m.shutdown());

  it('writeSlice extends length, sets mtime, bumps usedSpace; readChunk resolves', async () => {
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'data', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 5000, off: 0, len: 5000 }, { sec: 123, nsec: 456 });
    const a = await m.getAttr(f.ino);
    expect(a.length).toBe(5000);
    expect([a.mtime, a.mtimensec]).toEqual([123, 456]);
    const id2 = await m.newSliceId();
    await m.writeSlice(f.ino, 1, 10, { pos: 10, id: id2, size: 10, off: 0, len: 10 }, { sec: 124, nsec: 0 });
    expect((await m.getAttr(f.ino)).length).toBe(CHUNK_SIZE + 20);
    const segs = await m.readChunk(f.ino, 1);
    expect(segs).toEqual([{ pos: 0, id: 0, size: 0, off: 0, len: 10 }, { pos: 10, id: id2, size: 10, off: 0, len: 10 }]);
    await admin.select(2);
    expect(Number(await admin.get('usedSpace'))).toBe(CHUNK_SIZE + 4096); // align4K(length) of the only file
  });

  it('truncate writes hole records and never deletes data', async () => {
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'tr', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 100, off: 0, len: 100 }, { sec: 1, nsec: 0 });
    await m.truncate(ROOT_CTX, f.ino, 10);
    await m.truncate(ROOT_CTX, f.ino, 50);
    const segs = await m.readChunk(f.ino, 0);
    // Two hole records, not merged: [10,100) then [10,50) painted over it.
    expect(segs.map((s) => [s.pos, s.id, s.len])).toEqual([[0, id, 10], [10, 0, 40], [50, 0, 50]]);
    await m.truncate(ROOT_CTX, f.ino, 3 * CHUNK_SIZE + 5);
    expect(await admin.llen(`c${f.ino}_3`)).toBe(1);
    expect(await admin.llen(`c${f.ino}_1`)).toBe(0); // RPUSHX on a missing list
  });

  it('fallocate: extend, keep size, punch hole', async () => {
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'fa', 0o644, true);
    expect((await m.fallocate(ROOT_CTX, f.ino, 0, 0, 8192)).length).toBe(8192);
    expect((await m.fallocate(ROOT_CTX, f.ino, FALLOC_KEEP_SIZE, 0, 100000)).length).toBe(8192);
    await expect(m.fallocate(ROOT_CTX, f.ino, FALLOC_PUNCH_HOLE, 0, 10)).rejects.toMatchObject({ code: 'EINVAL' });
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 8192, off: 0, len: 8192 }, { sec: 1, nsec: 0 });
    await m.fallocate(ROOT_CTX, f.ino, FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE, 100, 200);
    const segs = await m.readChunk(f.ino, 0);
    expect(segs.map((s) => [s.pos, s.id, s.len])).toEqual([[0, id, 100], [100, 0, 200], [300, id, 7892]]);
  });

  it('copy_file_range shares slices and counts references; deleting both frees the slice once', async () => {
    deleted.length = 0;
    const a = await m.create(ROOT_CTX, ROOT_INODE, 'cfa', 0o644, true);
    const b = await m.create(ROOT_CTX, ROOT_INODE, 'cfb', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(a.ino, 0, 0, { pos: 0, id, size: 1000, off: 0, len: 1000 }, { sec: 1, nsec: 0 });
    expect(await m.copyFileRange(ROOT_CTX, a.ino, 100, b.ino, CHUNK_SIZE - 50, 500, 0)).toBe(500);
    expect((await m.getAttr(b.ino)).length).toBe(CHUNK_SIZE + 450);
    expect(await admin.hget('sliceRef', `k${id}_1000`)).toBe('2'); // split across two chunks → two references
    const s0 = await m.readChunk(b.ino, 0);
    expect(s0[s0.length - 1]).toEqual({ pos: CHUNK_SIZE - 50, id, size: 1000, off: 100, len: 50 });
    const s1 = await m.readChunk(b.ino, 1);
    expect(s1[0]).toEqual({ pos: 0, id, size: 1000, off: 150, len: 450 });
    await m.unlink(ROOT_CTX, ROOT_INODE, 'cfa');
    await m.drain();
    expect(deleted).toEqual([]);
    await m.unlink(ROOT_CTX, ROOT_INODE, 'cfb');
    await m.drain();
    expect(deleted).toEqual([`${id}_1000`]);
    expect(await admin.hexists('sliceRef', `k${id}_1000`)).toBe(0);
    expect(await admin.zcard('delfiles')).toBe(0);
  });

  it('unlink of an open file sustains it in the session until close', async () => {
    deleted.length = 0;
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'open', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 10, off: 0, len: 10 }, { sec: 1, nsec: 0 });
    await m.open(ROOT_CTX, f.ino, 2);
    await m.unlink(ROOT_CTX, ROOT_INODE, 'open');
    expect((await m.getAttr(f.ino)).nlink).toBe(0);
    expect(await admin.smembers(`session${m.sid}`)).toEqual([String(f.ino)]);
    await m.close(f.ino);
    await expect(m.getAttr(f.ino)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(deleted).toEqual([`${id}_10`]);
    expect(await admin.scard(`session${m.sid}`)).toBe(0);
  });

  it('statfs reports counters', async () => {
    const s = await m.statfs(ROOT_CTX, ROOT_INODE);
    expect(s.usedInodes).toBe(Number(await admin.get('totalInodes')));
    expect(s.totalSpace).toBeGreaterThanOrEqual(2 ** 50);
  });
});

describe('locks and sessions', () => {
  let m1: RedisMeta;
  let m2: RedisMeta;
  beforeAll(async () => {
    m1 = await volume(3);
    m2 = await openMeta(`${server.url}/3`, { heartbeat: 1 });
    await m2.newSession();
  });
  afterAll(async () => {
    await m1.shutdown();
    await m2.shutdown();
  });

  it('flock conflicts across sessions and is stored as upstream does', async () => {
    const f = await m1.create(ROOT_CTX, ROOT_INODE, 'lk', 0o644, true);
    await m1.flock(ROOT_CTX, f.ino, 7n, F_WRLCK, false);
    await expect(m2.flock(ROOT_CTX, f.ino, 8n, F_RDLCK, false)).rejects.toMatchObject({ code: 'EAGAIN' });
    await admin.select(3);
    expect(await admin.hgetall(`lockf${f.ino}`)).toEqual({ [`${m1.sid}_0000000000000007`]: 'W' });
    expect(await admin.smembers(`locked${m1.sid}`)).toEqual([`lockf${f.ino}`]);
    const waiter = m2.flock(ROOT_CTX, f.ino, 8n, F_RDLCK, true);
    await m1.flock(ROOT_CTX, f.ino, 7n, F_UNLCK, false);
    await waiter;
    expect(await admin.hgetall(`lockf${f.ino}`)).toEqual({ [`${m2.sid}_0000000000000008`]: 'R' });
  });

  it('posix locks: ranges, conflicts, getlk, split on unlock', async () => {
    const f = await m1.create(ROOT_CTX, ROOT_INODE, 'pl', 0o644, true);
    await m1.setlk(ROOT_CTX, f.ino, 1n, false, { type: F_WRLCK, pid: 10, start: 0, end: 99n });
    await expect(m2.setlk(ROOT_CTX, f.ino, 2n, false, { type: F_RDLCK, pid: 20, start: 50, end: 60n })).rejects.toMatchObject({ code: 'EAGAIN' });
    await m2.setlk(ROOT_CTX, f.ino, 2n, false, { type: F_RDLCK, pid: 20, start: 100, end: 200n });
    const c = await m2.getlk(ROOT_CTX, f.ino, 2n, { type: F_WRLCK, pid: 20, start: 0, end: 10n });
    expect(c.type).toBe(F_WRLCK);
    expect(c.end).toBe(99n);
    await m1.setlk(ROOT_CTX, f.ino, 1n, false, { type: F_UNLCK, pid: 10, start: 40, end: 59n });
    await m2.setlk(ROOT_CTX, f.ino, 2n, false, { type: F_RDLCK, pid: 20, start: 45, end: 55n });
    const raw = await admin.hgetBuffer(`lockp${f.ino}`, `${m1.sid}_0000000000000001`);
    expect(raw?.length).toBe(48);
  });

  it('a stale session is cleaned by another client: locks dropped, sustained inode deleted', async () => {
    const f = await m2.create(ROOT_CTX, ROOT_INODE, 'stale', 0o644, true);
    await m2.open(ROOT_CTX, f.ino, 2);
    await m2.unlink(ROOT_CTX, ROOT_INODE, 'stale');
    await m2.flock(ROOT_CTX, f.ino, 9n, F_WRLCK, false);
    const sid2 = m2.sid;
    await m1.cleanSession(sid2);
    await expect(m1.getAttr(f.ino)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await admin.exists(`lockf${f.ino}`)).toBe(0);
    expect(await admin.zscore('allSessions', String(sid2))).toBeNull();
  });
});

describe('trash', () => {
  let m: RedisMeta;
  beforeAll(async () => (m = await volume(4, 1)));
  afterAll(async () => m.shutdown());

  it('unlink moves a file into the hourly trash dir; counters unchanged', async () => {
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'gone', 0o644, true);
    await admin.select(4);
    const before = await admin.mget('usedSpace', 'totalInodes');
    await m.unlink(ROOT_CTX, ROOT_INODE, 'gone');
    const hours = await m.readdir(ROOT_CTX, TRASH_INODE, false);
    expect(hours.length).toBe(1);
    expect(hours[0].name.toString()).toMatch(/^\d{4}-\d\d-\d\d-\d\d$/);
    const inside = await m.readdir(ROOT_CTX, hours[0].ino, true);
    expect(inside.map((e) => e.name.toString())).toEqual([`1-${f.ino}-gone`]);
    expect(inside[0].attr?.parent).toBe(hours[0].ino);
    const after = await admin.mget('usedSpace', 'totalInodes');
    // The hourly directory itself is counted (4096 bytes, one inode); the trashed file is not refunded.
    expect(Number(after[0])).toBe(Number(before[0]) + 4096);
    expect(Number(after[1])).toBe(Number(before[1]) + 1);
    expect((await m.lookup(ROOT_CTX, ROOT_INODE, '.trash')).ino).toBe(TRASH_INODE);
  });
});

describe('background jobs', () => {
  let m: RedisMeta;
  beforeAll(async () => (m = await volume(7, 1)));
  afterAll(async () => m.shutdown());

  it('expired trash is emptied for real, stale delfiles are finished, negative sliceRefs deleted', async () => {
    deleted.length = 0;
    await admin.select(7);
    const f = await m.create(ROOT_CTX, ROOT_INODE, 'old', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 42, off: 0, len: 42 }, { sec: 1, nsec: 0 });
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'olddir', 0o755);
    await m.create(ROOT_CTX, d.ino, 'inner', 0o644, true);
    await m.unlink(ROOT_CTX, d.ino, 'inner');
    await m.rmdir(ROOT_CTX, ROOT_INODE, 'olddir');
    await m.unlink(ROOT_CTX, ROOT_INODE, 'old');
    expect((await m.readdir(ROOT_CTX, TRASH_INODE, false)).length).toBe(1);
    // A delfiles entry from a client that died mid-deletion, and an orphan negative refcount.
    await admin.zadd('delfiles', 1, '999999:10');
    await admin.hset('sliceRef', 'k777_10', '-1');
    await m.cleanupTrash(0); // 0 days: every hourly dir is expired
    await m.runHourlyJobs(true);
    expect(await m.readdir(ROOT_CTX, TRASH_INODE, false)).toEqual([]);
    await expect(m.getAttr(f.ino)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(deleted.sort()).toEqual([`${id}_42`, '777_10'].sort());
    expect(await admin.zcard('delfiles')).toBe(0);
    expect(await admin.hlen('sliceRef')).toBe(0);
    expect(Number(await admin.get('totalInodes'))).toBe(0);
    expect(Number(await admin.get('usedSpace'))).toBe(0);
  });
});

describe('dir stats', () => {
  let m: RedisMeta;
  beforeAll(async () => (m = await volume(8)));
  afterAll(async () => m.shutdown());

  it('a directory without stat fields (the root after format) gets them recomputed on first change', async () => {
    await admin.select(8);
    expect(await admin.hexists('dirUsedSpace', '1')).toBe(0);
    await m.create(ROOT_CTX, ROOT_INODE, 'a', 0o644, true);
    await m.mkdir(ROOT_CTX, ROOT_INODE, 'b', 0o755);
    await m.drain();
    expect([await admin.hget('dirUsedInodes', '1'), await admin.hget('dirUsedSpace', '1'), await admin.hget('dirDataLength', '1')]).toEqual(['2', '8192', '0']);
    await m.unlink(ROOT_CTX, ROOT_INODE, 'a');
    await m.drain();
    expect(await admin.hget('dirUsedInodes', '1')).toBe('1');
  });
});
