/**
 * Real kernel mounts of the FUSE transport, served by MemVfs (test/fuse/memvfs.ts) in a child
 * process, exercised by real clients (this process, python, coreutils, util-linux).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FUSE_ASYNC_READ,
  FUSE_ATOMIC_O_TRUNC,
  FUSE_BIG_WRITES,
  FUSE_DO_READDIRPLUS,
  FUSE_FLOCK_LOCKS,
  FUSE_MAX_PAGES,
  FUSE_PARALLEL_DIROPS,
  FUSE_POSIX_LOCKS,
  FUSE_WRITEBACK_CACHE,
  MAX_WRITE,
} from '../../fs/fuse/protocol.js';
import { MountError, findMount, forceUnmount, isMountPoint, isStaleMount, mountFuse } from '../../fs/fuse/mount.js';
import { MemVfs } from './memvfs.js';
import { type MemServer, scratchDir, sh, startMemServer } from './harness.js';

const py = (code: string, ...args: string[]) => sh('python3', ['-c', code, ...args]);

async function cleanup(s: MemServer | undefined, mp: string): Promise<void> {
  try {
    await s?.stop();
  } finally {
    if (await isMountPoint(mp)) await forceUnmount(mp);
  }
}

describe('FUSE transport on a real kernel mount (memvfs)', { timeout: 120_000 }, () => {
  let dir: string;
  let mp: string;
  let s: MemServer | undefined;

  beforeAll(async () => {
    dir = await scratchDir('mount');
    await fs.chmod(dir, 0o755); // other users must reach the mount point
    mp = path.join(dir, 'mnt');
    await fs.mkdir(mp);
    s = await startMemServer(mp);
  });
  afterAll(async () => {
    await cleanup(s, mp);
    expect(await isMountPoint(mp)).toBe(false);
  });

  it('negotiates 1 MiB writes and the expected capabilities; shows as fuse.artifacts', async () => {
    const n = s!.negotiated;
    expect(n.major).toBe(7);
    expect(n.minor).toBeGreaterThanOrEqual(31);
    expect(n.maxWrite).toBe(MAX_WRITE);
    for (const f of [FUSE_ASYNC_READ, FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS, FUSE_ATOMIC_O_TRUNC, FUSE_BIG_WRITES, FUSE_DO_READDIRPLUS, FUSE_PARALLEL_DIROPS, FUSE_MAX_PAGES]) {
      expect(n.flags & f).toBe(f);
    }
    expect(n.flags & FUSE_WRITEBACK_CACHE).toBe(0);
    const m = await findMount(mp);
    expect(m?.fstype).toBe('fuse.artifacts');
    expect(m?.source).toBe('artifacts:memvfs');
    expect(m?.superOptions).toContain('default_permissions');
  });

  it('big writes arrive as 1 MiB requests and read back intact', async () => {
    const f = path.join(mp, 'big.bin');
    const data = randomBytes(16 << 20);
    const before = (await s!.stats()).server.maxWriteSeen;
    expect(before).toBeLessThan(MAX_WRITE); // nothing so far wrote 1 MiB at once
    // 4 MiB write(2) calls: the kernel splits them into max_write (1 MiB) requests.
    const src = path.join(path.dirname(mp), 'big.src');
    await fs.writeFile(src, data);
    await sh('dd', [`if=${src}`, `of=${f}`, 'bs=4M']);
    const back = await fs.readFile(f);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    const st = await s!.stats();
    expect(st.server.maxWriteSeen).toBe(MAX_WRITE);
    expect(st.vfs.maxWrite).toBe(MAX_WRITE);
    // readahead raised through sysfs: sequential reads come in 1 MiB too
    expect(st.server.maxReadSeen).toBe(MAX_WRITE);
    await fs.unlink(f);
  });

  it('creates, writes, reads, renames, links, symlinks, removes', async () => {
    await fs.mkdir(path.join(mp, 'd1/d2'), { recursive: true });
    const f = path.join(mp, 'd1/d2/file.txt');
    await fs.writeFile(f, 'hello world');
    expect(await fs.readFile(f, 'utf8')).toBe('hello world');
    await fs.appendFile(f, '!');
    expect((await fs.stat(f)).size).toBe(12);

    await fs.rename(f, path.join(mp, 'd1/moved.txt'));
    await expect(fs.stat(f)).rejects.toMatchObject({ code: 'ENOENT' });
    await fs.link(path.join(mp, 'd1/moved.txt'), path.join(mp, 'hard'));
    const [a, b] = await Promise.all([fs.stat(path.join(mp, 'd1/moved.txt')), fs.stat(path.join(mp, 'hard'))]);
    expect(a.ino).toBe(b.ino);
    expect(b.nlink).toBe(2);

    await fs.symlink('d1/moved.txt', path.join(mp, 'sym'));
    expect(await fs.readlink(path.join(mp, 'sym'))).toBe('d1/moved.txt');
    expect(await fs.readFile(path.join(mp, 'sym'), 'utf8')).toBe('hello world!');
    expect((await fs.lstat(path.join(mp, 'sym'))).isSymbolicLink()).toBe(true);

    await expect(fs.rmdir(path.join(mp, 'd1'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await expect(fs.mkdir(path.join(mp, 'd1'))).rejects.toMatchObject({ code: 'EEXIST' });
    await fs.unlink(path.join(mp, 'hard'));
    expect((await fs.stat(path.join(mp, 'd1/moved.txt'))).nlink).toBe(1);
    await fs.rm(path.join(mp, 'd1'), { recursive: true });
    await fs.unlink(path.join(mp, 'sym'));
    expect((await fs.readdir(mp)).sort()).toEqual([]);
  });

  it('rename2 NOREPLACE and EXCHANGE reach the Vfs', async () => {
    await fs.writeFile(path.join(mp, 'x'), 'X');
    await fs.writeFile(path.join(mp, 'y'), 'Y');
    const r = await py(
      `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT = -100
def rn(a, b, flags):
    if libc.renameat2(AT, a.encode(), AT, b.encode(), flags) != 0:
        return ctypes.get_errno()
    return 0
d = sys.argv[1]
print(rn(d+'/x', d+'/y', 1), rn(d+'/x', d+'/y', 2))
`,
      mp,
    );
    expect(r.stdout.trim()).toBe('17 0'); // EEXIST, then exchanged
    expect(await fs.readFile(path.join(mp, 'x'), 'utf8')).toBe('Y');
    expect(await fs.readFile(path.join(mp, 'y'), 'utf8')).toBe('X');
  });

  it('truncate, chmod, chown, utimens (mtime kept), unlink of an open file', async () => {
    const f = path.join(mp, 'attrs');
    await fs.writeFile(f, 'abcdefgh');
    await fs.truncate(f, 3);
    expect(await fs.readFile(f, 'utf8')).toBe('abc');
    await fs.truncate(f, 10);
    expect(await fs.readFile(f)).toEqual(Buffer.from('abc\0\0\0\0\0\0\0'));
    await fs.chmod(f, 0o640);
    await fs.chown(f, 1234, 5678);
    await fs.utimes(f, new Date('2001-02-03T04:05:06Z'), new Date('1999-01-01T00:00:00.5Z'));
    const st = await fs.stat(f);
    expect(st.mode & 0o7777).toBe(0o640);
    expect([st.uid, st.gid]).toEqual([1234, 5678]);
    expect(st.mtime.toISOString()).toBe('1999-01-01T00:00:00.500Z');
    expect(st.atime.toISOString()).toBe('2001-02-03T04:05:06.000Z');
    await sh('touch', ['-m', '-d', '2010-05-06 07:08:09', f]);
    expect((await fs.stat(f)).mtime.getUTCFullYear()).toBe(2010);

    const fh = await fs.open(f, 'r');
    await fs.unlink(f);
    const buf = Buffer.alloc(3);
    await fh.read(buf, 0, 3, 0);
    expect(buf.toString()).toBe('abc');
    await fh.close();
    await expect(fs.stat(f)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('xattrs: set/get/list/remove with create/replace flags and ERANGE', async () => {
    const f = path.join(mp, 'xa');
    await fs.writeFile(f, '');
    const r = await py(
      `
import os, sys, errno
f = sys.argv[1]
os.setxattr(f, 'user.a', b'1')
os.setxattr(f, 'user.big', b'v' * 60000)
out = [os.getxattr(f, 'user.a').decode(), len(os.getxattr(f, 'user.big')), sorted(os.listxattr(f))]
try: os.setxattr(f, 'user.a', b'2', os.XATTR_CREATE)
except OSError as e: out.append(errno.errorcode[e.errno])
try: os.setxattr(f, 'user.none', b'2', os.XATTR_REPLACE)
except OSError as e: out.append(errno.errorcode[e.errno])
os.removexattr(f, 'user.a')
try: os.getxattr(f, 'user.a')
except OSError as e: out.append(errno.errorcode[e.errno])
print(out)
`,
      f,
    );
    expect(r.stdout.trim()).toBe("['1', 60000, ['user.a', 'user.big'], 'EEXIST', 'ENODATA', 'ENODATA']");
    // getfattr-style probing: size query then a too-small buffer
    const small = await py(
      `
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
f = sys.argv[1].encode()
n = libc.getxattr(f, b'user.big', None, 0)
buf = ctypes.create_string_buffer(10)
m = libc.getxattr(f, b'user.big', buf, 10)
print(n, m, ctypes.get_errno())
`,
      f,
    );
    expect(small.stdout.trim()).toBe('60000 -1 34');
  });

  it('fallocate (allocate, punch hole), lseek SEEK_DATA/SEEK_HOLE, copy_file_range', async () => {
    const f = path.join(mp, 'falloc');
    const r = await py(
      `
import os, sys
f = sys.argv[1]
fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
os.posix_fallocate(fd, 0, 3 << 20)
size1 = os.fstat(fd).st_size
os.pwrite(fd, b'x' * (1 << 20), 0)
os.pwrite(fd, b'y' * (1 << 20), 2 << 20)
os.fsync(fd)
data = os.lseek(fd, 1 << 20, os.SEEK_DATA)
hole = os.lseek(fd, 0, os.SEEK_HOLE)
g = os.open(sys.argv[1] + '.copy', os.O_CREAT | os.O_RDWR, 0o644)
n = os.copy_file_range(fd, g, 1 << 20, 0, 0)
os.close(g); os.close(fd)
print(size1, data, hole, n)
`,
      f,
    );
    expect(r.stdout.trim()).toBe(`${3 << 20} ${2 << 20} ${1 << 20} ${1 << 20}`);
    expect((await fs.readFile(`${f}.copy`)).equals(Buffer.alloc(1 << 20, 'x'))).toBe(true);
    await sh('fallocate', ['--punch-hole', '--offset', '0', '--length', String(1 << 20), f]);
    const after = await fs.readFile(f);
    expect(after.length).toBe(3 << 20);
    expect(after.subarray(0, 1 << 20).equals(Buffer.alloc(1 << 20))).toBe(true);
    expect(after.subarray(2 << 20).equals(Buffer.alloc(1 << 20, 'y'))).toBe(true);
  });

  it('statfs reports the Vfs numbers', async () => {
    const st = await fs.statfs(mp);
    expect(st.bsize).toBe(4096);
    expect(st.blocks).toBe(2 ** 40 / 4096);
    expect(st.ffree).toBe(1_000_000);
  });

  it('lists a 10k-entry directory (readdir and readdirplus) completely', async () => {
    const d = path.join(mp, 'many');
    await py(
      `
import os, stat, sys
d = sys.argv[1]
os.mkdir(d)
for i in range(10000):
    os.mknod(os.path.join(d, 'entry-%05d-with-a-longer-name' % i), 0o644 | stat.S_IFREG)
`,
      d,
    );
    const names = await fs.readdir(d);
    expect(names.length).toBe(10000);
    expect(new Set(names).size).toBe(10000);
    expect(names).toContain('entry-09999-with-a-longer-name');
    const ls = await sh('ls', ['-la', d]);
    expect(ls.stdout.trim().split('\n').length).toBe(10000 + 3); // total line, ., ..
    const st = await s!.stats();
    expect(st.vfs.ops.readdirplus ?? 0).toBeGreaterThan(0);
    expect(st.vfs.ops.mknod).toBe(10000);
  });

  it('flock across processes: exclusive conflicts, blocking waits, interrupt frees the waiter', async () => {
    const f = path.join(mp, 'lockfile');
    await fs.writeFile(f, '');
    const holder = sh('flock', ['-x', f, '-c', 'sleep 2']);
    await new Promise((r) => setTimeout(r, 500));
    const nb = await sh('flock', ['-n', '-x', f, '-c', 'true'], { allowFail: true });
    expect(nb.code).toBe(1);
    const shared = await sh('flock', ['-n', '-s', f, '-c', 'true'], { allowFail: true });
    expect(shared.code).toBe(1);
    // A waiter interrupted by a signal must return promptly (INTERRUPT → EINTR).
    const t0 = Date.now();
    const intr = await sh('timeout', ['-s', 'INT', '0.5', 'flock', '-x', f, '-c', 'true'], { allowFail: true });
    expect(intr.code).not.toBe(0);
    expect(Date.now() - t0).toBeLessThan(1400);
    // A blocking waiter gets the lock once the holder exits.
    const t1 = Date.now();
    const w = await sh('flock', ['-x', f, '-c', 'echo got']);
    expect(w.stdout.trim()).toBe('got');
    await holder;
    expect(Date.now() - t1).toBeGreaterThan(200);
    // Released on close: immediately available again.
    expect((await sh('flock', ['-n', '-x', f, '-c', 'true'], { allowFail: true })).code).toBe(0);
  });

  it('kills suid/sgid on write and truncate by unprivileged callers (HANDLE_KILLPRIV_V2), no GETXATTR per write', async () => {
    const asUser = (cmd: string) => sh('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'sh', '-c', cmd]);
    const mode = async (f: string) => (await fs.stat(f)).mode & 0o7777;
    const f = path.join(mp, 'setid');
    await fs.writeFile(f, 'x');
    await fs.chmod(f, 0o4777);
    await fs.appendFile(f, 'root keeps it'); // root has CAP_FSETID
    expect(await mode(f)).toBe(0o4777);
    await asUser(`echo user >> ${f}`);
    expect(await mode(f)).toBe(0o777);
    await fs.chmod(f, 0o2775 | 0o002);
    await asUser(`echo user >> ${f}`);
    expect(await mode(f)).toBe(0o777); // sgid with group-exec goes too
    await fs.chmod(f, 0o2767);
    await asUser(`echo user >> ${f}`);
    expect(await mode(f)).toBe(0o2767); // sgid without group-exec (mandatory locking mark) stays
    await fs.chmod(f, 0o4777);
    await asUser(`truncate -s 1 ${f}`);
    expect(await mode(f)).toBe(0o777);
    await fs.chmod(f, 0o4777);
    await asUser(`echo trunc > ${f}`); // open(O_TRUNC)
    expect(await mode(f)).toBe(0o777);

    const before = (await s!.stats()).vfs.ops.getxattr ?? 0;
    await sh('dd', ['if=/dev/zero', `of=${path.join(mp, 'small-writes')}`, 'bs=4k', 'count=300']);
    const after = (await s!.stats()).vfs.ops.getxattr ?? 0;
    expect(after - before).toBeLessThan(5);
  });

  it('a rejection without errno becomes EIO and is logged once', async () => {
    await expect(fs.stat(path.join(mp, 'eio-1'))).rejects.toMatchObject({ code: 'EIO' });
    await expect(fs.stat(path.join(mp, 'eio-2'))).rejects.toMatchObject({ code: 'EIO' });
    const logged = s!.stderr().split('\n').filter((l) => l.includes('lookup failed with a non-errno error'));
    expect(logged.length).toBe(1);
    expect(logged[0]).toContain('simulated internal failure');
  });

  it('unknown opcodes get ENOSYS (ioctl)', async () => {
    await fs.writeFile(path.join(mp, 'ioc'), 'x');
    const r = await sh('chattr', ['+i', path.join(mp, 'ioc')], { allowFail: true });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not supported|Inappropriate ioctl|Function not implemented/i);
  });

  it('fcntl (POSIX) locks across processes: F_SETLK conflict, F_GETLK owner, release on close', async () => {
    const f = path.join(mp, 'plock');
    await fs.writeFile(f, 'data');
    const r = await py(
      `
import fcntl, os, struct, sys, time, errno
f = sys.argv[1]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    fd = os.open(f, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    os.write(w, b'1')
    time.sleep(1.5)
    os._exit(0)
os.read(r, 1)
fd = os.open(f, os.O_RDWR)
res = []
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    res.append('locked?!')
except OSError as e:
    res.append(errno.errorcode[e.errno])
# F_GETLK: struct flock {short type, whence; off_t start, len; pid_t pid}
lk = struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 10, 0)
got = struct.unpack('hhqqi', fcntl.fcntl(fd, fcntl.F_GETLK, lk))
res.append(got[0] == fcntl.F_WRLCK and got[4] == pid)
# non-overlapping range is free
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 100)
# blocking F_SETLKW succeeds once the child exits
t = time.time()
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
res.append(time.time() - t > 0.5)
os.waitpid(pid, 0)
print(res)
`,
      f,
    );
    expect(r.stdout.trim()).toBe("['EAGAIN', True, True]");
  });
});

describe('writeback cache mode', { timeout: 60_000 }, () => {
  let mp: string;
  let s: MemServer | undefined;
  beforeAll(async () => {
    mp = path.join(await scratchDir('wb'), 'mnt');
    await fs.mkdir(mp);
    s = await startMemServer(mp, { writebackCache: true });
  });
  afterAll(async () => {
    await cleanup(s, mp);
  });

  it('negotiates FUSE_WRITEBACK_CACHE; appends, overwrites and truncates stay coherent', async () => {
    expect(s!.negotiated.flags & FUSE_WRITEBACK_CACHE).toBe(FUSE_WRITEBACK_CACHE);
    const f = path.join(mp, 'wb.txt');
    await fs.writeFile(f, 'hello');
    await fs.appendFile(f, ' world');
    const h = await fs.open(f, 'r+');
    await h.write('J', 6);
    await h.close();
    expect(await fs.readFile(f, 'utf8')).toBe('hello Jorld');
    await fs.truncate(f, 5);
    expect(await fs.readFile(f, 'utf8')).toBe('hello');
    const data = randomBytes(3 << 20);
    await fs.writeFile(f, data);
    expect((await fs.readFile(f)).equals(data)).toBe(true);
    const st = await s!.stats();
    expect(st.vfs.writes).toBeGreaterThan(0);
  });
});

describe('kernel cache invalidation notifications', { timeout: 60_000 }, () => {
  let mp: string;
  let s: MemServer | undefined;
  beforeAll(async () => {
    mp = path.join(await scratchDir('inval'), 'mnt');
    await fs.mkdir(mp);
    // Long TTLs and keep_cache: without notifications the kernel would keep serving stale data.
    s = await startMemServer(mp, { entryTtl: 600, attrTtl: 600, keepCache: true });
  });
  afterAll(async () => {
    await cleanup(s, mp);
  });

  it('notify_inval_inode drops cached pages and attributes; notify_inval_entry drops the name', async () => {
    const f = path.join(mp, 'cached.txt');
    await fs.writeFile(f, 'version-1');
    expect(await fs.readFile(f, 'utf8')).toBe('version-1');
    expect(await s!.command('extwrite cached.txt version-2-longer')).toBe('OK');
    expect(await fs.readFile(f, 'utf8')).toBe('version-2-longer');

    expect((await fs.stat(f)).size).toBe(16);
    expect(await s!.command('extunlink cached.txt')).toBe('OK');
    await expect(fs.stat(f)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('mount lifecycle', { timeout: 120_000 }, () => {
  it('refuses a path that is already a live mount point', async () => {
    const mp = path.join(await scratchDir('busy'), 'mnt');
    await fs.mkdir(mp);
    const s = await startMemServer(mp);
    try {
      const err = await mountFuse(new MemVfs(), mp).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MountError);
      expect((err as MountError).code).toBe('already_mounted');
      expect((err as Error).message).toContain('is already a mount point; run `artifacts unmount');
    } finally {
      await cleanup(s, mp);
    }
  });

  it('unmount flushes through vfs.shutdown and leaves no mount behind', async () => {
    const mp = path.join(await scratchDir('unmount'), 'mnt');
    await fs.mkdir(mp);
    const s = await startMemServer(mp);
    try {
      await fs.writeFile(path.join(mp, 'f'), 'x');
      expect(await s.command('unmount')).toBe('UNMOUNTED shutdown=true');
      expect(await s.exited).toBe(0);
      expect(await isMountPoint(mp)).toBe(false);
    } finally {
      await cleanup(s, mp);
    }
  });

  it('a killed server leaves a stale mount that the next mount cleans', async () => {
    const mp = path.join(await scratchDir('stale'), 'mnt');
    await fs.mkdir(mp);
    let s: MemServer | undefined = await startMemServer(mp);
    try {
      await fs.writeFile(path.join(mp, 'before'), 'x');
      s.proc.kill('SIGKILL');
      await s.exited;
      expect(await isMountPoint(mp)).toBe(true);
      await expect(fs.stat(path.join(mp, 'nope'))).rejects.toMatchObject({ code: 'ENOTCONN' });
      expect(await isStaleMount(mp)).toBe(true);

      s = await startMemServer(mp); // mountFuse cleans the stale mount first
      expect(await isStaleMount(mp)).toBe(false);
      await fs.writeFile(path.join(mp, 'after'), 'y');
      expect(await fs.readdir(mp)).toEqual(['after']); // a fresh memvfs, not the dead one
      const stacked = (await import('../../fs/fuse/mount.js')).readMountInfo().filter((m) => m.mountpoint === mp);
      expect(stacked.length).toBe(1);
    } finally {
      await cleanup(s, mp);
    }
    expect(await isMountPoint(mp)).toBe(false);
  });
});
