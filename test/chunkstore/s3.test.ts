/**
 * The S3 object store and the block store against a real S3 server (SeaweedFS from
 * test/helpers/servers.ts), plus the same volume seen by the real `juicefs` through
 * `--storage s3|minio --bucket http://127.0.0.1:port/bucket`.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockIOError, ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { blockKey } from '../../chunkstore/keys.js';
import { createObjectStore, parseS3Bucket, S3ObjectStore, FaultObjectStore } from '../../chunkstore/object/index.js';
import { NotFoundError, type Compression, type ObjectStore } from '../../chunkstore/types.js';
import { dump, format, mount } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';

async function listKeys(store: ObjectStore, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

/** All keys of a bucket through a plain SDK client (independent of our list code). */
async function rawKeys(client: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of r.Contents ?? []) keys.push(o.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

let s3: S3Handle;
let raw: S3Client;
const stores: ObjectStore[] = [];

function s3Store(bucket: string, extra: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {}): S3ObjectStore {
  const st = new S3ObjectStore({
    endpoint: s3.endpoint,
    region: s3.region,
    bucket,
    forcePathStyle: true,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    ...extra,
  });
  stores.push(st);
  return st;
}

beforeAll(async () => {
  s3 = await startS3();
  raw = await s3.client();
});
afterAll(async () => {
  for (const st of stores) st.close?.();
  raw?.destroy();
  await s3?.stop();
});

describe('S3 object store', () => {
  it('create, put, get, ranged get, head, delete, NotFound', async () => {
    const st = s3Store('basic');
    await st.create();
    await st.create(); // idempotent
    const body = randomBytes(100_000);
    await st.put('dir/obj', body);
    expect((await st.get('dir/obj')).equals(body)).toBe(true);
    expect((await st.get('dir/obj', 1000, 5000)).equals(body.subarray(1000, 6000))).toBe(true);
    expect((await st.get('dir/obj', 99_990)).equals(body.subarray(99_990))).toBe(true);
    expect((await st.get('dir/obj', 99_990, 100)).equals(body.subarray(99_990))).toBe(true);
    expect((await st.get('dir/obj', 100_000, 10)).length).toBe(0);
    expect(await st.head('dir/obj')).toMatchObject({ key: 'dir/obj', size: 100_000 });
    expect(await st.head('dir/none')).toBeNull();
    await expect(st.get('dir/none')).rejects.toBeInstanceOf(NotFoundError);
    await expect(st.get('dir/none', 10, 10)).rejects.toBeInstanceOf(NotFoundError);
    await st.delete('dir/obj');
    await st.delete('dir/obj'); // missing is fine
    await expect(st.get('dir/obj')).rejects.toBeInstanceOf(NotFoundError);
    expect(st.describe()).toBe(`s3://${s3.endpoint.replace('http://', '')}/basic/`);
    expect(st.describe()).not.toContain(s3.secretKey);
  });

  it('direct signed GET/PUT and the SDK agree, for awkward keys too', async () => {
    const st = s3Store('keys');
    const viaSdk = s3Store('keys', { sdkDataPath: true });
    await st.create();
    // (No 'a//b' key: SeaweedFS folds '//' in object names.)
    const keys = ['plain/k', 'sp ace/and+plus', "bang!quote'(paren)*star", 'pct%41~tilde', 'ünï/cødé/日本', 'trailing.dot.'];
    // Half written by the direct PUT, half by the SDK; all read back both ways.
    for (const [i, k] of keys.entries()) await (i % 2 ? viaSdk : st).put(k, Buffer.from(`v${i}`.repeat(100)));
    for (const [i, k] of keys.entries()) {
      const want = Buffer.from(`v${i}`.repeat(100));
      expect((await st.get(k)).equals(want)).toBe(true);
      expect((await viaSdk.get(k)).equals(want)).toBe(true);
      expect((await st.get(k, 3, 7)).equals(want.subarray(3, 10))).toBe(true);
      expect((await viaSdk.get(k, 3, 7)).equals(want.subarray(3, 10))).toBe(true);
    }
    expect((await listKeys(st, '')).sort()).toEqual([...keys].sort());
    await expect(viaSdk.get('missing')).rejects.toBeInstanceOf(NotFoundError);
    // A missing bucket or bad credentials are errors, never "object not found".
    const noBucket = s3Store('no-such-bucket-here');
    await expect(noBucket.get('k')).rejects.toMatchObject({ name: 'NoSuchBucket' });
    await expect(s3Store('no-such-bucket-here', { sdkDataPath: true }).get('k')).rejects.toMatchObject({ name: 'NoSuchBucket' });
    const badKey = s3Store('keys', { secretKey: 'wrong' });
    const err = await badKey.get('plain/k').catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode).toBe(403);
    await expect(badKey.put('plain/k', Buffer.from('x'))).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
    expect((await st.get('plain/k')).equals(Buffer.from('v0'.repeat(100)))).toBe(true); // the refused PUT changed nothing
  });

  it('a server that never answers a GET times out per attempt, then fails', async () => {
    const sockets: import('node:net').Socket[] = [];
    const server = net.createServer((s) => sockets.push(s)); // accepts, never replies
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as import('node:net').AddressInfo).port;
      const st = new S3ObjectStore({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', bucket: 'x', forcePathStyle: true, accessKey: 'a', secretKey: 'b', maxAttempts: 2, requestTimeoutMs: 300 });
      stores.push(st);
      const t0 = Date.now();
      await expect(st.get('k')).rejects.toMatchObject({ name: 'TimeoutError' });
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(550);
      expect(took).toBeLessThan(5000);
      expect(sockets.length).toBe(2); // one connection per attempt
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  it('a server that ignores Range (200 with the whole object) still yields just the range', async () => {
    const whole = Buffer.from('0123456789abcdef');
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': whole.length, 'content-type': 'application/octet-stream' });
      res.end(whole);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as import('node:net').AddressInfo).port;
      for (const sdkDataPath of [false, true]) {
        const st = new S3ObjectStore({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', bucket: 'x', forcePathStyle: true, accessKey: 'a', secretKey: 'b', sdkDataPath });
        stores.push(st);
        expect((await st.get('k', 3, 4)).toString()).toBe('3456');
        expect((await st.get('k', 10)).toString()).toBe('abcdef');
        expect((await st.get('k')).toString()).toBe('0123456789abcdef');
      }
    } finally {
      server.close();
    }
  });

  it('lists more than 1000 keys across pages in lexicographic order', async () => {
    const st = s3Store('paging');
    await st.create();
    const keys = Array.from({ length: 1105 }, (_, i) => `p/${String(i * 7919 % 100_000).padStart(5, '0')}-${i}`);
    const lanes = 16;
    let next = 0;
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (next < keys.length) await st.put(keys[next++]!, Buffer.from('x'));
      }),
    );
    await st.put('q/outside', Buffer.from('y'));
    const listed = await listKeys(st, 'p/');
    expect(listed.length).toBe(1105);
    expect(listed).toEqual([...keys].sort());
    // Small pages: many continuation tokens.
    const small = s3Store('paging', { listPageSize: 97 });
    expect(await listKeys(small, 'p/')).toEqual(listed);
    expect(await listKeys(st, '')).toEqual([...listed, 'q/outside']);
  });

  it('createObjectStore(s3) uses the bucket URL form juicefs uses and prefixes Name/', async () => {
    await s3.createBucket('vols');
    const fmt = { Storage: 's3', Bucket: s3.bucketUrl('vols'), AccessKey: s3.accessKey, SecretKey: s3.secretKey, Name: 'myjfs' };
    const vol = createObjectStore(fmt);
    stores.push(vol);
    await vol.put('chunks/0/0/1_0_3', Buffer.from('abc'));
    expect(await rawKeys(raw, 'vols')).toEqual(['myjfs/chunks/0/0/1_0_3']);
    expect(await listKeys(vol, 'chunks/')).toEqual(['chunks/0/0/1_0_3']);
    expect(vol.describe()).toBe(`s3://${s3.endpoint.replace('http://', '')}/vols/myjfs/`);
    const minio = createObjectStore({ ...fmt, Storage: 'minio' });
    stores.push(minio);
    expect((await minio.get('chunks/0/0/1_0_3')).toString()).toBe('abc');
  });

  it('a dead endpoint fails in bounded time with a clear error', async () => {
    const st = new S3ObjectStore({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', bucket: 'x', forcePathStyle: true, accessKey: 'a', secretKey: 'b', maxAttempts: 2, connectTimeoutMs: 500 });
    stores.push(st);
    const t0 = Date.now();
    await expect(st.put('k', Buffer.from('v'))).rejects.toThrow(/ECONNREFUSED|connect/);
    await expect(st.get('k')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe('bucket URL parsing (same rules as juicefs)', () => {
  const env = {};
  it.each([
    ['s3', 'http://127.0.0.1:8333/bkt', { endpoint: 'http://127.0.0.1:8333', bucket: 'bkt', region: 'us-east-1', forcePathStyle: true }],
    ['s3', 'http://127.0.0.1:8333/bkt/', { endpoint: 'http://127.0.0.1:8333', bucket: 'bkt', forcePathStyle: true }],
    ['s3', 'https://minio.example.com/data', { endpoint: 'https://minio.example.com', bucket: 'data' }],
    ['s3', 'https://mybucket.s3.eu-west-1.amazonaws.com', { endpoint: undefined, bucket: 'mybucket', region: 'eu-west-1', forcePathStyle: false }],
    ['s3', 'https://mybucket.s3-ap-south-1.amazonaws.com', { endpoint: undefined, bucket: 'mybucket', region: 'ap-south-1' }],
    ['s3', 'https://mybucket.s3.amazonaws.com', { endpoint: undefined, bucket: 'mybucket', region: 'us-east-1' }],
    ['s3', 'https://s3.us-west-2.amazonaws.com/mybucket', { endpoint: undefined, bucket: 'mybucket', region: 'us-west-2' }],
    ['s3', 'http://bkt.ceph.local:7480', { endpoint: 'http://ceph.local:7480', bucket: 'bkt', forcePathStyle: true }],
    ['s3', 'ceph.local:7480/bkt', { endpoint: 'http://ceph.local:7480', bucket: 'bkt' }],
    ['s3', 'http://127.0.0.1:8333/bkt?disable-100-continue=true', { bucket: 'bkt', disable100Continue: true }],
    ['minio', 'http://127.0.0.1:9000/bkt', { endpoint: 'http://127.0.0.1:9000', bucket: 'bkt', region: 'us-east-1', forcePathStyle: true }],
    ['minio', '127.0.0.1:9000/bkt/sub', { endpoint: 'http://127.0.0.1:9000', bucket: 'bkt' }],
    ['minio', 'http://127.0.0.1:9000/bkt?region=eu-1', { bucket: 'bkt', region: 'eu-1' }],
  ] as const)('%s %s', (storage, url, want) => {
    expect(parseS3Bucket(storage, url, env)).toMatchObject(want);
  });

  it('region and path-style follow the environment like juicefs', () => {
    expect(parseS3Bucket('s3', 'http://h:1/b', { AWS_REGION: 'xx-1' }).region).toBe('xx-1');
    expect(parseS3Bucket('s3', 'http://h:1/b', { JFS_S3_VHOST_STYLE: '1' }).forcePathStyle).toBe(false);
    expect(() => parseS3Bucket('minio', 'http://h:1/', {})).toThrow(/no bucket/);
    expect(() => createObjectStore({ Storage: 'gs', Bucket: 'gs://x', Name: 'v' })).toThrow(/unsupported storage/);
  });
});

describe('block store on S3', () => {
  it.each(['none', 'zstd'] as const)('writes blocks and reads ranges back (%s)', async (compression: Compression) => {
    await s3.createBucket('blocks');
    const store = createObjectStore({ Storage: 's3', Bucket: s3.bucketUrl('blocks'), AccessKey: s3.accessKey, SecretKey: s3.secretKey, Name: `v-${compression}` });
    stores.push(store);
    const BS = 1 << 20;
    // recentBlocks 0: the ranged read below must reach S3, not the memo of the full read.
    const bs = new ObjectBlockStore(store, { blockSize: BS, compression, hashPrefix: false, maxUploads: 4 }, undefined, { recentBlocks: 0 });
    const src = randomBytes(3 * BS + 1234);
    const w = bs.newWriter(42);
    for (let off = 0; off < src.length; off += 100_000) w.write(off, src.subarray(off, Math.min(src.length, off + 100_000)));
    await w.finish(src.length);
    expect(await listKeys(store, 'chunks/')).toEqual([blockKey(42, 0, BS), blockKey(42, 1, BS), blockKey(42, 2, BS), blockKey(42, 3, 1234)]);
    expect((await bs.read(42, src.length, 0, src.length)).equals(src)).toBe(true);
    const before = bs.stats.getBytes;
    expect((await bs.read(42, src.length, BS + 5, 4000)).equals(src.subarray(BS + 5, BS + 4005))).toBe(true);
    if (compression === 'none') expect(bs.stats.getBytes - before).toBe(4000); // a range GET, not the block
    await bs.remove(42, src.length);
    expect(await listKeys(store, 'chunks/')).toEqual([]);
    await expect(bs.read(42, src.length, 0, 10)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('S3 failing mid-upload: finish reports it, abort deletes the stored blocks', async () => {
    await s3.createBucket('faults');
    const fault = new FaultObjectStore(createObjectStore({ Storage: 's3', Bucket: s3.bucketUrl('faults'), AccessKey: s3.accessKey, SecretKey: s3.secretKey, Name: 'vf' }));
    stores.push(fault);
    fault.failNext(1_000_000, ['put'], 3); // three blocks land, then S3 refuses every put
    const BS = 256 * 1024;
    const bs = new ObjectBlockStore(fault, { blockSize: BS, compression: 'lz4', hashPrefix: false, maxUploads: 1 }, undefined, { retries: 2, retryBaseMs: 10 });
    const w = bs.newWriter(7);
    const src = randomBytes(8 * BS);
    for (let off = 0; off < src.length; off += 64 * 1024) w.write(off, src.subarray(off, off + 64 * 1024));
    const err = await w.finish(src.length).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockIOError);
    expect(String(err)).toMatch(/put chunks\/0\/0\/7_3_262144 failed/);
    expect((await rawKeys(raw, 'faults')).length).toBe(3);
    await w.abort();
    expect(await rawKeys(raw, 'faults')).toEqual([]);
  });

  it('S3 server killed mid-upload: finish rejects with a clear error in bounded time', async () => {
    const own = await startS3();
    try {
      await own.createBucket('dying');
      const store = createObjectStore(
        { Storage: 's3', Bucket: own.bucketUrl('dying'), AccessKey: own.accessKey, SecretKey: own.secretKey, Name: 'vd' },
        { s3: { maxAttempts: 2, connectTimeoutMs: 1000, requestTimeoutMs: 5000 } },
      );
      stores.push(store);
      const BS = 1 << 20;
      const bs = new ObjectBlockStore(store, { blockSize: BS, compression: 'none', hashPrefix: false, maxUploads: 2 }, undefined, { retries: 2, retryBaseMs: 50 });
      const w = bs.newWriter(9);
      w.write(0, randomBytes(2 * BS));
      await w.drain();
      // Wait until the first blocks are stored, then kill the server while more are written.
      for (let i = 0; i < 100 && (await listKeys(store, 'chunks/')).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await listKeys(store, 'chunks/')).length).toBe(2);
      await own.stop();
      w.write(2 * BS, randomBytes(3 * BS));
      const t0 = Date.now();
      const err = await w.finish(5 * BS).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlockIOError);
      expect(String(err)).toMatch(/put chunks\/0\/0\/9_[2-4]_1048576 failed: .*(ECONNREFUSED|connect|socket|closed)/i);
      expect(Date.now() - t0).toBeLessThan(30_000);
    } finally {
      await own.stop();
    }
  });
});

describe('interop with the real juicefs on S3', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it.each([
    ['s3', 'lz4', 1],
    ['minio', 'zstd', 2],
  ] as const)('--storage %s --compress %s: we decode what juicefs wrote, juicefs reads what we wrote', async (storage, compression, db) => {
    const bucket = `jfs-${storage}`;
    const meta = `${redis.url}/${db}`;
    const name = `vol-${storage}`;
    await format(meta, name, { storage, bucket: s3.bucketUrl(bucket), accessKey: s3.accessKey, secretKey: s3.secretKey, compress: compression, trashDays: 0 });
    const dir = await tmpDir('s3-interop');
    const content = randomBytes(5 << 20).toString('base64').slice(0, 6 << 20); // compressible a bit
    const m = await mount(meta, path.join(dir, 'mnt'));
    try {
      await writeFile(path.join(m.mountpoint, 'f.txt'), content);
    } finally {
      await m.unmount();
    }
    const d = await dump(meta);
    const st = d.Setting;
    expect(st.Bucket).toBe(s3.bucketUrl(bucket));
    // dump hides the secret key: the credentials come from the test, the location from the Format.
    const store = createObjectStore({ Storage: st.Storage, Bucket: st.Bucket, AccessKey: s3.accessKey, SecretKey: s3.secretKey, Name: st.Name });
    stores.push(store);
    expect((await store.get('juicefs_uuid')).toString()).toBe(st.UUID);
    const bs = new ObjectBlockStore(store, { blockSize: st.BlockSize * 1024, compression: st.Compression as Compression, hashPrefix: false });
    const chunk = d.FSTree.entries!['f.txt']!.chunks![0]!;
    const out = Buffer.alloc(content.length);
    for (const s of chunk.slices) (await bs.read(s.id, s.size, s.off ?? 0, s.len ?? s.size)).copy(out, s.pos ?? 0);
    expect(out.toString()).toBe(content);
    // Reverse: replace its blocks by ours (direct signed PUTs), juicefs reads the file back.
    for (const s of chunk.slices) {
      const plain = await bs.read(s.id, s.size, 0, s.size);
      await bs.remove(s.id, s.size);
      await bs.writeSlice(s.id, plain);
    }
    const m2 = await mount(meta, path.join(dir, 'mnt2'), ['--cache-size', '0']);
    try {
      expect(await readFile(path.join(m2.mountpoint, 'f.txt'), 'utf8')).toBe(content);
    } finally {
      await m2.unmount();
    }
  });
});
