/**
 * The disk tier on a real, tiny filesystem: an 8 MiB tmpfs this test mounts (needs root, as on the
 * development machines and CI) and always unmounts.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cacheFileLength } from '../../chunkstore/cache/checksum.js';
import { DiskBlockCache } from '../../chunkstore/cache/disk.js';
import { block, blockKey, listFiles, scratchDir, UUID } from './util.js';

const KiB = 1024;
const MiB = 1024 * KiB;
let mnt = '';
let mounted = false;
const caches: DiskBlockCache[] = [];

beforeAll(async () => {
  mnt = await scratchDir('tmpfs');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  mounted = true;
});

afterEach(async () => {
  for (const c of caches.splice(0)) await c.close();
  for (const name of await fsp.readdir(mnt)) await fsp.rm(join(mnt, name), { recursive: true, force: true });
});

afterAll(async () => {
  if (mounted) execFileSync('umount', [mnt]);
  await fsp.rm(mnt, { recursive: true, force: true });
});

async function freeBytes(): Promise<{ avail: number; total: number }> {
  const st = await fsp.statfs(mnt);
  return { avail: st.bavail * st.bsize, total: st.blocks * st.bsize };
}

describe('disk block cache on an 8 MiB tmpfs', () => {
  it('keeps freeRatio of the filesystem free, evicting instead of filling it', async () => {
    const c = new DiskBlockCache({ dir: join(mnt, 'cache'), uuid: UUID, capacityBytes: 100 * MiB, freeRatio: 0.5, statfsIntervalMs: 0 });
    caches.push(c);
    await c.ready;
    const LEN = 512 * KiB;
    let minAvail = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 30; i++) {
      c.put(blockKey(i + 1, 0, LEN), block(LEN));
      await c.idle();
      minAvail = Math.min(minAvail, (await freeBytes()).avail);
    }
    const { total } = await freeBytes();
    const s = c.stats();
    expect(s.errors).toBe(0);
    expect(s.bypassing).toBe(0);
    expect(s.evictions).toBeGreaterThan(10);
    expect(s.inserts).toBe(30);
    // Half of 8 MiB stays free, give or take the one block being written.
    expect(minAvail).toBeGreaterThanOrEqual(total * 0.5 - (cacheFileLength(LEN) + 4096));
    expect(s.capacityBytes).toBeLessThanOrEqual(total * 0.5);
    expect((await c.get(blockKey(30, 0, LEN)))!.length).toBe(LEN);
  });

  it('with freeRatio 0, fills the filesystem by its own writes without ever hitting ENOSPC', async () => {
    const c = new DiskBlockCache({ dir: join(mnt, 'cache'), uuid: UUID, capacityBytes: 100 * MiB, freeRatio: 0, statfsIntervalMs: 0 });
    caches.push(c);
    await c.ready;
    for (let i = 0; i < 40; i++) c.put(blockKey(i + 1, 0, 512 * KiB), block(512 * KiB));
    await c.idle();
    const s = c.stats();
    expect(s.errors).toBe(0);
    expect(s.inserts).toBeGreaterThan(30);
    expect(s.entries).toBeGreaterThanOrEqual(10);
  });

  it('on ENOSPC stops inserting for a while, keeps serving, then resumes', async () => {
    // A long statfs interval keeps the cache's view of free space stale, so the filler written
    // behind its back makes the next write fail with ENOSPC for real.
    const c = new DiskBlockCache({
      dir: join(mnt, 'cache'),
      uuid: UUID,
      capacityBytes: 100 * MiB,
      freeRatio: 0,
      statfsIntervalMs: 3600_000,
      bypassMs: 500,
    });
    caches.push(c);
    await c.ready;
    const LEN = 1 * MiB;
    const kept = [block(LEN), block(LEN)];
    kept.forEach((b, i) => c.put(blockKey(i + 1, 0, LEN), b));
    await c.idle();
    expect(c.stats().inserts).toBe(2);

    // Fill the filesystem (minus 256 KiB) from outside the cache.
    const filler = join(mnt, 'filler');
    const { avail } = await freeBytes();
    await fsp.writeFile(filler, Buffer.alloc(avail - 256 * KiB));

    c.put(blockKey(10, 0, LEN), block(LEN));
    await c.idle();
    let s = c.stats();
    expect(s.errors).toBe(1);
    expect(s.bypassing).toBe(1);
    expect(s.inserts).toBe(2);
    // No half-written file is left behind, and what was cached is still served.
    const files = [...(await listFiles(join(mnt, 'cache'))).keys()];
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    for (let i = 0; i < kept.length; i++) {
      expect((await c.get(blockKey(i + 1, 0, LEN)))!.equals(kept[i]!)).toBe(true);
    }
    // While bypassing, inserts are skipped without touching the disk.
    const skippedBefore = s.skipped;
    c.put(blockKey(11, 0, 4096), block(4096));
    await c.idle();
    s = c.stats();
    expect(s.skipped).toBe(skippedBefore + 1);
    expect(s.errors).toBe(1);

    // Space comes back and the bypass period ends: inserts resume.
    await fsp.unlink(filler);
    await new Promise((r) => setTimeout(r, 600));
    expect(c.stats().bypassing).toBe(0);
    const fresh = block(LEN);
    c.put(blockKey(12, 0, LEN), fresh);
    await c.idle();
    expect(c.stats().inserts).toBe(3);
    expect((await c.get(blockKey(12, 0, LEN)))!.equals(fresh)).toBe(true);
  });
});
