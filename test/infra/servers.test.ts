// Self-tests of test/helpers/servers.ts against the real binaries.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  freePorts,
  juicefsBin,
  redisCommand,
  RespError,
  rssKiB,
  startRedis,
  startRedisCluster,
  startS3,
  tmpDir,
  weedBin,
} from '../helpers/servers.js';

function portAcceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('binaries and small utilities', () => {
  it('finds the real juicefs 1.4.2 and weed 4.48 binaries (not pyenv shims)', () => {
    const jfs = juicefsBin();
    expect(jfs).not.toContain('/shims/');
    expect(spawnSync(jfs, ['version'], { encoding: 'utf8' }).stdout).toMatch(/juicefs version 1\.4\.2/);
    const weed = weedBin();
    expect(weed).not.toContain('/shims/');
    expect(spawnSync(weed, ['version'], { encoding: 'utf8' }).stdout).toMatch(/\b4\.48\b/);
  });

  it('hands out distinct free ports and fresh temp dirs', async () => {
    const ports = await freePorts(8);
    expect(new Set(ports).size).toBe(8);
    const more = await freePorts(4);
    expect(more.some((p) => ports.includes(p))).toBe(false);
    const a = await tmpDir('x');
    const b = await tmpDir('x');
    expect(a).not.toBe(b);
    expect(existsSync(a)).toBe(true);
  });
});

describe('startRedis', () => {
  it('starts a fresh standalone redis that answers, and stop() kills it and removes its dir', async () => {
    const r = await startRedis();
    expect(r.url).toBe(`redis://127.0.0.1:${r.port}`);
    expect(r.host).toBe('127.0.0.1');
    expect(await redisCommand(r.port, ['DBSIZE'])).toBe(0);
    expect(await redisCommand(r.port, ['SET', 'k', 'v'])).toBe('OK');
    expect(await redisCommand(r.port, ['GET', 'k'])).toBe('v');
    // No persistence: tests must never leave dump files or AOF behind.
    const save = await redisCommand(r.port, ['CONFIG', 'GET', 'save']);
    expect(save).toEqual(['save', '']);
    expect(await redisCommand(r.port, ['CONFIG', 'GET', 'appendonly'])).toEqual(['appendonly', 'no']);
    await r.stop();
    expect(pidAlive(r.pid)).toBe(false);
    expect(await portAcceptsConnections(r.port)).toBe(false);
    expect(existsSync(r.dir)).toBe(false);
    await r.stop(); // idempotent
  });

  it('passes extra args through (requirepass), and readiness still works behind auth', async () => {
    const r = await startRedis({ args: ['--requirepass', 's3cret', '--enable-debug-command', 'local'] });
    try {
      const denied = await redisCommand(r.port, ['GET', 'k']);
      expect(denied).toBeInstanceOf(RespError);
      expect((denied as RespError).message).toMatch(/NOAUTH/);
    } finally {
      await r.stop();
    }
  });

  it('runs two instances side by side on different ports', async () => {
    const [a, b] = await Promise.all([startRedis(), startRedis()]);
    try {
      expect(a.port).not.toBe(b.port);
      await redisCommand(a.port, ['SET', 'only-in-a', '1']);
      expect(await redisCommand(b.port, ['EXISTS', 'only-in-a'])).toBe(0);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('startRedisCluster', () => {
  it('creates a 3-master cluster with every slot served and a url base for /N', async () => {
    const c = await startRedisCluster();
    try {
      expect(c.ports).toHaveLength(3);
      expect(c.url).toBe(`redis://${c.ports.map((p) => `127.0.0.1:${p}`).join(',')}`);
      for (const p of c.ports) {
        const info = (await redisCommand(p, ['CLUSTER', 'INFO'])) as string;
        expect(info).toMatch(/cluster_state:ok/);
        expect(info).toMatch(/cluster_size:3\b/);
      }
      // A hash-tagged key lives on exactly one node; the others redirect with MOVED.
      const replies = await Promise.all(c.ports.map((p) => redisCommand(p, ['SET', '{2}setting', 'x'])));
      expect(replies.filter((x) => x === 'OK')).toHaveLength(1);
      expect(replies.filter((x) => x instanceof RespError && /^MOVED/.test(x.message))).toHaveLength(2);
    } finally {
      await c.stop();
    }
    for (const p of c.ports) expect(await portAcceptsConnections(p)).toBe(false);
  });
});

describe('startS3', () => {
  it('serves path-style S3 with static credentials: put, ranged get, list v2, head, delete', async () => {
    const t0 = Date.now();
    const s3 = await startS3();
    const startMs = Date.now() - t0;
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
    });
    try {
      expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      await s3.createBucket('infra-test');
      await s3.createBucket('infra-test'); // idempotent
      expect((await client.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toContain('infra-test');

      const body = Buffer.from('0123456789abcdef');
      await client.send(new PutObjectCommand({ Bucket: 'infra-test', Key: 'vol/chunks/0/0/1_0_16', Body: body }));
      await client.send(new PutObjectCommand({ Bucket: 'infra-test', Key: 'vol/juicefs_uuid', Body: 'u' }));

      const ranged = await client.send(new GetObjectCommand({ Bucket: 'infra-test', Key: 'vol/chunks/0/0/1_0_16', Range: 'bytes=4-9' }));
      expect(ranged.ContentRange).toBe('bytes 4-9/16');
      expect(Buffer.from(await ranged.Body!.transformToByteArray()).toString()).toBe('456789');

      const listed = await client.send(new ListObjectsV2Command({ Bucket: 'infra-test', Prefix: 'vol/chunks/' }));
      expect(listed.Contents?.map((o) => o.Key)).toEqual(['vol/chunks/0/0/1_0_16']);

      const head = await client.send(new HeadObjectCommand({ Bucket: 'infra-test', Key: 'vol/chunks/0/0/1_0_16' }));
      expect(head.ContentLength).toBe(16);

      await client.send(new DeleteObjectCommand({ Bucket: 'infra-test', Key: 'vol/chunks/0/0/1_0_16' }));
      await expect(client.send(new HeadObjectCommand({ Bucket: 'infra-test', Key: 'vol/chunks/0/0/1_0_16' }))).rejects.toMatchObject({
        name: 'NotFound',
      });

      // The credentials are really checked.
      const wrong = new S3Client({
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        maxAttempts: 1,
        credentials: { accessKeyId: s3.accessKey, secretAccessKey: 'not-the-secret' },
      });
      await expect(wrong.send(new ListBucketsCommand({}))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
      wrong.destroy();

      expect(s3.bucketUrl('infra-test')).toBe(`${s3.endpoint}/infra-test`);
      const rss = rssKiB(s3.pid);
      expect(rss).toBeGreaterThan(0);
      console.log(`[infra] seaweedfs S3 started in ${startMs} ms, RSS ${Math.round(rss! / 1024)} MiB after a few requests`);
    } finally {
      client.destroy();
      await s3.stop();
    }
    expect(pidAlive(s3.pid)).toBe(false);
    expect(existsSync(s3.dir)).toBe(false);
  });

  it('also runs as `weed server -filer -s3` (ARTIFACTS_S3_MODE=server)', async () => {
    const s3 = await startS3({ mode: 'server' });
    try {
      await s3.createBucket('server-mode');
      const c = await s3.client();
      await c.send(new PutObjectCommand({ Bucket: 'server-mode', Key: 'k', Body: 'v' }));
      const got = await c.send(new GetObjectCommand({ Bucket: 'server-mode', Key: 'k' }));
      expect(await got.Body!.transformToString()).toBe('v');
      c.destroy();
    } finally {
      await s3.stop();
    }
    expect(pidAlive(s3.pid)).toBe(false);
  });
});
