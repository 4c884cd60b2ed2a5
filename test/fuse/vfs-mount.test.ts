/**
 * The real stack through the kernel: a volume formatted by upstream `juicefs format` (real Redis,
 * file object store), served by our FUSE transport over the real VFS (fs/vfs.ts via openVolume) in
 * a child process, used by real clients; after our unmount, upstream `juicefs fsck` must pass and
 * an upstream `juicefs mount` must show the same bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMount, forceUnmount, isMountPoint } from '../../fs/fuse/mount.js';
import { MAX_WRITE } from '../../fs/fuse/protocol.js';
import { format as jfsFormat, fsck, mount as jfsMount } from '../helpers/juicefs.js';
import { type RedisHandle, startRedis } from '../helpers/servers.js';
import { type MemServer, scratchDir, sh, startVolumeServer } from './harness.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('real VFS mounted through the FUSE transport', { timeout: 180_000 }, () => {
  let redis: RedisHandle | undefined;
  let dir: string;
  let mp: string;
  let metaUrl: string;
  let s: MemServer | undefined;
  const big = randomBytes(10 * 1024 * 1024 + 12345); // spans 3 blocks of 4 MiB, unaligned tail

  beforeAll(async () => {
    redis = await startRedis();
    dir = await scratchDir('vfs');
    await fs.chmod(dir, 0o755); // other users must be able to reach the mount point
    metaUrl = `${redis.url}/3`;
    await jfsFormat(metaUrl, 'fusevfs', { storage: 'file', bucket: path.join(dir, 'objects') + '/', trashDays: 0 });
    mp = path.join(dir, 'mnt');
    await fs.mkdir(mp);
    s = await startVolumeServer(mp, metaUrl, path.join(dir, 'cache'));
  }, 120_000);

  afterAll(async () => {
    try {
      await s?.stop();
    } finally {
      if (mp && (await isMountPoint(mp))) await forceUnmount(mp);
      await redis?.stop();
    }
  });

  it('serves POSIX operations from the real VFS', async () => {
    expect((await findMount(mp))?.fstype).toBe('fuse.artifacts');
    await fs.mkdir(path.join(mp, 'dir/sub'), { recursive: true });
    await fs.writeFile(path.join(mp, 'dir/small.txt'), 'small file\n');
    // dd with 4 MiB writes: the kernel must hand them over in 1 MiB requests (max_pages 256).
    await fs.writeFile(path.join(dir, 'big.src'), big);
    await sh('dd', [`if=${path.join(dir, 'big.src')}`, `of=${path.join(mp, 'dir/sub/big.bin')}`, 'bs=4M']);
    await fs.symlink('small.txt', path.join(mp, 'dir/link'));
    await fs.link(path.join(mp, 'dir/small.txt'), path.join(mp, 'hard.txt'));
    await fs.writeFile(path.join(mp, 'gone'), 'x');
    await fs.rename(path.join(mp, 'gone'), path.join(mp, 'renamed'));
    await fs.writeFile(path.join(mp, 'trunc'), 'abcdefghij');
    await fs.truncate(path.join(mp, 'trunc'), 4);

    expect(await fs.readFile(path.join(mp, 'dir/link'), 'utf8')).toBe('small file\n');
    expect((await fs.stat(path.join(mp, 'hard.txt'))).nlink).toBe(2);
    expect(sha(await fs.readFile(path.join(mp, 'dir/sub/big.bin')))).toBe(sha(big));
    expect((await fs.readdir(mp)).sort()).toEqual(expect.arrayContaining(['dir', 'hard.txt', 'renamed', 'trunc']));
    expect(await fs.readFile(path.join(mp, 'trunc'), 'utf8')).toBe('abcd');

    const x = await sh('python3', [
      '-c',
      `import os,sys; f=sys.argv[1]; os.setxattr(f,'user.k',b'v1'); print(os.getxattr(f,'user.k').decode(), os.listxattr(f))`,
      path.join(mp, 'renamed'),
    ]);
    expect(x.stdout.trim()).toBe("v1 ['user.k']");

    // flock through the real lock table
    const holder = sh('flock', ['-x', path.join(mp, 'renamed'), '-c', 'sleep 1.5']);
    await new Promise((r) => setTimeout(r, 400));
    expect((await sh('flock', ['-n', '-x', path.join(mp, 'renamed'), '-c', 'true'], { allowFail: true })).code).toBe(1);
    await holder;

    const st = await s!.stats();
    expect(st.server.maxWriteSeen).toBe(MAX_WRITE);
  });

  it('the engine checks permissions for other users, supplementary groups included', async () => {
    const as = (groups: string[], cmd: string[]) =>
      sh('setpriv', ['--reuid=1000', '--regid=1000', ...groups, '--', ...cmd], { allowFail: true });
    const secret = path.join(mp, 'secret');
    const shared = path.join(mp, 'shared');
    await fs.writeFile(secret, 'root only');
    await fs.chmod(secret, 0o600);
    await fs.writeFile(shared, 'group 5000');
    await fs.chown(shared, 0, 5000);
    await fs.chmod(shared, 0o640);

    const denied = await as(['--clear-groups'], ['cat', secret]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('Permission denied');
    // Readable only through a supplementary group, which the kernel does not send: read from /proc.
    expect((await as(['--groups=5000'], ['cat', shared])).stdout).toBe('group 5000');
    expect((await as(['--clear-groups'], ['cat', shared])).stderr).toContain('Permission denied');
    const mk = await as(['--clear-groups'], ['touch', path.join(mp, 'dir', 'by-user')]);
    expect(mk.stderr).toContain('Permission denied');
    // Creating inside a directory writable through a supplementary group (the create path copies
    // the caller context: the lazily computed groups must survive the copy).
    const gdir = path.join(mp, 'gdir');
    await fs.mkdir(gdir);
    await fs.chown(gdir, 0, 5000);
    await fs.chmod(gdir, 0o770);
    const made = await as(['--groups=5000'], ['sh', '-c', `echo hi > ${gdir}/mine && mkdir ${gdir}/sub`]);
    expect(made.stderr).toBe('');
    const st = await fs.stat(path.join(gdir, 'mine'));
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
    expect((await as(['--clear-groups'], ['touch', path.join(gdir, 'x')])).stderr).toContain('Permission denied');
    // A write by another user to a setuid file clears the bit (transport + engine, HANDLE_KILLPRIV_V2).
    const setid = path.join(mp, 'setid');
    await fs.writeFile(setid, 'x');
    await fs.chmod(setid, 0o4777);
    expect((await as(['--clear-groups'], ['sh', '-c', `echo more >> ${setid}`])).stderr).toBe('');
    expect((await fs.stat(setid)).mode & 0o7777).toBe(0o777);
    expect(await fs.readFile(setid, 'utf8')).toBe('xmore\n');
    // access(2) goes to the engine too (FUSE_ACCESS): test -r as the user
    expect((await as(['--clear-groups'], ['test', '-r', secret])).code).toBe(1);
    expect((await as(['--groups=5000'], ['test', '-r', shared])).code).toBe(0);
  });

  it('after unmount the volume passes juicefs fsck and upstream juicefs reads the same bytes', async () => {
    await s!.stop();
    expect(await isMountPoint(mp)).toBe(false);
    const check = await fsck(metaUrl);
    expect(check.output).not.toMatch(/lost|broken/i);
    expect(check.ok).toBe(true);

    const jm = await jfsMount(metaUrl, path.join(dir, 'jfs'), ['--enable-xattr']);
    try {
      expect(sha(await fs.readFile(path.join(jm.mountpoint, 'dir/sub/big.bin')))).toBe(sha(big));
      expect(await fs.readFile(path.join(jm.mountpoint, 'dir/small.txt'), 'utf8')).toBe('small file\n');
      expect(await fs.readlink(path.join(jm.mountpoint, 'dir/link'))).toBe('small.txt');
      expect(await fs.readFile(path.join(jm.mountpoint, 'trunc'), 'utf8')).toBe('abcd');
      expect((await fs.stat(path.join(jm.mountpoint, 'hard.txt'))).nlink).toBe(2);
    } finally {
      await jm.unmount();
    }
  });
});
