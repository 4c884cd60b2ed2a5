/**
 * Permission semantics through the kernel, as root and as other users: read/write/exec/search
 * EACCES, owner class precedence, supplementary groups, chmod/chown/utimens rights, sticky and
 * setgid directories, suid/sgid clearing, umask, creat() of a read-only mode, runuser.
 *
 * Each check runs on a local ext4 directory first (it proves the expectation is Linux's) and then
 * on an artifacts mount of the real stack (real redis-server, file object store, the CLI's mount
 * daemon). Callers are separate processes that switched uid/gid/groups (lib/posixop.py).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/servers.js';
import { type Identity, NOBODY, PosixProc, ROOT } from './lib/posix.js';
import { sh } from './lib/stack.js';
import { localTarget, mountTarget, type Target } from './lib/targets.js';

const A: Identity = { uid: 1001, gid: 1001 };
const B: Identity = { uid: 1002, gid: 1002 };
const G: Identity = { uid: 1003, gid: 1003, groups: [2000] };
const GRP = 2000;

const R_OK = 4;
const W_OK = 2;
const X_OK = 1;
const F_OK = 0;

describe.each(['ext4', 'artifacts'] as const)('permissions on %s', { timeout: 120_000 }, (kind) => {
  let t: Target;
  let root: PosixProc;
  let a: PosixProc;
  let b: PosixProc;
  let g: PosixProc;
  let nobody: PosixProc;
  let n = 0;
  /** A fresh directory (mode 0777, owner root) for one check. */
  const fresh = async (mode = 0o777): Promise<string> => {
    const d = path.join(t.root, `t${++n}`);
    await root.ok('mkdir', d, 0o755);
    await root.ok('chmod', d, mode);
    return d;
  };

  beforeAll(async () => {
    t = kind === 'ext4' ? await localTarget(await tmpDir('posix-perm-local')) : await mountTarget('perm');
    [root, a, b, g, nobody] = await Promise.all([
      PosixProc.start(ROOT),
      PosixProc.start(A),
      PosixProc.start(B),
      PosixProc.start(G),
      PosixProc.start(NOBODY),
    ]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([root, a, b, g, nobody].map((p) => p?.close()));
    await t?.stop();
  });

  it('callers really run as the requested identities', async () => {
    expect(await a.ok('ids')).toEqual({ uid: 1001, euid: 1001, gid: 1001, egid: 1001, groups: [] });
    expect(await g.ok('ids')).toEqual({ uid: 1003, euid: 1003, gid: 1003, egid: 1003, groups: [GRP] });
  });

  it('read and write permission of files: EACCES for others, owner class first, root bypasses', async () => {
    const d = await fresh();
    const f600 = path.join(d, 'f600');
    await root.writeFile(f600, 'secret');
    await root.ok('chmod', f600, 0o600);
    expect(await a.errno('open', f600, ['O_RDONLY'])).toBe('EACCES');
    expect(await a.errno('open', f600, ['O_WRONLY'])).toBe('EACCES');
    expect(await a.errno('truncate', f600, 0)).toBe('EACCES');
    expect(await a.errno('access2', f600, R_OK)).toBe('EACCES');
    expect(await a.errno('access2', f600, F_OK)).toBe('OK');
    expect((await root.readFile(f600)).toString()).toBe('secret'); // root ignores the mode bits

    // Owner bits decide for the owner even if "other" would allow more.
    const own = path.join(d, 'own');
    await a.writeFile(own, 'mine');
    await a.ok('chmod', own, 0o044);
    expect(await a.errno('open', own, ['O_RDONLY'])).toBe('EACCES');
    expect(await b.errno('open', own, ['O_RDONLY'])).toBe('OK');
    await a.ok('chmod', own, 0o400);
    const fd = await a.ok<number>('open', own, ['O_RDONLY']);
    await a.ok('close', fd);
    expect(await a.errno('open', own, ['O_RDWR'])).toBe('EACCES');
    expect(await a.errno('open', own, ['O_WRONLY', 'O_TRUNC'])).toBe('EACCES');
    expect((await a.stat(own)).size).toBe(4);

    // Group class, through a supplementary group (not in the FUSE request header).
    const grp = path.join(d, 'grp');
    await root.writeFile(grp, 'group data');
    await root.ok('chown', grp, 0, GRP);
    await root.ok('chmod', grp, 0o640);
    expect((await g.readFile(grp)).toString()).toBe('group data');
    expect(await g.errno('open', grp, ['O_WRONLY'])).toBe('EACCES');
    expect(await a.errno('open', grp, ['O_RDONLY'])).toBe('EACCES');
    expect(await g.errno('access2', grp, R_OK)).toBe('OK');
    expect(await g.errno('access2', grp, W_OK)).toBe('EACCES');
    expect(await nobody.errno('open', grp, ['O_RDONLY'])).toBe('EACCES');
  });

  it('exec permission: EACCES without an x bit, for root too unless some x bit is set', async () => {
    const d = await fresh();
    const s = path.join(d, 'script.sh');
    await root.writeFile(s, '#!/bin/sh\nexit 7\n', 0o644);
    await root.ok('chmod', s, 0o644);
    expect(await a.errno('exec', s)).toBe('EACCES');
    expect(await root.errno('exec', s)).toBe('EACCES');
    await root.ok('chmod', s, 0o744);
    expect(await root.ok('exec', s)).toMatchObject({ code: 7 });
    expect(await a.errno('exec', s)).toBe('EACCES');
    expect(await a.errno('access2', s, X_OK)).toBe('EACCES');
    await root.ok('chmod', s, 0o755);
    expect(await a.ok('exec', s)).toMatchObject({ code: 7 });
    expect(await a.errno('access2', s, X_OK)).toBe('OK');
  });

  it('directory search, list and write permission', async () => {
    const d = await fresh();
    const priv = path.join(d, 'priv');
    await root.ok('mkdir', priv, 0o700);
    await root.writeFile(path.join(priv, 'known'), 'k');
    expect(await a.errno('stat', path.join(priv, 'known'))).toBe('EACCES');
    expect(await a.errno('listdir', priv)).toBe('EACCES');
    expect(await a.errno('chdir', priv)).toBe('EACCES');
    expect(await a.errno('open', path.join(priv, 'new'), ['O_WRONLY', 'O_CREAT'])).toBe('EACCES');

    // Search only (x): names that are known can be used, the directory cannot be listed.
    await root.ok('chmod', priv, 0o711);
    expect((await a.stat(path.join(priv, 'known'))).size).toBe(1);
    expect(await a.errno('listdir', priv)).toBe('EACCES');
    expect(await a.errno('chdir', priv)).toBe('OK');
    await a.ok('chdir', '/');

    // Read only (r): listable, but no name can be resolved through it.
    await root.ok('chmod', priv, 0o744);
    expect(await a.ok('listdir', priv)).toEqual(['known']);
    expect(await a.errno('stat', path.join(priv, 'known'))).toBe('EACCES');

    // No write permission on the directory: no create, unlink, rename, mkdir, rmdir, link, symlink.
    const ro = path.join(d, 'ro');
    await a.ok('mkdir', ro, 0o755);
    await a.writeFile(path.join(ro, 'x'), 'x');
    await a.ok('mkdir', path.join(ro, 'sub'));
    await a.ok('chmod', ro, 0o555);
    expect(await a.errno('open', path.join(ro, 'new'), ['O_WRONLY', 'O_CREAT'])).toBe('EACCES');
    expect(await a.errno('unlink', path.join(ro, 'x'))).toBe('EACCES');
    expect(await a.errno('rename', path.join(ro, 'x'), path.join(ro, 'y'))).toBe('EACCES');
    expect(await a.errno('rename', path.join(ro, 'x'), path.join(d, 'moved'))).toBe('EACCES');
    expect(await a.errno('mkdir', path.join(ro, 'sub2'))).toBe('EACCES');
    expect(await a.errno('rmdir', path.join(ro, 'sub'))).toBe('EACCES');
    expect(await a.errno('symlink', 'x', path.join(ro, 'sl'))).toBe('EACCES');
    expect(await a.errno('link', path.join(ro, 'x'), path.join(ro, 'hl'))).toBe('EACCES');
    expect(await a.errno('mkfifo', path.join(ro, 'fifo'))).toBe('EACCES');
    // ... but the files in it stay writable by their mode.
    const fd = await a.ok<number>('open', path.join(ro, 'x'), ['O_WRONLY', 'O_APPEND']);
    await a.ok('close', fd);
    // Root is not bound by directory modes.
    await root.writeFile(path.join(ro, 'byroot'), 'r');
    await root.ok('unlink', path.join(ro, 'byroot'));
    // access(2) on a directory
    expect(await a.errno('access2', ro, W_OK)).toBe('EACCES');
    expect(await a.errno('access2', ro, R_OK | X_OK)).toBe('OK');
    await a.ok('chmod', ro, 0o755);
  });

  it('chmod, chown, chgrp: only the owner (and root); groups only to groups the caller is in', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await root.writeFile(f, 'x');
    expect(await a.errno('chmod', f, 0o777)).toBe('EPERM');
    expect(await a.errno('chown', f, 1001, -1)).toBe('EPERM');
    const mine = path.join(d, 'mine');
    await g.writeFile(mine, 'x');
    expect(await g.errno('chown', mine, 1002, -1)).toBe('EPERM'); // give away: never
    expect(await g.errno('chown', mine, -1, 1002)).toBe('EPERM'); // not a member of 1002
    await g.ok('chown', mine, -1, GRP); // member of the supplementary group
    expect(await g.stat(mine)).toMatchObject({ uid: 1003, gid: GRP });
    await g.ok('chown', mine, 1003, -1); // chown to oneself is a no-op, allowed
    await g.ok('chmod', mine, 0o600);
    expect((await g.stat(mine)).perm).toBe(0o600);
    await root.ok('chown', mine, 1001, 1001);
    expect(await a.stat(mine)).toMatchObject({ uid: 1001, gid: 1001 });
    expect(await g.errno('chmod', mine, 0o644)).toBe('EPERM');
  });

  it('setgid bit: cleared by chmod when the owner is not in the file group; suid cleared by chown and by a write of another user', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await root.writeFile(f, 'x');
    await root.ok('chown', f, 1001, GRP);
    await a.ok('chmod', f, 0o2755); // A is not in group 2000
    expect((await root.stat(f)).perm).toBe(0o755);
    await root.ok('chown', f, 1003, GRP);
    await g.ok('chmod', f, 0o2755); // G is
    expect((await root.stat(f)).perm).toBe(0o2755);

    const suid = path.join(d, 'suid');
    await root.writeFile(suid, '#!/bin/sh\n');
    await root.ok('chmod', suid, 0o4755);
    await root.ok('chown', suid, 1001, -1);
    expect((await root.stat(suid)).perm & 0o4000).toBe(0); // chown of a regular file drops suid

    const w = path.join(d, 'w');
    await root.writeFile(w, 'x');
    await root.ok('chmod', w, 0o4777);
    const fd = await b.ok<number>('open', w, ['O_WRONLY', 'O_APPEND']);
    expect(await b.ok('write', fd, Buffer.from('more').toString('base64'))).toBe(4);
    await b.ok('close', fd);
    expect((await root.stat(w)).perm).toBe(0o777); // a write by a non-owner kills suid
    expect((await root.readFile(w)).toString()).toBe('xmore');
  });

  it('non-owners: utimens with explicit times (or one omitted) is EPERM, "both now" needs write permission', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await root.writeFile(f, 'x');
    await root.ok('chmod', f, 0o666);
    expect(await a.errno('utime_ns', f, '1000000000000000000', '1000000000000000000')).toBe('EPERM');
    expect(await a.errno('utimensat', f, 'now', 'now')).toBe('OK');
    // Only "both now" (or NULL times) is the write-permission case; anything else needs ownership.
    expect(await a.errno('utimensat', f, 'omit', 'now')).toBe('EPERM');
    await root.ok('chmod', f, 0o644);
    expect(await a.errno('utimensat', f, 'now', 'now')).toBe('EACCES');
    expect(await a.errno('utime_now', f)).toBe('EACCES');
    await root.ok('chown', f, 1001, 1001);
    expect(await a.errno('utime_ns', f, '1000000000123456789', '1100000000987654321')).toBe('OK');
    expect(await a.stat(f)).toMatchObject({ atime_ns: '1000000000123456789', mtime_ns: '1100000000987654321' });
  });

  it('sticky directory: only the file owner, the directory owner or root may remove or rename', async () => {
    const d = await fresh(0o1777);
    const fa = path.join(d, 'fa');
    await a.writeFile(fa, 'a', 0o666);
    await a.ok('chmod', fa, 0o666);
    const fb = path.join(d, 'fb');
    await b.writeFile(fb, 'b');
    expect(await b.errno('unlink', fa)).toBe('EPERM');
    expect(await b.errno('rename', fa, path.join(d, 'stolen'))).toBe('EPERM');
    expect(await b.errno('rename', fb, fa)).toBe('EPERM'); // replacing someone else's file
    // Sticky restricts removal only: B may still write A's world-writable file.
    const fd = await b.ok<number>('open', fa, ['O_WRONLY', 'O_APPEND']);
    await b.ok('write', fd, Buffer.from('+b').toString('base64'));
    await b.ok('close', fd);
    expect((await a.readFile(fa)).toString()).toBe('a+b');
    await a.ok('rename', fa, path.join(d, 'fa2'));
    await a.ok('unlink', path.join(d, 'fa2'));
    await root.ok('unlink', fb);
    // The directory's owner may remove anyone's file.
    const od = path.join(d, 'owned');
    await a.ok('mkdir', od, 0o777);
    await a.ok('chmod', od, 0o1777);
    await b.writeFile(path.join(od, 'byb'), 'b');
    expect(await nobody.errno('unlink', path.join(od, 'byb'))).toBe('EPERM');
    await a.ok('unlink', path.join(od, 'byb'));
    // Sticky directories protect subdirectories too.
    await b.ok('mkdir', path.join(d, 'bdir'));
    expect(await a.errno('rmdir', path.join(d, 'bdir'))).toBe('EPERM');
    await b.ok('rmdir', path.join(d, 'bdir'));
  });

  it('setgid directory: new entries inherit its group, subdirectories inherit the bit', async () => {
    const d = await fresh();
    const sg = path.join(d, 'sg');
    await root.ok('mkdir', sg, 0o777);
    await root.ok('chown', sg, 0, GRP);
    await root.ok('chmod', sg, 0o2777);
    await a.writeFile(path.join(sg, 'file'), 'x');
    await a.ok('mkdir', path.join(sg, 'sub'), 0o755);
    await a.ok('mkfifo', path.join(sg, 'fifo'));
    await a.ok('symlink', 'file', path.join(sg, 'sl'));
    expect(await a.stat(path.join(sg, 'file'))).toMatchObject({ uid: 1001, gid: GRP });
    expect(await a.stat(path.join(sg, 'sub'))).toMatchObject({ uid: 1001, gid: GRP, perm: 0o2755 });
    expect(await a.lstat(path.join(sg, 'fifo'))).toMatchObject({ gid: GRP });
    expect(await a.lstat(path.join(sg, 'sl'))).toMatchObject({ gid: GRP });
    // Two levels down still inherits (the bit was inherited by sub).
    await a.writeFile(path.join(sg, 'sub', 'deep'), 'x');
    expect((await a.stat(path.join(sg, 'sub', 'deep'))).gid).toBe(GRP);
    // A file created with S_ISGID by a non-member loses that bit.
    const fd = await a.ok<number>('open', path.join(sg, 'sgfile'), ['O_WRONLY', 'O_CREAT', 'O_EXCL'], 0o2755);
    await a.ok('close', fd);
    expect(await a.stat(path.join(sg, 'sgfile'))).toMatchObject({ gid: GRP, perm: 0o755 });
    // Outside a setgid directory the creator's primary group is used.
    await a.writeFile(path.join(d, 'plain'), 'x');
    expect((await a.stat(path.join(d, 'plain'))).gid).toBe(1001);
  });

  it('umask applies to new files and directories; creat() with a read-only mode returns a writable fd', async () => {
    const d = await fresh();
    const u = await PosixProc.start(A, { umask: 0o027 });
    try {
      const fd = await u.ok<number>('open', path.join(d, 'f'), ['O_WRONLY', 'O_CREAT'], 0o666);
      await u.ok('close', fd);
      await u.ok('mkdir', path.join(d, 'dd'), 0o777);
      expect((await u.stat(path.join(d, 'f'))).perm).toBe(0o640);
      expect((await u.stat(path.join(d, 'dd'))).perm).toBe(0o750);
    } finally {
      await u.close();
    }
    const ro = path.join(d, 'ro');
    const fd = await a.ok<number>('open', ro, ['O_WRONLY', 'O_CREAT', 'O_EXCL'], 0o444);
    expect(await a.ok('write', fd, Buffer.from('written').toString('base64'))).toBe(7);
    await a.ok('close', fd);
    expect((await a.stat(ro)).perm).toBe(0o444);
    expect((await a.readFile(ro)).toString()).toBe('written');
    expect(await a.errno('open', ro, ['O_WRONLY'])).toBe('EACCES');
    // O_CREAT on an existing file only needs the access mode's permission
    const fd2 = await a.ok<number>('open', ro, ['O_RDONLY', 'O_CREAT'], 0o666);
    await a.ok('close', fd2);
  });

  it('xattrs need write permission to set and read permission to get; trusted.* is root only', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await root.writeFile(f, 'x');
    await root.ok('chmod', f, 0o644);
    await root.ok('setxattr', f, 'user.k', Buffer.from('v').toString('base64'));
    expect(await a.errno('setxattr', f, 'user.k2', Buffer.from('v').toString('base64'))).toBe('EACCES');
    expect(await a.errno('removexattr', f, 'user.k')).toBe('EACCES');
    expect(await a.ok('getxattr', f, 'user.k')).toBe(Buffer.from('v').toString('base64'));
    await root.ok('chmod', f, 0o640);
    expect(await a.errno('getxattr', f, 'user.k')).toBe('EACCES');
    expect(await a.ok('listxattr', f)).toEqual(['user.k']); // listing names needs no permission
    const mine = path.join(d, 'mine');
    await a.writeFile(mine, 'x');
    expect(await a.errno('setxattr', mine, 'trusted.k', Buffer.from('v').toString('base64'))).toBe('EPERM');
    expect(await root.errno('setxattr', mine, 'trusted.k', Buffer.from('v').toString('base64'))).toBe('OK');
    expect(await a.ok('listxattr', mine)).toEqual([]); // trusted.* is invisible to others
    expect(await root.ok('listxattr', mine)).toEqual(['trusted.k']);
  });

  it('protected hardlinks: no link to a file one cannot read and write (fs.protected_hardlinks=1)', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await root.writeFile(f, 'x');
    await root.ok('chmod', f, 0o644);
    const prot = (await sh('sysctl', ['-n', 'fs.protected_hardlinks'])).stdout.trim();
    expect(await a.errno('link', f, path.join(d, 'l'))).toBe(prot === '1' ? 'EPERM' : 'OK');
    await root.ok('chmod', f, 0o666);
    expect(await a.errno('link', f, path.join(d, 'l2'))).toBe('OK');
    expect((await a.stat(f)).nlink).toBe(prot === '1' ? 2 : 3);
  });

  it('runuser: real tools as nobody get "Permission denied" and can use what is theirs', async () => {
    const d = await fresh();
    const secret = path.join(d, 'secret');
    await root.writeFile(secret, 'root only');
    await root.ok('chmod', secret, 0o600);
    const cat = await sh('runuser', ['-u', 'nobody', '--', 'cat', secret]);
    expect(cat.code).not.toBe(0);
    expect(cat.stderr).toContain('Permission denied');
    const mk = await sh('runuser', ['-u', 'nobody', '--', 'sh', '-c', `echo hello > ${d}/nob && cat ${d}/nob && ls -ln ${d}/nob`]);
    expect(mk.stderr).toBe('');
    expect(mk.stdout).toMatch(/^hello\n-rw-r--r-- 1 65534 65534 6 /);
    const ro = path.join(d, 'rodir');
    await root.ok('mkdir', ro, 0o755);
    const touch = await sh('runuser', ['-u', 'nobody', '--', 'touch', `${ro}/x`]);
    expect(touch.stderr).toContain('Permission denied');
    const rm = await sh('runuser', ['-u', 'nobody', '--', 'rm', '-f', secret]);
    expect(rm.code).toBe(0); // nobody owns d's write permission (0777), not sticky: removal is allowed
    expect(await root.errno('stat', secret)).toBe('ENOENT');
  });
});
