/**
 * The one-round-trip Lua lookup (metadata/redis/scripts.ts) against the plain two-command path, on
 * a real redis-server: same answers for files, dirs, missing names and a dentry whose inode is
 * gone; a user without scripting falls back; a flushed script cache is reloaded.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { openMeta } from '../../metadata/index.js';
import type { RedisMeta } from '../../metadata/redis/engine.js';
import { ROOT_CTX, ROOT_INODE } from '../../metadata/types.js';
import { startRedis, type RedisHandle } from '../helpers/servers.js';

describe('Lua lookup', () => {
  let server: RedisHandle;
  let admin: Redis;
  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.port, '127.0.0.1', { db: 3 });
    const { format } = newFormat({ name: 'lookups', storage: 'file', bucket: '/tmp/artifacts-lookups', trashDays: 0 });
    await formatMeta(admin, '', format);
  });
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  it('answers exactly like the two-round-trip path, and is used', async () => {
    const lua = (await openMeta(`${server.url}/3`)) as RedisMeta;
    const plain = (await openMeta(`${server.url}/3`, { luaLookup: false })) as RedisMeta;
    await lua.newSession();
    try {
      const d = await lua.mkdir(ROOT_CTX, ROOT_INODE, 'dir', 0o750);
      const f = await lua.create(ROOT_CTX, d.ino, 'f', 0o640, true);
      // A dentry whose inode record is missing (a broken tree): both report the entry's type.
      await admin.hset('d1', 'ghost', Buffer.from([1, 0, 0, 0, 0, 0, 0, 0x12, 0x34]));
      for (const [parent, name] of [[ROOT_INODE, 'dir'], [d.ino, 'f'], [ROOT_INODE, 'ghost']] as const) {
        const a = await lua.lookup(ROOT_CTX, parent, name);
        const b = await plain.lookup(ROOT_CTX, parent, name);
        expect(a).toEqual(b);
      }
      expect((await lua.lookup(ROOT_CTX, d.ino, 'f')).ino).toBe(f.ino);
      await expect(lua.lookup(ROOT_CTX, ROOT_INODE, 'missing')).rejects.toMatchObject({ code: 'ENOENT' });
      const calls = Number((await admin.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
      expect(calls).toBeGreaterThanOrEqual(4);
      // The server forgets its scripts: the next lookup loads it again and still answers.
      await admin.script('FLUSH');
      expect((await lua.lookup(ROOT_CTX, ROOT_INODE, 'dir')).ino).toBe(d.ino);
    } finally {
      await lua.shutdown();
      await plain.shutdown();
    }
  });

  it('falls back to plain commands for a user that may not run scripts', async () => {
    await admin.call('ACL', 'SETUSER', 'noscript', 'on', '>pw', '~*', '+@all', '-@scripting');
    const m = (await openMeta(`redis://noscript:pw@127.0.0.1:${server.port}/3`)) as RedisMeta;
    try {
      expect((await m.lookup(ROOT_CTX, ROOT_INODE, 'dir')).attr.mode & 0o7777).toBe(0o750);
      await expect(m.lookup(ROOT_CTX, ROOT_INODE, 'missing')).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await m.shutdown();
    }
  });
});
