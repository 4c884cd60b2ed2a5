/**
 * errno-level POSIX semantics of namespace and data operations through the kernel: O_EXCL,
 * O_APPEND, O_TRUNC, rename over files and directories (plain, NOREPLACE, EXCHANGE), hard-link
 * counts, symlink loops, name and path length limits, utimensat with UTIME_NOW/UTIME_OMIT,
 * truncate/fallocate/punch hole, xattrs, unlink of open files (space freed at the last close), and
 * flock/fcntl locks between two processes.
 *
 * Like permissions.test.ts every check runs on local ext4 first (proof of the expectation) and then
 * on an artifacts mount of the real stack. Checks that differ on purpose (documented in
 * docs/SEMANTICS.md) say so and branch on `kind`.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/servers.js';
import { b64, type Identity, PosixProc, ROOT, unb64 } from './lib/posix.js';
import { sh } from './lib/stack.js';
import { localTarget, mountTarget, type Target } from './lib/targets.js';

const A: Identity = { uid: 1001, gid: 1001 };
const S_IFDIR = 4;
const S_IFLNK = 10;

describe.each(['ext4', 'artifacts'] as const)('operations on %s', { timeout: 120_000 }, (kind) => {
  let t: Target;
  let p: PosixProc; // root
  let q: PosixProc; // a second root process (second lock owner)
  let a: PosixProc;
  let n = 0;
  const fresh = async (): Promise<string> => {
    const d = path.join(t.root, `t${++n}`);
    await p.ok('mkdir', d, 0o777);
    await p.ok('chmod', d, 0o777);
    return d;
  };
  const write = async (proc: PosixProc, fd: number, s: string | Buffer) => proc.ok<number>('write', fd, b64(s));
  const read = async (proc: PosixProc, fd: number, len: number, off: number) => unb64(await proc.ok('pread', fd, len, off));

  beforeAll(async () => {
    t = kind === 'ext4' ? await localTarget(await tmpDir('posix-ops-local')) : await mountTarget('ops');
    [p, q, a] = await Promise.all([PosixProc.start(ROOT), PosixProc.start(ROOT), PosixProc.start(A)]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([p, q, a].map((x) => x?.close()));
    await t?.stop();
  });

  it('O_CREAT|O_EXCL: EEXIST on a file, a directory and a dangling symlink; O_EXCL creates exactly once', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    const fd = await p.ok<number>('open', f, ['O_WRONLY', 'O_CREAT', 'O_EXCL'], 0o600);
    await p.ok('close', fd);
    expect(await p.errno('open', f, ['O_WRONLY', 'O_CREAT', 'O_EXCL'])).toBe('EEXIST');
    await p.ok('mkdir', path.join(d, 'dir'));
    expect(await p.errno('open', path.join(d, 'dir'), ['O_RDONLY', 'O_CREAT', 'O_EXCL'])).toBe('EEXIST');
    expect(await p.errno('open', path.join(d, 'dir'), ['O_WRONLY'])).toBe('EISDIR');
    expect(await p.errno('open', path.join(d, 'dir'), ['O_RDONLY', 'O_CREAT'])).toBe('EISDIR');
    await p.ok('symlink', 'nowhere', path.join(d, 'dangling'));
    expect(await p.errno('open', path.join(d, 'dangling'), ['O_WRONLY', 'O_CREAT', 'O_EXCL'])).toBe('EEXIST');
    expect(await p.ok('exists', path.join(d, 'nowhere'))).toBe(false);
    // Without O_EXCL a dangling symlink is followed and its target created.
    const fd2 = await p.ok<number>('open', path.join(d, 'dangling'), ['O_WRONLY', 'O_CREAT']);
    await p.ok('close', fd2);
    expect((await p.lstat(path.join(d, 'nowhere'))).type).toBe(8);
    // Two processes racing O_EXCL on the same name: exactly one wins.
    const name = path.join(d, 'race');
    const res = await Promise.all([
      p.errno('open', name, ['O_WRONLY', 'O_CREAT', 'O_EXCL']),
      q.errno('open', name, ['O_WRONLY', 'O_CREAT', 'O_EXCL']),
    ]);
    expect(res.sort()).toEqual(['EEXIST', 'OK']);
    expect(await p.errno('open', path.join(d, 'nodir', 'x'), ['O_WRONLY', 'O_CREAT'])).toBe('ENOENT');
    expect(await p.errno('open', path.join(f, 'x'), ['O_WRONLY', 'O_CREAT'])).toBe('ENOTDIR');
    expect(await p.errno('stat', `${f}/`)).toBe('ENOTDIR');
  });

  it('O_APPEND: every write lands at the end, also from two processes; pwrite appends too (Linux)', async () => {
    const d = await fresh();
    const f = path.join(d, 'log');
    await p.writeFile(f, 'head|');
    const fa = await p.ok<number>('open', f, ['O_WRONLY', 'O_APPEND']);
    const fb = await q.ok<number>('open', f, ['O_WRONLY', 'O_APPEND']);
    const expected: string[] = ['head|'];
    for (let i = 0; i < 20; i++) {
      const who = i % 3 === 0 ? q : p;
      const rec = `${who === p ? 'P' : 'Q'}${String(i).padStart(3, '0')}|`;
      expect(await write(who, who === p ? fa : fb, rec)).toBe(rec.length);
      expected.push(rec);
    }
    expect(await p.ok('pwrite', fa, b64('X'), 0)).toBe(1); // Linux ignores the offset under O_APPEND
    expected.push('X');
    await p.ok('close', fa);
    await q.ok('close', fb);
    expect((await p.readFile(f)).toString()).toBe(expected.join(''));
    // O_APPEND|O_RDWR: reads still work anywhere, the write position is the end
    const fd = await p.ok<number>('open', f, ['O_RDWR', 'O_APPEND']);
    expect((await read(p, fd, 4, 0)).toString()).toBe('head');
    await write(p, fd, 'END');
    expect(await p.ok('lseek', fd, 0, 'cur')).toBe(expected.join('').length + 3);
    await p.ok('close', fd);
  });

  it('O_TRUNC: empties the file and updates mtime; needs write permission; no effect on a new file', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await p.writeFile(f, '0123456789');
    await p.ok('utime_ns', f, '1000000000000000000', '1000000000000000000');
    const fd = await p.ok<number>('open', f, ['O_WRONLY', 'O_TRUNC']);
    const st = await p.ok<{ size: number; mtime_ns: string }>('fstat', fd);
    expect(st.size).toBe(0);
    expect(BigInt(st.mtime_ns)).toBeGreaterThan(1_000_000_000_000_000_000n);
    await write(p, fd, 'ab');
    await p.ok('close', fd);
    expect((await p.readFile(f)).toString()).toBe('ab');
    await p.ok('chmod', f, 0o644);
    expect(await a.errno('open', f, ['O_RDONLY', 'O_TRUNC'])).toBe('EACCES');
    expect((await p.stat(f)).size).toBe(2);
    const fd2 = await p.ok<number>('open', path.join(d, 'new'), ['O_WRONLY', 'O_CREAT', 'O_TRUNC']);
    await p.ok('close', fd2);
    expect((await p.stat(path.join(d, 'new'))).size).toBe(0);
    // O_TRUNC on a file open elsewhere: the other descriptor sees the new size
    await p.writeFile(f, 'abcdef');
    const keep = await q.ok<number>('open', f, ['O_RDONLY']);
    const fd3 = await p.ok<number>('open', f, ['O_WRONLY', 'O_TRUNC']);
    await p.ok('close', fd3);
    expect((await q.ok<{ size: number }>('fstat', keep)).size).toBe(0);
    expect(unb64(await q.ok('pread', keep, 10, 0)).length).toBe(0);
    await q.ok('close', keep);
  });

  it('rename: over files and directories, EISDIR/ENOTDIR/ENOTEMPTY/EINVAL, NOREPLACE, EXCHANGE', async () => {
    const d = await fresh();
    const j = (s: string) => path.join(d, s);
    await p.writeFile(j('a'), 'A');
    await p.writeFile(j('b'), 'B');
    const bIno = (await p.stat(j('b'))).ino;
    await p.ok('rename', j('a'), j('b'));
    expect((await p.readFile(j('b'))).toString()).toBe('A');
    expect((await p.stat(j('b'))).ino).not.toBe(bIno);
    expect(await p.errno('stat', j('a'))).toBe('ENOENT');

    await p.ok('mkdir', j('d1'));
    await p.ok('mkdir', j('d2'));
    await p.ok('mkdir', j('full'));
    await p.writeFile(j('full/x'), 'x');
    expect(await p.errno('rename', j('b'), j('d1'))).toBe('EISDIR');
    expect(await p.errno('rename', j('d1'), j('b'))).toBe('ENOTDIR');
    expect(await p.errno('rename', j('d1'), j('full'))).toBe('ENOTEMPTY');
    expect(await p.errno('rename', j('d1'), j('d1/sub'))).toBe('EINVAL'); // into itself
    await p.ok('mkdir', j('d1/inner'));
    expect(await p.errno('rename', j('d1'), j('d1/inner/x'))).toBe('EINVAL');
    expect(await p.errno('rename', j('missing'), j('x'))).toBe('ENOENT');
    expect(await p.errno('rename', j('b'), j('missing/x'))).toBe('ENOENT');
    expect(await p.errno('rename', j('b'), j('b/x'))).toBe('ENOTDIR');
    // directory over an empty directory replaces it; parents' nlink follow
    const before = (await p.stat(d)).nlink;
    await p.ok('rename', j('d1'), j('d2'));
    expect((await p.stat(j('d2/inner'))).type).toBe(S_IFDIR);
    expect(await p.errno('stat', j('d1'))).toBe('ENOENT');
    expect((await p.stat(d)).nlink).toBe(before - 1);
    // moving a directory to another parent moves one link between parents
    const fullN = (await p.stat(j('full'))).nlink;
    await p.ok('rename', j('d2'), j('full/d2'));
    expect((await p.stat(j('full'))).nlink).toBe(fullN + 1);
    expect((await p.stat(d)).nlink).toBe(before - 2);
    expect((await p.stat(j('full/d2'))).nlink).toBe(3); // ., its entry, inner/..
    // rename of a name onto a hard link of the same inode: nothing happens, both names stay
    await p.ok('link', j('b'), j('b2'));
    await p.ok('rename', j('b'), j('b2'));
    expect(await p.ok('listdir', d)).toEqual(['b', 'b2', 'full']);
    expect((await p.stat(j('b'))).nlink).toBe(2);
    // renameat2
    await p.writeFile(j('c'), 'C');
    expect(await p.errno('renameat2', j('c'), j('b'), ['NOREPLACE'])).toBe('EEXIST');
    await p.ok('renameat2', j('c'), j('c2'), ['NOREPLACE']);
    await p.ok('renameat2', j('c2'), j('full'), ['EXCHANGE']);
    expect((await p.stat(j('c2'))).type).toBe(S_IFDIR);
    expect((await p.readFile(j('full'))).toString()).toBe('C');
    expect((await p.stat(j('c2/x'))).size).toBe(1);
    expect(await p.errno('renameat2', j('full'), j('nope'), ['EXCHANGE'])).toBe('ENOENT');
    // rmdir / unlink / mkdir errors
    expect(await p.errno('rmdir', j('c2'))).toBe('ENOTEMPTY');
    expect(await p.errno('rmdir', j('b'))).toBe('ENOTDIR');
    expect(await p.errno('unlink', j('c2'))).toBe('EISDIR');
    expect(await p.errno('mkdir', j('b'))).toBe('EEXIST');
    expect(await p.errno('rmdir', `${j('c2')}/.`)).toBe('EINVAL');
  });

  it('hard links: nlink through the kernel after link, unlink and rename; no links to directories', async () => {
    const d = await fresh();
    const j = (s: string) => path.join(d, s);
    await p.ok('mkdir', j('sub'));
    await p.writeFile(j('f'), 'data');
    const ino = (await p.stat(j('f'))).ino;
    await p.ok('link', j('f'), j('l1'));
    await p.ok('link', j('f'), j('sub/l2'));
    for (const name of ['f', 'l1', 'sub/l2']) expect(await p.stat(j(name))).toMatchObject({ ino, nlink: 3 });
    expect(await p.errno('link', j('f'), j('l1'))).toBe('EEXIST');
    expect(await p.errno('link', j('sub'), j('subl'))).toBe('EPERM');
    expect(await p.errno('link', j('gone'), j('x'))).toBe('ENOENT');
    await p.ok('unlink', j('l1'));
    expect((await p.stat(j('f'))).nlink).toBe(2);
    // rename over a link of another inode drops that inode's count
    await p.writeFile(j('g'), 'other');
    await p.ok('rename', j('g'), j('sub/l2'));
    expect((await p.stat(j('f'))).nlink).toBe(1);
    expect((await p.readFile(j('sub/l2'))).toString()).toBe('other');
    // renaming a link keeps the count
    await p.ok('link', j('f'), j('l3'));
    await p.ok('rename', j('l3'), j('sub/l3'));
    expect((await p.stat(j('f'))).nlink).toBe(2);
    // the data is shared: a write through one name is read through the other
    const fd = await p.ok<number>('open', j('sub/l3'), ['O_WRONLY']);
    await p.ok('pwrite', fd, b64('DA'), 0);
    await p.ok('close', fd);
    expect((await p.readFile(j('f'))).toString()).toBe('DAta');
    // an open file whose last name goes away: fstat says nlink 0
    const fd2 = await p.ok<number>('open', j('f'), ['O_RDONLY']);
    await p.ok('unlink', j('f'));
    await p.ok('unlink', j('sub/l3'));
    expect((await p.ok<{ nlink: number }>('fstat', fd2)).nlink).toBe(0);
    await p.ok('close', fd2);
    // directory nlink: 2 + subdirectories
    expect((await p.stat(j('sub'))).nlink).toBe(2);
    await p.ok('mkdir', j('sub/a'));
    await p.ok('mkdir', j('sub/b'));
    expect((await p.stat(j('sub'))).nlink).toBe(4);
    await p.ok('rmdir', j('sub/a'));
    expect((await p.stat(j('sub'))).nlink).toBe(3);
  });

  it('symlinks: ELOOP on loops and more than 40 hops, O_NOFOLLOW, readlink EINVAL, target length limits', async () => {
    const d = await fresh();
    const j = (s: string) => path.join(d, s);
    await p.ok('symlink', 'b', j('a'));
    await p.ok('symlink', 'a', j('b'));
    await p.ok('symlink', 'self', j('self'));
    for (const x of ['a', 'self']) {
      expect(await p.errno('open', j(x), ['O_RDONLY'])).toBe('ELOOP');
      expect(await p.errno('stat', j(x))).toBe('ELOOP');
      expect((await p.lstat(j(x))).type).toBe(S_IFLNK);
    }
    expect(await p.errno('open', j('a/x'), ['O_RDONLY'])).toBe('ELOOP');
    await p.writeFile(j('target'), 'T');
    // a chain of 40 links resolves, 41 is too many
    let prev = 'target';
    for (let i = 1; i <= 41; i++) {
      await p.ok('symlink', prev, j(`c${i}`));
      prev = `c${i}`;
    }
    expect((await p.readFile(j('c40'))).toString()).toBe('T');
    expect(await p.errno('open', j('c41'), ['O_RDONLY'])).toBe('ELOOP');
    expect(await p.errno('open', j('c1'), ['O_RDONLY', 'O_NOFOLLOW'])).toBe('ELOOP');
    expect(await p.errno('readlink', j('target'))).toBe('EINVAL');
    expect(await p.ok('readlink', j('c1'))).toBe('target');
    // targets up to PATH_MAX-1 bytes are stored whole, PATH_MAX is refused
    const long = 'x/'.repeat(2047) + 'y';
    expect(long.length).toBe(4095);
    await p.ok('symlink', long, j('long'));
    expect(await p.ok('readlink', j('long'))).toBe(long);
    expect((await p.lstat(j('long'))).size).toBe(4095);
    expect(await p.errno('symlink', long + 'z', j('toolong'))).toBe('ENAMETOOLONG');
    // symlink to a directory: followed for path walks, not for lstat/unlink
    await p.ok('mkdir', j('dir'));
    await p.writeFile(j('dir/in'), 'in');
    await p.ok('symlink', 'dir', j('dl'));
    expect((await p.readFile(j('dl/in'))).toString()).toBe('in');
    expect(await p.errno('rmdir', j('dl'))).toBe('ENOTDIR');
    await p.ok('unlink', j('dl'));
    expect((await p.stat(j('dir'))).type).toBe(S_IFDIR);
  });

  it('name and path limits: 255-byte names work, 256 is ENAMETOOLONG, paths beyond PATH_MAX too', async () => {
    const d = await fresh();
    const n255 = 'n'.repeat(255);
    const n256 = 'n'.repeat(256);
    await p.writeFile(path.join(d, n255), 'max');
    expect((await p.readFile(path.join(d, n255))).toString()).toBe('max');
    await p.ok('mkdir', path.join(d, `d${n255.slice(1)}`));
    // 255 bytes of UTF-8 (85 three-byte characters)
    const utf = '\u20ac'.repeat(85);
    expect(Buffer.byteLength(utf)).toBe(255);
    await p.writeFile(path.join(d, utf), 'euro');
    expect(await p.ok('listdir', d)).toEqual([`d${n255.slice(1)}`, n255, utf].sort());
    for (const [op, args] of [
      ['open', [path.join(d, n256), ['O_WRONLY', 'O_CREAT']]],
      ['stat', [path.join(d, n256)]],
      ['mkdir', [path.join(d, n256)]],
      ['symlink', ['x', path.join(d, n256)]],
      ['link', [path.join(d, n255), path.join(d, n256)]],
      ['rename', [path.join(d, n255), path.join(d, n256)]],
      ['open', [path.join(d, '\u20ac'.repeat(86)), ['O_WRONLY', 'O_CREAT']]],
    ] as const) {
      expect(await p.errno(op, ...args), `${op}`).toBe('ENAMETOOLONG');
    }
    // a path of more than PATH_MAX (4096) bytes
    const deep = path.join(d, ...Array.from({ length: 20 }, () => 'p'.repeat(250)));
    expect(Buffer.byteLength(deep)).toBeGreaterThan(4096);
    expect(await p.errno('stat', deep)).toBe('ENAMETOOLONG');
    // ... but a deep tree reached step by step works (relative paths from inside)
    let cur = d;
    for (let i = 0; i < 20; i++) {
      cur = path.join(cur, 'p'.repeat(250));
      if (Buffer.byteLength(cur) < 4000) await p.ok('mkdir', cur);
    }
  });

  it('utimensat: nanoseconds, UTIME_NOW, UTIME_OMIT, both omitted, symlinks themselves; touch -m keeps atime', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await p.writeFile(f, 'x');
    await p.ok('utime_ns', f, '1234567890123456789', '1334567890987654321');
    let st = await p.stat(f);
    expect([st.atime_ns, st.mtime_ns]).toEqual(['1234567890123456789', '1334567890987654321']);
    const c0 = BigInt(st.ctime_ns);
    await new Promise((r) => setTimeout(r, 20));
    // mtime NOW, atime OMIT: atime untouched, mtime and ctime move
    const t0 = BigInt(Date.now()) * 1_000_000n;
    await p.ok('utimensat', f, 'omit', 'now');
    st = await p.stat(f);
    expect(st.atime_ns).toBe('1234567890123456789');
    expect(BigInt(st.mtime_ns)).toBeGreaterThanOrEqual(t0 - 2_000_000_000n);
    expect(BigInt(st.ctime_ns)).toBeGreaterThan(c0);
    // atime explicit, mtime OMIT
    const m1 = st.mtime_ns;
    await p.ok('utimensat', f, [1_000_000_000, 5], 'omit');
    st = await p.stat(f);
    expect([st.atime_ns, st.mtime_ns]).toEqual(['1000000000000000005', m1]);
    // both OMIT: nothing changes, not even ctime
    const c1 = st.ctime_ns;
    await new Promise((r) => setTimeout(r, 20));
    await p.ok('utimensat', f, 'omit', 'omit');
    st = await p.stat(f);
    expect([st.atime_ns, st.mtime_ns, st.ctime_ns]).toEqual(['1000000000000000005', m1, c1]);
    // both NOW
    await p.ok('utimensat', f, 'now', 'now');
    st = await p.stat(f);
    expect(BigInt(st.atime_ns)).toBeGreaterThanOrEqual(t0 - 2_000_000_000n);
    expect(BigInt(st.atime_ns) - BigInt(st.mtime_ns)).toBeLessThan(1_000_000_000n);
    // the symlink itself (AT_SYMLINK_NOFOLLOW), its target untouched
    await p.ok('symlink', 'f', path.join(d, 'l'));
    const before = await p.stat(f);
    await p.ok('utimensat', path.join(d, 'l'), [2_000_000_000, 0], [2_000_000_001, 0], true);
    expect((await p.lstat(path.join(d, 'l'))).mtime_ns).toBe('2000000001000000000');
    expect((await p.stat(f)).mtime_ns).toBe(before.mtime_ns);
    // coreutils: touch -m sets mtime only; touch -a atime only
    await p.ok('utime_ns', f, '1500000000000000000', '1500000000000000000');
    expect((await sh('touch', ['-m', '-d', '@1600000000', f])).code).toBe(0);
    st = await p.stat(f);
    expect([st.atime_ns, st.mtime_ns]).toEqual(['1500000000000000000', '1600000000000000000']);
    expect((await sh('touch', ['-a', '-d', '@1700000000', f])).code).toBe(0);
    st = await p.stat(f);
    expect([st.atime_ns, st.mtime_ns]).toEqual(['1700000000000000000', '1600000000000000000']);
    // a data write moves mtime and ctime
    const fd = await p.ok<number>('open', f, ['O_WRONLY']);
    await write(p, fd, 'y');
    await p.ok('close', fd);
    expect(BigInt((await p.stat(f)).mtime_ns)).toBeGreaterThan(1_600_000_000_000_000_000n);
  });

  it('truncate, posix_fallocate, fallocate KEEP_SIZE / PUNCH_HOLE / ZERO_RANGE, fallocate(1) -p', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    await p.writeFile(f, data);
    // shrink, then grow: the cut bytes come back as zeros
    await p.ok('truncate', f, 100_000);
    expect((await p.stat(f)).size).toBe(100_000);
    await p.ok('truncate', f, 200_000);
    const back = await p.readFile(f);
    expect(back.length).toBe(200_000);
    expect(back.subarray(0, 100_000).equals(data.subarray(0, 100_000))).toBe(true);
    expect(back.subarray(100_000).equals(Buffer.alloc(100_000))).toBe(true);
    expect(await p.errno('truncate', f, -1)).toBe('EINVAL');
    expect(await p.errno('truncate', d, 0)).toBe('EISDIR');
    const ro = await p.ok<number>('open', f, ['O_RDONLY']);
    expect(await p.errno('ftruncate', ro, 0)).toBe('EINVAL');
    expect(await p.errno('posix_fallocate', ro, 0, 10)).toBe('EBADF');
    await p.ok('close', ro);

    const fd = await p.ok<number>('open', f, ['O_RDWR']);
    await p.ok('pwrite', fd, b64(data), 0); // 300,000 bytes of pattern again
    await p.ok('posix_fallocate', fd, 0, 1 << 20);
    expect((await p.ok<{ size: number }>('fstat', fd)).size).toBe(1 << 20);
    expect((await read(p, fd, 100, 300_000)).equals(Buffer.alloc(100))).toBe(true);
    expect((await read(p, fd, 1000, 1000)).equals(data.subarray(1000, 2000))).toBe(true);
    await p.ok('fallocate', fd, ['KEEP_SIZE'], 1 << 20, 1 << 20);
    expect((await p.ok<{ size: number }>('fstat', fd)).size).toBe(1 << 20);
    // punch a hole in the middle of the written data: zeros there, intact around it, same size
    await p.ok('fallocate', fd, ['PUNCH_HOLE', 'KEEP_SIZE'], 65_536, 131_072);
    expect((await p.ok<{ size: number }>('fstat', fd)).size).toBe(1 << 20);
    expect((await read(p, fd, 131_072, 65_536)).equals(Buffer.alloc(131_072))).toBe(true);
    expect((await read(p, fd, 65_536, 0)).equals(data.subarray(0, 65_536))).toBe(true);
    expect((await read(p, fd, 10_000, 196_608)).equals(data.subarray(196_608, 206_608))).toBe(true);
    expect(await p.errno('fallocate', fd, ['PUNCH_HOLE'], 0, 4096)).toBe('ENOTSUP'); // (= EOPNOTSUPP) needs KEEP_SIZE
    // zero range (unaligned)
    await p.ok('fallocate', fd, ['ZERO_RANGE'], 250_001, 999);
    expect((await read(p, fd, 1001, 250_000)).equals(Buffer.concat([data.subarray(250_000, 250_001), Buffer.alloc(999), data.subarray(251_000, 251_001)]))).toBe(true);
    // zero range past EOF grows the file (no KEEP_SIZE)
    await p.ok('fallocate', fd, ['ZERO_RANGE'], (1 << 20) - 10, 20);
    expect((await p.ok<{ size: number }>('fstat', fd)).size).toBe((1 << 20) + 10);
    await p.ok('close', fd);
    // the util-linux tool
    const u = path.join(d, 'u');
    await p.writeFile(u, Buffer.alloc(8192, 0x61));
    const r = await sh('fallocate', ['-p', '-o', '100', '-l', '200', u]);
    expect(r.stderr).toBe('');
    const ub = await p.readFile(u);
    expect(ub.length).toBe(8192);
    expect(ub.subarray(100, 300).equals(Buffer.alloc(200))).toBe(true);
    expect(ub.subarray(0, 100).equals(Buffer.alloc(100, 0x61))).toBe(true);
    expect(ub.subarray(300).equals(Buffer.alloc(8192 - 300, 0x61))).toBe(true);
    const l = await sh('fallocate', ['-l', '1MiB', path.join(d, 'alloc')]);
    expect(l.stderr).toBe('');
    expect((await p.stat(path.join(d, 'alloc'))).size).toBe(1 << 20);
  });

  it('xattrs: set/get/list/remove, XATTR_CREATE/REPLACE errors, binary and empty values, size limits', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    await p.writeFile(f, 'x');
    const v = Buffer.from([0, 1, 2, 255, 0, 10]);
    await p.ok('setxattr', f, 'user.bin', b64(v));
    expect(unb64(await p.ok('getxattr', f, 'user.bin')).equals(v)).toBe(true);
    await p.ok('setxattr', f, 'user.empty', '');
    expect(await p.ok('getxattr', f, 'user.empty')).toBe('');
    expect(await p.errno('setxattr', f, 'user.bin', b64('new'), ['CREATE'])).toBe('EEXIST');
    expect(await p.errno('setxattr', f, 'user.none', b64('new'), ['REPLACE'])).toBe('ENODATA');
    await p.ok('setxattr', f, 'user.bin', b64('replaced'), ['REPLACE']);
    await p.ok('setxattr', f, 'user.created', b64('c'), ['CREATE']);
    expect(unb64(await p.ok('getxattr', f, 'user.bin')).toString()).toBe('replaced');
    expect(await p.ok('listxattr', f)).toEqual(['user.bin', 'user.created', 'user.empty']);
    expect(await p.errno('getxattr', f, 'user.none')).toBe('ENODATA');
    expect(await p.errno('removexattr', f, 'user.none')).toBe('ENODATA');
    await p.ok('removexattr', f, 'user.bin');
    expect(await p.ok('listxattr', f)).toEqual(['user.created', 'user.empty']);
    // limits: names up to 255 bytes, values up to 64 KiB (ext4 stores less per inode: only the name checks there)
    const n255 = `user.${'k'.repeat(250)}`;
    await p.ok('setxattr', f, n255, b64('v'));
    expect(await p.errno('setxattr', f, `${n255}k`, b64('v'))).toBe('ERANGE');
    expect(await p.errno('setxattr', f, 'user.big', b64(Buffer.alloc(65_537)))).toBe('E2BIG');
    if (kind === 'artifacts') {
      const big = Buffer.alloc(65_536, 0x5a);
      await p.ok('setxattr', f, 'user.big', b64(big));
      expect(unb64(await p.ok('getxattr', f, 'user.big')).equals(big)).toBe(true);
    }
    // directories carry xattrs too; unknown namespaces are refused
    await p.ok('setxattr', d, 'user.dir', b64('dv'));
    expect(unb64(await p.ok('getxattr', d, 'user.dir')).toString()).toBe('dv');
    // Unknown namespaces: ext4 refuses them; FUSE hands every name to the server, which stores it
    // (as upstream juicefs does). Not POSIX (xattrs are a Linux extension); recorded, not hidden.
    expect(await p.errno('setxattr', f, 'bogus.name', b64('v'))).toBe(kind === 'ext4' ? 'ENOTSUP' : 'OK');
    // getfattr/setfattr round trip
    expect((await sh('setfattr', ['-n', 'user.tool', '-v', 'hello', f])).code).toBe(0);
    expect((await sh('getfattr', ['--only-values', '-n', 'user.tool', f])).stdout).toBe('hello');
  });

  it('unlink of an open file: reads and writes keep working; the space is freed at the last close', async () => {
    const d = await fresh();
    const f = path.join(d, 'f');
    const data = Buffer.alloc(8 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    await p.writeFile(f, data);
    const used = async () => {
      const s = await p.ok<{ f_blocks: number; f_bfree: number; f_bsize: number }>('statvfs', d);
      return (s.f_blocks - s.f_bfree) * s.f_bsize;
    };
    const fd = await p.ok<number>('open', f, ['O_RDWR']);
    const fd2 = await q.ok<number>('open', f, ['O_RDONLY']);
    const withFile = await used();
    await p.ok('unlink', f);
    expect(await p.errno('stat', f)).toBe('ENOENT');
    expect(await p.ok('listdir', d)).toEqual([]);
    expect((await read(p, fd, 4096, 4 << 20)).equals(data.subarray(4 << 20, (4 << 20) + 4096))).toBe(true);
    await p.ok('pwrite', fd, b64('after unlink'), 100);
    expect((await read(q, fd2, 12, 100)).toString()).toBe('after unlink');
    expect((await p.ok<{ nlink: number; size: number }>('fstat', fd))).toMatchObject({ nlink: 0, size: 8 << 20 });
    // a new file may take the name meanwhile
    await p.writeFile(f, 'new');
    expect((await read(q, fd2, 4, 0)).equals(data.subarray(0, 4))).toBe(true);
    await p.ok('unlink', f);
    // still held open: the space is still in use
    if (kind === 'artifacts') expect(await used()).toBeGreaterThanOrEqual(withFile - (1 << 20));
    await p.ok('close', fd);
    expect((await read(q, fd2, 8, 0)).equals(data.subarray(0, 8))).toBe(true); // the other open file still works
    await q.ok('close', fd2);
    // freed: poll (ext4 frees at once; artifacts deletes the inode at the last close)
    const deadline = Date.now() + 20_000;
    let now = await used();
    while (now > withFile - (7 << 20) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      now = await used();
    }
    expect(now).toBeLessThanOrEqual(withFile - (7 << 20));
  });

  it('flock between two processes: exclusive/shared conflicts, blocking waits, release on close and on exit', async () => {
    const d = await fresh();
    const f = path.join(d, 'lock');
    await p.writeFile(f, 'l');
    const pf = await p.ok<number>('open', f, ['O_RDWR']);
    const qf = await q.ok<number>('open', f, ['O_RDWR']);
    await p.ok('flock', pf, 'ex');
    expect(await q.errno('flock', qf, 'ex')).toBe('EAGAIN');
    expect(await q.errno('flock', qf, 'sh')).toBe('EAGAIN');
    await p.ok('flock', pf, 'un');
    await q.ok('flock', qf, 'sh');
    await p.ok('flock', pf, 'sh'); // shared + shared
    expect(await p.errno('flock', pf, 'ex')).toBe('EAGAIN'); // upgrade blocked by the other reader
    await q.ok('flock', qf, 'un');
    await p.ok('flock', pf, 'ex'); // upgrade now possible
    // a blocking request waits until the holder releases
    const waiting = q.ok('flock', qf, 'ex', false);
    let granted = false;
    void waiting.then(() => (granted = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(granted).toBe(false);
    await p.ok('flock', pf, 'un');
    await waiting;
    expect(granted).toBe(true);
    // closing the descriptor releases. On FUSE the kernel sends RELEASE (which carries the flock
    // unlock) asynchronously after close(2) returns, so the release lands a few ms later: a
    // blocking flock right after the close is granted at once, a non-blocking one may still see
    // EAGAIN for that moment (as with any FUSE file system, upstream juicefs included).
    await q.ok('close', qf);
    const t0 = Date.now();
    await p.ok('flock', pf, 'ex', false);
    expect(Date.now() - t0).toBeLessThan(2000);
    // the holder dies: released
    const r = await PosixProc.start(ROOT);
    try {
      await p.ok('flock', pf, 'un');
      const rf = await r.ok<number>('open', f, ['O_RDONLY']);
      await r.ok('flock', rf, 'ex');
      expect(await p.errno('flock', pf, 'ex')).toBe('EAGAIN');
      await r.kill();
      const deadline = Date.now() + 10_000;
      let e = await p.errno('flock', pf, 'ex');
      while (e !== 'OK' && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        e = await p.errno('flock', pf, 'ex');
      }
      expect(e).toBe('OK');
    } finally {
      await r.close();
    }
    await p.ok('close', pf);
  });

  it('fcntl locks between two processes: ranges, F_GETLK, split unlock, SETLKW, any close releases, independent of flock', async () => {
    const d = await fresh();
    const f = path.join(d, 'lock');
    await p.writeFile(f, 'l');
    const pf = await p.ok<number>('open', f, ['O_RDWR']);
    const qf = await q.ok<number>('open', f, ['O_RDWR']);
    await p.ok('lock', pf, 'setlk', 'wr', 0, 100);
    expect(await q.errno('lock', qf, 'setlk', 'wr', 50, 10)).toBe('EAGAIN');
    expect(await q.errno('lock', qf, 'setlk', 'rd', 99, 1)).toBe('EAGAIN');
    await q.ok('lock', qf, 'setlk', 'wr', 100, 100); // adjacent, no overlap
    expect(await q.ok('lock', qf, 'getlk', 'rd', 0, 10)).toEqual({ type: 'wr', start: 0, len: 100, pid: p.pid });
    expect(await q.ok('lock', qf, 'getlk', 'wr', 300, 10)).toMatchObject({ type: 'un' });
    expect(await p.ok('lock', pf, 'getlk', 'wr', 0, 0)).toEqual({ type: 'wr', start: 100, len: 100, pid: q.pid });
    // unlocking the middle splits the lock in two
    await p.ok('lock', pf, 'setlk', 'un', 40, 20);
    await q.ok('lock', qf, 'setlk', 'wr', 45, 10);
    expect(await q.errno('lock', qf, 'setlk', 'wr', 0, 10)).toBe('EAGAIN');
    expect(await q.errno('lock', qf, 'setlk', 'wr', 70, 10)).toBe('EAGAIN');
    await q.ok('lock', qf, 'setlk', 'un', 0, 0);
    // read locks share; a write lock waits (SETLKW) until both readers are gone
    await p.ok('lock', pf, 'setlk', 'un', 0, 0);
    await p.ok('lock', pf, 'setlk', 'rd', 0, 0);
    await q.ok('lock', qf, 'setlk', 'rd', 0, 0);
    const r = await PosixProc.start(ROOT);
    try {
      const rf = await r.ok<number>('open', f, ['O_RDWR']);
      const waiting = r.ok('lock', rf, 'setlkw', 'wr', 0, 0);
      let granted = false;
      void waiting.then(() => (granted = true));
      await new Promise((res) => setTimeout(res, 300));
      expect(granted).toBe(false);
      await p.ok('lock', pf, 'setlk', 'un', 0, 0);
      await new Promise((res) => setTimeout(res, 200));
      expect(granted).toBe(false);
      // POSIX: closing ANY descriptor of the file drops all of the process's locks on it
      const other = await q.ok<number>('open', f, ['O_RDONLY']);
      await q.ok('close', other);
      await waiting;
      expect(granted).toBe(true);
      expect(await q.errno('lock', qf, 'setlk', 'rd', 0, 1)).toBe('EAGAIN');
      // flock and fcntl locks do not conflict with each other (Linux)
      await q.ok('flock', qf, 'ex');
      await q.ok('flock', qf, 'un');
      await r.kill(); // process exit releases its fcntl locks
      const deadline = Date.now() + 10_000;
      let e = await q.errno('lock', qf, 'setlk', 'wr', 0, 0);
      while (e !== 'OK' && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        e = await q.errno('lock', qf, 'setlk', 'wr', 0, 0);
      }
      expect(e).toBe('OK');
    } finally {
      await r.close();
    }
    expect(await p.errno('lock', pf, 'setlk', 'rd', 5, 5)).toBe('EAGAIN');
    await q.ok('close', qf);
    await p.ok('lock', pf, 'setlk', 'wr', 0, 0);
    // a read lock needs a readable fd, a write lock a writable one
    const ro = await q.ok<number>('open', f, ['O_RDONLY']);
    expect(await q.errno('lock', ro, 'setlk', 'wr', 0, 1)).toBe('EBADF');
    await q.ok('close', ro);
    await p.ok('close', pf);
  });
});
