/**
 * Bad input and failures around a JuiceFS volume: what our client must refuse, and what it must
 * never do (return zeros for lost data, commit a slice whose blocks are not stored, leave a volume
 * that `juicefs fsck` rejects).
 *
 * Run: npx vitest run test/compat/errors.test.ts
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { parseBlockKey } from '../../chunkstore/keys.js';
import type { ObjectStore } from '../../chunkstore/types.js';
import { MetaError, type Ino, ROOT_INODE } from '../../metadata/types.js';
import { format as jfsFormat, fsck as jfsFsck, gc as jfsGc } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';
import { bytes, describeDiff } from './lib/content.js';
import { CTX, openOurs, ourFormat, type OurVolume, readFileEngine, VfsDriver } from './lib/ours.js';
import { startRestartableRedis, type RestartableRedis } from './lib/redisproc.js';
import { O_RDONLY, O_WRONLY } from '../../fs/vfs.js';

const MiB = 1 << 20;
const O_CREAT = 0o100;

let redis: RedisHandle | undefined;
let work = '';

beforeAll(async () => {
  [redis, work] = await Promise.all([startRedis(), tmpDir('compat-errors')]);
}, 60_000);
afterAll(async () => {
  await redis?.stop();
}, 30_000);

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} is missing`);
  return v;
}

/** Rejects if `p` does not settle within `ms`: a hang is a failure too. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Write a whole file through the VFS (create, writes, flush, release). */
async function vfsWriteFile(ours: OurVolume, name: string, data: Buffer, piece = MiB): Promise<Ino> {
  const d = new VfsDriver(ours.vfs);
  const writes = [];
  for (let off = 0; off < data.length; off += piece) writes.push({ off, data: data.subarray(off, off + piece) });
  await d.writeFile(name, writes);
  return (await ours.vfs.lookup(CTX, ROOT_INODE, Buffer.from(name))).ino;
}

async function vfsReadRange(ours: OurVolume, ino: Ino, off: number, len: number): Promise<Buffer> {
  const { fh } = await ours.vfs.open(CTX, ino, O_RDONLY);
  try {
    return await ours.vfs.read(CTX, ino, fh, off, len);
  } finally {
    await ours.vfs.release(CTX, ino, fh);
  }
}

// ---------------------------------------------------------------------------------------------

describe('a volume our client must refuse to open', () => {
  let url = '';
  let admin: Redis | undefined;
  let goodSetting = '';

  beforeAll(async () => {
    const r = need(redis, 'redis');
    url = `${r.url}/1`;
    // A setting exactly as upstream writes it.
    await jfsFormat(url, 'refuse-me', { storage: 'file', bucket: `${work}/objects-refuse`, trashDays: 0 });
    admin = new Redis(url);
    goodSetting = (await admin.get('setting'))!;
  }, 60_000);
  afterAll(() => admin?.disconnect());

  async function refused(setting: string | Buffer, pattern: RegExp): Promise<void> {
    const a = need(admin, 'admin');
    await a.set('setting', setting);
    const before = (await a.keys('*')).sort();
    const err = await errorOf(openOurs(url));
    expect(err, 'openOurs should have rejected').toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(pattern);
    // Refused before writing anything (no session, no counters).
    expect((await a.keys('*')).sort()).toEqual(before);
    await a.set('setting', goodSetting);
  }

  it('control: the unmodified upstream setting opens', async () => {
    const ours = await openOurs(url, { readOnly: true });
    try {
      expect(ours.format.Name).toBe('refuse-me');
    } finally {
      await ours.close();
    }
  });

  it('a corrupt setting (not JSON, truncated JSON, wrong field types, not an object)', async () => {
    await refused('this is {not json', /json|setting|corrupt|unexpected/i);
    await refused(goodSetting.slice(0, Math.floor(goodSetting.length / 2)), /json|setting|corrupt|unexpected|end/i);
    await refused(goodSetting.replace(/"BlockSize": \d+/, '"BlockSize": "4096"'), /BlockSize/);
    await refused('[1,2,3]', /object|setting/i);
    await refused(Buffer.from([0xff, 0xfe, 0x00, 0x01]), /json|setting|corrupt|unexpected|invalid/i);
  });

  it('an unsupported MetaVersion (2)', async () => {
    expect(goodSetting).toMatch(/"MetaVersion": 1/);
    await refused(goodSetting.replace('"MetaVersion": 1', '"MetaVersion": 2'), /metadata version 2|MetaVersion/i);
  });

  it('an unsupported compression ("brotli")', async () => {
    expect(goodSetting).toMatch(/"Compression": "none"/);
    await refused(goodSetting.replace('"Compression": "none"', '"Compression": "brotli"'), /brotli/);
  });

  it('a MinClientVersion above ours', async () => {
    await refused(goodSetting.replace('"MinClientVersion": "1.1.0-A"', '"MinClientVersion": "9.0.0"'), /9\.0\.0|version/i);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(['none', 'lz4'] as const)('a missing block object (compression %s)', (compression) => {
  let url = '';
  let ours: OurVolume | undefined;
  const data = bytes(`missing-block-${compression}`, 9 * MiB + 3); // blocks: 4 MiB, 4 MiB, 1 MiB+3
  let ino: Ino = 0n;
  let removedKey = '';

  beforeAll(async () => {
    const r = need(redis, 'redis');
    url = `${r.url}/${compression === 'none' ? 2 : 3}`;
    await ourFormat({ metaUrl: url, name: `missing-${compression}`, storage: 'file', bucket: `${work}/objects-missing`, compression, trashDays: 0 });
    const w = await openOurs(url);
    try {
      ino = await vfsWriteFile(w, 'victim', data);
    } finally {
      await w.close();
    }
    // Delete block 1 (the middle one) of the file's only slice.
    const o = await openOurs(url, { readOnly: true });
    try {
      const segs = (await o.meta.readChunk(ino, 0)).filter((s) => s.id !== 0);
      expect(segs.length).toBeGreaterThan(0);
      const keys: string[] = [];
      for await (const obj of o.objects.list('chunks/')) keys.push(obj.key);
      const key = keys.find((k) => {
        const b = parseBlockKey(k);
        return b !== null && b.index === 1 && segs.some((s) => s.id === b.id);
      });
      removedKey = need(key, `block 1 among ${keys.join(', ')}`);
      await o.objects.delete(removedKey);
    } finally {
      await o.close();
    }
    ours = await openOurs(url, { readOnly: true, retries: 1 });
  }, 120_000);
  afterAll(async () => {
    await ours?.close();
  });

  it('juicefs fsck agrees the object is lost (the test removed the right thing)', async () => {
    const f = await jfsFsck(url);
    expect(f.ok).toBe(false);
    expect(f.lostObjects).toBe(1);
    expect(f.output).toContain(removedKey.split('/').pop()!);
  });

  it('reads of intact blocks still return the right bytes', async () => {
    const o = need(ours, 'volume');
    const head = await vfsReadRange(o, ino, 0, 64 * 1024);
    expect(describeDiff('block 0', data.subarray(0, 64 * 1024), head)).toBeUndefined();
    const tail = await vfsReadRange(o, ino, 8 * MiB, MiB + 3);
    expect(describeDiff('block 2', data.subarray(8 * MiB), tail)).toBeUndefined();
  });

  it('VFS reads touching the lost block fail with EIO — small, whole-block and spanning reads', async () => {
    const o = need(ours, 'volume');
    for (const [off, len] of [
      [4 * MiB + 100, 1000], // small: range GET on uncompressed volumes
      [4 * MiB, 4 * MiB], // the whole block
      [4 * MiB - 10, 20], // spanning blocks 0 and 1
    ] as const) {
      const err = await within(60_000, `read ${off}+${len}`, errorOf(vfsReadRange(o, ino, off, len)));
      expect(err, `read ${off}+${len} must fail, not return zeros`).toBeInstanceOf(MetaError);
      expect((err as MetaError).errno).toBe(5);
    }
  });

  it('the engine + block store path rejects too (never zeros)', async () => {
    const o = need(ours, 'volume');
    const err = await errorOf(readFileEngine(o.meta, o.blocks, ino, data.length));
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toMatch(/not found|NoSuch|ENOENT|missing/i);
  });
});

// ---------------------------------------------------------------------------------------------

describe('Redis going away in the middle of a write loop', () => {
  let rr: RestartableRedis | undefined;
  let url = '';
  const done = new Map<string, Buffer>();
  let failure: unknown;
  let killedAt: number | undefined;

  beforeAll(async () => {
    rr = await startRestartableRedis();
    url = `${rr.url}/1`;
    await ourFormat({ metaUrl: url, name: 'redis-crash', storage: 'file', bucket: `${work}/objects-crash`, compression: 'none', trashDays: 0 });
  }, 60_000);
  afterAll(async () => {
    await rr?.stop();
  });

  it('the write loop fails with a clear error soon after the server dies (EIO within 60 s, close within 30 s)', async () => {
    const r = need(rr, 'redis');
    const ours = await openOurs(url, { retries: 1 });
    const problems: string[] = [];
    let stopLoop = false;
    try {
      const loop = (async () => {
        for (let i = 0; i < 10_000; i++) {
          if (stopLoop) throw new Error('loop abandoned');
          const name = `f${i}`;
          const data = bytes(`crash-${i}`, 300_000 + i);
          if (i === 16) {
            // Kill while this file is being written (not between two files).
            setTimeout(() => void r.kill().then(() => (killedAt = Date.now())), 30);
          }
          await vfsWriteFile(ours, name, data, 64 * 1024);
          done.set(name, data);
        }
        throw new Error('the loop wrote 10000 files without noticing the dead server');
      })();
      failure = await within(90_000, 'the write loop after the redis kill', errorOf(loop)).catch((e: Error) => {
        problems.push(e.message);
        return undefined;
      });
      const took = killedAt ? Date.now() - killedAt : NaN;
      console.log(`[redis-crash] loop error ${took} ms after the kill: ${(failure as Error | undefined)?.message}`);
      if (failure !== undefined && !(failure instanceof MetaError && failure.errno === 5))
        problems.push(`expected a MetaError with errno 5 (EIO), got ${String(failure)}`);
      if (failure !== undefined && took > 60_000) problems.push(`the error came ${took} ms after the kill (> 60 s)`);
    } finally {
      // A loop still stuck past the deadline must not go on writing once the server is back.
      stopLoop = true;
      const t0 = Date.now();
      await within(30_000, 'closing our client with redis down', ours.close()).catch((e: Error) => problems.push(e.message));
      console.log(`[redis-crash] close with redis down took ${Date.now() - t0} ms`);
    }
    expect(killedAt, 'the server was killed').toBeDefined();
    expect(done.size).toBeGreaterThanOrEqual(16);
    expect(problems).toEqual([]);
  }, 180_000);

  it('after a restart, juicefs fsck is clean and every file whose close succeeded is intact', async () => {
    const r = need(rr, 'redis');
    expect(killedAt, 'previous step killed the server').toBeDefined();
    await r.start();
    const f = await jfsFsck(url);
    expect(f.ok, f.output.split('\n').slice(-20).join('\n')).toBe(true);
    const g = await jfsGc(url);
    // Blocks uploaded for a slice whose commit never happened may be left for gc (reported, not an error).
    console.log(`[redis-crash] ${done.size} files closed before the crash; gc after restart: ${g.leaked.count} leaked objects`);
    const ours = await openOurs(url, { readOnly: true });
    try {
      const problems: string[] = [];
      for (const [name, data] of done) {
        const ino = (await ours.vfs.lookup(CTX, ROOT_INODE, Buffer.from(name))).ino;
        const got = await readFileEngine(ours.meta, ours.blocks, ino, (await ours.meta.getAttr(ino)).length);
        const d = describeDiff(name, data, got);
        if (d) problems.push(d);
      }
      // Whatever else exists (the file in flight) must be readable: no slice without its blocks.
      for (const e of await ours.meta.readdir(CTX, ROOT_INODE, true)) {
        const name = e.name.toString();
        if (done.has(name)) continue;
        const err = await errorOf(readFileEngine(ours.meta, ours.blocks, e.ino, e.attr!.length));
        if (err) problems.push(`${name} (in flight at the crash, ${e.attr!.length} bytes) is unreadable: ${(err as Error).message}`);
      }
      expect(problems).toEqual([]);
    } finally {
      await ours.close();
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

describe('object store failing in the middle of an upload (fault wrapper)', () => {
  let url = '';

  it('the write fails with EIO, no slice is committed for unstored blocks, fsck/gc stay clean', async () => {
    const r = need(redis, 'redis');
    url = `${r.url}/4`;
    await ourFormat({ metaUrl: url, name: 'put-fault', storage: 'file', bucket: `${work}/objects-fault`, compression: 'lz4', trashDays: 0 });
    let fault: FaultObjectStore | undefined;
    const ours = await openOurs(url, { retries: 1, wrapObjects: (s: ObjectStore) => (fault = new FaultObjectStore(s)) });
    const good = bytes('fault-good', 5 * MiB + 1);
    const bad = bytes('fault-bad', 12 * MiB + 5);
    let badIno: Ino = 0n;
    try {
      const goodIno = await vfsWriteFile(ours, 'good', good);
      // From now on the first PUT succeeds and every later one fails.
      need(fault, 'fault store').failNext(1_000_000, ['put'], 1);
      const d = new VfsDriver(ours.vfs);
      const writes = [];
      for (let off = 0; off < bad.length; off += MiB) writes.push({ off, data: bad.subarray(off, off + MiB) });
      const err = await within(60_000, 'writing through a failing store', errorOf(d.writeFile('bad', writes)));
      expect(err, 'the write/flush/close of a file whose blocks cannot be stored must fail').toBeInstanceOf(MetaError);
      expect((err as MetaError).errno).toBe(5);
      fault!.up();
      badIno = (await ours.vfs.lookup(CTX, ROOT_INODE, Buffer.from('bad'))).ino;
      // No slice for the failed data: the file is still empty and its chunk has no data records.
      const segs = await ours.meta.readChunk(badIno, 0);
      expect(segs.filter((s) => s.id !== 0)).toEqual([]);
      expect((await ours.meta.getAttr(badIno)).length).toBe(0);
      // The good file is untouched.
      const got = await readFileEngine(ours.meta, ours.blocks, goodIno, good.length);
      expect(describeDiff('good', good, got)).toBeUndefined();
    } finally {
      fault?.up();
      await ours.close();
    }
    const f = await jfsFsck(url);
    expect(f.ok, f.output.split('\n').slice(-20).join('\n')).toBe(true);
    const g = await jfsGc(url);
    // The one block that was stored before the failure belongs to an aborted slice: it must be deleted.
    expect(g.leaked.count, g.output.split('\n').slice(-5).join('\n')).toBe(0);
  }, 120_000);
});

describe('the S3 server stopped in the middle of an upload', () => {
  let s3: S3Handle | undefined;
  afterAll(async () => {
    await s3?.stop();
  });

  it('writes fail with EIO within bounded time and no slice is committed', async () => {
    const r = need(redis, 'redis');
    const url = `${r.url}/5`;
    s3 = await startS3();
    await s3.createBucket('stopme');
    await ourFormat({
      metaUrl: url,
      name: 's3-stop',
      storage: 's3',
      bucket: s3.bucketUrl('stopme'),
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      compression: 'none',
      trashDays: 0,
    });
    const ours = await openOurs(url, { retries: 1 });
    const data = bytes('s3-stop', 12 * MiB + 5);
    let ino: Ino = 0n;
    const t0 = Date.now();
    try {
      const c = await ours.vfs.create(CTX, ROOT_INODE, Buffer.from('f'), 0o644, 0, O_WRONLY | O_CREAT);
      ino = c.ino;
      const err = await within(
        150_000,
        'writing with S3 gone',
        errorOf(
          (async () => {
            try {
              for (let off = 0; off < data.length; off += MiB) {
                await ours.vfs.write(CTX, ino, c.fh, off, data.subarray(off, off + MiB));
                if (off === 0) await s3!.stop(); // gone before the first block is complete
              }
              await ours.vfs.flush(CTX, ino, c.fh, 0n);
            } finally {
              await ours.vfs.release(CTX, ino, c.fh).catch(() => undefined);
            }
          })(),
        ),
      );
      console.log(`[s3-stop] error after ${Date.now() - t0} ms: ${(err as Error)?.message}`);
      expect(err).toBeInstanceOf(MetaError);
      expect((err as MetaError).errno).toBe(5);
      const segs = await ours.meta.readChunk(ino, 0);
      expect(segs.filter((s) => s.id !== 0)).toEqual([]);
      expect((await ours.meta.getAttr(ino)).length).toBe(0);
    } finally {
      await within(60_000, 'closing with S3 down', ours.close()).catch(() => undefined);
    }
  }, 240_000);
});
