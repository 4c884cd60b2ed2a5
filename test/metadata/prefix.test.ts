/**
 * One engine for every prefix form: `{N}` on a real 3-node Redis Cluster (ioredis Cluster, all
 * keys of the volume in one slot) and the workspace form `{u_X_w_Y}:` on a standalone server,
 * with two volumes side by side in one DB that never see each other's keys.
 */
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { openMeta } from '../../metadata/index.js';
import { FileType, ROOT_CTX, ROOT_INODE } from '../../metadata/types.js';
import { startRedis, startRedisCluster, type RedisClusterHandle, type RedisHandle } from '../helpers/servers.js';

async function exercise(url: string, prefix?: string) {
  const m = await openMeta(url, { prefix });
  await m.newSession();
  try {
    const d = await m.mkdir(ROOT_CTX, ROOT_INODE, 'dir', 0o755);
    const f = await m.create(ROOT_CTX, d.ino, 'file', 0o644, true);
    const id = await m.newSliceId();
    await m.writeSlice(f.ino, 0, 0, { pos: 0, id, size: 10, off: 0, len: 10 }, { sec: 5, nsec: 6 });
    await m.link(ROOT_CTX, f.ino, ROOT_INODE, 'hard');
    await m.rename(ROOT_CTX, d.ino, 'file', ROOT_INODE, 'moved', 0);
    await m.setXattr(ROOT_CTX, f.ino, 'user.k', Buffer.from('v'), 0);
    const ls = await m.readdir(ROOT_CTX, ROOT_INODE, true);
    expect(ls.map((e) => e.name.toString()).sort()).toEqual(['dir', 'hard', 'moved']);
    expect((await m.getAttr(f.ino)).nlink).toBe(2);
    expect((await m.readChunk(f.ino, 0))[0].id).toBe(id);
    await m.unlink(ROOT_CTX, ROOT_INODE, 'hard');
    await m.rmdir(ROOT_CTX, ROOT_INODE, 'dir');
    return { ino: f.ino, sid: m.sid };
  } finally {
    await m.shutdown();
  }
}

describe('Redis Cluster, prefix {N}', () => {
  let cl: RedisClusterHandle;
  beforeAll(async () => (cl = await startRedisCluster()));
  afterAll(async () => cl?.stop());

  it('formats and runs every transaction with hash-tagged keys', async () => {
    const admin = new Cluster(cl.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      const { format } = newFormat({ name: 'clustered', storage: 'file', bucket: '/tmp/artifacts-cluster', trashDays: 0 });
      await formatMeta(admin, '{7}', format);
      const { ino } = await exercise(`${cl.url}/7`);
      expect(await admin.get('{7}setting')).toContain('"Name": "clustered"');
      expect(await admin.exists(`{7}i${ino}`)).toBe(1);
      expect(await admin.exists(`{7}d1`)).toBe(1);
      expect(Number(await admin.get('{7}totalInodes'))).toBe(1);
    } finally {
      admin.disconnect();
    }
  });
});

describe('workspace prefixes on one standalone DB', () => {
  let server: RedisHandle;
  beforeAll(async () => (server = await startRedis()));
  afterAll(async () => server?.stop());

  it('two volumes under {u_1_w_1}: and {u_1_w_2}: are isolated', async () => {
    const admin = new Redis(server.url);
    try {
      for (const w of [1, 2]) {
        const { format } = newFormat({ name: `ws${w}`, storage: 'file', bucket: `/tmp/artifacts-ws${w}`, trashDays: 0 });
        await formatMeta(admin, `{u_1_w_${w}}:`, format);
      }
      const r1 = await exercise(server.url, '{u_1_w_1}:');
      const keys = await admin.keys('*');
      expect(keys.every((k) => k.startsWith('{u_1_w_1}:') || k.startsWith('{u_1_w_2}:'))).toBe(true);
      expect(await admin.exists(`{u_1_w_1}:i${r1.ino}`)).toBe(1);
      expect(await admin.exists(`{u_1_w_2}:i${r1.ino}`)).toBe(0);
      const m2 = await openMeta(server.url, { prefix: '{u_1_w_2}:' });
      expect(m2.format.Name).toBe('ws2');
      expect(await m2.readdir(ROOT_CTX, ROOT_INODE, false)).toEqual([]);
      await m2.shutdown();
      const m1 = await openMeta(server.url, { prefix: '{u_1_w_1}:' });
      expect((await m1.getAttr(r1.ino)).type).toBe(FileType.File);
      await m1.shutdown();
    } finally {
      admin.disconnect();
    }
  });
});
