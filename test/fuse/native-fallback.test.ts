/**
 * The fuse-native fallback (fs/fuse/native/, fs/fuse/select.ts): the adapter over MemVfs in
 * process, then real kernel mounts through libfuse + fusermount:
 *  (a) as root with ARTIFACTS_FUSE_TRANSPORT=fuse-native, serving the real VFS (Redis + file
 *      store, formatted by upstream juicefs), checked afterwards by upstream `juicefs fsck`;
 *  (b) as a non-root user, through the CLI (`artifacts mount` / `artifacts unmount`).
 * Servers run in child processes (a client's synchronous call in the server's process would block
 * the thread that must answer it). Every mount is unmounted in finally/afterAll; scratch dirs are
 * also swept by the test infra's janitor. fuse-native must load: nothing here is skipped.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMount, forceUnmount, isMountPoint } from '../../fs/fuse/mount.js';
import { NativeAdapter } from '../../fs/fuse/native/adapter.js';
import { loadFuseNative } from '../../fs/fuse/native/binding.js';
import { chooseTransport, transportFromEnv } from '../../fs/fuse/select.js';
import { ROOT_CTX, ROOT_INODE } from '../../metadata/types.js';
import { format as jfsFormat, fsck } from '../helpers/juicefs.js';
import { killQuietly, type RedisHandle, startRedis } from '../helpers/servers.js';
import { REPO_ROOT, scratchDir, sh } from './harness.js';
import { MemVfs } from './memvfs.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const USER = 'artifacts-nr';

interface Served {
  proc: ChildProcess;
  ready: { transport: string; fstype: string; source: string; uid: number };
  /** Next stdout line (the protocol of native-serve.ts). */
  line(timeoutMs?: number): Promise<string>;
  send(cmd: string): void;
  stderr(): string;
  exited: Promise<number | null>;
}

/** Start test/fuse/native-serve.ts with the fuse-native transport forced. */
async function serve(mp: string, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/fuse/native-serve.ts'), mp], {
    cwd: REPO_ROOT,
    env: { ...process.env, ARTIFACTS_FUSE_TRANSPORT: 'fuse-native', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  const line = (timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const t = setTimeout(() => reject(new Error(`no answer from the server; stderr: ${err}`)), timeoutMs);
      waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
      void exited.then(() => {
        clearTimeout(t);
        reject(new Error(`server exited; stderr: ${err}`));
      });
    });
  const first = await line();
  if (!first.startsWith('READY ')) throw new Error(`server did not mount: ${first} ${err}`);
  return { proc, ready: JSON.parse(first.slice(6)), line, send: (c) => proc.stdin!.write(`${c}\n`), stderr: () => err, exited };
}

/** Unmount through the server and wait for it to end; force everything if it does not. */
async function stopServed(s: Served | undefined, mp: string): Promise<void> {
  try {
    if (s && s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill('SIGTERM');
      const t = setTimeout(() => killQuietly(s.proc.pid!), 20_000);
      await s.exited;
      clearTimeout(t);
    }
  } finally {
    if (await isMountPoint(mp)) await forceUnmount(mp);
  }
}

async function dd(args: string[]): Promise<void> {
  await sh('dd', [...args, 'status=none']);
}

describe('fuse-native adapter (in process, MemVfs)', () => {
  it('loads fuse-native and picks the transport from the environment', () => {
    expect(typeof loadFuseNative().Fuse).toBe('function');
    expect(transportFromEnv({ ARTIFACTS_FUSE_TRANSPORT: 'native' })).toBe('fuse-native');
    expect(transportFromEnv({})).toBe('auto');
    expect(() => transportFromEnv({ ARTIFACTS_FUSE_TRANSPORT: 'fusenative' })).toThrow(/expected/);
    expect(chooseTransport('auto', 0)).toBe('dev-fuse');
    expect(chooseTransport('auto', 1000)).toBe('fuse-native');
    expect(chooseTransport('fuse-native', 0)).toBe('fuse-native');
  });

  it('maps paths to inodes, keeps its cache right across renames, maps errors', async () => {
    const vfs = new MemVfs({ entryTtl: 60 });
    const a = new NativeAdapter(vfs, { log: () => undefined });
    await a.mkdir('/d', 0o40755);
    const fd = await a.create('/d/f', 0o100644);
    expect(await a.write(fd, Buffer.from('hello world'), 11, 0)).toBe(11);
    await a.release(fd);
    expect((await a.getattr('/d/f')).size).toBe(11);

    await a.rename('/d', '/e');
    await expect(a.getattr('/d/f')).rejects.toMatchObject({ errno: 2 });
    const rfd = await a.open('/e/f', 0);
    const buf = Buffer.alloc(64);
    expect(buf.subarray(0, await a.read(rfd, buf, 64, 6)).toString()).toBe('world');
    // The handle is bound to the inode: a rename of the open file does not matter.
    await a.rename('/e/f', '/e/g');
    expect(buf.subarray(0, await a.read(rfd, buf, 5, 0)).toString()).toBe('hello');
    await a.release(rfd);
    await expect(a.read(rfd, buf, 5, 0)).rejects.toMatchObject({ errno: 9 });

    // Another mount renames /e away and creates a new /e: a walk through the cached /e fails, and
    // the adapter retries with a fresh walk.
    expect(a.cache.size).toBeGreaterThan(0);
    await vfs.rename(ROOT_CTX, ROOT_INODE, Buffer.from('e'), ROOT_INODE, Buffer.from('x'), 0);
    const e2 = await vfs.mkdir(ROOT_CTX, ROOT_INODE, Buffer.from('e'), 0o755, 0);
    await vfs.mknod(ROOT_CTX, e2.ino, Buffer.from('h'), 0o100644, 0, 0);
    expect((await a.getattr('/e/h')).ino).toBeGreaterThan(0);
    expect((await a.getattr('/x/g')).size).toBe(11);
    expect((await a.readdir('/x')).names).toEqual(['.', '..', 'g']);
    // A name that still resolves through a stale cached directory is bounded by the cache TTL
    // (the entry TTL, the staleness the kernel's dentry cache already has).
    const short = new NativeAdapter(vfs, { log: () => undefined, pathTtl: 0.2 });
    expect((await short.getattr('/x/g')).size).toBe(11);
    await vfs.rename(ROOT_CTX, ROOT_INODE, Buffer.from('x'), ROOT_INODE, Buffer.from('y'), 0);
    await vfs.mkdir(ROOT_CTX, ROOT_INODE, Buffer.from('x'), 0o755, 0);
    await new Promise((r) => setTimeout(r, 250));
    await expect(short.getattr('/x/g')).rejects.toMatchObject({ errno: 2 });
    expect((await short.getattr('/y/g')).size).toBe(11);

    // Errors through the fuse-native callbacks are negative errnos.
    const ops = a.ops();
    const rc = await new Promise<number>((r) => ops.unlink('/nope', r));
    expect(rc).toBe(-2);
    const st = await new Promise<number>((r) => ops.getattr('/y/g', (e) => r(e)));
    expect(st).toBe(0);
    const n = await new Promise<number>((r) => ops.read('/y/g', 12345, Buffer.alloc(4), 4, 0, r));
    expect(n).toBe(-9);
  });
});

describe('fuse-native mount as root (ARTIFACTS_FUSE_TRANSPORT=fuse-native)', { timeout: 240_000 }, () => {
  let redis: RedisHandle | undefined;
  let dir: string;
  let metaUrl: string;

  beforeAll(async () => {
    redis = await startRedis();
    dir = await scratchDir('native');
    await fs.chmod(dir, 0o755);
    metaUrl = `${redis.url}/4`;
    await jfsFormat(metaUrl, 'nativefb', { storage: 'file', bucket: path.join(dir, 'objects') + '/', trashDays: 0 });
  }, 120_000);

  afterAll(async () => {
    await redis?.stop();
  });

  it('MemVfs: 128 KiB writes (big_writes), shows as fuse.artifacts, notices an unmount by someone else', async () => {
    const mp = path.join(dir, 'mem');
    await fs.mkdir(mp);
    let s: Served | undefined;
    try {
      s = await serve(mp);
      expect(s.ready).toMatchObject({ transport: 'fuse-native', fstype: 'fuse.artifacts', source: 'artifacts:memvfs' });
      const data = randomBytes(1024 * 1024);
      await fs.writeFile(path.join(dir, 'mem.src'), data);
      await dd([`if=${path.join(dir, 'mem.src')}`, `of=${path.join(mp, 'f')}`, 'bs=1M']);
      s.send('stats');
      const stats = JSON.parse((await s.line()).slice(6)) as { vfs: { maxWrite: number } };
      expect(stats.vfs.maxWrite).toBe(128 * 1024);
      expect(sha(await fs.readFile(path.join(mp, 'f')))).toBe(sha(data));
      // Unmounted behind the server's back: it must notice, shut the Vfs down and exit.
      await sh('fusermount', ['-u', mp]);
      expect(await s.line(15_000)).toBe('UNMOUNTED {"shutdownCalled":true}');
      expect(await s.exited).toBe(0);
    } finally {
      await stopServed(s, mp);
    }
  });

  it('serves the real VFS: files, big writes, dirs, renames, links, modes, xattrs; upstream fsck passes', async () => {
    const mp = path.join(dir, 'mnt');
    await fs.mkdir(mp);
    let s: Served | undefined;
    const big = randomBytes(5 * 1024 * 1024 + 777); // > 128 KiB requests, spans 2 blocks, unaligned tail
    try {
      s = await serve(mp, { SERVE_META_URL: metaUrl, SERVE_CACHE_DIR: path.join(dir, 'cache') });
      expect(s.ready).toMatchObject({ transport: 'fuse-native', fstype: 'fuse.artifacts', source: 'artifacts:volume', uid: 0 });
      const m = await findMount(mp);
      expect(m?.superOptions).toContain('default_permissions');

      await fs.mkdir(path.join(mp, 'dir/sub'), { recursive: true });
      await fs.writeFile(path.join(mp, 'dir/small.txt'), 'small file\n');
      await fs.writeFile(path.join(dir, 'big.src'), big);
      await dd([`if=${path.join(dir, 'big.src')}`, `of=${path.join(mp, 'dir/sub/big.bin')}`, 'bs=4M']);
      expect((await fs.stat(path.join(mp, 'dir/sub/big.bin'))).size).toBe(big.length);
      expect(sha(await fs.readFile(path.join(mp, 'dir/sub/big.bin')))).toBe(sha(big));
      // A read at an unaligned offset, through a stream (several READs).
      const part: Buffer[] = [];
      for await (const c of createReadStream(path.join(mp, 'dir/sub/big.bin'), { start: 300_001, end: 1_300_000 })) part.push(c as Buffer);
      expect(sha(Buffer.concat(part))).toBe(sha(big.subarray(300_001, 1_300_001)));

      await fs.symlink('small.txt', path.join(mp, 'dir/link'));
      expect(await fs.readlink(path.join(mp, 'dir/link'))).toBe('small.txt');
      expect(await fs.readFile(path.join(mp, 'dir/link'), 'utf8')).toBe('small file\n');
      expect((await fs.lstat(path.join(mp, 'dir/link'))).isSymbolicLink()).toBe(true);
      await fs.link(path.join(mp, 'dir/small.txt'), path.join(mp, 'hard.txt'));
      expect((await fs.stat(path.join(mp, 'hard.txt'))).nlink).toBe(2);
      expect((await fs.stat(path.join(mp, 'hard.txt'))).ino).toBe((await fs.stat(path.join(mp, 'dir/small.txt'))).ino);

      await fs.chmod(path.join(mp, 'dir/small.txt'), 0o640);
      expect((await fs.stat(path.join(mp, 'dir/small.txt'))).mode & 0o7777).toBe(0o640);
      await fs.chown(path.join(mp, 'hard.txt'), 1234, 5678);
      expect(await fs.stat(path.join(mp, 'hard.txt'))).toMatchObject({ uid: 1234, gid: 5678 });
      const when = new Date('2021-02-03T04:05:06Z');
      await fs.utimes(path.join(mp, 'dir/small.txt'), when, when);
      expect((await fs.stat(path.join(mp, 'dir/small.txt'))).mtime.toISOString()).toBe(when.toISOString());

      // Renames of a directory, then the old and new names (the path cache must follow).
      await fs.rename(path.join(mp, 'dir'), path.join(mp, 'moved'));
      await expect(fs.stat(path.join(mp, 'dir/small.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await fs.readFile(path.join(mp, 'moved/small.txt'), 'utf8')).toBe('small file\n');
      await fs.mkdir(path.join(mp, 'dir'));
      expect(await fs.readdir(path.join(mp, 'dir'))).toEqual([]);
      expect((await fs.readdir(path.join(mp, 'moved'))).sort()).toEqual(['link', 'small.txt', 'sub']);

      await fs.writeFile(path.join(mp, 'trunc'), 'abcdefghij');
      await fs.truncate(path.join(mp, 'trunc'), 4);
      expect(await fs.readFile(path.join(mp, 'trunc'), 'utf8')).toBe('abcd');
      await fs.writeFile(path.join(mp, 'trunc'), 'xy'); // open(O_TRUNC) (atomic_o_trunc)
      expect(await fs.readFile(path.join(mp, 'trunc'), 'utf8')).toBe('xy');
      await fs.appendFile(path.join(mp, 'trunc'), 'z');
      expect(await fs.readFile(path.join(mp, 'trunc'), 'utf8')).toBe('xyz');

      await fs.unlink(path.join(mp, 'trunc'));
      await expect(fs.stat(path.join(mp, 'trunc'))).rejects.toMatchObject({ code: 'ENOENT' });
      await fs.rmdir(path.join(mp, 'dir'));
      await expect(fs.rmdir(path.join(mp, 'moved'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });

      const x = await sh('python3', [
        '-c',
        `import os,sys; f=sys.argv[1]; os.setxattr(f,'user.k',b'v1'); os.setxattr(f,'user.j',b'v2'); os.removexattr(f,'user.j'); print(os.getxattr(f,'user.k').decode(), sorted(os.listxattr(f)))`,
        path.join(mp, 'hard.txt'),
      ]);
      expect(x.stdout.trim()).toBe("v1 ['user.k']");
      // Values and name lists larger than the caller's first buffer: ERANGE, then python retries
      // with a larger one (fuse-native's own wrappers failed with EIO or crashed here).
      const large = await sh('python3', [
        '-c',
        `import os,sys; f=sys.argv[1]; os.setxattr(f,'user.big',b'v'*3000); [os.setxattr(f,'user.n%03d'%i,b'1') for i in range(40)]; print(len(os.getxattr(f,'user.big')), len(os.listxattr(f)))`,
        path.join(mp, 'moved/small.txt'),
      ]);
      expect(large.stdout.trim()).toBe('3000 42'); // + user.k, set through the hard link
      const nodata = await sh('python3', ['-c', `import os,sys; os.getxattr(sys.argv[1],'user.none')`, path.join(mp, 'hard.txt')], { allowFail: true });
      expect(nodata.stderr).toMatch(/No data available/);

      // An open file that is unlinked stays readable (libfuse hides it as .fuse_hidden*).
      const held = await sh('python3', [
        '-c',
        `import os,sys; d=sys.argv[1]; f=open(d+'/tmp','w+'); f.write('kept'); f.flush(); os.unlink(d+'/tmp'); f.seek(0); print(f.read(), 'tmp' in os.listdir(d)); f.close()`,
        mp,
      ]);
      expect(held.stdout.trim()).toBe('kept False');
      expect((await fs.readdir(mp)).filter((n) => n.startsWith('.fuse_hidden'))).toEqual([]);

      const df = await sh('df', ['-k', mp]);
      expect(df.stdout).toContain('artifacts:volume');

      s.send('unmount');
      expect(await s.line(30_000)).toBe('UNMOUNTED {"shutdownCalled":true}');
      expect(await s.exited).toBe(0);
      expect(await isMountPoint(mp)).toBe(false);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nserver stderr: ${s?.stderr() ?? ''}`);
    } finally {
      await stopServed(s, mp);
    }
    const check = await fsck(metaUrl);
    expect(check.ok, check.output).toBe(true);
  });
});

describe('fuse-native mount as a non-root user, through the CLI', { timeout: 240_000 }, () => {
  let redis: RedisHandle | undefined;
  let dir: string;
  let addedAcl = false;
  let hadAcl = false;

  const asUser = (args: string[], home: string, o: { allowFail?: boolean; timeoutMs?: number } = {}) =>
    sh('runuser', ['-u', USER, '--', 'env', `HOME=${home}`, `XDG_STATE_HOME=${home}/state`, ...args], { cwd: REPO_ROOT, ...o });

  beforeAll(async () => {
    if ((await sh('id', ['-u', USER], { allowFail: true })).code !== 0) await sh('useradd', ['-M', '-s', '/usr/sbin/nologin', USER]);
    // fusermount must be setuid root for an unprivileged mount.
    const fm = await fs.stat(await fs.realpath('/usr/bin/fusermount'));
    expect(fm.uid).toBe(0);
    expect(fm.mode & 0o4000).toBe(0o4000);
    // fusermount3 opens /dev/fuse as the caller: grant this user access if the node is not 0666.
    if ((await sh('runuser', ['-u', USER, '--', 'test', '-r', '/dev/fuse', '-a', '-w', '/dev/fuse'], { allowFail: true })).code !== 0) {
      hadAcl = (await sh('getfacl', ['-cs', '/dev/fuse'], { allowFail: true })).stdout.trim() !== '';
      await sh('setfacl', ['-m', `u:${USER}:rw`, '/dev/fuse']);
      addedAcl = true;
    }
    redis = await startRedis();
    dir = await scratchDir('native-nr');
    await fs.chmod(dir, 0o755);
  }, 120_000);

  afterAll(async () => {
    try {
      if (addedAcl) {
        await sh('setfacl', ['-x', `u:${USER}`, '/dev/fuse'], { allowFail: true });
        if (!hadAcl) await sh('setfacl', ['-b', '/dev/fuse'], { allowFail: true });
      }
    } finally {
      await redis?.stop();
    }
  });

  it('mounts with `artifacts mount`, writes and reads as that user, unmounts with `artifacts unmount`', async () => {
    const uid = Number((await sh('id', ['-u', USER])).stdout.trim());
    const home = path.join(dir, 'home');
    const mp = path.join(home, 'mnt');
    await fs.mkdir(mp, { recursive: true });
    const metaUrl = `${redis!.url}/5`;
    await jfsFormat(metaUrl, 'nonroot', { storage: 'file', bucket: path.join(home, 'objects') + '/', trashDays: 0 });
    await sh('chown', ['-R', `${USER}:`, home]);
    const cli = ['node', '--import', 'tsx', path.join(REPO_ROOT, 'cli/main.ts')];
    // The daemon in the foreground (`mount -f`, what the launcher starts), run from source: the
    // launcher itself re-executes cli/main.js, which exists only in a build.
    const logFile = path.join(home, 'mount.log');
    const daemon = spawn(
      'runuser',
      ['-u', USER, '--', 'env', `HOME=${home}`, `XDG_STATE_HOME=${home}/state`, 'UV_THREADPOOL_SIZE=24', ...cli, 'mount', '-f', metaUrl, mp, '--cache-dir', path.join(home, 'cache'), '--log-file', logFile],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let daemonOut = '';
    daemon.stdout!.on('data', (d: Buffer) => (daemonOut += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (daemonOut += d.toString()));
    const daemonExit = new Promise<number | null>((r) => daemon.on('exit', (c) => r(c)));
    let daemonPid: number | undefined;
    try {
      const stateDir = path.join(home, 'state/artifacts/mounts');
      for (let i = 0; ; i++) {
        const files = await fs.readdir(stateDir).catch(() => [] as string[]);
        if (files.length > 0 && (await findMount(mp))) {
          daemonPid = (JSON.parse(readFileSync(path.join(stateDir, files[0]!), 'utf8')) as { pid: number }).pid;
          break;
        }
        if (daemon.exitCode !== null || i > 600) throw new Error(`the daemon did not mount: ${daemonOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }

      const info = await findMount(mp);
      expect(info).toMatchObject({ fstype: 'fuse.artifacts', source: 'artifacts:127.0.0.1' });
      expect(info!.superOptions).toContain(`user_id=${uid}`);
      expect(info!.superOptions).not.toContain('allow_other'); // user_allow_other is not configured

      const w = await asUser(
        ['sh', '-c', `echo "hello from $(id -un)" > "$0/hello.txt" && head -c 300000 /dev/urandom > "$0/r.bin" && cat "$0/hello.txt" && stat -c '%U %s' "$0/r.bin" "$0/hello.txt" && sha256sum < "$0/r.bin"`, mp],
        home,
      );
      const [greeting, st1, st2, sum] = w.stdout.trim().split('\n');
      expect(greeting).toBe(`hello from ${USER}`);
      expect(st1).toBe(`${USER} 300000`);
      expect(st2).toBe(`${USER} ${`hello from ${USER}\n`.length}`);
      expect(sum).toMatch(/^[0-9a-f]{64}/);
      // The daemon says which transport it chose.
      expect(daemonOut).toMatch(/mounted .* \(fuse-native, /);

      const u = await asUser([...cli, 'unmount', mp], home, { timeoutMs: 60_000 });
      expect(u.stdout + u.stderr).toContain(`unmounted ${mp}`);
      expect(await isMountPoint(mp)).toBe(false);
      expect(await daemonExit).toBe(0);
      expect(() => process.kill(daemonPid!, 0)).toThrow();
      expect(daemonOut).toMatch(/unmounted /);
    } finally {
      if (await isMountPoint(mp)) await forceUnmount(mp);
      if (daemonPid) killQuietly(daemonPid);
      if (daemon.exitCode === null) killQuietly(daemon.pid!);
    }
    // What the user wrote is in the volume: a fresh mount by root (dev-fuse) could read it; here
    // upstream fsck vouches for the slices.
    const check = await fsck(metaUrl);
    expect(check.ok, check.output).toBe(true);
  });
});
