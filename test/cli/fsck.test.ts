/**
 * fsckVolume on a volume we formatted and juicefs filled through a real FUSE mount (files, hard
 * links, symlinks, a fifo, shared slices from copy_file_range, trash, overwrites, truncates):
 * no false alarms, and each kind of damage is reported.
 */
import { Redis } from 'ioredis';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createObjectStore } from '../../chunkstore/object/index.js';
import { fsckVolume, type FsckReport } from '../../cli/fsck.js';
import { formatVolume } from '../../cli/volume.js';
import { connectMeta, type MetaConnection } from '../../metadata/redis/connect.js';
import { decodeSetting, encodeSetting } from '../../metadata/setting.js';
import type { Format } from '../../metadata/types.js';
import { fsck as juicefsFsck, mount } from '../helpers/juicefs.js';
import { startRedis, tmpDir, type RedisHandle } from '../helpers/servers.js';

let redis: RedisHandle;
let raw: Redis;
let conn: MetaConnection;
let fmt: Format;
let bucket: string;
const url = () => `${redis.url}/1`;

async function check(): Promise<FsckReport> {
  const store = createObjectStore(fmt);
  try {
    return await fsckVolume(conn, { store });
  } finally {
    store.close?.();
  }
}

function kinds(r: FsckReport, severity: 'error' | 'warning'): string[] {
  return [...new Set(r.findings.filter((f) => f.severity === severity).map((f) => f.kind))].sort();
}

beforeAll(async () => {
  redis = await startRedis();
  const d = await tmpDir('fsck');
  bucket = path.join(d, 'bucket');
  const res = await formatVolume(url(), { name: 'fsckvol', bucket, blockSizeKiB: 1024, trashDays: 1 }, { env: {} });
  fmt = res.format;
  const mnt = path.join(d, 'mnt');
  const m = await mount(url(), mnt);
  try {
    mkdirSync(path.join(mnt, 'a/b/c'), { recursive: true });
    writeFileSync(path.join(mnt, 'a/big'), randomBytes(3 * 1024 * 1024 + 12345)); // 4 blocks of 1 MiB
    writeFileSync(path.join(mnt, 'a/small'), 'hello');
    linkSync(path.join(mnt, 'a/big'), path.join(mnt, 'a/b/hard'));
    symlinkSync('../big', path.join(mnt, 'a/b/sym'));
    execFileSync('mkfifo', [path.join(mnt, 'a/fifo')]);
    // coreutils cp uses copy_file_range: juicefs shares the slices and bumps sliceRef
    execFileSync('cp', [path.join(mnt, 'a/big'), path.join(mnt, 'a/copy')]);
    // overwrite in the middle and append: more slices on the same chunk
    execFileSync('dd', ['if=/dev/urandom', `of=${path.join(mnt, 'a/big')}`, 'bs=4096', 'count=3', 'seek=100', 'conv=notrunc'], { stdio: 'ignore' });
    appendFileSync(path.join(mnt, 'a/small'), ' world');
    truncateSync(path.join(mnt, 'a/copy'), 1000);
    // two names that are not UTF-8 and would look alike once decoded ('\ufffdA')
    for (const b of [0xff, 0xfe]) writeFileSync(Buffer.concat([Buffer.from(path.join(mnt, 'a') + '/'), Buffer.from([b, 0x41])]), 'x');
    writeFileSync(path.join(mnt, 'gone'), randomBytes(5000));
    unlinkSync(path.join(mnt, 'gone')); // into the trash
    rmSync(path.join(mnt, 'a/b/c'), { recursive: true }); // a directory into the trash
  } finally {
    await m.unmount();
  }
  raw = new Redis({ host: redis.host, port: redis.port, db: 1 });
  conn = await connectMeta(url(), { env: {} });
}, 180_000);

afterAll(async () => {
  raw?.disconnect();
  await conn?.close();
  await redis?.stop();
});

describe('fsck', () => {
  test('a healthy volume written by juicefs: no errors, no warnings, counters recounted', async () => {
    const r = await check();
    expect(r.findings).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.counters.usedSpace.stored).toBe(r.counters.usedSpace.actual);
    expect(r.counters.totalInodes.stored).toBeGreaterThan(8);
    expect(r.stats.files).toBeGreaterThanOrEqual(6);
    expect(r.stats.symlinks).toBe(1);
    expect(r.stats.blocks).toBe(r.stats.objects);
    expect(r.stats.leakedObjects).toBe(0);
    // copy_file_range really shared slices (otherwise the sliceRef check proved nothing)
    expect(Object.keys(await raw.hgetall('sliceRef')).length).toBeGreaterThan(0);
    expect((await juicefsFsck(url())).ok).toBe(true);
  });

  test('a missing block and a block of the wrong size', async () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(path.join(d, e.name)) : files.push(path.join(d, e.name));
    };
    walk(path.join(bucket, 'fsckvol', 'chunks'));
    const victim = files.find((f) => /_1048576$/.test(f))!;
    const saved = readFileSync(victim);
    unlinkSync(victim);
    let r = await check();
    expect(r.ok).toBe(false);
    expect(kinds(r, 'error')).toEqual(['block']);
    expect(r.findings[0].message).toMatch(/missing block chunks\/0\/0\/\d+_\d+_1048576/);
    writeFileSync(victim, saved.subarray(0, 1000));
    r = await check();
    expect(r.findings.map((f) => f.message)).toEqual([expect.stringMatching(/has 1000 bytes, expected 1048576/)]);
    writeFileSync(victim, saved);
    // an unreferenced object is only a warning
    const leak = path.join(bucket, 'fsckvol', 'chunks', '0', '0', '999999_0_5');
    writeFileSync(leak, 'xxxxx');
    r = await check();
    expect(r.ok).toBe(true);
    expect(kinds(r, 'warning')).toEqual(['leaked']);
    unlinkSync(leak);
    expect((await check()).findings).toEqual([]);
  });

  test('sliceRef, counters, dentry type, dangling entry, nlink, p-key, orphan', async () => {
    const damage: [string, () => Promise<unknown>, () => Promise<unknown>, RegExp][] = [];
    const [refField] = Object.keys(await raw.hgetall('sliceRef'));
    damage.push(['sliceref', () => raw.hincrby('sliceRef', refField, 1), () => raw.hincrby('sliceRef', refField, -1), /is referenced \d+ times but sliceRef/]);
    damage.push(['counter', () => raw.incrby('usedSpace', 4096), () => raw.incrby('usedSpace', -4096), /usedSpace is \d+, recount gives/]);
    damage.push(['counter', () => raw.incr('totalInodes'), () => raw.decr('totalInodes'), /totalInodes is/]);
    // find the inode of a/small through the dentries
    const aIno = (await raw.hgetBuffer('d1', 'a'))!.readBigUInt64BE(1);
    const smallEntry = (await raw.hgetBuffer(`d${aIno}`, 'small'))!;
    const smallIno = smallEntry.readBigUInt64BE(1);
    const wrongType = Buffer.from(smallEntry);
    wrongType[0] = 2;
    damage.push(['type', () => raw.hset(`d${aIno}`, 'small', wrongType), () => raw.hset(`d${aIno}`, 'small', smallEntry), /dentry type 2 but inode \d+ has type 1/]);
    const ghost = Buffer.alloc(9);
    ghost[0] = 1;
    ghost.writeBigUInt64BE(987654n, 1);
    damage.push(['dentry', () => raw.hset('d1', 'ghost', ghost), () => raw.hdel('d1', 'ghost'), /points to missing inode 987654/]);
    const attr = (await raw.getBuffer(`i${smallIno}`))!;
    const nlink3 = Buffer.from(attr);
    nlink3.writeUInt32BE(3, 47);
    damage.push(['nlink', () => raw.set(`i${smallIno}`, nlink3), () => raw.set(`i${smallIno}`, attr), /has nlink 3 but 1 directory entries/]);
    const bIno = (await raw.hgetBuffer(`d${aIno}`, 'b'))!.readBigUInt64BE(1);
    const hardIno = (await raw.hgetBuffer(`d${bIno}`, 'hard'))!.readBigUInt64BE(1);
    damage.push(['pkey', () => raw.hincrby(`p${hardIno}`, String(bIno), 1), () => raw.hincrby(`p${hardIno}`, String(bIno), -1), /p\d+\[\d+\] = 2 but directory \d+ has 1 entries/]);
    damage.push(['orphan', () => raw.hdel(`d${aIno}`, 'small'), () => raw.hset(`d${aIno}`, 'small', smallEntry), /is not referenced by any directory entry/]);
    for (const [kind, breakIt, fixIt, re] of damage) {
      await breakIt();
      try {
        const r = await check();
        expect(r.ok, kind).toBe(false);
        expect(kinds(r, 'error'), kind).toContain(kind);
        expect(r.findings.map((f) => f.message).join('\n'), kind).toMatch(re);
      } finally {
        await fixIt();
      }
      expect((await check()).findings, `after repairing ${kind}`).toEqual([]);
    }
  });

  test('setting problems: missing, corrupt, MetaVersion 2', async () => {
    const setting = (await raw.getBuffer('setting'))!;
    try {
      await raw.set('setting', encodeSetting({ ...decodeSetting(setting), MetaVersion: 2 }));
      let r = await fsckVolume(conn, { store: null });
      expect(r.ok).toBe(false);
      expect(r.findings).toEqual([{ severity: 'error', kind: 'setting', message: expect.stringMatching(/incompatible metadata version 2.*nothing checked/) }]);
      await raw.set('setting', '{"Name":');
      r = await fsckVolume(conn, { store: null });
      expect(r.findings[0].message).toMatch(/^corrupt setting: invalid JSON/);
      await raw.del('setting');
      r = await fsckVolume(conn, { store: null });
      expect(r.findings[0].message).toMatch(/not formatted/);
    } finally {
      await raw.set('setting', setting);
    }
    expect((await fsckVolume(conn, { store: null })).ok).toBe(true);
  });
});
