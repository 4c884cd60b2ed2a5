/**
 * Data integrity through the kernel on the real stack with the S3 object store (SeaweedFS):
 * fio writes with verify=crc32c (sequential 1 MiB, random unaligned 1-128 KiB, two concurrent
 * jobs, an overwrite pass), checked once while written, and again with `--verify_only` after the
 * volume was unmounted and mounted again (data read back from S3, not from any cache: the second
 * mount gets a fresh, empty cache directory). Then stress-ng's file system stressors with --verify.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsck } from '../helpers/juicefs.js';
import { type ArtifactsMount, mountArtifacts, sh, startStack, type Stack } from './lib/stack.js';

/** fio jobs: the same definitions write+verify first and `--verify_only` later (same seeds). */
const JOBS: Record<string, string[]> = {
  seq: ['--rw=write', '--bs=1M', '--size=32M'],
  // random offsets, unaligned sizes between 1 KiB and 128 KiB (crosses block boundaries)
  rand: ['--rw=randwrite', '--bsrange=1k-128k', '--bs_unaligned=1', '--size=16M'],
  // two jobs writing their own files at once, 4 KiB random, with fsync every 32 writes
  par: ['--rw=randwrite', '--bs=4k', '--size=1M', '--numjobs=2', '--fsync=32'],
  // a first pass then an overwrite pass of the same file with another pattern: the later slices win
  over1: ['--rw=write', '--bs=256k', '--size=16M', '--verify_pattern=0x1badcafe'],
  over2: ['--rw=randwrite', '--bs=64k', '--size=16M', '--randseed=77'],
};

function fioArgs(dir: string, job: string, extra: string[]): string[] {
  const file = job === 'over2' ? 'over1' : job;
  const args = [
    `--name=${job}`,
    `--directory=${dir}`,
    ...(job === 'par' ? [] : [`--filename=${file}.bin`]),
    '--ioengine=psync',
    '--verify=crc32c',
    '--randrepeat=1',
    '--group_reporting',
    ...JOBS[job]!,
    ...extra,
  ];
  return args;
}

describe('data integrity on the S3-backed stack', { timeout: 240_000 }, () => {
  let stack: Stack;
  let m: ArtifactsMount | undefined;
  let dir: string;

  beforeAll(async () => {
    stack = await startStack('integrity', { s3: true, blockSizeKiB: 1024 });
    m = await mountArtifacts(stack.metaUrl, path.join(stack.dir, 'mnt'), { cacheDir: path.join(stack.dir, 'cache1') });
    dir = path.join(m.mountpoint, 'fio');
    await fs.mkdir(dir);
  }, 180_000);

  afterAll(async () => {
    try {
      await m?.unmount();
    } finally {
      await stack?.stop();
    }
  });

  it('fio: sequential, random unaligned, parallel and overwrite jobs verify (crc32c) while written', async () => {
    for (const job of ['seq', 'rand', 'par', 'over1', 'over2']) {
      // do_verify: read back and check every block right after the job's writes
      const r = await sh('fio', fioArgs(dir, job, ['--do_verify=1']), { timeoutMs: 180_000, cwd: stack.dir });
      expect(r.code, `fio ${job}:\n${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/err= 0/);
      expect(r.stderr).not.toMatch(/verify failed|bad magic|crc32c: verify/i);
    }
    const st = await fs.stat(path.join(dir, 'seq.bin'));
    expect(st.size).toBe(32 << 20);
  });

  it('after unmount and a fresh mount (empty cache), fio --verify_only finds every block intact', async () => {
    const before = await sums(dir);
    await m!.unmount();
    m = undefined;
    const f = await fsck(stack.metaUrl);
    expect(f.ok, f.output).toBe(true);
    m = await mountArtifacts(stack.metaUrl, path.join(stack.dir, 'mnt'), { cacheDir: path.join(stack.dir, 'cache2') });
    for (const job of ['seq', 'rand', 'par', 'over2']) {
      const r = await sh('fio', fioArgs(dir, job, ['--verify_only']), { timeoutMs: 180_000, cwd: stack.dir });
      expect(r.code, `fio --verify_only ${job}:\n${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stderr).not.toMatch(/verify failed|bad magic/i);
    }
    // and byte for byte what the first mount had
    expect(await sums(dir)).toEqual(before);
  });

  it('fio --verify_only detects a corrupted block (the check can fail)', async () => {
    const fh = await fs.open(path.join(dir, 'seq.bin'), 'r+');
    try {
      await fh.write(Buffer.from('CORRUPTED'), 0, 9, 5 << 20);
    } finally {
      await fh.close();
    }
    const r = await sh('fio', fioArgs(dir, 'seq', ['--verify_only']), { timeoutMs: 120_000, cwd: stack.dir });
    expect(r.code).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/verify failed|bad magic header/);
  });

  it('stress-ng file system stressors with --verify pass on the mount', async () => {
    const work = path.join(m!.mountpoint, 'stress');
    await fs.mkdir(work);
    const r = await sh(
      'stress-ng',
      [
        '--temp-path', work,
        '--hdd', '2', '--hdd-bytes', '16M', '--hdd-write-size', '64K',
        '--seek', '1', '--seek-size', '8M',
        // (link, symlink, xattr and filename are left out: each of their bogo ops makes thousands
        // of entries, too slow for CI; test/posix covers those calls itself)
        '--rename', '1', '--dir', '1',
        '--flock', '2', '--lockf', '2',
        '--fallocate', '1', '--fallocate-bytes', '8M',
        '--utime', '1', '--chmod', '1',
        '--verify', '--timeout', '10s', '--metrics-brief', '--log-brief',
      ],
      { timeoutMs: 120_000, cwd: stack.dir },
    );
    const out = `${r.stdout}${r.stderr}`;
    expect(r.code, out).toBe(0);
    expect(out).toMatch(/successful run completed/);
    // each stressor really ran (bogo ops > 0 in --metrics-brief)
    for (const s of ['hdd', 'seek', 'rename', 'dir', 'flock', 'lockf', 'utime']) expect(out, s).toMatch(new RegExp(`^(stress-ng: info:\\s+\\[\\d+\\]\\s+)?${s}\\s+[1-9]\\d*\\s`, 'm'));
    expect(out).not.toMatch(/fail(ed)?:\s*[1-9]|verif(y|ication) (failed|error)/i);
  });
});

/** sha256 of every file under `dir` (relative path → hex). */
async function sums(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await fs.readdir(dir)).sort()) {
    const h = createHash('sha256');
    h.update(await fs.readFile(path.join(dir, name)));
    out[name] = h.digest('hex');
  }
  return out;
}
