/**
 * The disk cache layout is upstream's (juicefs-format.md 6.1), proven both ways with the real
 * `juicefs` 1.4.2 over FUSE:
 * 1. blocks cached by `juicefs mount` are found by our startup scan and served, verified, by us;
 * 2. a block file written by us is accepted by `juicefs mount` (which verifies checksums by
 *    default) when the object itself has been deleted from the store, so our file is the only
 *    copy it can read.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskBlockCache } from '../../chunkstore/cache/disk.js';
import { format, mount, type JuicefsMount } from '../helpers/juicefs.js';
import { redisCommand, startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';
import { listFiles } from './util.js';

const MiB = 1 << 20;
const SIZE = 10 * MiB + 123; // blocks of 4 MiB, 4 MiB and 2 MiB + 123
let redis: RedisHandle;
let meta = '';
let objects = '';
let uuid = '';
const mounts: JuicefsMount[] = [];

beforeAll(async () => {
  redis = await startRedis();
  meta = `${redis.url}/1`;
  objects = await tmpDir('cache-compat-objects');
  await format(meta, 'vol', { storage: 'file', bucket: objects + '/' });
}, 60_000);

afterAll(async () => {
  for (const m of mounts) await m.unmount();
  await redis?.stop();
});

async function volumeUuid(): Promise<string> {
  // redisCommand opens one connection per command, so read the setting from db 1 with a script.
  const v = await redisCommand(redis.port, ['EVAL', "redis.call('SELECT', 1) return redis.call('GET', 'setting')", '0']);
  return JSON.parse(String(v)).UUID as string;
}

/** Cache files (relative block keys under raw/) that have reached their full size. */
async function cachedBlocks(cacheDir: string): Promise<Map<string, number>> {
  const files = await listFiles(join(cacheDir, uuid, 'raw'));
  const out = new Map<string, number>();
  for (const [key, size] of files) {
    const bsize = Number(key.slice(key.lastIndexOf('_') + 1));
    if (!key.endsWith('.tmp') && size === bsize + 4 * Math.ceil(bsize / 32768)) out.set(key, size);
  }
  return out;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('disk cache layout shared with upstream juicefs', () => {
  it('reads juicefs-written cache files and writes files juicefs accepts', async () => {
    uuid = await volumeUuid();
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    const content = randomBytes(SIZE);

    // 1. juicefs writes the file and caches its blocks (--cache-large-write: full blocks too).
    const mp1 = await tmpDir('cache-compat-mnt1');
    const m1 = await mount(meta, mp1, ['--cache-size', '100', '--cache-large-write']);
    mounts.push(m1);
    await fsp.writeFile(join(mp1, 'data.bin'), content);
    const blocks = await waitFor('juicefs to cache 3 blocks', async () => {
      const b = await cachedBlocks(m1.cacheDir);
      return b.size === 3 ? b : undefined;
    });
    await m1.unmount();
    const cacheDir = m1.cacheDir;

    const keys = [...blocks.keys()].sort((a, b) => {
      const [ia, xa] = a.split('/').pop()!.split('_').map(Number) as [number, number];
      const [ib, xb] = b.split('/').pop()!.split('_').map(Number) as [number, number];
      return ia - ib || xa - xb;
    });
    expect(keys.map((k) => k.split('_').pop())).toEqual([String(4 * MiB), String(4 * MiB), String(2 * MiB + 123)]);

    // Our scan finds them and every block verifies and matches the file.
    const ours = new DiskBlockCache({ dir: cacheDir, uuid, capacityBytes: 1024 * MiB });
    await ours.ready;
    expect(ours.stats().entries).toBe(3);
    const got = await Promise.all(keys.map((k) => ours.get(k)));
    expect(got.every((b) => b !== undefined)).toBe(true);
    expect(Buffer.concat(got as Buffer[]).equals(content)).toBe(true);
    expect(ours.stats()).toMatchObject({ hits: 3, corrupt: 0 });

    // 2. Replace juicefs's copy of the middle block with ours and delete the object itself.
    const middle = keys[1]!;
    await fsp.unlink(join(cacheDir, uuid, 'raw', middle));
    ours.remove(middle); // forget the index entry (the file is already gone)
    ours.put(middle, content.subarray(4 * MiB, 8 * MiB));
    await ours.close();
    const ourFile = await fsp.readFile(join(cacheDir, uuid, 'raw', middle));
    expect(ourFile.length).toBe(4 * MiB + 512);
    await fsp.unlink(join(objects, 'vol', middle));

    const mp2 = await tmpDir('cache-compat-mnt2');
    const m2 = await mount(meta, mp2, ['--cache-dir', cacheDir, '--cache-size', '100']);
    mounts.push(m2);
    const readBack = await fsp.readFile(join(mp2, 'data.bin'));
    expect(readBack.length).toBe(SIZE);
    expect(readBack.equals(content)).toBe(true);
    await m2.unmount();
    // juicefs kept our file (a checksum failure would have deleted it).
    expect((await fsp.readFile(join(cacheDir, uuid, 'raw', middle))).equals(ourFile)).toBe(true);
    const log = await fsp.readFile(m2.logFile, 'utf8').catch(() => '');
    expect(log).not.toMatch(/checksum mismatch|<FATAL>/i);

    // Control: the same file with one flipped bit is refused by juicefs, and with the object gone
    // the read fails. So the success above really came from our file, checksums included.
    const bad = Buffer.from(ourFile);
    bad[1_000_000]! ^= 0x01;
    await fsp.writeFile(join(cacheDir, uuid, 'raw', middle), bad, { mode: 0o600 });
    const mp3 = await tmpDir('cache-compat-mnt3');
    const m3 = await mount(meta, mp3, ['--cache-dir', cacheDir, '--cache-size', '100', '--io-retries', '1']);
    mounts.push(m3);
    await expect(fsp.readFile(join(mp3, 'data.bin'))).rejects.toThrow(/EIO|input\/output/i);
    await m3.unmount();
  }, 180_000);
});
