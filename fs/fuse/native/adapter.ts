/**
 * The fuse-native adapter: libfuse's path-based high-level operations mapped onto the inode-level
 * Vfs, for mounts by users who cannot mount /dev/fuse themselves (fusermount does it for them).
 *
 * - Paths are resolved to inodes with Vfs.lookup (paths.ts caches them briefly); the final name of
 *   getattr is always looked up afresh, since that is how libfuse answers the kernel's LOOKUP.
 * - libfuse file handles are uint32 numbers: each maps to a (inode, Vfs handle) pair, so reads and
 *   writes never need the path (an open file keeps working after a rename).
 * - Errors: a rejection with a positive errno → -errno; anything else → -EIO, logged once per
 *   (operation, error name).
 * - Caller identity: fuse-native does not expose fuse_get_context, so every operation runs as the
 *   serving process (uid, gid, supplementary groups). Without allow_other the kernel admits only
 *   the mounting user, so this is exact; with allow_other the kernel's default_permissions check is
 *   what guards other users, and what they create is owned by the mounting user.
 */
import { type Attr, type Ctx, FileType, type Ino, ROOT_INODE } from '../../../metadata/types.js';
import type { EntryReply, Vfs } from '../../types.js';
import { dtypeOf, modeOf, REPORTED_BLKSIZE } from '../protocol.js';
import { errnoOf } from '../server.js';
import type { Cb, NativeOps, NativeStat, NativeStatfs, ValueCb } from './binding.js';
import { parentAndName, PathCache, splitPath } from './paths.js';

const EIO = 5;
const EBADF = 9;
const ENOENT = 2;
const ENOTDIR = 20;
const ESTALE = 116;
const ERANGE = 34;
const O_RDWR = 2;
const O_CREAT = 0o100;
const UINT32_MAX = 0xffffffff;

export interface AdapterOptions {
  /** Identity every operation runs as (default: this process). */
  ctx?: Ctx;
  /** Path cache lifetime in seconds (default: vfs.entryTtl). */
  pathTtl?: number;
  log?: (msg: string) => void;
}

interface OpenHandle {
  ino: Ino;
  fh: bigint;
}

/** Where a resolution got its answers: a failure after cached answers is retried afresh. */
interface Walk {
  cached: boolean;
}

export function processCtx(): Ctx {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  const groups = process.getgroups?.() ?? [];
  return { uid, gid, gids: groups.includes(gid) ? groups : [gid, ...groups], pid: process.pid };
}

/** Seconds + nanoseconds → the milliseconds fuse-native's stat array carries (clamped at 0). */
function ms(sec: number, nsec: number): number {
  return Math.max(0, sec * 1000 + Math.floor(nsec / 1e6));
}

export function toNativeStat(ino: Ino, a: Attr): NativeStat {
  return {
    mode: modeOf(a),
    uid: a.uid,
    gid: a.gid,
    size: a.length,
    dev: 0,
    nlink: a.nlink,
    // fuse-native carries st_ino as a uint32 (use_ino passes it to the kernel).
    ino: Number(ino & 0xffffffffn),
    rdev: a.rdev,
    blksize: REPORTED_BLKSIZE,
    // As the kernel transport reports them: 512-byte units, one 4 KiB block for a directory.
    blocks: a.type === FileType.Dir ? 8 : Math.ceil(a.length / 512),
    atime: ms(a.atime, a.atimensec),
    mtime: ms(a.mtime, a.mtimensec),
    ctime: ms(a.ctime, a.ctimensec),
  };
}

/** statvfs in uint32 fields: the fragment size grows until the block counts fit. */
export function toNativeStatfs(s: { totalSpace: number; availSpace: number; usedInodes: number; availInodes: number; blockSize: number; nameMax: number }): NativeStatfs {
  let bs = s.blockSize > 0 ? s.blockSize : 4096;
  while (s.totalSpace / bs > UINT32_MAX) bs *= 2;
  const avail = Math.floor(s.availSpace / bs);
  const clamp = (n: number) => Math.max(0, Math.min(UINT32_MAX, Math.floor(n)));
  return {
    bsize: bs,
    frsize: bs,
    blocks: clamp(s.totalSpace / bs),
    bfree: clamp(avail),
    bavail: clamp(avail),
    files: clamp(s.usedInodes + s.availInodes),
    ffree: clamp(s.availInodes),
    favail: clamp(s.availInodes),
    fsid: 0,
    flag: 0,
    namemax: s.nameMax,
  };
}

function retryable(e: unknown): boolean {
  const n = errnoOf(e);
  return n === ENOENT || n === ENOTDIR || n === ESTALE;
}

const nameBuf = (name: string) => Buffer.from(name, 'utf8');

/** getxattr/listxattr sizing: size 0 asks for the length; too small a buffer is ERANGE. */
function fitInto(value: Buffer, out: Buffer): number {
  if (out.length === 0) return value.length;
  if (value.length > out.length) return -ERANGE;
  value.copy(out);
  return value.length;
}

export class NativeAdapter {
  readonly cache: PathCache;
  private readonly handles = new Map<number, OpenHandle>();
  private nextFd = 1;
  private readonly ctx: Ctx;
  private readonly log: (msg: string) => void;
  private readonly logged = new Set<string>();
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly vfs: Vfs,
    opts: AdapterOptions = {},
  ) {
    this.ctx = opts.ctx ?? processCtx();
    this.log = opts.log ?? ((m) => process.stderr.write(`${m}\n`));
    this.cache = new PathCache(Math.max(0, opts.pathTtl ?? vfs.entryTtl) * 1000);
  }

  get openHandles(): number {
    return this.handles.size;
  }

  /** Resolves when no operation is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  // ---- plumbing ----------------------------------------------------------------------------------

  /** Run one operation: count it, map its rejection to -errno, answer through `done`. */
  private run<T>(op: string, work: () => Promise<T>, done: (err: number, v?: T) => void): void {
    this.inflight++;
    let p: Promise<T>;
    try {
      p = work();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => this.settle(op, () => done(0, v), () => done(-EIO)),
      (e: unknown) => this.settle(op, () => done(-this.errno(op, e))),
    );
  }

  /**
   * Answer; an exception here must not escape: it would end the process and leave a dead mount.
   * fuse-native's wrappers throw before they signal libfuse, so a failed success answer can still
   * be turned into EIO (an unanswered request would hang its caller).
   */
  private settle(op: string, answer: () => void, fallback?: () => void): void {
    try {
      answer();
    } catch (e) {
      this.errno(op, e);
      try {
        fallback?.();
      } catch {
        // Nothing more can be done for this request.
      }
    } finally {
      if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private errno(op: string, e: unknown): number {
    const n = errnoOf(e);
    if (n > 0) return n;
    const err = e as { name?: string; code?: unknown; message?: string };
    const key = `${op}:${err?.name ?? typeof e}:${String(err?.code ?? '')}`;
    if (!this.logged.has(key)) {
      this.logged.add(key);
      this.log(`fuse-native ${op} failed with a non-errno error (${key}): ${String(err?.message ?? e).slice(0, 200)}`);
    }
    return EIO;
  }

  private c(): Ctx {
    return { ...this.ctx };
  }

  /** Walk `path` to its inode, from the cache where allowed. */
  private async resolve(path: string, fresh: boolean, walk: Walk): Promise<Ino> {
    const parts = splitPath(path);
    let ino = ROOT_INODE;
    let cur = '';
    for (const name of parts) {
      cur += `/${name}`;
      const hit = fresh ? undefined : this.cache.get(cur);
      if (hit !== undefined) {
        walk.cached = true;
        ino = hit;
        continue;
      }
      const r = await this.vfs.lookup(this.c(), ino, nameBuf(name));
      this.cache.set(cur, r.ino);
      ino = r.ino;
    }
    return ino;
  }

  /**
   * Resolve the given paths (`parentOf` ones to their parent directory) and run `fn`; when that
   * fails with ENOENT/ENOTDIR/ESTALE after cached answers were used, forget them and retry once
   * with a fresh walk: another mount may have renamed or removed a directory on the way.
   */
  private async withPaths<T>(paths: { path: string; parent?: boolean }[], fn: (inos: Ino[], names: Buffer[]) => Promise<T>): Promise<T> {
    const attempt = async (fresh: boolean, walk: Walk): Promise<T> => {
      const inos: Ino[] = [];
      const names: Buffer[] = [];
      for (const p of paths) {
        if (p.parent) {
          const { parent, name } = parentAndName(p.path);
          inos.push(await this.resolve(parent, fresh, walk));
          names.push(nameBuf(name));
        } else {
          inos.push(await this.resolve(p.path, fresh, walk));
        }
      }
      return fn(inos, names);
    };
    const walk: Walk = { cached: false };
    try {
      return await attempt(false, walk);
    } catch (e) {
      if (!walk.cached || !retryable(e)) throw e;
      for (const p of paths) this.cache.dropChain(p.path);
      return attempt(true, { cached: false });
    }
  }

  private withIno<T>(path: string, fn: (ino: Ino) => Promise<T>): Promise<T> {
    return this.withPaths([{ path }], ([ino]) => fn(ino!));
  }

  private withParent<T>(path: string, fn: (parent: Ino, name: Buffer) => Promise<T>): Promise<T> {
    return this.withPaths([{ path, parent: true }], ([ino], [name]) => fn(ino!, name!));
  }

  private handle(fd: number): OpenHandle {
    const h = this.handles.get(fd);
    if (!h) throw Object.assign(new Error('unknown file handle'), { errno: EBADF });
    return h;
  }

  private addHandle(ino: Ino, fh: bigint): number {
    // fuse-native hands the number back as libfuse's fh; 0 means "none", so start at 1.
    while (this.handles.has(this.nextFd) || this.nextFd === 0) this.nextFd = this.nextFd >= 0x7fffffff ? 1 : this.nextFd + 1;
    const fd = this.nextFd;
    this.nextFd = fd >= 0x7fffffff ? 1 : fd + 1;
    this.handles.set(fd, { ino, fh });
    return fd;
  }

  private remember(path: string, r: EntryReply): EntryReply {
    this.cache.set(path, r.ino);
    return r;
  }

  private setattr(path: string, req: Parameters<Vfs['setattr']>[2]): Promise<void> {
    return this.withIno(path, async (ino) => {
      await this.vfs.setattr(this.c(), ino, req);
    });
  }

  // ---- operations --------------------------------------------------------------------------------

  async getattr(path: string): Promise<NativeStat> {
    if (path === '/') {
      const r = await this.vfs.getattr(this.c(), ROOT_INODE);
      return toNativeStat(ROOT_INODE, r.attr);
    }
    const r = await this.withParent(path, (parent, name) => this.vfs.lookup(this.c(), parent, name));
    this.remember(path, r);
    return toNativeStat(r.ino, r.attr);
  }

  async readdir(path: string): Promise<{ names: string[]; stats: Partial<NativeStat>[] }> {
    return this.withIno(path, async (ino) => {
      const ctx = this.c();
      const fh = await this.vfs.opendir(ctx, ino, 0);
      const names: string[] = [];
      const stats: Partial<NativeStat>[] = [];
      try {
        let offset = 0;
        for (;;) {
          const batch = await this.vfs.readdir(ctx, ino, fh, offset, false, 4096);
          if (batch.length === 0) break;
          for (const e of batch) {
            const name = e.name.toString('utf8');
            names.push(name);
            // libfuse uses st_ino (use_ino) and the type bits (d_type) of these, nothing else.
            // S_IFMT bits are the d_type shifted by 12.
            stats.push({ ino: Number(e.ino & 0xffffffffn), mode: dtypeOf(e.type) << 12 });
          }
          offset = batch[batch.length - 1]!.offset;
        }
      } finally {
        await this.vfs.releasedir(ctx, ino, fh).catch(() => undefined);
      }
      return { names, stats };
    });
  }

  async open(path: string, flags: number): Promise<number> {
    return this.withIno(path, async (ino) => {
      const r = await this.vfs.open(this.c(), ino, flags);
      return this.addHandle(ino, r.fh);
    });
  }

  /** fuse-native does not pass the open flags of a create: the handle is opened read-write. */
  async create(path: string, mode: number): Promise<number> {
    return this.withParent(path, async (parent, name) => {
      // The kernel applied the umask already (libfuse 2.9 does not ask for FUSE_DONT_MASK).
      const r = await this.vfs.create(this.c(), parent, name, mode, 0, O_RDWR | O_CREAT);
      this.remember(path, r);
      return this.addHandle(r.ino, r.fh);
    });
  }

  async read(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd);
    const data = await this.vfs.read(this.c(), h.ino, h.fh, pos, len);
    return data.copy(buf, 0, 0, Math.min(len, data.length));
  }

  /** `buf` is libfuse's memory, valid until we answer: the Vfs copies what it keeps before resolving. */
  async write(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fd);
    return this.vfs.write(this.c(), h.ino, h.fh, pos, buf.subarray(0, len));
  }

  async flush(fd: number): Promise<void> {
    const h = this.handle(fd);
    await this.vfs.flush(this.c(), h.ino, h.fh, 0n);
  }

  async fsync(fd: number, datasync: boolean): Promise<void> {
    const h = this.handle(fd);
    await this.vfs.fsync(this.c(), h.ino, h.fh, datasync);
  }

  async release(fd: number): Promise<void> {
    const h = this.handle(fd);
    this.handles.delete(fd);
    await this.vfs.release(this.c(), h.ino, h.fh);
  }

  truncate(path: string, size: number): Promise<void> {
    return this.setattr(path, { size });
  }

  async ftruncate(fd: number, size: number): Promise<void> {
    const h = this.handle(fd);
    await this.vfs.setattr(this.c(), h.ino, { size }, h.fh);
  }

  async mkdir(path: string, mode: number): Promise<void> {
    await this.withParent(path, async (parent, name) => this.remember(path, await this.vfs.mkdir(this.c(), parent, name, mode, 0)));
  }

  async mknod(path: string, mode: number, dev: number): Promise<void> {
    await this.withParent(path, async (parent, name) => this.remember(path, await this.vfs.mknod(this.c(), parent, name, mode, dev, 0)));
  }

  async symlink(target: string, linkPath: string): Promise<void> {
    await this.withParent(linkPath, async (parent, name) =>
      this.remember(linkPath, await this.vfs.symlink(this.c(), parent, name, Buffer.from(target, 'utf8'))),
    );
  }

  async link(src: string, dest: string): Promise<void> {
    await this.withPaths([{ path: src }, { path: dest, parent: true }], async ([ino, parent], [name]) =>
      this.remember(dest, await this.vfs.link(this.c(), ino!, parent!, name!)),
    );
  }

  async unlink(path: string): Promise<void> {
    try {
      await this.withParent(path, (parent, name) => this.vfs.unlink(this.c(), parent, name));
    } finally {
      this.cache.dropTree(path);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      await this.withParent(path, (parent, name) => this.vfs.rmdir(this.c(), parent, name));
    } finally {
      this.cache.dropTree(path);
    }
  }

  async rename(src: string, dest: string): Promise<void> {
    try {
      await this.withPaths([{ path: src, parent: true }, { path: dest, parent: true }], ([sp, dp], [sn, dn]) =>
        this.vfs.rename(this.c(), sp!, sn!, dp!, dn!, 0),
      );
    } finally {
      // Whatever happened, both names may now mean something else.
      this.cache.dropTree(src);
      this.cache.dropTree(dest);
    }
  }

  async readlink(path: string): Promise<string> {
    const target = await this.withIno(path, (ino) => this.vfs.readlink(this.c(), ino));
    return target.toString('utf8');
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.setattr(path, { mode: mode & 0o7777 });
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    // (uid_t)-1 / (gid_t)-1: leave unchanged.
    const req: { uid?: number; gid?: number } = {};
    if (uid !== UINT32_MAX) req.uid = uid;
    if (gid !== UINT32_MAX) req.gid = gid;
    return this.setattr(path, req);
  }

  /**
   * libfuse 2.9 calls utimens only when both times are set, and fuse-native passes the access time
   * twice; both times get that value. Right for `touch` and `touch -d` (equal times), wrong for
   * `touch -m`/`cp -p`/`rsync -t` (FUSE.md).
   */
  utimens(path: string, atimeMs: number): Promise<void> {
    const t = { sec: Math.floor(atimeMs / 1000), nsec: (atimeMs % 1000) * 1e6 };
    return this.setattr(path, { atime: t, mtime: t });
  }

  async statfs(path: string): Promise<NativeStatfs> {
    const ino = path === '/' ? ROOT_INODE : await this.withIno(path, async (i) => i);
    return toNativeStatfs(await this.vfs.statfs(this.c(), ino));
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    const copy = Buffer.from(value); // libfuse's memory: not ours once we answer
    return this.withIno(path, (ino) => this.vfs.setxattr(this.c(), ino, name, copy, flags));
  }

  getxattr(path: string, name: string): Promise<Buffer> {
    return this.withIno(path, (ino) => this.vfs.getxattr(this.c(), ino, name));
  }

  listxattr(path: string): Promise<string[]> {
    return this.withIno(path, (ino) => this.vfs.listxattr(this.c(), ino));
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.withIno(path, (ino) => this.vfs.removexattr(this.c(), ino, name));
  }

  access(path: string, mode: number): Promise<void> {
    return this.withIno(path, (ino) => this.vfs.access(this.c(), ino, mode));
  }

  /**
   * Replacements for fuse-native's own getxattr/listxattr wrappers (instance methods of its Fuse
   * class), which ignore the caller's buffer size: a value larger than the buffer made libfuse
   * send an oversized reply (EINVAL from the kernel, EIO for the caller, so no ERANGE retry), and a
   * name list larger than the buffer threw inside fuse-native and ended the process.
   */
  xattrHandlers(): Record<'_op_getxattr' | '_op_listxattr', (...args: never[]) => void> {
    type Signal = (res: number, buf: ArrayBufferLike) => void;
    return {
      _op_getxattr: (signal: Signal, path: string, name: string, out: Buffer) =>
        this.run('getxattr', () => this.getxattr(path, name), (err, v) => signal(err || fitInto(v!, out), out.buffer)),
      _op_listxattr: (signal: Signal, path: string, out: Buffer) =>
        this.run('listxattr', () => this.listxattr(path), (err, names) => {
          if (err) return signal(err, out.buffer);
          const list = names!.length === 0 ? Buffer.alloc(0) : Buffer.from(`${names!.join('\0')}\0`, 'utf8');
          signal(fitInto(list, out), out.buffer);
        }),
    };
  }

  // ---- the fuse-native operation table -----------------------------------------------------------

  /** Callbacks in fuse-native's conventions (see binding.ts). */
  ops(): NativeOps {
    const ok = (cb: Cb) => (err: number) => cb(err);
    const val =
      <T>(cb: ValueCb<T>) =>
      (err: number, v?: T) =>
        err ? cb(err) : cb(0, v);
    const count = (cb: (n: number) => void) => (err: number, n?: number) => cb(err || (n ?? 0));
    return {
      init: (cb) => cb(0),
      getattr: (p, cb) => this.run('getattr', () => this.getattr(p), val(cb)),
      readdir: (p, cb) =>
        this.run('readdir', () => this.readdir(p), (err, r) => (err || !r ? cb(err || -EIO) : cb(0, r.names, r.stats))),
      open: (p, flags, cb) => this.run('open', () => this.open(p, flags), val(cb)),
      create: (p, mode, cb) => this.run('create', () => this.create(p, mode), val(cb)),
      read: (_p, fd, buf, len, pos, cb) => this.run('read', () => this.read(fd, buf, len, pos), count(cb)),
      write: (_p, fd, buf, len, pos, cb) => this.run('write', () => this.write(fd, buf, len, pos), count(cb)),
      flush: (_p, fd, cb) => this.run('flush', () => this.flush(fd), ok(cb)),
      fsync: (_p, datasync, fd, cb) => this.run('fsync', () => this.fsync(fd, datasync !== 0), ok(cb)),
      // Directory changes are committed synchronously by the engine: nothing to sync.
      fsyncdir: (_p, _d, _fd, cb) => cb(0),
      release: (_p, fd, cb) => this.run('release', () => this.release(fd), ok(cb)),
      truncate: (p, size, cb) => this.run('truncate', () => this.truncate(p, size), ok(cb)),
      ftruncate: (_p, fd, size, cb) => this.run('ftruncate', () => this.ftruncate(fd, size), ok(cb)),
      mkdir: (p, mode, cb) => this.run('mkdir', () => this.mkdir(p, mode), ok(cb)),
      rmdir: (p, cb) => this.run('rmdir', () => this.rmdir(p), ok(cb)),
      unlink: (p, cb) => this.run('unlink', () => this.unlink(p), ok(cb)),
      rename: (src, dest, cb) => this.run('rename', () => this.rename(src, dest), ok(cb)),
      link: (src, dest, cb) => this.run('link', () => this.link(src, dest), ok(cb)),
      symlink: (target, linkPath, cb) => this.run('symlink', () => this.symlink(target, linkPath), ok(cb)),
      readlink: (p, cb) => this.run('readlink', () => this.readlink(p), val(cb)),
      chmod: (p, mode, cb) => this.run('chmod', () => this.chmod(p, mode), ok(cb)),
      chown: (p, uid, gid, cb) => this.run('chown', () => this.chown(p, uid, gid), ok(cb)),
      utimens: (p, atime, _mtime, cb) => this.run('utimens', () => this.utimens(p, atime), ok(cb)),
      statfs: (p, cb) => this.run('statfs', () => this.statfs(p), val(cb)),
      setxattr: (p, name, value, _pos, flags, cb) => this.run('setxattr', () => this.setxattr(p, name, value, flags), ok(cb)),
      getxattr: (p, name, _pos, cb) => this.run('getxattr', () => this.getxattr(p, name), val(cb)),
      listxattr: (p, cb) => this.run('listxattr', () => this.listxattr(p), val(cb)),
      removexattr: (p, name, cb) => this.run('removexattr', () => this.removexattr(p, name), ok(cb)),
      mknod: (p, mode, dev, cb) => this.run('mknod', () => this.mknod(p, mode, dev), ok(cb)),
      access: (p, mode, cb) => this.run('access', () => this.access(p, mode), ok(cb)),
    };
  }
}

