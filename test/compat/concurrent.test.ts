/**
 * Two live clients on one volume: the real `juicefs mount` and our VFS at the same time.
 *
 * - close-to-open consistency both ways (upstream drops its cached chunk maps only when it sees a
 *   new mtime, so our commits must change mtime; we must re-read on open),
 * - namespace changes seen by the other client (after upstream's 1 s kernel entry/attr cache),
 * - BSD flock and POSIX record locks conflict across the two clients (same lockf/lockp encoding),
 * - `juicefs status` lists our session.
 *
 * Run: npx vitest run test/compat/concurrent.test.ts
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { F_RDLCK, F_UNLCK, F_WRLCK, type Ino, MetaError, ROOT_INODE } from '../../metadata/types.js';
import { O_RDONLY, O_RDWR, O_WRONLY } from '../../fs/vfs.js';
import { format as jfsFormat, mount, runJuicefs, type JuicefsMount } from '../helpers/juicefs.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';
import { bytes, describeDiff } from './lib/content.js';
import { py } from './lib/mountfs.js';
import { CTX, openOurs, type OurVolume } from './lib/ours.js';
import { assertNoFatal } from './lib/steps.js';

const MiB = 1 << 20;
const O_CREAT = 0o100;
/** Upstream's default kernel entry/attr cache is 1 s. */
const CACHE_WAIT_MS = 1200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: RedisHandle | undefined;
let jfs: JuicefsMount | undefined;
let ours: OurVolume | undefined;
let url = '';

beforeAll(async () => {
  const work = await tmpDir('compat-concurrent');
  redis = await startRedis();
  url = `${redis.url}/1`;
  await jfsFormat(url, 'concurrent', { storage: 'file', bucket: `${work}/objects`, trashDays: 0 });
  jfs = await mount(url, path.join(work, 'mnt'), ['--enable-xattr']);
  ours = await openOurs(url);
}, 120_000);

afterAll(async () => {
  await ours?.close().catch(() => undefined);
  if (jfs) {
    await jfs.unmount();
    assertNoFatal(jfs.logFile);
  }
  await redis?.stop();
}, 60_000);

const J = (p: string) => path.join(jfs!.mountpoint, p);

async function lookup(name: string): Promise<Ino> {
  return (await ours!.vfs.lookup(CTX, ROOT_INODE, Buffer.from(name))).ino;
}

async function ourRead(name: string): Promise<Buffer> {
  const ino = await lookup(name);
  const { fh } = await ours!.vfs.open(CTX, ino, O_RDONLY);
  try {
    const parts: Buffer[] = [];
    for (let off = 0; ; ) {
      const b = await ours!.vfs.read(CTX, ino, fh, off, 4 * MiB);
      if (b.length === 0) break;
      parts.push(Buffer.from(b));
      off += b.length;
    }
    return Buffer.concat(parts);
  } finally {
    await ours!.vfs.release(CTX, ino, fh);
  }
}

async function ourPatch(name: string, off: number, data: Buffer): Promise<void> {
  const ino = await lookup(name);
  const { fh } = await ours!.vfs.open(CTX, ino, O_WRONLY);
  try {
    await ours!.vfs.write(CTX, ino, fh, off, data);
    await ours!.vfs.flush(CTX, ino, fh, 0n);
  } finally {
    await ours!.vfs.release(CTX, ino, fh);
  }
}

describe('juicefs mount and our VFS on the same volume at the same time', () => {
  it('close-to-open: our overwrite is seen by the juicefs mount on its next open (after its attr cache)', async () => {
    const data = bytes('c2o-1', 8 * MiB + 5);
    await fs.writeFile(J('shared'), data);
    // juicefs reads it once: its chunk map of the file is now cached.
    expect(describeDiff('first read', data, await fs.readFile(J('shared')))).toBeUndefined();
    expect(describeDiff('our first read', data, await ourRead('shared'))).toBeUndefined();
    const patch = bytes('c2o-patch', 3000);
    await ourPatch('shared', 5 * MiB - 1000, patch);
    patch.copy(data, 5 * MiB - 1000);
    await sleep(CACHE_WAIT_MS);
    expect(describeDiff('juicefs read after our close', data, await fs.readFile(J('shared')))).toBeUndefined();
  });

  it('close-to-open: a juicefs append/overwrite is seen by our next open', async () => {
    const data = Buffer.from(await ourRead('shared'));
    const fh = await fs.open(J('shared'), 'r+');
    const more = bytes('c2o-2', 70_000);
    const patch = bytes('c2o-3', 10);
    try {
      await fh.write(more, 0, more.length, data.length);
      await fh.write(patch, 0, patch.length, 123);
    } finally {
      await fh.close();
    }
    const expected = Buffer.concat([data, more]);
    patch.copy(expected, 123);
    expect(describeDiff('our read after juicefs close', expected, await ourRead('shared'))).toBeUndefined();
  });

  it('namespace changes are seen by the other client', async () => {
    // ours → juicefs
    const r = await ours!.vfs.create(CTX, ROOT_INODE, Buffer.from('made-by-us'), 0o640, 0, O_WRONLY | O_CREAT);
    await ours!.vfs.write(CTX, r.ino, r.fh, 0, Buffer.from('hello'));
    await ours!.vfs.flush(CTX, r.ino, r.fh, 0n);
    await ours!.vfs.release(CTX, r.ino, r.fh);
    await ours!.vfs.mkdir(CTX, ROOT_INODE, Buffer.from('dir-by-us'), 0o755, 0);
    await sleep(CACHE_WAIT_MS);
    expect(await fs.readFile(J('made-by-us'), 'utf8')).toBe('hello');
    expect((await fs.stat(J('made-by-us'))).mode & 0o7777).toBe(0o640);
    await ours!.vfs.rename(CTX, ROOT_INODE, Buffer.from('made-by-us'), ROOT_INODE, Buffer.from('renamed-by-us'), 0);
    await sleep(CACHE_WAIT_MS);
    await expect(fs.stat(J('made-by-us'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fs.readFile(J('renamed-by-us'), 'utf8')).toBe('hello');
    // juicefs → ours
    await fs.writeFile(J('dir-by-us/made-by-juicefs'), 'world');
    await fs.unlink(J('renamed-by-us'));
    const d = await ours!.vfs.lookup(CTX, ROOT_INODE, Buffer.from('dir-by-us'));
    const f = await ours!.vfs.lookup(CTX, d.ino, Buffer.from('made-by-juicefs'));
    expect(f.attr.length).toBe(5);
    await expect(ours!.vfs.lookup(CTX, ROOT_INODE, Buffer.from('renamed-by-us'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await ours!.vfs.getattr(CTX, d.ino)).attr.nlink).toBe(2);
  });

  it('BSD flock conflicts across the clients, both ways', async () => {
    await fs.writeFile(J('flocked'), 'x');
    await sleep(CACHE_WAIT_MS);
    const ino = await lookup('flocked');
    const fd = (await py.call({ op: 'open', path: J('flocked'), flags: 'rw' })) as number;
    const { fh } = await ours!.vfs.open(CTX, ino, O_RDWR);
    const owner = 0x1234n;
    try {
      // juicefs holds an exclusive flock → ours (shared or exclusive, non-blocking) must fail.
      await py.call({ op: 'flock', fd, how: 'ex' });
      const e1 = await ours!.vfs.flock(CTX, ino, fh, owner, F_WRLCK, false).then(() => undefined, (e: unknown) => e);
      expect(e1, 'our exclusive flock while juicefs holds one').toBeInstanceOf(MetaError);
      expect((e1 as MetaError).code).toBe('EAGAIN');
      const e2 = await ours!.vfs.flock(CTX, ino, fh, owner, F_RDLCK, false).then(() => undefined, (e: unknown) => e);
      expect((e2 as MetaError | undefined)?.code, 'our shared flock while juicefs holds an exclusive one').toBe('EAGAIN');
      await py.call({ op: 'flock', fd, how: 'un' });
      // ours holds an exclusive flock → juicefs must fail; after our unlock it succeeds.
      await ours!.vfs.flock(CTX, ino, fh, owner, F_WRLCK, false);
      await expect(py.call({ op: 'flock', fd, how: 'sh' })).rejects.toMatchObject({ code: expect.stringMatching(/EAGAIN|EWOULDBLOCK/) });
      await ours!.vfs.flock(CTX, ino, fh, owner, F_UNLCK, false);
      await py.call({ op: 'flock', fd, how: 'sh' });
      // Shared + shared is fine.
      await ours!.vfs.flock(CTX, ino, fh, owner, F_RDLCK, false);
      await ours!.vfs.flock(CTX, ino, fh, owner, F_UNLCK, false);
      await py.call({ op: 'flock', fd, how: 'un' });
    } finally {
      await py.call({ op: 'close', fd }).catch(() => undefined);
      await ours!.vfs.release(CTX, ino, fh, owner, true);
    }
  });

  it('POSIX record locks conflict across the clients by range, both ways', async () => {
    await fs.writeFile(J('plocked'), bytes('plock', 10_000));
    await sleep(CACHE_WAIT_MS);
    const ino = await lookup('plocked');
    const fd = (await py.call({ op: 'open', path: J('plocked'), flags: 'rw' })) as number;
    const { fh } = await ours!.vfs.open(CTX, ino, O_RDWR);
    const owner = 0xabcdefn;
    const lk = (type: number, start: number, end: bigint) => ({ type, pid: process.pid, start, end });
    try {
      // juicefs write-locks [100, 200).
      await py.call({ op: 'setlk', fd, type: 'wr', start: 100, len: 100 });
      const clash = await ours!.vfs.setlk(CTX, ino, fh, owner, lk(F_RDLCK, 150, 150n), false).then(() => undefined, (e: unknown) => e);
      expect((clash as MetaError | undefined)?.code, 'our read lock inside juicefs\' write lock').toBe('EAGAIN');
      const seen = await ours!.vfs.getlk(CTX, ino, fh, owner, lk(F_WRLCK, 0, 1000n));
      expect(seen.type, 'getlk reports the juicefs lock').toBe(F_WRLCK);
      expect([seen.start, seen.end]).toEqual([100, 199n]);
      // A disjoint range is free.
      await ours!.vfs.setlk(CTX, ino, fh, owner, lk(F_WRLCK, 300, 399n), false);
      // juicefs sees our lock: its F_SETLK on [350, 360) fails, F_GETLK reports [300, 400).
      await expect(py.call({ op: 'setlk', fd, type: 'rd', start: 350, len: 10 })).rejects.toMatchObject({ code: expect.stringMatching(/EAGAIN|EACCES/) });
      const theirs = (await py.call({ op: 'getlk', fd, type: 'wr', start: 0, len: 1000 })) as { type: string; start: number; len: number };
      expect(theirs.type).toBe('wr');
      // Our lock at 300..399; juicefs' own lock is not reported to itself.
      expect([theirs.start, theirs.len]).toEqual([300, 100]);
      await ours!.vfs.setlk(CTX, ino, fh, owner, lk(F_UNLCK, 0, 0x7fffffffffffffffn), false);
      await py.call({ op: 'setlk', fd, type: 'rd', start: 350, len: 10 });
      await py.call({ op: 'setlk', fd, type: 'un', start: 0, len: 0 });
    } finally {
      await py.call({ op: 'close', fd }).catch(() => undefined);
      await ours!.vfs.release(CTX, ino, fh, owner);
    }
  });

  it('juicefs status lists our session', async () => {
    const r = await runJuicefs(['status', url]);
    expect(r.code, r.output).toBe(0);
    const status = JSON.parse(r.stdout) as { Sessions?: Array<{ Sid: number; HostName?: string; MountPoint?: string; ProcessID?: number }> };
    const sids = (status.Sessions ?? []).map((s) => s.Sid);
    expect(sids).toContain(ours!.meta.sid);
    const mine = status.Sessions!.find((s) => s.Sid === ours!.meta.sid)!;
    expect(mine.ProcessID).toBe(process.pid);
  });
});
