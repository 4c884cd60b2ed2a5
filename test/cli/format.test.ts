/**
 * The format flow against real servers: exactly the keys and bytes juicefs writes, re-format rules,
 * concurrent formats, the object-store side (juicefs_uuid, non-empty refusal), and the upstream tools
 * (`juicefs fsck`, `juicefs dump`, `juicefs mount`) accepting what we formatted — on file and S3
 * storage, standalone and cluster Redis.
 */
import { Redis } from 'ioredis';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createObjectStore } from '../../chunkstore/object/index.js';
import { formatVolume } from '../../cli/volume.js';
import { ConcurrentFormatError, formatMeta, newFormat, readFormat } from '../../metadata/format.js';
import { connectMeta } from '../../metadata/redis/connect.js';
import { decodeSetting, decryptSecrets, encodeSetting, encryptSecrets } from '../../metadata/setting.js';
import { TRASH_INODE } from '../../metadata/types.js';
import { dump, fsck, mount, runJuicefs } from '../helpers/juicefs.js';
import { startRedis, startRedisCluster, startS3, tmpDir, type RedisClusterHandle, type RedisHandle, type S3Handle } from '../helpers/servers.js';

let redis: RedisHandle;
let s3: S3Handle;
let dir: string;
let db = 0;
const dbs: Redis[] = [];

function open(n: number): Redis {
  const r = new Redis({ host: redis.host, port: redis.port, db: n });
  dbs.push(r);
  return r;
}

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis({ args: ['--databases', '64'] }), startS3()]);
  dir = await tmpDir('cli-format');
}, 120_000);

afterAll(async () => {
  for (const r of dbs) r.disconnect();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

const NOW = 0x6553f100; // 1700000000
const ROOT_HEX =
  '00' + '21ff' + '00000000' + '00000000' + '000000006553f100' + '00000000' + '000000006553f100' + '00000000' + '000000006553f100' + '00000000' +
  '00000002' + '0000000000001000' + '00000000' + '0000000000000001' + '00';

describe('formatMeta (Redis part)', () => {
  test('writes setting, root and trash inodes — nothing else — byte-identical to juicefs except times', async () => {
    const ours = open(++db);
    const { format } = newFormat({ name: 'keys', bucket: path.join(dir, 'keys'), uuid: '11111111-2222-4333-8444-555555555555' });
    const res = await formatMeta(ours, '', format, { now: NOW });
    expect(res.created).toBe(true);
    expect((await ours.keys('*')).sort()).toEqual(['i1', `i${TRASH_INODE}`, 'setting']);
    // root: directory (type 2 << 12) 0777, nlink 2, length 4096, parent 1, times = now; 72 bytes with
    // the spare zero — the example of juicefs-format.md 1.3.1
    const root = await ours.getBuffer('i1');
    expect(root!.toString('hex')).toBe(ROOT_HEX);
    const trash = await ours.getBuffer(`i${TRASH_INODE}`);
    expect(trash!.length).toBe(72);
    expect(trash!.readUInt16BE(1)).toBe(0x2000 | 0o555);
    expect(await ours.get('setting')).toBe(encodeSetting(format));

    // The same through juicefs: identical bytes outside the timestamps (offsets 11..46).
    const theirsDb = ++db;
    const r = await runJuicefs(['format', '--storage', 'file', '--bucket', path.join(dir, 'keys-theirs'), `${redis.url}/${theirsDb}`, 'keys']);
    expect(r.code, r.output).toBe(0);
    const theirs = open(theirsDb);
    expect((await theirs.keys('*')).sort()).toEqual(['i1', `i${TRASH_INODE}`, 'setting']);
    const strip = (b: Buffer) => Buffer.concat([b.subarray(0, 11), b.subarray(47)]).toString('hex');
    expect(strip((await theirs.getBuffer('i1'))!)).toBe(strip(root!));
    expect(strip((await theirs.getBuffer(`i${TRASH_INODE}`))!)).toBe(strip(trash!));
  });

  test('trash-days 0: no trash inode; a custom prefix puts every key under it', async () => {
    const r = open(++db);
    const { format } = newFormat({ name: 'notrash', bucket: '/tmp/x', trashDays: 0 });
    await formatMeta(r, '{u_1_w_2}:', format);
    expect((await r.keys('*')).sort()).toEqual(['{u_1_w_2}:i1', '{u_1_w_2}:setting']);
    expect((await readFormat(r, '{u_1_w_2}:'))?.TrashDays).toBe(0);
    expect(await readFormat(r, '')).toBeNull();
  });

  test('re-format: mutable fields change, immutable ones are refused unless forced', async () => {
    const r = open(++db);
    const { format } = newFormat({ name: 'refmt', storage: 's3', bucket: 'http://h/b', accessKey: 'AK', secretKey: 'SK' });
    const created = await formatMeta(r, '', format);
    const rootBefore = await r.getBuffer('i1');
    // mutable: capacity, trash days (trash inode re-created by SETNX)
    await r.del(`i${TRASH_INODE}`);
    const upd = await formatMeta(r, '', { ...created.format, Capacity: 5 << 30, TrashDays: 3 });
    expect(upd.created).toBe(false);
    expect((await readFormat(r, ''))?.Capacity).toBe(5 << 30);
    expect(await r.exists(`i${TRASH_INODE}`)).toBe(1);
    expect((await r.getBuffer('i1'))!.equals(rootBefore!)).toBe(true); // root untouched
    for (const [patch, re] of [
      [{ Name: 'other' }, /cannot update volume name from refmt to other/],
      [{ BlockSize: 1024 }, /cannot update volume block size from 4096 to 1024/],
      [{ Compression: 'zstd' }, /cannot update volume compression from none to zstd/],
      [{ HashPrefix: true }, /hash prefix from false to true/],
      [{ Shards: 2 }, /shards from 0 to 2/],
      [{ MetaVersion: 2 }, /meta version from 1 to 2/],
    ] as const) {
      await expect(formatMeta(r, '', { ...upd.format, ...patch })).rejects.toThrow(re);
    }
    const forced = await formatMeta(r, '', { ...upd.format, BlockSize: 1024 }, { force: true });
    expect((await readFormat(r, ''))?.BlockSize).toBe(1024);
    // A new UUID cannot replace the old one: secrets are re-encrypted under the old UUID.
    const fresh = encryptSecrets(newFormat({ name: 'refmt', storage: 's3', bucket: 'http://h/b', secretKey: 'NEWSK', blockSizeKiB: 1024 }).format);
    await formatMeta(r, '', fresh);
    const stored = (await readFormat(r, ''))!;
    expect(stored.UUID).toBe(forced.format.UUID);
    expect(decryptSecrets(stored).SecretKey).toBe('NEWSK');
  });

  test('enabling DirStats drops stale dir stats', async () => {
    const r = open(++db);
    const { format } = newFormat({ name: 'stats', bucket: '/tmp/x' });
    await formatMeta(r, '', { ...format, DirStats: false });
    await r.hset('dirUsedInodes', '1', '5');
    await r.hset('dirUsedSpace', '1', '4096');
    await r.hset('dirDataLength', '1', '9');
    await formatMeta(r, '', { ...format, DirStats: true });
    expect(await r.exists('dirUsedInodes', 'dirUsedSpace')).toBe(0);
    expect(await r.exists('dirDataLength')).toBe(1);
  });

  test('two concurrent formats: exactly one creates the volume', async () => {
    for (let round = 0; round < 5; round++) {
      const n = ++db;
      const a = open(n);
      const b = open(n);
      const fa = newFormat({ name: 'race', bucket: '/tmp/a' }).format;
      const fb = newFormat({ name: 'race', bucket: '/tmp/b' }).format;
      const results = await Promise.allSettled([formatMeta(a, '', fa), formatMeta(b, '', fb)]);
      const created = results.filter((x) => x.status === 'fulfilled' && x.value.created);
      expect(created).toHaveLength(1);
      for (const x of results) if (x.status === 'rejected') expect(x.reason).toBeInstanceOf(ConcurrentFormatError);
      const winner = (created[0] as PromiseFulfilledResult<{ format: { UUID: string } }>).value.format.UUID;
      const stored = decodeSetting((await a.getBuffer('setting'))!);
      // The loser either failed or updated the winner's volume, never replaced its UUID.
      expect(stored.UUID).toBe(winner);
    }
  });
});

describe('formatVolume (object store + Redis)', () => {
  test('file storage: juicefs_uuid, testing/ cleaned, fsck/dump by juicefs pass; non-empty bucket refused', async () => {
    const n = ++db;
    const url = `${redis.url}/${n}`;
    const bucket = path.join(dir, 'filevol');
    const res = await formatVolume(url, { name: 'filevol', bucket, compression: 'zstd' }, { env: {} });
    expect(res.created).toBe(true);
    expect(res.storage).toBe(`file://${bucket}/filevol/`);
    expect(readFileSync(path.join(bucket, 'filevol', 'juicefs_uuid'), 'utf8')).toBe(res.format.UUID);
    expect(readdirSync(path.join(bucket, 'filevol')).sort()).toEqual(['juicefs_uuid']);
    const f = await fsck(url);
    expect(f.ok, f.output).toBe(true);
    const d = await dump(url);
    expect(d.Setting.UUID).toBe(res.format.UUID);
    expect(d.Setting.Compression).toBe('zstd');
    expect(d.Counters).toMatchObject({ usedSpace: 0, usedInodes: 0 });
    expect(d.FSTree.attr).toMatchObject({ inode: 1, type: 'directory', mode: 0o777, nlink: 2 });

    // a second volume of the same name into the same bucket, on another db: refused, nothing written
    const n2 = ++db;
    mkdirSync(path.join(bucket, 'filevol', 'chunks'), { recursive: true });
    writeFileSync(path.join(bucket, 'filevol', 'chunks', 'x'), 'data');
    await expect(formatVolume(`${redis.url}/${n2}`, { name: 'filevol', bucket }, { env: {} })).rejects.toThrow(/is not empty \(found/);
    expect(await open(n2).exists('setting')).toBe(0);
    expect(readFileSync(path.join(bucket, 'filevol', 'juicefs_uuid'), 'utf8')).toBe(res.format.UUID);

    // re-format of the existing volume: only explicit fields change
    const again = await formatVolume(url, { name: 'filevol', bucket, trashDays: 7 }, { env: {}, explicit: ['trashDays'] });
    expect(again.created).toBe(false);
    expect(again.format.TrashDays).toBe(7);
    expect(again.format.Compression).toBe('zstd');
    await expect(formatVolume(url, { name: 'filevol', bucket, compression: 'lz4' }, { env: {}, explicit: ['compression'] })).rejects.toThrow(
      /cannot update volume compression/,
    );
    const untouched = await formatVolume(url, { name: 'filevol', bucket, trashDays: 0 }, { env: {}, noUpdate: true });
    expect(untouched).toMatchObject({ created: false, updated: false });
    expect(untouched.format.TrashDays).toBe(7);
  });

  test('S3 (SeaweedFS): juicefs mounts our volume, writes and reads; fsck and dump agree', async () => {
    const n = ++db;
    const url = `${redis.url}/${n}`;
    const res = await formatVolume(
      url,
      { name: 's3vol', storage: 's3', bucket: s3.bucketUrl('fmt-s3'), accessKey: s3.accessKey, secretKey: s3.secretKey, blockSizeKiB: 1024, compression: 'lz4' },
      { env: {} },
    );
    expect(res.created).toBe(true);
    const store = createObjectStore({ ...decryptSecrets(res.format) });
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    expect(keys).toEqual(['juicefs_uuid']);
    expect((await store.get('juicefs_uuid')).toString()).toBe(res.format.UUID);
    store.close?.();

    const mnt = path.join(await tmpDir('fmt-s3-mnt'), 'mnt');
    const m = await mount(url, mnt);
    try {
      const data = Buffer.alloc(2.5 * 1024 * 1024, 7);
      writeFileSync(path.join(mnt, 'f.bin'), data);
      mkdirSync(path.join(mnt, 'd'));
      expect(readFileSync(path.join(mnt, 'f.bin')).equals(data)).toBe(true);
    } finally {
      await m.unmount();
    }
    const f = await fsck(url);
    expect(f.ok, f.output).toBe(true);
    expect(f.blocks).toBe(3);
    const d = await dump(url);
    expect(d.Setting.Name).toBe('s3vol');
    expect(Object.keys(d.FSTree.entries ?? {}).sort()).toEqual(['d', 'f.bin']);
  }, 180_000);

  test('bad credentials fail the storage test and write nothing to Redis', async () => {
    const n = ++db;
    await expect(
      formatVolume(`${redis.url}/${n}`, { name: 'badcred', storage: 's3', bucket: s3.bucketUrl('fmt-bad'), accessKey: s3.accessKey, secretKey: 'wrong' }, { env: {}, storageTestRetryDelayMs: 10 }),
    ).rejects.toThrow(/is not configured correctly/);
    expect(await open(n).exists('setting')).toBe(0);
  }, 60_000);

  test('a Redis ACL user limited to the prefix and a few commands can format (the workspace create flow)', async () => {
    const admin = open(0);
    // The minimal command set, for the orchestrator's format ACL user (plus `client|setinfo` on Redis >= 7.2).
    await admin.call('ACL', 'SETUSER', 'fmt-1', 'on', '>fmtpw', '~{u_1_w_2}:*', 'resetchannels', '-@all', '+get', '+set', '+setnx', '+multi', '+exec', '+del', '+select', '+hello');
    const n = ++db;
    const bucket = path.join(dir, 'acl');
    const res = await formatVolume(`redis://fmt-1:fmtpw@127.0.0.1:${redis.port}/${n}?prefix=%7Bu_1_w_2%7D%3A`, { name: 'aclvol', bucket }, { env: {} });
    expect(res).toMatchObject({ created: true, prefix: '{u_1_w_2}:' });
    expect((await open(n).keys('*')).sort()).toEqual(['{u_1_w_2}:i1', `{u_1_w_2}:i${TRASH_INODE}`, '{u_1_w_2}:setting']);
    // outside its prefix the user can do nothing
    await expect(formatVolume(`redis://fmt-1:fmtpw@127.0.0.1:${redis.port}/${n}?prefix=%7Bu_2_w_2%7D%3A`, { name: 'aclvol', bucket: path.join(dir, 'acl2') }, { env: {} })).rejects.toThrow(/NOPERM/);
  });

  test('an existing volume with MetaVersion 2 or a corrupt setting is refused with a clear message', async () => {
    const n = ++db;
    const r = open(n);
    const { format } = newFormat({ name: 'future', bucket: path.join(dir, 'future') });
    await r.set('setting', encodeSetting({ ...format, MetaVersion: 2 }));
    await expect(formatVolume(`${redis.url}/${n}`, { name: 'future', bucket: path.join(dir, 'future') }, { env: {} })).rejects.toThrow(
      /metadata version 2/,
    );
    await r.set('setting', '{"Name": "x", "BlockSize": "big"}');
    await expect(formatMeta(r, '', format)).rejects.toThrow(/existing format is broken: corrupt setting: field BlockSize/);
  });
});

describe('format on a Redis Cluster', () => {
  let cl: RedisClusterHandle;
  beforeAll(async () => {
    cl = await startRedisCluster();
  }, 120_000);
  afterAll(async () => {
    await cl?.stop();
  });

  test('prefix {N}: juicefs reads our volume through its cluster client', async () => {
    const url = `${cl.url}/5`;
    const bucket = path.join(dir, 'clustervol');
    const res = await formatVolume(url, { name: 'clustervol', bucket }, { env: {} });
    expect(res.prefix).toBe('{5}');
    const conn = await connectMeta(`redis://127.0.0.1:${cl.ports[2]}/5`, { env: {} });
    try {
      expect(conn.cluster).toBe(true);
      expect(await conn.redis.exists('{5}setting', '{5}i1', `{5}i${TRASH_INODE}`)).toBe(3);
    } finally {
      await conn.close();
    }
    const d = await dump(url);
    expect(d.Setting.UUID).toBe(res.format.UUID);
    const f = await fsck(url);
    expect(f.ok, f.output).toBe(true);
    expect(existsSync(path.join(bucket, 'clustervol', 'juicefs_uuid'))).toBe(true);
  }, 120_000);
});
