/**
 * An in-memory Vfs for FUSE TRANSPORT tests only: it lets the kernel-protocol server be mounted and
 * measured without Redis or S3. It is a unit-test fake, not a reference filesystem: no permission
 * checks (tests run as root), no persistence, simple lock tables. The real proof of the filesystem
 * is the real VFS mounted through the same transport.
 */
import {
  type Attr,
  type Ctx,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  FALLOC_KEEP_SIZE,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  FileType,
  type Ino,
  MetaError,
  type PosixLock,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  type SetAttrRequest,
  type StatFs,
  XATTR_CREATE,
  XATTR_REPLACE,
  ROOT_INODE,
  type ErrnoCode,
} from '../../metadata/types.js';
import type { AttrReply, DirEntryPlus, EntryReply, OpenReply, Vfs } from '../../fs/types.js';

const PAGE = 1 << 20; // file data lives in sparse 1 MiB pages

function err(code: ErrnoCode): MetaError {
  return new MetaError(code);
}

/** errno 6 (ENXIO) is not in the shared table: an object with a numeric errno is all the transport needs. */
function enxio(): Error {
  return Object.assign(new Error('ENXIO'), { errno: 6 });
}

interface Node {
  ino: Ino;
  attr: Attr;
  pages?: Map<number, Buffer>;
  children?: Map<string, Ino>; // key: name as latin1 (byte-exact)
  target?: Buffer;
  xattrs: Map<string, Buffer>;
  opens: number;
  posix: { owner: bigint; pid: number; type: number; start: number; end: bigint }[];
  flocks: Map<bigint, number>;
}

export interface MemVfsStats {
  writes: number;
  maxWrite: number;
  reads: number;
  maxRead: number;
  ops: Record<string, number>;
  forgets: number;
}

export interface MemVfsOptions {
  entryTtl?: number;
  attrTtl?: number;
  writebackCache?: boolean;
  directIo?: boolean;
  keepCache?: boolean;
}

function now(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

export class MemVfs implements Vfs {
  readonly entryTtl: number;
  readonly attrTtl: number;
  readonly readOnly = false;
  readonly writebackCache: boolean;
  invalidator?: { inode(ino: Ino): void; entry(parent: Ino, name: Buffer): void };

  readonly stats: MemVfsStats = { writes: 0, maxWrite: 0, reads: 0, maxRead: 0, ops: {}, forgets: 0 };
  shutdownCalled = false;

  private readonly nodes = new Map<Ino, Node>();
  private nextIno = 2n;
  private nextFh = 1n;
  private readonly dirHandles = new Map<bigint, DirEntryPlus[]>();

  constructor(private readonly o: MemVfsOptions = {}) {
    this.entryTtl = o.entryTtl ?? 1;
    this.attrTtl = o.attrTtl ?? 1;
    this.writebackCache = o.writebackCache ?? false;
    const root = this.newNode(FileType.Dir, 0o755, 0, 0, 0n);
    root.ino = ROOT_INODE;
    root.attr.nlink = 2;
    this.nodes.set(ROOT_INODE, root);
  }

  // ---- internals ---------------------------------------------------------------------------------

  private count(op: string): void {
    this.stats.ops[op] = (this.stats.ops[op] ?? 0) + 1;
  }

  private newNode(type: FileType, mode: number, uid: number, gid: number, parent: Ino): Node {
    const t = now();
    const ino = this.nextIno++;
    const node: Node = {
      ino,
      attr: {
        flags: 0,
        type,
        mode: mode & 0o7777,
        uid,
        gid,
        atime: t.sec,
        atimensec: t.nsec,
        mtime: t.sec,
        mtimensec: t.nsec,
        ctime: t.sec,
        ctimensec: t.nsec,
        nlink: type === FileType.Dir ? 2 : 1,
        length: 0,
        rdev: 0,
        parent,
        accessACL: 0,
        defaultACL: 0,
        tier: 0,
      },
      xattrs: new Map(),
      opens: 0,
      posix: [],
      flocks: new Map(),
    };
    if (type === FileType.Dir) node.children = new Map();
    if (type === FileType.File) node.pages = new Map();
    this.nodes.set(ino, node);
    return node;
  }

  private node(ino: Ino): Node {
    const n = this.nodes.get(ino);
    if (!n) throw err('ENOENT');
    return n;
  }

  private dir(ino: Ino): Node {
    const n = this.node(ino);
    if (!n.children) throw err('ENOTDIR');
    return n;
  }

  private touch(n: Node, m = true, c = true): void {
    const t = now();
    if (m) {
      n.attr.mtime = t.sec;
      n.attr.mtimensec = t.nsec;
    }
    if (c) {
      n.attr.ctime = t.sec;
      n.attr.ctimensec = t.nsec;
    }
  }

  private entry(n: Node): EntryReply {
    return { ino: n.ino, attr: { ...n.attr }, entryTtl: this.entryTtl, attrTtl: this.attrTtl };
  }

  private maybeFree(n: Node): void {
    if (n.attr.nlink <= 0 && n.opens <= 0 && n.ino !== ROOT_INODE) this.nodes.delete(n.ino);
  }

  private addChild(parent: Node, name: Buffer, child: Node): void {
    const key = name.toString('latin1');
    if (name.length > 255) throw err('ENAMETOOLONG');
    if (parent.children!.has(key)) throw err('EEXIST');
    parent.children!.set(key, child.ino);
    if (child.attr.type === FileType.Dir) parent.attr.nlink++;
    this.touch(parent);
  }

  private mk(ctx: Ctx, parent: Ino, name: Buffer, type: FileType, mode: number, umask: number): Node {
    const p = this.dir(parent);
    if (p.children!.has(name.toString('latin1'))) throw err('EEXIST');
    const n = this.newNode(type, mode & ~umask, ctx.uid, ctx.gid, parent);
    this.addChild(p, name, n);
    return n;
  }

  // ---- data --------------------------------------------------------------------------------------

  private readData(n: Node, off: number, size: number): Buffer {
    const len = Math.max(0, Math.min(size, n.attr.length - off));
    if (len === 0) return Buffer.alloc(0);
    const first = Math.floor(off / PAGE);
    const inPage = off - first * PAGE;
    // Zero-copy when the range sits inside one page: the transport writes it out synchronously.
    if (inPage + len <= PAGE) {
      const page = n.pages!.get(first);
      return page ? page.subarray(inPage, inPage + len) : Buffer.alloc(len);
    }
    const out = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const at = off + done;
      const pi = Math.floor(at / PAGE);
      const po = at - pi * PAGE;
      const n2 = Math.min(len - done, PAGE - po);
      const page = n.pages!.get(pi);
      if (page) page.copy(out, done, po, po + n2);
      done += n2;
    }
    return out;
  }

  private writeData(n: Node, off: number, data: Buffer): void {
    let done = 0;
    while (done < data.length) {
      const at = off + done;
      const pi = Math.floor(at / PAGE);
      const po = at - pi * PAGE;
      const n2 = Math.min(data.length - done, PAGE - po);
      let page = n.pages!.get(pi);
      if (!page) {
        page = Buffer.alloc(PAGE);
        n.pages!.set(pi, page);
      }
      data.copy(page, po, done, done + n2); // copies: the transport recycles `data` afterwards
      done += n2;
    }
    if (off + data.length > n.attr.length) n.attr.length = off + data.length;
  }

  /** Zero [off, off+len): drops whole pages, zeroes partial ones. */
  private zeroRange(n: Node, off: number, len: number): void {
    const end = off + len;
    for (const [pi, page] of n.pages!) {
      const ps = pi * PAGE;
      const pe = ps + PAGE;
      if (pe <= off || ps >= end) continue;
      if (ps >= off && pe <= end) n.pages!.delete(pi);
      else page.fill(0, Math.max(off, ps) - ps, Math.min(end, pe) - ps);
    }
  }

  private truncate(n: Node, size: number): void {
    if (size < n.attr.length) {
      this.zeroRange(n, size, n.attr.length - size);
    }
    n.attr.length = size;
  }

  // ---- Vfs ---------------------------------------------------------------------------------------

  async lookup(_ctx: Ctx, parent: Ino, name: Buffer): Promise<EntryReply> {
    this.count('lookup');
    // Test hook: a plain Error (no errno), which the transport must turn into EIO and log once.
    if (name.subarray(0, 4).toString() === 'eio-') throw new Error('memvfs: simulated internal failure');
    const p = this.dir(parent);
    if (name.length === 1 && name[0] === 0x2e) return this.entry(p);
    if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return this.entry(this.node(p.attr.parent || ROOT_INODE));
    const ino = p.children!.get(name.toString('latin1'));
    if (ino === undefined) throw err('ENOENT');
    return this.entry(this.node(ino));
  }

  forget(_ino: Ino, _nlookup: number): void {
    this.stats.forgets++;
  }

  async getattr(_ctx: Ctx, ino: Ino): Promise<AttrReply> {
    this.count('getattr');
    return { attr: { ...this.node(ino).attr }, attrTtl: this.attrTtl };
  }

  async setattr(_ctx: Ctx, ino: Ino, req: SetAttrRequest & { size?: number }): Promise<AttrReply> {
    this.count('setattr');
    const n = this.node(ino);
    if (req.mode !== undefined) n.attr.mode = req.mode & 0o7777;
    if (req.uid !== undefined) n.attr.uid = req.uid;
    if (req.gid !== undefined) n.attr.gid = req.gid;
    if (req.size !== undefined) {
      if (n.attr.type === FileType.Dir) throw err('EISDIR');
      this.truncate(n, req.size);
      this.touch(n);
    }
    const t = now();
    if (req.atimeNow) [n.attr.atime, n.attr.atimensec] = [t.sec, t.nsec];
    else if (req.atime) [n.attr.atime, n.attr.atimensec] = [req.atime.sec, req.atime.nsec];
    if (req.mtimeNow) [n.attr.mtime, n.attr.mtimensec] = [t.sec, t.nsec];
    else if (req.mtime) [n.attr.mtime, n.attr.mtimensec] = [req.mtime.sec, req.mtime.nsec];
    this.touch(n, false, true);
    return { attr: { ...n.attr }, attrTtl: this.attrTtl };
  }

  async readlink(_ctx: Ctx, ino: Ino): Promise<Buffer> {
    const n = this.node(ino);
    if (!n.target) throw err('EINVAL');
    return n.target;
  }

  async mknod(ctx: Ctx, parent: Ino, name: Buffer, mode: number, rdev: number, umask: number): Promise<EntryReply> {
    this.count('mknod');
    const type = typeOfMode(mode);
    const n = this.mk(ctx, parent, name, type, mode, umask);
    n.attr.rdev = rdev;
    if (type === FileType.File) n.pages = new Map();
    return this.entry(n);
  }

  async mkdir(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number): Promise<EntryReply> {
    this.count('mkdir');
    return this.entry(this.mk(ctx, parent, name, FileType.Dir, mode, umask));
  }

  async symlink(ctx: Ctx, parent: Ino, name: Buffer, target: Buffer): Promise<EntryReply> {
    this.count('symlink');
    const n = this.mk(ctx, parent, name, FileType.Symlink, 0o777, 0);
    n.target = target;
    n.attr.length = target.length;
    return this.entry(n);
  }

  async unlink(_ctx: Ctx, parent: Ino, name: Buffer): Promise<void> {
    this.count('unlink');
    const p = this.dir(parent);
    const key = name.toString('latin1');
    const ino = p.children!.get(key);
    if (ino === undefined) throw err('ENOENT');
    const n = this.node(ino);
    if (n.attr.type === FileType.Dir) throw err('EISDIR');
    p.children!.delete(key);
    n.attr.nlink--;
    this.touch(p);
    this.touch(n, false, true);
    this.maybeFree(n);
  }

  async rmdir(_ctx: Ctx, parent: Ino, name: Buffer): Promise<void> {
    this.count('rmdir');
    const p = this.dir(parent);
    const key = name.toString('latin1');
    const ino = p.children!.get(key);
    if (ino === undefined) throw err('ENOENT');
    const n = this.node(ino);
    if (!n.children) throw err('ENOTDIR');
    if (n.children.size > 0) throw err('ENOTEMPTY');
    p.children!.delete(key);
    p.attr.nlink--;
    n.attr.nlink = 0;
    this.touch(p);
    this.maybeFree(n);
  }

  async rename(_ctx: Ctx, parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): Promise<void> {
    this.count('rename');
    const sp = this.dir(parent);
    const dp = this.dir(newParent);
    const sk = name.toString('latin1');
    const dk = newName.toString('latin1');
    const si = sp.children!.get(sk);
    if (si === undefined) throw err('ENOENT');
    const src = this.node(si);
    const di = dp.children!.get(dk);
    if (flags & RENAME_EXCHANGE) {
      if (di === undefined) throw err('ENOENT');
      const dst = this.node(di);
      sp.children!.set(sk, di);
      dp.children!.set(dk, si);
      src.attr.parent = newParent;
      dst.attr.parent = parent;
      if (src.attr.type === FileType.Dir) [sp.attr.nlink, dp.attr.nlink] = [sp.attr.nlink - 1, dp.attr.nlink + 1];
      if (dst.attr.type === FileType.Dir) [sp.attr.nlink, dp.attr.nlink] = [sp.attr.nlink + 1, dp.attr.nlink - 1];
      this.touch(sp);
      this.touch(dp);
      return;
    }
    if (di !== undefined) {
      if (di === si) return;
      if (flags & RENAME_NOREPLACE) throw err('EEXIST');
      const dst = this.node(di);
      if (dst.children) {
        if (src.attr.type !== FileType.Dir) throw err('EISDIR');
        if (dst.children.size > 0) throw err('ENOTEMPTY');
        dp.attr.nlink--;
        dst.attr.nlink = 0;
      } else {
        if (src.attr.type === FileType.Dir) throw err('ENOTDIR');
        dst.attr.nlink--;
      }
      dp.children!.delete(dk);
      this.maybeFree(dst);
    }
    sp.children!.delete(sk);
    dp.children!.set(dk, si);
    src.attr.parent = newParent;
    if (src.attr.type === FileType.Dir && sp !== dp) {
      sp.attr.nlink--;
      dp.attr.nlink++;
    }
    this.touch(sp);
    this.touch(dp);
    this.touch(src, false, true);
  }

  async link(_ctx: Ctx, ino: Ino, newParent: Ino, newName: Buffer): Promise<EntryReply> {
    this.count('link');
    const n = this.node(ino);
    if (n.attr.type === FileType.Dir) throw err('EPERM');
    const p = this.dir(newParent);
    this.addChild(p, newName, n);
    n.attr.nlink++;
    n.attr.parent = 0n;
    this.touch(n, false, true);
    return this.entry(n);
  }

  private openReply(): OpenReply {
    return { fh: this.nextFh++, directIo: this.o.directIo ?? false, keepCache: this.o.keepCache ?? false };
  }

  async open(_ctx: Ctx, ino: Ino, flags: number): Promise<OpenReply> {
    this.count('open');
    const n = this.node(ino);
    if (n.attr.type === FileType.Dir && (flags & 3) !== 0) throw err('EISDIR');
    if (flags & 0o1000 /* O_TRUNC */ && n.pages) {
      this.truncate(n, 0);
      this.touch(n);
    }
    n.opens++;
    return this.openReply();
  }

  async create(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number, _flags: number): Promise<EntryReply & OpenReply> {
    this.count('create');
    const n = this.mk(ctx, parent, name, FileType.File, mode, umask);
    n.opens++;
    return { ...this.entry(n), ...this.openReply() };
  }

  async read(_ctx: Ctx, ino: Ino, _fh: bigint, offset: number, size: number): Promise<Buffer> {
    this.stats.reads++;
    if (size > this.stats.maxRead) this.stats.maxRead = size;
    const n = this.node(ino);
    if (!n.pages) throw err('EISDIR');
    return this.readData(n, offset, size);
  }

  async write(_ctx: Ctx, ino: Ino, _fh: bigint, offset: number, data: Buffer): Promise<number> {
    this.stats.writes++;
    if (data.length > this.stats.maxWrite) this.stats.maxWrite = data.length;
    const n = this.node(ino);
    if (!n.pages) throw err('EISDIR');
    this.writeData(n, offset, data);
    this.touch(n);
    return data.length;
  }

  async flush(_ctx: Ctx, ino: Ino, _fh: bigint, lockOwner: bigint): Promise<void> {
    this.count('flush');
    const n = this.nodes.get(ino);
    if (n) n.posix = n.posix.filter((l) => l.owner !== lockOwner);
  }

  async fsync(): Promise<void> {
    this.count('fsync');
  }

  async release(_ctx: Ctx, ino: Ino, _fh: bigint, lockOwner?: bigint, releaseFlock?: boolean): Promise<void> {
    this.count('release');
    const n = this.nodes.get(ino);
    if (!n) return;
    if (releaseFlock && lockOwner !== undefined) n.flocks.delete(lockOwner);
    n.opens--;
    this.maybeFree(n);
  }

  async fallocate(_ctx: Ctx, ino: Ino, _fh: bigint, mode: number, offset: number, length: number): Promise<void> {
    this.count('fallocate');
    const n = this.node(ino);
    if (!n.pages) throw err('EISDIR');
    const known = FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE;
    if (mode & ~known) throw err('ENOTSUP');
    if (mode & FALLOC_PUNCH_HOLE) {
      if (!(mode & FALLOC_KEEP_SIZE)) throw err('EINVAL');
      this.zeroRange(n, offset, Math.min(length, Math.max(0, n.attr.length - offset)));
    } else if (mode & FALLOC_ZERO_RANGE) {
      this.zeroRange(n, offset, length);
    }
    if (!(mode & FALLOC_KEEP_SIZE) && offset + length > n.attr.length) n.attr.length = offset + length;
    this.touch(n);
  }

  async copyFileRange(
    _ctx: Ctx,
    inIno: Ino,
    _inFh: bigint,
    offIn: number,
    outIno: Ino,
    _outFh: bigint,
    offOut: number,
    length: number,
  ): Promise<number> {
    this.count('copy_file_range');
    const src = this.node(inIno);
    const dst = this.node(outIno);
    if (!src.pages || !dst.pages) throw err('EISDIR');
    const data = Buffer.from(this.readData(src, offIn, Math.min(length, 64 << 20)));
    this.writeData(dst, offOut, data);
    this.touch(dst);
    return data.length;
  }

  async lseek(_ctx: Ctx, ino: Ino, _fh: bigint, offset: number, whence: number): Promise<number> {
    this.count('lseek');
    const n = this.node(ino);
    const size = n.attr.length;
    if (offset >= size) throw enxio();
    if (whence === 3) {
      // SEEK_DATA: first byte >= offset inside a stored page.
      const pages = [...n.pages!.keys()].sort((a, b) => a - b);
      for (const pi of pages) {
        const ps = pi * PAGE;
        if (ps + PAGE <= offset) continue;
        const at = Math.max(ps, offset);
        if (at < size) return at;
      }
      throw enxio();
    }
    if (whence === 4) {
      // SEEK_HOLE: first byte >= offset outside a stored page, or EOF.
      let at = offset;
      while (at < size && n.pages!.has(Math.floor(at / PAGE))) at = (Math.floor(at / PAGE) + 1) * PAGE;
      return Math.min(at, size);
    }
    throw err('EINVAL');
  }

  async opendir(_ctx: Ctx, ino: Ino): Promise<bigint> {
    this.count('opendir');
    const d = this.dir(ino);
    const fh = this.nextFh++;
    // Snapshot at open, like JuiceFS: cookies are positions in this list, stable under changes.
    const list: DirEntryPlus[] = [];
    const add = (name: Buffer, n: Node): void => {
      list.push({ name, ino: n.ino, type: n.attr.type, offset: list.length + 1, entryTtl: this.entryTtl, attrTtl: this.attrTtl, attr: n.attr });
    };
    add(Buffer.from('.'), d);
    add(Buffer.from('..'), this.nodes.get(d.attr.parent) ?? d);
    for (const [key, ci] of d.children!) {
      const c = this.nodes.get(ci);
      if (c) add(Buffer.from(key, 'latin1'), c);
    }
    this.dirHandles.set(fh, list);
    return fh;
  }

  async readdir(_ctx: Ctx, _ino: Ino, fh: bigint, offset: number, plus: boolean, max: number): Promise<DirEntryPlus[]> {
    this.count(plus ? 'readdirplus' : 'readdir');
    const list = this.dirHandles.get(fh);
    if (!list) throw err('EBADF');
    return list.slice(offset, offset + max).map((e) => (plus ? { ...e, attr: { ...e.attr! } } : e));
  }

  async releasedir(_ctx: Ctx, _ino: Ino, fh: bigint): Promise<void> {
    this.dirHandles.delete(fh);
  }

  async statfs(): Promise<StatFs & { blockSize: number; nameMax: number }> {
    this.count('statfs');
    let used = 0;
    for (const n of this.nodes.values()) if (n.pages) used += n.pages.size * PAGE;
    const total = 2 ** 40;
    return { totalSpace: total, availSpace: total - used, usedInodes: this.nodes.size, availInodes: 1_000_000, blockSize: 4096, nameMax: 255 };
  }

  async access(_ctx: Ctx, ino: Ino): Promise<void> {
    this.count('access');
    this.node(ino);
  }

  async setxattr(_ctx: Ctx, ino: Ino, name: string, value: Buffer, flags: number): Promise<void> {
    this.count('setxattr');
    const n = this.node(ino);
    const has = n.xattrs.has(name);
    if (flags & XATTR_CREATE && has) throw err('EEXIST');
    if (flags & XATTR_REPLACE && !has) throw err('ENODATA');
    n.xattrs.set(name, value);
  }

  async getxattr(_ctx: Ctx, ino: Ino, name: string): Promise<Buffer> {
    this.count('getxattr');
    const v = this.node(ino).xattrs.get(name);
    if (!v) throw err('ENODATA');
    return v;
  }

  async listxattr(_ctx: Ctx, ino: Ino): Promise<string[]> {
    return [...this.node(ino).xattrs.keys()];
  }

  async removexattr(_ctx: Ctx, ino: Ino, name: string): Promise<void> {
    if (!this.node(ino).xattrs.delete(name)) throw err('ENODATA');
  }

  // ---- locks -------------------------------------------------------------------------------------

  private conflict(n: Node, owner: bigint, l: PosixLock) {
    for (const h of n.posix) {
      if (h.owner === owner) continue;
      if (h.type === F_RDLCK && l.type === F_RDLCK) continue;
      if (BigInt(h.start) <= l.end && BigInt(l.start) <= h.end) return h;
    }
    return undefined;
  }

  async getlk(_ctx: Ctx, ino: Ino, _fh: bigint, owner: bigint, lock: PosixLock): Promise<PosixLock> {
    this.count('getlk');
    const c = this.conflict(this.node(ino), owner, lock);
    if (!c) return { type: F_UNLCK, pid: 0, start: 0, end: 0n };
    return { type: c.type, pid: c.pid, start: c.start, end: c.end };
  }

  async setlk(_ctx: Ctx, ino: Ino, _fh: bigint, owner: bigint, lock: PosixLock, _block: boolean): Promise<void> {
    this.count('setlk');
    const n = this.node(ino);
    if (lock.type !== F_UNLCK && this.conflict(n, owner, lock)) throw err('EAGAIN');
    // Replace this owner's locks in the range (no range splitting: enough for transport tests).
    n.posix = n.posix.filter((h) => h.owner !== owner || BigInt(h.start) > lock.end || BigInt(lock.start) > h.end);
    if (lock.type !== F_UNLCK) n.posix.push({ owner, pid: lock.pid, type: lock.type, start: lock.start, end: lock.end });
  }

  async flock(_ctx: Ctx, ino: Ino, _fh: bigint, owner: bigint, type: number, _block: boolean): Promise<void> {
    this.count('flock');
    const n = this.node(ino);
    if (type === F_UNLCK) {
      n.flocks.delete(owner);
      return;
    }
    for (const [o, t] of n.flocks) {
      if (o !== owner && (t === F_WRLCK || type === F_WRLCK)) throw err('EAGAIN');
    }
    n.flocks.set(owner, type);
  }

  async shutdown(): Promise<void> {
    this.shutdownCalled = true;
  }

  /** Test hook: change a file behind the kernel's back, as another mount would. */
  externalWrite(parent: Ino, name: string, data: Buffer): Ino {
    const p = this.dir(parent);
    const ino = p.children!.get(Buffer.from(name).toString('latin1'));
    if (ino === undefined) throw err('ENOENT');
    const n = this.node(ino);
    this.truncate(n, 0);
    this.writeData(n, 0, data);
    this.touch(n);
    return ino;
  }

  /** Test hook: remove a name behind the kernel's back. */
  externalUnlink(parent: Ino, name: string): void {
    const p = this.dir(parent);
    const key = Buffer.from(name).toString('latin1');
    const ino = p.children!.get(key);
    if (ino === undefined) throw err('ENOENT');
    p.children!.delete(key);
    const n = this.node(ino);
    n.attr.nlink--;
    this.maybeFree(n);
  }
}

function typeOfMode(mode: number): FileType {
  switch (mode & 0o170000) {
    case 0o040000:
      return FileType.Dir;
    case 0o120000:
      return FileType.Symlink;
    case 0o010000:
      return FileType.Fifo;
    case 0o060000:
      return FileType.BlockDev;
    case 0o020000:
      return FileType.CharDev;
    case 0o140000:
      return FileType.Socket;
    default:
      return FileType.File;
  }
}
