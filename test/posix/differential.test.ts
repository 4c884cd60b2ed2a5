/**
 * Differential test (fast-check): the same random sequence of file system calls is applied to a
 * local ext4 directory and to an artifacts mount (real stack), by the same caller process, one call
 * at a time on each side. Every call must give the same errno; successful calls the same value
 * (bytes read, link targets, listings, xattr values, and the stat fields that must match: type,
 * size (not for directories), nlink, permission bits, owner). After each sequence both trees are
 * walked and compared entry by entry, bytes included.
 *
 * Half of the sequences run as root, half as an ordinary user (uid 1001) so permission errors are
 * part of the comparison. Paths come from a small pool so sequences collide on names (ENOENT,
 * EEXIST, ENOTDIR, ENOTEMPTY, EISDIR...).
 *
 * A few hand-picked sequences run as tests of their own, then fast-check's random ones. A failure
 * prints the shrunk op sequence and fast-check's seed; rerun one with POSIX_DIFF_SEED=<seed> (and
 * POSIX_DIFF_RUNS=<n> for more or fewer sequences, default 300).
 */
import fc from 'fast-check';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../helpers/servers.js';
import { b64, type Identity, PosixProc, ROOT, type Stat, unb64 } from './lib/posix.js';
import { type ArtifactsMount, mountArtifacts, startStack, type Stack } from './lib/stack.js';

const USER: Identity = { uid: 1001, gid: 1001 };

const NAMES = ['a', 'b', 'c'];
const PATHS = [
  ...NAMES,
  ...NAMES.flatMap((x) => NAMES.map((y) => `${x}/${y}`)),
  'a/a/a',
  'a/b/c',
  'b/a/b',
];
const MODES = [0o755, 0o700, 0o500, 0o300, 0o644, 0o600, 0o444, 0o000, 0o1777, 0o2755, 0o4755];

type Op =
  | { op: 'write'; p: string; flags: string[]; off: number; data: string }
  | { op: 'read'; p: string; off: number; len: number }
  | { op: 'truncate'; p: string; size: number }
  | { op: 'mkdir'; p: string; mode: number }
  | { op: 'rmdir'; p: string }
  | { op: 'unlink'; p: string }
  | { op: 'rename'; p: string; to: string }
  | { op: 'link'; p: string; to: string }
  | { op: 'symlink'; target: string; p: string }
  | { op: 'readlink'; p: string }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'stat'; p: string; l: boolean }
  | { op: 'listdir'; p: string }
  | { op: 'setxattr'; p: string; name: string; value: string; flags: string[] }
  | { op: 'getxattr'; p: string; name: string }
  | { op: 'utime'; p: string; ns: string }
  | { op: 'fallocate'; p: string; off: number; len: number }
  | { op: 'punch'; p: string; off: number; len: number };

const pathArb = fc.constantFrom(...PATHS);
const dataArb = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 300 }).map((u) => Buffer.from(u).toString('base64')) },
  // now and then a write that spans several 4 KiB pages and a 64 KiB boundary
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }).map((v) => Buffer.alloc(70_000, v).toString('base64')) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('write' as const), p: pathArb, flags: fc.subarray(['O_CREAT', 'O_EXCL', 'O_TRUNC', 'O_APPEND']), off: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20_000 })), data: dataArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('read' as const), p: pathArb, off: fc.integer({ min: 0, max: 20_000 }), len: fc.integer({ min: 1, max: 100_000 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), p: pathArb, size: fc.integer({ min: 0, max: 100_000 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('mkdir' as const), p: pathArb, mode: fc.constantFrom(0o755, 0o700, 0o777, 0o555) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('rmdir' as const), p: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unlink' as const), p: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rename' as const), p: pathArb, to: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), p: pathArb, to: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('symlink' as const), target: fc.oneof(pathArb, fc.constantFrom('../a', '/nonexistent', 'a/../b')), p: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('readlink' as const), p: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('chmod' as const), p: pathArb, mode: fc.constantFrom(...MODES) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('stat' as const), p: pathArb, l: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('listdir' as const), p: fc.oneof(pathArb, fc.constant('.')) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('setxattr' as const), p: pathArb, name: fc.constantFrom('user.x', 'user.y'), value: fc.string({ maxLength: 20 }).map((s) => b64(s)), flags: fc.subarray(['CREATE', 'REPLACE']) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('getxattr' as const), p: pathArb, name: fc.constantFrom('user.x', 'user.y') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('utime' as const), p: pathArb, ns: fc.bigInt({ min: 0n, max: 4_000_000_000_000_000_000n }).map(String) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fallocate' as const), p: pathArb, off: fc.integer({ min: 0, max: 50_000 }), len: fc.integer({ min: 1, max: 50_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('punch' as const), p: pathArb, off: fc.integer({ min: 0, max: 50_000 }), len: fc.integer({ min: 1, max: 50_000 }) }) },
);

/** Hand-picked sequences, each its own test (cases random sequences reach only rarely). */
const EXAMPLES: [boolean, Op[], string][] = [
  [true, [
    { op: 'mkdir', p: 'a', mode: 0o755 },
    { op: 'write', p: 'a/b', flags: ['O_CREAT'], off: 0, data: b64('x') },
    { op: 'chmod', p: 'a', mode: 0o600 },
    { op: 'stat', p: 'a/b', l: false },
    { op: 'read', p: 'a/b', off: 0, len: 10 },
  ], 'search permission of a directory whose child the kernel has cached'],
  [false, [
    { op: 'write', p: 'a', flags: ['O_CREAT'], off: 0, data: b64('first') },
    { op: 'link', p: 'a', to: 'b' },
    { op: 'write', p: 'c', flags: ['O_CREAT'], off: 5, data: b64('other') },
    { op: 'rename', p: 'c', to: 'b' },
    { op: 'stat', p: 'a', l: false },
    { op: 'link', p: 'a', to: 'c' },
    { op: 'write', p: 'c', flags: ['O_APPEND'], off: 0, data: b64('+') },
    { op: 'read', p: 'a', off: 0, len: 100 },
    { op: 'stat', p: 'c', l: true },
  ], 'hard links, rename over a link, writes through another name'],
  [false, [
    { op: 'write', p: 'a', flags: ['O_CREAT'], off: 20_000, data: Buffer.alloc(70_000, 7).toString('base64') },
    { op: 'truncate', p: 'a', size: 30_001 },
    { op: 'truncate', p: 'a', size: 95_000 },
    { op: 'punch', p: 'a', off: 25_000, len: 1000 },
    { op: 'fallocate', p: 'a', off: 90_000, len: 20_000 },
    { op: 'read', p: 'a', off: 19_990, len: 100_000 },
  ], 'sparse write, truncate down and up, punch hole, fallocate past EOF'],
];

/** What one call gives: 'errno:ENOENT', or a JSON of the value that must match across the two. */
async function apply(proc: PosixProc, base: string, o: Op): Promise<string> {
  const P = (p: string) => path.join(base, p);
  const e = (r: { e?: string }) => `errno:${r.e}`;
  switch (o.op) {
    case 'write': {
      const fd = await proc.call('open', P(o.p), ['O_WRONLY', ...o.flags], 0o644);
      if (fd.e) return e(fd);
      const w = await proc.call(o.flags.includes('O_APPEND') ? 'write' : 'pwrite', fd.r, o.data, ...(o.flags.includes('O_APPEND') ? [] : [o.off]));
      const c = await proc.call('close', fd.r);
      return w.e ? e(w) : c.e ? `close:${c.e}` : `wrote:${String(w.r)}`;
    }
    case 'read': {
      const fd = await proc.call('open', P(o.p), ['O_RDONLY']);
      if (fd.e) return e(fd);
      const r = await proc.call('pread', fd.r, o.len, o.off);
      await proc.call('close', fd.r);
      return r.e ? e(r) : `bytes:${unb64(r.r).toString('hex')}`;
    }
    case 'fallocate':
    case 'punch': {
      const fd = await proc.call('open', P(o.p), ['O_RDWR']);
      if (fd.e) return e(fd);
      const r =
        o.op === 'fallocate'
          ? await proc.call('posix_fallocate', fd.r, o.off, o.len)
          : await proc.call('fallocate', fd.r, ['PUNCH_HOLE', 'KEEP_SIZE'], o.off, o.len);
      await proc.call('close', fd.r);
      return r.e ? e(r) : 'ok';
    }
    case 'stat': {
      const r = await proc.call(o.l ? 'lstat' : 'stat', P(o.p));
      return r.e ? e(r) : `stat:${JSON.stringify(statKey(r.r as Stat))}`;
    }
    case 'listdir': {
      const r = await proc.call('listdir', P(o.p));
      return r.e ? e(r) : `list:${JSON.stringify(r.r)}`;
    }
    case 'readlink': {
      const r = await proc.call('readlink', P(o.p));
      return r.e ? e(r) : `link:${String(r.r)}`;
    }
    case 'getxattr': {
      const r = await proc.call('getxattr', P(o.p), o.name);
      return r.e ? e(r) : `xattr:${String(r.r)}`;
    }
    case 'utime': {
      const r = await proc.call('utime_ns', P(o.p), o.ns, o.ns);
      if (r.e) return e(r);
      const s = await proc.call('lstat', P(o.p)); // lstat: the path may be a symlink to elsewhere
      return s.e ? e(s) : `mtime:${(s.r as Stat).mtime_ns}`;
    }
    default: {
      const args = simpleCall(o, P);
      const r = await proc.call(args[0] as string, ...args.slice(1));
      return r.e ? e(r) : 'ok';
    }
  }
}

/** The one system call of the ops that need no descriptor. */
function simpleCall(o: Op, P: (p: string) => string): unknown[] {
  switch (o.op) {
    case 'truncate':
      return ['truncate', P(o.p), o.size];
    case 'mkdir':
      return ['mkdir', P(o.p), o.mode];
    case 'rmdir':
      return ['rmdir', P(o.p)];
    case 'unlink':
      return ['unlink', P(o.p)];
    case 'rename':
      return ['rename', P(o.p), P(o.to)];
    case 'link':
      return ['link', P(o.p), P(o.to)];
    case 'symlink':
      return ['symlink', o.target, P(o.p)];
    case 'chmod':
      return ['chmod', P(o.p), o.mode];
    case 'setxattr':
      return ['setxattr', P(o.p), o.name, o.value, o.flags];
    default:
      throw new Error(`no simple call for ${o.op}`);
  }
}

function statKey(s: Stat) {
  return { type: s.type, size: s.type === 4 ? 'dir' : s.size, nlink: s.nlink, perm: s.perm, uid: s.uid, gid: s.gid };
}

/** Every entry below `dir` (as root): path → type/perm/nlink/size/owner and content or target. */
async function snapshot(root: PosixProc, dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const walk = async (rel: string): Promise<void> => {
    const names = await root.ok<string[]>('listdir', path.join(dir, rel));
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const p = path.join(dir, r);
      const st = await root.lstat(p);
      const e: Record<string, unknown> = statKey(st);
      const xa = await root.call('listxattr', p);
      if (st.type === 8) e.data = (await root.readFile(p)).toString('hex');
      if (st.type === 10) e.target = await root.ok('readlink', p);
      else e.xattrs = xa.r;
      out[r] = e;
      if (st.type === 4) await walk(r);
    }
  };
  await walk('');
  return out;
}

describe('differential: artifacts mount vs local ext4, random op sequences', { timeout: 300_000 }, () => {
  let stack: Stack;
  let m: ArtifactsMount;
  let localBase: string;
  let root: PosixProc;
  let user: PosixProc;

  beforeAll(async () => {
    stack = await startStack('diff');
    m = await mountArtifacts(stack.metaUrl, path.join(stack.dir, 'mnt'));
    localBase = path.join(await tmpDir('posix-diff-local'), 'local');
    await fs.mkdir(localBase, { recursive: true });
    await fs.chmod(path.dirname(localBase), 0o755);
    [root, user] = await Promise.all([PosixProc.start(ROOT), PosixProc.start(USER)]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([root?.close(), user?.close()]);
    try {
      await m?.unmount();
    } finally {
      await stack?.stop();
    }
  });

  let run = 0;
  /** Apply `ops` on both sides in fresh directories; throw at the first difference. */
  const compare = async (asUser: boolean, ops: Op[]): Promise<void> => {
    run++;
    const proc = asUser ? user : root;
    const dirs = [path.join(localBase, `r${run}`), path.join(m.mountpoint, `r${run}`)];
    for (const d of dirs) {
      await root.ok('mkdir', d, 0o755);
      if (asUser) await root.ok('chown', d, USER.uid, USER.gid);
    }
    const log: string[] = [];
    for (const o of ops) {
      const [want, got] = [await apply(proc, dirs[0]!, o), await apply(proc, dirs[1]!, o)];
      log.push(`${JSON.stringify(o).slice(0, 160)} -> ${want.slice(0, 80)}`);
      if (want !== got) {
        throw new Error(
          `${asUser ? 'uid 1001' : 'root'}: after\n  ${log.slice(0, -1).join('\n  ')}\n${JSON.stringify(o).slice(0, 200)}\n  ext4:      ${want.slice(0, 300)}\n  artifacts: ${got.slice(0, 300)}`,
        );
      }
    }
    const [a, b] = [await snapshot(root, dirs[0]!), await snapshot(root, dirs[1]!)];
    expect(b, `trees differ after:\n  ${log.join('\n  ')}`).toEqual(a);
  };

  for (const [i, [asUser, ops, what]] of EXAMPLES.entries()) {
    it(`hand-picked sequence ${i + 1} (${asUser ? 'uid 1001' : 'root'}): ${what}`, async () => {
      await compare(asUser, ops);
    });
  }

  it('random sequences: every call gives the same errno and value, and the trees end up identical', async () => {
    const before = run;
    const seed = process.env.POSIX_DIFF_SEED ? Number(process.env.POSIX_DIFF_SEED) : undefined;
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(opArb, { minLength: 1, maxLength: 40 }), (asUser, ops) => compare(asUser, ops)),
      { numRuns: Number(process.env.POSIX_DIFF_RUNS ?? 300), seed, interruptAfterTimeLimit: 150_000 },
    );
    expect(run - before).toBeGreaterThanOrEqual(20);
  });
});
