// Proves the test/helpers/juicefs.ts wrappers against the real upstream juicefs, Redis and the
// SeaweedFS S3: format on redis + S3, FUSE mount, write/read, fsck, dump, gc, unmount.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { daemonPids, dump, format, fsck, gc, isMounted, mount, type JuicefsMount } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';

describe('juicefs wrappers on redis + seaweedfs S3', () => {
  let redis: RedisHandle;
  let s3: S3Handle;
  let jfs: JuicefsMount | undefined;
  const bucket = 'jfs-infra';
  const volume = 'infravol';
  let metaUrl: string;

  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    metaUrl = `${redis.url}/1`;
  });

  afterAll(async () => {
    await jfs?.unmount();
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  async function listKeys(prefix: string): Promise<string[]> {
    const c = await s3.client();
    try {
      const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (r.Contents ?? []).map((o) => o.Key!).sort();
    } finally {
      c.destroy();
    }
  }

  it('formats a volume with --storage s3 and a path-style bucket URL', async () => {
    await format(metaUrl, volume, {
      storage: 's3',
      bucket: s3.bucketUrl(bucket),
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      trashDays: 0,
      compress: 'lz4',
      blockSizeKiB: 1024,
    });
    // juicefs creates the bucket and writes <name>/juicefs_uuid into it.
    expect(await listKeys(`${volume}/`)).toEqual([`${volume}/juicefs_uuid`]);
  });

  it('mounts with FUSE, writes and reads back a multi-block file, then fsck/dump/gc agree', async () => {
    const mnt = path.join(await tmpDir('jfs-mnt'), 'mnt');
    jfs = await mount(metaUrl, mnt);
    expect(isMounted(mnt)).toBe(true);
    expect(daemonPids(mnt).length).toBeGreaterThan(0); // supervisor + FUSE server

    const data = randomBytes(2.5 * 1024 * 1024); // 1 MiB blocks -> 3 block objects
    await writeFile(path.join(mnt, 'data.bin'), data);
    await writeFile(path.join(mnt, 'hello.txt'), 'hello from the infra test\n');
    const back = await readFile(path.join(mnt, 'data.bin'));
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));

    // Blocks are uploaded when the file is closed (no writeback), so they are in S3 now.
    const chunks = (await listKeys(`${volume}/chunks/`)).map((k) => path.basename(k));
    expect(chunks.filter((k) => k.endsWith('_1048576'))).toHaveLength(2);
    expect(chunks.some((k) => k.endsWith('_524288'))).toBe(true);

    const f = await fsck(metaUrl);
    expect(f.ok, f.output).toBe(true);
    expect(f.lostObjects).toBe(0);
    expect(f.blocks).toBe(4); // 3 for data.bin + 1 for hello.txt

    const d = await dump(metaUrl);
    expect(d.Setting.Name).toBe(volume);
    expect(d.Setting.Storage).toBe('s3');
    expect(d.Setting.Compression).toBe('lz4');
    expect(d.Setting.BlockSize).toBe(1024);
    expect(d.Setting.SecretKey).toBe('removed');
    const file = d.FSTree.entries?.['data.bin'];
    expect(file?.attr.type).toBe('regular');
    expect(file?.attr.length).toBe(data.length);
    expect(file?.chunks?.[0]?.slices[0]?.size).toBe(data.length);

    const clean = await gc(metaUrl);
    expect(clean.leaked.count).toBe(0);
    expect(clean.valid).toBe(4);
  });

  it('gc reports a leaked object and fsck reports a lost one', async () => {
    const c = await s3.client();
    try {
      await c.send(new PutObjectCommand({ Bucket: bucket, Key: `${volume}/chunks/0/0/999999_0_5`, Body: 'leak!' }));
      const leaky = await gc(metaUrl);
      expect(leaky.leaked).toEqual({ count: 1, bytes: 5 });
      const cleaned = await gc(metaUrl, { delete: true });
      expect(cleaned.leaked.count).toBe(1);
      expect(await listKeys(`${volume}/chunks/0/0/999999_`)).toEqual([]);

      const victim = (await listKeys(`${volume}/chunks/`)).find((k) => k.endsWith('_1048576'))!;
      await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim }));
      const broken = await fsck(metaUrl);
      expect(broken.ok).toBe(false);
      expect(broken.lostObjects).toBe(1);
      expect(broken.brokenFiles).toBe(1);
      expect(broken.output).toMatch(/data\.bin/);
    } finally {
      c.destroy();
    }
  });

  it('unmounts cleanly and leaves no daemon behind', async () => {
    const mp = jfs!.mountpoint;
    const log = jfs!.logFile;
    await jfs!.unmount();
    jfs = undefined;
    expect(isMounted(mp)).toBe(false);
    expect(daemonPids(mp)).toEqual([]);
    expect(existsSync(path.join(mp, 'hello.txt'))).toBe(false);
    expect(await readFile(log, 'utf8')).not.toMatch(/<FATAL>:/);
  });

  it('formats a local file-storage volume too (upstream CI setup)', async () => {
    const dir = await tmpDir('jfs-file');
    await format(`${redis.url}/2`, 'pics', { storage: 'file', bucket: path.join(dir, 'bucket'), trashDays: 0 });
    expect(existsSync(path.join(dir, 'bucket', 'pics', 'juicefs_uuid'))).toBe(true);
    const f = await fsck(`${redis.url}/2`);
    expect(f.ok, f.output).toBe(true);
  });
});
