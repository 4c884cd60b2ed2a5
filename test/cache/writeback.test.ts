/**
 * Writeback staging end to end (juicefs-format.md 6.4): with the custom profile's `writeback`,
 * a written slice is committed to metadata as soon as its blocks sit in `rawstaging/`, the upload
 * happens in the background, reads of a staged block come from its staging file, staged blocks
 * survive a crash and are uploaded by the next open, and a full staging disk falls back to a
 * synchronous upload. Real redis-server, real file object store and SeaweedFS S3, a real tmpfs.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlockStore } from '../../chunkstore/blockstore.js';
import { DiskBlockCache } from '../../chunkstore/cache/disk.js';
import { resolveCacheConfig } from '../../chunkstore/cache/profiles.js';
import { WritebackStaging } from '../../chunkstore/cache/staging.js';
import { TieredBlockCache } from '../../chunkstore/cache/tiered.js';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { createObjectStore } from '../../chunkstore/object/index.js';
import type { ObjectStore } from '../../chunkstore/types.js';
import { openVolume, type OpenVolume } from '../../fs/volume.js';
import { STATS_INODE } from '../../fs/system.js';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { ROOT_CTX, ROOT_INODE, type Ino } from '../../metadata/types.js';
import { format as jfsFormat, fsck } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';
import { listFiles } from './util.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: RedisHandle;
let s3: S3Handle | undefined;
let db = 1;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await s3?.stop();
  await redis?.stop();
});

interface Vol {
  url: string;
  uuid: string;
  cacheDir: string;
}

/** A fresh volume on a file bucket (our format), in its own Redis database. */
async function fileVolume(tag: string): Promise<Vol> {
  const url = `${redis.url}/${db++}`;
  const bucket = await tmpDir(`wb-${tag}-bucket`);
  const cacheDir = await tmpDir(`wb-${tag}-cache`);
  const admin = new Redis(url);
  try {
    const { format } = newFormat({ name: `wb-${tag}`, storage: 'file', bucket, trashDays: 0 });
    await formatMeta(admin, '', format);
    return { url, uuid: format.UUID, cacheDir };
  } finally {
    admin.disconnect();
  }
}

const writebackProfile = (cacheDir: string, extra: Record<string, unknown> = {}) =>
  resolveCacheConfig({ profile: 'custom', flags: { cacheDir, cacheSize: '1G', writeback: true, ...extra } });

function open(v: Vol, o: { fault?: FaultObjectStore[]; memory?: boolean; flushMs?: number; writeback?: boolean } = {}): Promise<OpenVolume> {
  return openVolume({
    metaUrl: v.url,
    cache: o.writeback === false ? resolveCacheConfig({ profile: 'custom', flags: { cacheDir: v.cacheDir, cacheSize: '1G' } }) : writebackProfile(v.cacheDir, o.memory === false ? { memoryCacheSize: '0' } : {}),
    wrapStore: o.fault
      ? (s: ObjectStore) => {
          const f = new FaultObjectStore(s);
          o.fault!.push(f);
          return f;
        }
      : undefined,
    stagingFlushMs: o.flushMs,
    stagingRetryMs: 50,
    log: () => undefined,
  });
}

async function writeFile(v: OpenVolume, name: string, data: Buffer): Promise<Ino> {
  const e = await v.vfs.create(ROOT_CTX, ROOT_INODE, Buffer.from(name), 0o644, 0, 2);
  for (let off = 0; off < data.length; off += MiB) await v.vfs.write(ROOT_CTX, e.ino, e.fh, off, data.subarray(off, off + MiB));
  await v.vfs.release(ROOT_CTX, e.ino, e.fh);
  return e.ino;
}

/** What `.stats` in the mount root shows, read through the VFS. */
async function readStatsText(v: OpenVolume): Promise<string> {
  const h = await v.vfs.open(ROOT_CTX, STATS_INODE, 0);
  try {
    return (await v.vfs.read(ROOT_CTX, STATS_INODE, h.fh, 0, 4 << 20)).toString('utf8');
  } finally {
    await v.vfs.release(ROOT_CTX, STATS_INODE, h.fh);
  }
}

async function readFile(v: OpenVolume, ino: Ino, len: number): Promise<Buffer> {
  const h = await v.vfs.open(ROOT_CTX, ino, 0);
  const parts: Buffer[] = [];
  for (let off = 0; off < len; off += MiB) parts.push(await v.vfs.read(ROOT_CTX, ino, h.fh, off, MiB));
  await v.vfs.release(ROOT_CTX, ino, h.fh);
  return Buffer.concat(parts);
}

/** Block keys of every slice of the file's first chunk. */
async function blockKeysOf(v: OpenVolume, ino: Ino): Promise<string[]> {
  const bs = v.store.config.blockSize;
  const keys: string[] = [];
  for (const s of await v.meta.readChunk(ino, 0)) {
    if (s.id === 0) continue;
    for (let i = 0; i * bs < s.size; i++) keys.push(v.store.key(s.id, i, Math.min(bs, s.size - i * bs)));
  }
  return keys;
}

const stagingDir = (v: Vol) => path.join(v.cacheDir, v.uuid, 'rawstaging');
const stagedFiles = async (v: Vol) => [...(await listFiles(stagingDir(v))).keys()].filter((k) => !k.endsWith('.tmp'));

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('writeback staging', { timeout: 120_000 }, () => {
  it('commits before the upload; the object appears later and the staging file goes', async () => {
    const vol = await fileVolume('commit');
    const faults: FaultObjectStore[] = [];
    const v = await open(vol, { fault: faults });
    try {
      faults[0]!.delay(1500, ['put']); // uploads are slow: the commit must not wait for them
      const data = randomBytes(6 * MiB + 123); // a full 4 MiB block and a short one
      const t0 = Date.now();
      const ino = await writeFile(v, 'f', data);
      expect(Date.now() - t0).toBeLessThan(1400);
      const keys = await blockKeysOf(v, ino);
      expect(keys.length).toBe(2);
      expect((await v.meta.getAttr(ino)).length).toBe(data.length);
      // Committed, not uploaded: every block is staged (and linked into raw/), none is in the store.
      expect((await stagedFiles(vol)).sort()).toEqual([...keys].sort());
      for (const k of keys) expect(await v.objects.head(k)).toBeNull();
      expect(sha(await readFile(v, ino, data.length))).toBe(sha(data));

      expect(await v.staging!.flush(20_000)).toBe(true);
      for (const k of keys) expect((await v.objects.head(k))?.size).toBeGreaterThan(0);
      expect(await stagedFiles(vol)).toEqual([]);
      // The raw/ name stays as an ordinary cache entry.
      const raw = await listFiles(path.join(vol.cacheDir, vol.uuid, 'raw'));
      for (const k of keys) expect(raw.has(k)).toBe(true);
      const st = v.staging!.stats();
      expect(st).toMatchObject({ staged: 2, uploaded: 2, pending: 0, refused: 0 });
    } finally {
      await v.close();
    }
  });

  it('on SeaweedFS S3: committed at once, uploaded in the background, juicefs fsck clean', async () => {
    s3 ??= await startS3();
    const url = `${redis.url}/${db++}`;
    await jfsFormat(url, 'wb-s3', { storage: 's3', bucket: s3.bucketUrl('wbs3'), accessKey: s3.accessKey, secretKey: s3.secretKey, trashDays: 0 });
    const cacheDir = await tmpDir('wb-s3-cache');
    const v = await open({ url, uuid: '', cacheDir });
    const files = Array.from({ length: 20 }, (_, i) => randomBytes(i === 0 ? 5 * MiB : 4096 + i));
    try {
      const inos: Ino[] = [];
      for (let i = 0; i < files.length; i++) inos.push(await writeFile(v, `f${i}`, files[i]!));
      expect(v.staging!.stats().staged).toBe(21);
      expect(await v.staging!.flush(30_000)).toBe(true);
      expect(v.staging!.stats()).toMatchObject({ uploaded: 21, pending: 0 });
      for (let i = 0; i < files.length; i++) expect(sha(await readFile(v, inos[i]!, files[i]!.length))).toBe(sha(files[i]!));
    } finally {
      await v.close();
    }
    const check = await fsck(url);
    expect(check.output).not.toMatch(/lost|broken/i);
    expect(check.ok).toBe(true);
  });

  it('object store down: the write still succeeds, stays staged, and reads come from the staging file', async () => {
    const vol = await fileVolume('down');
    const faults: FaultObjectStore[] = [];
    const v = await open(vol, { fault: faults, memory: false });
    try {
      faults[0]!.down(); // every object operation fails: get, put, head...
      const data = randomBytes(5 * MiB + 77);
      const ino = await writeFile(v, 'f', data);
      const keys = await blockKeysOf(v, ino);
      expect(keys.length).toBe(2);
      expect(sha(await readFile(v, ino, data.length))).toBe(sha(data));
      // Without the raw/ names (and no memory tier) the block store must read the staging files.
      for (const k of keys) await fs.rm(path.join(vol.cacheDir, vol.uuid, 'raw', k));
      const slice = (await v.meta.readChunk(ino, 0))[0]!;
      const direct = await v.store.read(slice.id, slice.size, 0, slice.size);
      expect(sha(direct)).toBe(sha(data));
      // Failed upload attempts (each after the block store's own retries) keep the blocks staged.
      await waitFor('a failed upload', async () => v.staging!.stats().uploadFailures >= 2);
      const st = v.staging!.stats();
      expect(st.pending).toBe(2);
      // `.stats` in the mount root exports the same counters.
      const text = await readStatsText(v);
      expect(text).toMatch(/^artifacts_staging_pending_blocks 2$/m);
      expect(Number(/^artifacts_staging_upload_failures_total (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(2);
      expect((await stagedFiles(vol)).sort()).toEqual([...keys].sort());
      expect(faults[0]!.calls.get).toBe(0); // nothing was asked of the store for the reads

      faults[0]!.up();
      expect(await v.staging!.flush(20_000)).toBe(true);
      for (const k of keys) expect(await v.objects.head(k)).not.toBeNull();
      expect(await stagedFiles(vol)).toEqual([]);
    } finally {
      await v.close();
    }
  });

  it('a crash leaves blocks staged; the next open uploads them, reads are right, juicefs fsck is clean', async () => {
    const vol = await fileVolume('crash');
    const faults: FaultObjectStore[] = [];
    const a = await open(vol, { fault: faults, flushMs: 0 });
    const files = new Map<Ino, Buffer>();
    try {
      faults[0]!.down(['put']);
      for (let i = 0; i < 8; i++) {
        const data = randomBytes(i === 0 ? 9 * MiB : 1000 * (i + 1));
        files.set(await writeFile(a, `f${i}`, data), data);
      }
    } finally {
      await a.close(); // flushMs 0: no waiting for uploads, as after a crash
    }
    const staged = await stagedFiles(vol);
    expect(staged.length).toBe(3 + 7);

    // Before any upload, a reader of the committed files (no writeback) reads them from staging.
    const b = await open(vol, { writeback: false });
    try {
      expect(await b.recovered).toBe(10);
      for (const [ino, data] of files) expect(sha(await readFile(b, ino, data.length))).toBe(sha(data));
      expect(await b.staging!.flush(20_000)).toBe(true);
      expect(b.staging!.stats()).toMatchObject({ recovered: 10, uploaded: 10, pending: 0 });
      for (const k of staged) expect(await b.objects.head(k)).not.toBeNull();
      expect(await stagedFiles(vol)).toEqual([]);
    } finally {
      await b.close();
    }
    // Everything is in the object store now: a mount with a fresh cache reads it from there.
    const c = await open({ ...vol, cacheDir: await tmpDir('wb-crash-cache2') });
    try {
      for (const [ino, data] of files) expect(sha(await readFile(c, ino, data.length))).toBe(sha(data));
      expect(c.store.stats.getRequests).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
    const check = await fsck(vol.url);
    expect(check.output).not.toMatch(/lost|broken/i);
    expect(check.ok).toBe(true);
  });

  it('a file deleted before its upload: the upload is dropped, no object and no staging file remain', async () => {
    const vol = await fileVolume('delete');
    const faults: FaultObjectStore[] = [];
    const v = await open(vol, { fault: faults });
    try {
      faults[0]!.down(['put']);
      const ino = await writeFile(v, 'f', randomBytes(100_000));
      const [key] = await blockKeysOf(v, ino);
      expect(await stagedFiles(vol)).toEqual([key]);
      await v.vfs.unlink(ROOT_CTX, ROOT_INODE, Buffer.from('f'));
      await waitFor('the staged block to be dropped', async () => (await stagedFiles(vol)).length === 0);
      faults[0]!.up();
      await sleep(200);
      expect(await v.objects.head(key!)).toBeNull();
      expect(v.staging!.stats().pending).toBe(0);
    } finally {
      await v.close();
    }
  });
});

describe('writeback staging on a full disk', { timeout: 60_000 }, () => {
  let mnt = '';
  let mounted = false;
  beforeAll(async () => {
    mnt = await tmpDir('wb-tmpfs');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    mounted = true;
  });
  afterAll(async () => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  it('ENOSPC while staging: the block is uploaded synchronously and the write succeeds', async () => {
    const bucket = await tmpDir('wb-enospc-bucket');
    const objects = createObjectStore({ Name: 'wb', Storage: 'file', Bucket: bucket + '/' } as Parameters<typeof createObjectStore>[0]);
    // A stale free-space view (statfs sampled once an hour) lets the write reach the real ENOSPC.
    const disk = new DiskBlockCache({ dir: path.join(mnt, 'cache'), uuid: 'wb-enospc', capacityBytes: 100 * MiB, freeRatio: 0, statfsIntervalMs: 3600_000 });
    await disk.ready;
    await fs.writeFile(path.join(mnt, 'warm'), 'x');
    expect(await disk.stage('chunks/0/0/1_0_10', Buffer.alloc(10))).toBe(true); // samples statfs while there is room
    await disk.dropStaged('chunks/0/0/1_0_10');
    // Fill the filesystem behind the cache's back.
    const filler = await fs.open(path.join(mnt, 'filler'), 'w');
    try {
      const chunk = Buffer.alloc(256 * 1024, 1);
      for (;;) await filler.write(chunk);
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      await filler.close();
    }
    const store = createBlockStore(objects, { blockSize: 4 * MiB, compression: 'none', hashPrefix: false }, new TieredBlockCache(undefined, disk));
    const staging = new WritebackStaging({ disk, upload: (k, b) => store.putBlock(k, b), retryBaseMs: 50 });
    store.attachStaging(staging, true);
    try {
      const data = randomBytes(MiB + 5);
      const w = store.newWriter(42);
      w.write(0, data);
      await w.finish(data.length);
      // Not staged: uploaded before finish() resolved.
      const key = store.key(42, 0, data.length);
      expect((await objects.head(key))?.size).toBe(data.length);
      expect(staging.stats()).toMatchObject({ staged: 0, refused: 1, pending: 0 });
      expect(disk.stats().errors).toBeGreaterThan(0); // the ENOSPC itself
      expect((await listFiles(disk.stagingDir)).size).toBe(0); // no partial staging file left behind
      expect(sha(await store.read(42, data.length, 0, data.length))).toBe(sha(data));
    } finally {
      await staging.close();
      await disk.close();
    }
  });

  it('a cache too small for the block (size limit / free-space floor): synchronous upload', async () => {
    await fs.rm(path.join(mnt, 'filler'), { force: true });
    const bucket = await tmpDir('wb-small-bucket');
    const objects = createObjectStore({ Name: 'wb', Storage: 'file', Bucket: bucket + '/' } as Parameters<typeof createObjectStore>[0]);
    const disk = new DiskBlockCache({ dir: path.join(mnt, 'cache2'), uuid: 'wb-small', capacityBytes: 2 * MiB, freeRatio: 0.1, statfsIntervalMs: 0 });
    await disk.ready;
    const store = createBlockStore(objects, { blockSize: 4 * MiB, compression: 'none', hashPrefix: false }, new TieredBlockCache(undefined, disk));
    const staging = new WritebackStaging({ disk, upload: (k, b) => store.putBlock(k, b), retryBaseMs: 50 });
    store.attachStaging(staging, true);
    try {
      const small = randomBytes(MiB);
      const big = randomBytes(3 * MiB);
      const w1 = store.newWriter(7);
      w1.write(0, small);
      await w1.finish(small.length);
      const w2 = store.newWriter(8);
      w2.write(0, big);
      await w2.finish(big.length);
      expect(staging.stats()).toMatchObject({ staged: 1, refused: 1 });
      expect((await objects.head(store.key(8, 0, big.length)))?.size).toBe(big.length);
      expect(await staging.flush(10_000)).toBe(true);
      expect((await objects.head(store.key(7, 0, small.length)))?.size).toBe(small.length);
    } finally {
      await staging.close();
      await disk.close();
    }
  });
});
