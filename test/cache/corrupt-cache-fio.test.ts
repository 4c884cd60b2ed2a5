/**
 * "A cached read never returns wrong bytes" (product.md 7) through a real kernel mount: fio writes
 * with verify=crc32c into a volume mounted with the interactive profile (`artifacts mount`, real
 * Redis, file object store), a read pass fills the disk cache, the volume is unmounted, cache files
 * are damaged behind its back (bytes flipped in the middle, files truncated), and after a remount
 * fio --verify_only must find every block intact: each damaged file is detected (counted in
 * `.stats`), dropped and refetched from the object store, never served.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockLengthOfKey, verifyCacheFile } from '../../chunkstore/cache/checksum.js';
import { type ArtifactsMount, mountArtifacts, sh, startStack, type Stack } from '../posix/lib/stack.js';
import { listFiles } from './util.js';

/** fio jobs: the same definitions write first and `--verify_only` later (same seeds). */
const JOBS: Record<string, string[]> = {
  seq: ['--rw=write', '--bsrange=64k-1m', '--size=16M'],
  rand: ['--rw=randwrite', '--bsrange=64k-1m', '--size=16M'],
};

function fioArgs(dir: string, job: string, extra: string[]): string[] {
  return [
    `--name=${job}`,
    `--directory=${dir}`,
    `--filename=${job}.bin`,
    '--ioengine=psync',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--randrepeat=1',
    ...JOBS[job]!,
    ...extra,
  ];
}

const MOUNT_ARGS = ['--cache-profile', 'interactive', '--cache-size', '1G'];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `artifacts_blockcache_<name>{tier="disk"}` from the mount's `.stats`. */
async function diskStat(mp: string, name: string): Promise<number> {
  const text = await fs.readFile(path.join(mp, '.stats'), 'utf8');
  const m = new RegExp(`^artifacts_blockcache_${name}\\{tier="disk"\\} (\\d+)`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} for the disk tier in .stats:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
}

describe('fio verify over a damaged disk cache, through the kernel', { timeout: 300_000 }, () => {
  let stack: Stack;
  let m: ArtifactsMount | undefined;
  let mp: string;
  let cacheDir: string;
  let dir: string;

  beforeAll(async () => {
    stack = await startStack('corrupt-cache');
    mp = path.join(stack.dir, 'mnt');
    cacheDir = path.join(stack.dir, 'cache');
    m = await mountArtifacts(stack.metaUrl, mp, { cacheDir, extraArgs: MOUNT_ARGS });
    dir = path.join(mp, 'fio');
    await fs.mkdir(dir);
  }, 180_000);

  afterAll(async () => {
    try {
      await m?.unmount();
    } finally {
      await stack?.stop();
    }
  });

  it('every read after damaging the cache is right; the damaged files were dropped and refetched', async () => {
    for (const job of Object.keys(JOBS)) {
      const r = await sh('fio', fioArgs(dir, job, ['--do_verify=1']), { timeoutMs: 180_000, cwd: stack.dir });
      expect(r.code, `fio ${job}:\n${r.stdout}\n${r.stderr}`).toBe(0);
    }
    // Whole-file reads in this mount fill the disk cache with every block, then a clean unmount
    // drains the cache's write queue.
    const sums = new Map<string, string>();
    for (const job of Object.keys(JOBS)) sums.set(job, sha(await fs.readFile(path.join(dir, `${job}.bin`))));
    await m!.unmount();
    m = undefined;

    const [uuid] = await fs.readdir(cacheDir);
    const raw = path.join(cacheDir, uuid!, 'raw');
    const files = [...(await listFiles(raw)).keys()].filter((k) => !k.endsWith('.tmp')).sort();
    expect(files.length).toBeGreaterThanOrEqual(8);
    // Damage two of every three cache files: flip bytes mid-file, or cut the file short.
    const flipped: string[] = [];
    const truncated: string[] = [];
    for (let i = 0; i < files.length; i++) {
      const p = path.join(raw, files[i]!);
      const b = await fs.readFile(p);
      if (i % 3 === 0) {
        const at = Math.floor(blockLengthOfKey(files[i]!) / 2);
        b[at] ^= 0x5a;
        b[at + 1] ^= 0xff;
        await fs.writeFile(p, b);
        flipped.push(files[i]!);
      } else if (i % 3 === 1) {
        await fs.truncate(p, Math.floor(b.length / 2));
        truncated.push(files[i]!);
      }
    }

    m = await mountArtifacts(stack.metaUrl, mp, { cacheDir, extraArgs: MOUNT_ARGS });
    for (const job of Object.keys(JOBS)) {
      const r = await sh('fio', fioArgs(dir, job, ['--verify_only']), { timeoutMs: 180_000, cwd: stack.dir });
      expect(r.code, `fio --verify_only ${job}:\n${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stderr).not.toMatch(/verify failed|bad magic|crc32c: verify/i);
    }
    for (const job of Object.keys(JOBS)) expect(sha(await fs.readFile(path.join(dir, `${job}.bin`)))).toBe(sums.get(job));
    // Every damaged file was read, found bad and dropped (a file is counted once: it is gone after).
    expect(await diskStat(m.mountpoint, 'corrupt_total')).toBe(flipped.length + truncated.length);
    await m.unmount();
    m = undefined;

    // What the cache holds now is good: the damaged blocks were refetched and cached anew.
    const after = await listFiles(raw);
    for (const k of [...flipped, ...truncated]) {
      const len = blockLengthOfKey(k);
      expect(after.has(k), `${k} cached again`).toBe(true);
      expect(verifyCacheFile(await fs.readFile(path.join(raw, k)), len), `${k} verifies`).toBe(true);
    }
  });
});
