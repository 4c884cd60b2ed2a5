/**
 * Crash: `kill -9` of the artifacts mount daemon in the middle of a write loop.
 *   - the kernel mount left behind is stale (ENOTCONN), and the next `artifacts mount` of the same
 *     path cleans it and mounts;
 *   - upstream `juicefs fsck` finds the volume consistent (no slice without its blocks);
 *   - every file that was fsync'ed (and renamed into place) before the kill is intact, byte for
 *     byte, and an O_APPEND journal holds every fsync'ed record;
 *   - the file being written without fsync is a prefix-consistent mix of committed writes: it never
 *     contains bytes that were not written.
 * The volume is formatted by our own CLI (`artifacts format`), on a real redis-server and a file
 * object store.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsck } from '../helpers/juicefs.js';
import { type RedisHandle, startRedis, tmpDir } from '../helpers/servers.js';
import { isMountPoint } from '../../fs/fuse/mount.js';
import { PYTHON } from './lib/posix.js';
import { type ArtifactsMount, isStale, mountArtifacts, runCli } from './lib/stack.js';

/** The writer: fsync'ed files renamed into place, a journal, and an unsynced stream. */
const WRITER = String.raw`
import hashlib, os, random, sys
mp, log = sys.argv[1], sys.argv[2]
lf = open(log, 'a')
journal = os.open(os.path.join(mp, 'journal.txt'), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
stream = os.open(os.path.join(mp, 'unsynced.bin'), os.O_WRONLY | os.O_CREAT, 0o644)
i = 0
while True:
    i += 1
    rnd = random.Random(i)
    size = rnd.choice([0, 1, 4095, 65536, 100000, 1500000, 4194307])
    data = rnd.randbytes(size)
    name = 'f%05d' % i
    try:
        tmp = os.path.join(mp, 'tmp.' + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for off in range(0, size, 300000):
            os.write(fd, data[off:off + 300000])
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(mp, name))
        rec = ('%s %s %d\n' % (name, hashlib.sha256(data).hexdigest(), size)).encode()
        os.write(journal, rec)
        os.fsync(journal)
        # never fsync'ed: blocks of one byte value each, so any byte read back can be checked
        os.write(stream, bytes([i % 251 + 1]) * 200000)
    except OSError as e:
        print('stopped', i, e.errno, flush=True)
        break
    lf.write(rec.decode())
    lf.flush()
    os.fsync(lf.fileno())
    print('ok', i, flush=True)
`;

describe('kill -9 of the mount daemon during writes', { timeout: 240_000 }, () => {
  let redis: RedisHandle;
  let dir: string;
  let metaUrl: string;
  let mp: string;
  let m: ArtifactsMount | undefined;

  beforeAll(async () => {
    redis = await startRedis();
    dir = await tmpDir('posix-crash');
    await fs.chmod(dir, 0o755);
    metaUrl = `${redis.url}/2`;
    const f = await runCli(['format', metaUrl, 'crashvol', '--storage', 'file', '--bucket', path.join(dir, 'objects'), '--trash-days', '0']);
    expect(f.code, f.out).toBe(0);
    mp = path.join(dir, 'mnt');
  }, 180_000);

  afterAll(async () => {
    try {
      await m?.unmount();
    } finally {
      await redis?.stop();
    }
  });

  it('the next mount cleans the stale mount; fsck is clean; every fsync-ed file is intact', async () => {
    m = await mountArtifacts(metaUrl, mp);
    const first = m;
    const log = path.join(dir, 'writer.log');
    const writer = spawn(PYTHON, ['-c', WRITER, mp, log], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let okCount = 0;
    writer.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      okCount = (out.match(/^ok /gm) ?? []).length;
    });
    writer.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const writerDone = new Promise<number | null>((r) => writer.on('exit', (c) => r(c)));
    try {
      const deadline = Date.now() + 90_000;
      while (okCount < 12 && Date.now() < deadline && writer.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      expect(okCount, out).toBeGreaterThanOrEqual(12);
      await first.kill9(); // in the middle of the loop: the writer is inside some write or fsync
      const code = await Promise.race([writerDone, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
      expect(code, `the writer must see errors, not hang:\n${out.slice(-500)}`).not.toBe('hung');
      expect(out).toMatch(/stopped \d+ (107|103|5)\b/); // ENOTCONN (or ECONNABORTED / EIO)
    } finally {
      if (writer.exitCode === null) writer.kill('SIGKILL');
    }
    expect(await isStale(mp)).toBe(true);

    // Upstream's fsck on the volume as the crash left it (the dead client's session still listed).
    const f1 = await fsck(metaUrl);
    expect(f1.ok, f1.output).toBe(true);

    // Remount the same path: the stale mount is cleaned, the new one serves.
    m = await mountArtifacts(metaUrl, mp);
    expect(await isStale(mp)).toBe(false);
    const records = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '));
    expect(records.length).toBeGreaterThanOrEqual(12);
    for (const [name, sum, size] of records) {
      const data = await fs.readFile(path.join(mp, name!));
      expect(data.length, name).toBe(Number(size));
      expect(createHash('sha256').update(data).digest('hex'), name).toBe(sum);
    }
    // the journal holds every fsync'ed record, in order (a record written after the last logged one may follow)
    const journal = await fs.readFile(path.join(mp, 'journal.txt'), 'utf8');
    const logged = records.map((r) => `${r.join(' ')}\n`).join('');
    expect(journal.startsWith(logged), `journal:\n${journal.slice(0, 2000)}`).toBe(true);
    // the unsynced stream: whatever length survived, each 200,000-byte block is one value or zeros
    // (a committed slice or a hole), never foreign bytes
    const stream = await fs.readFile(path.join(mp, 'unsynced.bin'));
    for (let off = 0; off < stream.length; off += 200_000) {
      const blk = stream.subarray(off, off + 200_000);
      const want = (Math.floor(off / 200_000) + 1) % 251 + 1;
      for (const b of new Set(blk)) expect([0, want], `unsynced.bin at ${off}`).toContain(b);
    }
    // the new mount works for writes, and after a clean unmount fsck is still clean
    await fs.writeFile(path.join(mp, 'after-crash'), 'alive');
    expect(await fs.readFile(path.join(mp, 'after-crash'), 'utf8')).toBe('alive');
    // `artifacts unmount` (the CLI: SIGTERM to the daemon found through its state file)
    const u = await runCli(['unmount', mp], { XDG_STATE_HOME: path.join(dir, 'state') });
    expect(u.code, u.out).toBe(0);
    expect(await m.exited).toMatchObject({ code: 0 });
    await m.unmount(); // nothing left to do; releases the test's cleanup hooks
    m = undefined;
    expect(await isMountPoint(mp)).toBe(false);
    const f2 = await fsck(metaUrl);
    expect(f2.ok, f2.output).toBe(true);
  });
});
