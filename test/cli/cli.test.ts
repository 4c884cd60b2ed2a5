/**
 * The `artifacts` binary end to end: `npx tsc` into dist/, then `node dist/cli/main.js ...` as a
 * user runs it. Exit codes (0 ok, 1 failure, 2 usage), output, and the volumes it writes.
 */
import { Redis } from 'ioredis';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodeSetting, encodeSetting } from '../../metadata/setting.js';
import { dump, fsck } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'dist/cli/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

let redis: RedisHandle;
let s3: S3Handle;
let dir: string;
let raw: Redis;

beforeAll(async () => {
  // Build the whole project like `npm run build`. Other modules may be mid-edit; what matters is that
  // our files compile and dist/cli/main.js is fresh.
  const started = Date.now();
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8', timeout: 540_000 });
  const mine = (tsc.stdout ?? '').split('\n').filter((l) => /^(cli\/|metadata\/(setting|version|format|redis\/connect)\.ts)/.test(l));
  expect(mine, 'type errors in the CLI or format modules').toEqual([]);
  expect(existsSync(MAIN), `tsc did not emit ${MAIN}:\n${tsc.stdout}${tsc.stderr}`).toBe(true);
  expect(statSync(MAIN).mtimeMs).toBeGreaterThanOrEqual(started - 1000);
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  raw = new Redis({ host: redis.host, port: redis.port });
  dir = await tmpDir('cli-e2e');
}, 600_000);

afterAll(async () => {
  raw?.disconnect();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

describe('artifacts CLI', () => {
  test('shebang, --version, --help', async () => {
    expect(readFileSync(MAIN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await cli(['-V'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const s of ['--verbose', '--quiet', '--trace', '--format <format>', '--no-color', 'format', 'fsck']) expect(help.stdout).toContain(s);
  });

  test('usage errors exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['bogus'], /unknown command 'bogus'/],
      [['format'], /missing required argument 'meta-url'/],
      [['format', `${redis.url}/1`], /missing required argument 'name'/],
      [['format', '--nope', `${redis.url}/1`, 'vol'], /unknown option '--nope'/],
      [['format', `${redis.url}/1`, 'Bad_Name'], /invalid volume name "Bad_Name"/],
      [['format', `${redis.url}/abc`, 'vol'], /invalid database number "abc"/],
      [['format', `${redis.url}/1?foo=bar`, 'vol'], /unsupported option\(s\) in meta URL: foo/],
      [['format', 'http://h/1', 'vol'], /unsupported meta URL scheme "http"/],
      [['format', `${redis.url}/1`, 'vol', '--compress', 'gzip'], /unsupported compress algorithm "gzip"/],
      [['format', `${redis.url}/1`, 'vol', '--trash-days', '-1'], /--trash-days must be a non-negative integer/],
      [['format', `${redis.url}/1`, 'vol', '--capacity', '10X'], /invalid value "10X" for --capacity/],
      [['--format', 'yaml', 'fsck', `${redis.url}/1`], /--format must be text or json/],
      [['fsck', 'redis://h/x'], /invalid database number "x"/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ') + '\n' + r.stderr).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(re);
    }
    await raw.select(1);
    expect(await raw.dbsize()).toBe(0); // nothing written by any of them
  });

  test('format a file volume: prints the Format like juicefs; juicefs fsck/dump accept it; fsck passes', async () => {
    const url = `${redis.url}/2`;
    const bucket = path.join(dir, 'b1');
    const r = await cli(['format', url, 'clivol', '--bucket', bucket, '--compress', 'lz4', '--block-size', '1M', '--trash-days', '0', '--capacity', '2', '--inodes', '100', '--hash-prefix']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Data use file://${bucket}/clivol/`);
    const shown = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({ Name: 'clivol', Storage: 'file', Bucket: `${bucket}/`, BlockSize: 1024, Compression: 'lz4', TrashDays: 0, Capacity: 2 * 2 ** 30, Inodes: 100, HashPrefix: true });
    expect(r.stdout).toContain('\n  "Tiers": {\n    "0": {\n'); // Go's two-space MarshalIndent
    const f = await fsck(url);
    expect(f.ok, f.output).toBe(true);
    expect((await dump(url)).Setting).toMatchObject({ Name: 'clivol', BlockSize: 1024, Compression: 'lz4' });
    const ours = await cli(['fsck', url]);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout).toMatch(/OK: no errors, 0 warnings/);

    // re-format: a mutable flag is applied, an immutable one is refused (exit 1), --force overrides
    const up = await cli(['format', url, 'clivol', '--trash-days', '2']);
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ TrashDays: 2, Compression: 'lz4', BlockSize: 1024, Bucket: `${bucket}/` });
    const imm = await cli(['format', url, 'clivol', '--block-size', '4M']);
    expect(imm.code).toBe(1);
    expect(imm.stderr).toMatch(/Error: cannot update volume block size from 1024 to 4096/);
    const none = await cli(['format', url, 'clivol', '--block-size', '4M', '--no-update']);
    expect(none.code).toBe(0);
    expect(none.stderr).toMatch(/exists \(not updated\)/);
    expect(decodeSetting((await (async () => { await raw.select(2); return raw.getBuffer('setting'); })())!).BlockSize).toBe(1024);
  });

  test('format on S3 with secrets from the environment; --format json; secrets never printed', async () => {
    const url = `${redis.url}/3`;
    const r = await cli(['--format', 'json', 'format', url, 's3cli', '--storage', 's3', '--bucket', s3.bucketUrl('cli-s3')], {
      ACCESS_KEY: s3.accessKey,
      SECRET_KEY: s3.secretKey,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { created: boolean; prefix: string; format: Record<string, unknown> };
    expect(out).toMatchObject({ created: true, prefix: '', format: { Name: 's3cli', AccessKey: s3.accessKey, SecretKey: 'removed', KeyEncrypted: true } });
    expect(r.stdout + r.stderr).not.toContain(s3.secretKey);
    const f = await fsck(url);
    expect(f.ok, f.output).toBe(true);
    const ours = await cli(['--format', 'json', 'fsck', url]);
    expect(ours.code, ours.stderr).toBe(0);
    expect(JSON.parse(ours.stdout)).toMatchObject({ ok: true, errors: 0 });
  }, 120_000);

  test('mount on S3 as a daemon, read through S3 GETs, unmount: the daemon is gone within seconds', async () => {
    const url = `${redis.url}/5`;
    const env = { ACCESS_KEY: s3.accessKey, SECRET_KEY: s3.secretKey };
    const f = await cli(['format', url, 's3mount', '--storage', 's3', '--bucket', s3.bucketUrl('cli-mount'), '--trash-days', '0'], env);
    expect(f.code, f.stderr).toBe(0);
    const mnt = path.join(dir, 'mnt-s3');
    mkdirSync(mnt, { recursive: true });
    // benchmark profile: no block cache, so the read below goes to S3 (keep-alive GET sockets).
    const m = await cli(['mount', url, mnt, '--cache-profile', 'benchmark', '--log-file', path.join(dir, 'mnt-s3.log')], env);
    expect(m.code, m.stderr).toBe(0);
    let unmounted = false;
    try {
      const data = Buffer.alloc(6 << 20, 0x5a);
      writeFileSync(path.join(mnt, 'f'), data);
      expect(readFileSync(path.join(mnt, 'f')).equals(data)).toBe(true);
      const pids = () => spawnSync('pgrep', ['-f', `mount .*${mnt}`], { encoding: 'utf8' }).stdout.trim();
      expect(pids()).not.toBe('');
      const t0 = Date.now();
      const u = await cli(['unmount', mnt]);
      expect(u.code, u.stderr).toBe(0);
      unmounted = true;
      while (pids() !== '' && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 100));
      // Idle keep-alive sockets once kept the daemon alive ~56 s after its unmount.
      expect(pids()).toBe('');
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      if (!unmounted) await cli(['unmount', mnt]);
    }
  }, 120_000);

  test('--key-prefix: a custom prefix, and fsck finds the volume only under it', async () => {
    await raw.select(4);
    const url = `${redis.url}/4`;
    const r = await cli(['format', url, 'prefixed', '--bucket', path.join(dir, 'b4'), '--key-prefix', '{u_1_w_2}:']);
    expect(r.code, r.stderr).toBe(0);
    expect((await raw.keys('*')).sort()).toEqual(['{u_1_w_2}:i1', '{u_1_w_2}:i9223372032828243968', '{u_1_w_2}:setting']);
    expect((await cli(['fsck', url, '--key-prefix', '{u_1_w_2}:'])).code).toBe(0);
    expect((await cli(['fsck', `${url}?prefix=%7Bu_1_w_2%7D%3A`])).code).toBe(0);
    const plain = await cli(['fsck', url]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/not formatted/);
    const bad = await cli(['format', url, 'prefixed', '--key-prefix', 'a*']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/must not contain/);
  });

  test('fsck exit 1 on damage, corrupt setting, MetaVersion 2; format exit 1 when Redis is down', async () => {
    const url = `${redis.url}/2`;
    await raw.select(2);
    await raw.incrby('usedSpace', 4096);
    let r = await cli(['fsck', url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[counter\] usedSpace is 4096, recount gives 0/);
    expect(r.stdout).toMatch(/FAILED: 1 errors/);
    await raw.incrby('usedSpace', -4096);
    const setting = (await raw.getBuffer('setting'))!;
    await raw.set('setting', encodeSetting({ ...decodeSetting(setting), MetaVersion: 2 }));
    r = await cli(['fsck', url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/incompatible metadata version 2/);
    r = await cli(['format', url, 'clivol']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/metadata version 2/);
    await raw.set('setting', '{"Name": "clivol", "BlockSize": "x"}');
    r = await cli(['fsck', url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/corrupt setting: field BlockSize: expected a number, got string/);
    await raw.set('setting', setting);
    expect((await cli(['fsck', url])).code).toBe(0);

    r = await cli(['format', 'redis://:hunter2@127.0.0.1:1/1', 'downvol', '--bucket', path.join(dir, 'down')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Error: cannot connect to redis:\/\/:\*\*\*\*@127\.0\.0\.1:1\/1: .*ECONNREFUSED/);
    expect(r.stderr).not.toContain('hunter2');
  });
});
