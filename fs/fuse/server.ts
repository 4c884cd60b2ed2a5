/**
 * The FUSE server: reads kernel requests from an open /dev/fuse descriptor, calls the Vfs, writes
 * replies. One table maps each opcode to a handler that decodes the request, calls the Vfs and
 * encodes the reply.
 *
 * Threading (all JavaScript runs on one thread): each outstanding `fs.read` on the descriptor holds
 * one libuv threadpool thread until the kernel hands it a request, so several reads are kept in
 * flight (`readers`) and the pool must be larger than that (see threadpool.ts). Replies are written
 * with synchronous writes: a write to /dev/fuse never blocks on the filesystem, and doing it inline
 * avoids a threadpool round trip per reply. Notifications are the exception (see `notify`).
 *
 * Buffers: every reader owns a READ_BUFFER_SIZE buffer. Requests are decoded synchronously (names
 * are copied out) before the reader issues its next read into the same buffer, except WRITE, whose
 * payload is handed to Vfs.write as a view of the read buffer; that buffer goes back to the pool when
 * the write settles. So Vfs.write must copy what it keeps before its promise settles.
 *
 * Errors: a rejection carrying a positive numeric `errno` (MetaError) becomes -errno; anything else
 * becomes EIO and is logged once per (operation, error name).
 */
import fs from 'node:fs';
import type { Ctx, Ino, PosixLock } from '../../metadata/types.js';
import { F_UNLCK, FileType } from '../../metadata/types.js';
import type { AttrReply, DirEntryPlus, EntryReply, OpenReply, Vfs } from '../types.js';
import {
  DIRENT_BASE,
  DIRENTPLUS_BASE,
  ENTRY_OUT_SIZE,
  FATTR_ATIME,
  FATTR_ATIME_NOW,
  FATTR_FH,
  FATTR_GID,
  FATTR_MODE,
  FATTR_MTIME,
  FATTR_MTIME_NOW,
  FATTR_SIZE,
  FATTR_UID,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FUSE_ASYNC_DIO,
  FUSE_ASYNC_READ,
  FUSE_ATOMIC_O_TRUNC,
  FUSE_AUTO_INVAL_DATA,
  FUSE_BIG_WRITES,
  FUSE_CACHE_SYMLINKS,
  FUSE_DO_READDIRPLUS,
  FUSE_EXPORT_SUPPORT,
  FUSE_FLOCK_LOCKS,
  FUSE_FSYNC_FDATASYNC,
  FUSE_GETATTR_FH,
  FUSE_HANDLE_KILLPRIV_V2,
  FATTR_KILL_SUIDGID,
  FUSE_WRITE_KILL_SUIDGID,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_LK_FLOCK,
  FUSE_MAX_PAGES,
  FUSE_MIN_MINOR_VERSION,
  FUSE_PARALLEL_DIROPS,
  FUSE_POSIX_LOCKS,
  FUSE_READDIRPLUS_AUTO,
  FUSE_RELEASE_FLOCK_UNLOCK,
  FUSE_WRITEBACK_CACHE,
  IN_HEADER_SIZE,
  type InHeader,
  type InitOut,
  MAX_PAGES,
  MAX_WRITE,
  OUT_HEADER_SIZE,
  Op,
  PAGE_SIZE,
  READ_BUFFER_SIZE,
  WRITE_IN_SIZE,
  decodeInHeader,
  decodeInitIn,
  direntSize,
  direntplusSize,
  encodeAttrOut,
  encodeDirent,
  encodeEmptyEntryOut,
  encodeEntryOut,
  encodeGetxattrOut,
  encodeInitOut,
  encodeLkOut,
  encodeLseekOut,
  encodeNotifyInvalEntry,
  encodeNotifyInvalInode,
  encodeOpenOut,
  encodeOutHeader,
  encodeStatfsOut,
  encodeWriteOut,
  opName,
  readCString,
  readU64,
} from './protocol.js';

const EINTR = 4;
const EIO = 5;
const EAGAIN = 11;
const EINVAL = 22;
const ERANGE = 34;
const ENOSYS = 38;
const EPROTO = 71;

export interface FuseServerOptions {
  /**
   * Reads kept outstanding on /dev/fuse. Each holds a libuv threadpool thread, so the default is
   * derived from UV_THREADPOOL_SIZE, leaving 4 threads for disk-cache I/O, DNS and zlib.
   */
  readers?: number;
  /**
   * FUSE_ASYNC_DIO: the kernel submits O_DIRECT reads/writes of one call concurrently. Measured to
   * triple 4 KiB reads at iodepth 16 and to slow iodepth 1; off unless the profile asks for it.
   */
  asyncDio?: boolean;
  /**
   * FUSE_HANDLE_KILLPRIV_V2 (default on): the kernel tells us when a write, truncate or
   * open(O_TRUNC) by a caller without CAP_FSETID must clear suid/sgid, and the transport clears
   * them (getattr + privileged setattr, only in that rare case); chown clears them in the engine.
   * Without it the kernel asks GETXATTR(security.capability) before EVERY write(2) — one extra
   * round trip per write — because it may not cache "no privileges to kill" (SB_NOSEC).
   */
  killPrivV2?: boolean;
  /**
   * FUSE_AUTO_INVAL_DATA: the kernel drops cached pages when it sees mtime/size change in fresh
   * attributes, so another mount's writes show up without reopening. On by default.
   */
  autoInvalData?: boolean;
  /** Cap on kernel readahead (bytes); default: what the kernel offers. */
  maxReadahead?: number;
  /** Outstanding background requests (readahead, writeback, async DIO); kernel default 12. */
  maxBackground?: number;
  congestionThreshold?: number;
  /** Where transport problems are reported (never file contents or credentials). */
  log?: (msg: string) => void;
  /** Called after every replied request: opcode, seconds spent, errno (0 = success). */
  observer?: (opcode: number, seconds: number, errno: number) => void;
}

/** What INIT settled on. */
export interface Negotiated {
  major: number;
  minor: number;
  kernelMinor: number;
  flags: number;
  maxWrite: number;
  maxReadahead: number;
}

/** Transport counters, cheap enough to keep always. */
export interface ServerStats {
  requests: number;
  /** Largest WRITE payload seen (1 MiB when max_pages took effect). */
  maxWriteSeen: number;
  /** Largest READ size requested by the kernel. */
  maxReadSeen: number;
  errorsLogged: number;
}

type Handler = (this: FuseServer, h: InHeader, buf: Buffer, off: number, end: number) => boolean | void;

/** Supplementary groups of a caller, read lazily from /proc (the kernel does not send them). */
const groupCache = new Map<number, { gids: number[]; at: number }>();
const GROUP_TTL_MS = 1000;

function groupsOf(pid: number, gid: number): number[] {
  if (pid === 0) return [gid];
  const now = Date.now();
  const c = groupCache.get(pid);
  if (c && now - c.at < GROUP_TTL_MS) return c.gids;
  let gids = [gid];
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
    const i = s.indexOf('\nGroups:');
    if (i >= 0) {
      const line = s.slice(i + 8, s.indexOf('\n', i + 8));
      const list = line.split(/\s+/).filter(Boolean).map(Number);
      if (!list.includes(gid)) list.push(gid);
      gids = list;
    }
  } catch {
    // The caller may be gone already; its primary group is all we can know.
  }
  if (groupCache.size > 4096) groupCache.clear();
  groupCache.set(pid, { gids, at: now });
  return gids;
}

/**
 * The caller of one request. `gids` is computed only when read — a permission check that uid and
 * primary gid did not decide — which keeps /proc reads off the common path. It is an own enumerable
 * getter (not a class accessor) so that `{ ...ctx, umask }` copies in the layers below still carry
 * it (the spread reads it once; groupsOf caches per pid).
 */
function ctxOf(h: InHeader): Ctx {
  return {
    uid: h.uid,
    gid: h.gid,
    pid: h.pid,
    get gids(): number[] {
      return groupsOf(this.pid, this.gid);
    },
  };
}

/** The positive errno of a MetaError-like rejection, or 0 for anything else. */
export function errnoOf(e: unknown): number {
  if (e !== null && typeof e === 'object') {
    const n = (e as { errno?: unknown }).errno;
    if (typeof n === 'number' && n > 0 && n < 4096 && Number.isInteger(n)) return n;
  }
  return 0;
}

function isDotName(name: Buffer): boolean {
  return name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e));
}

interface LockWaiter {
  interrupted: boolean;
  timer?: NodeJS.Timeout;
}

export class FuseServer {
  readonly stats: ServerStats = { requests: 0, maxWriteSeen: 0, maxReadSeen: 0, errorsLogged: 0 };
  negotiated?: Negotiated;

  private readonly table: (Handler | undefined)[] = [];
  /** Scratch for every reply: replies are encoded and written synchronously, so one suffices. */
  private readonly out = Buffer.allocUnsafe(OUT_HEADER_SIZE + MAX_WRITE + PAGE_SIZE);
  private readonly hdr = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  private readonly pool: Buffer[] = [];
  private readonly readerCount: number;
  private activeReaders = 0;
  private started = false;
  private connectionGone = false;
  private readonly logged = new Set<string>();
  private readonly log: (msg: string) => void;
  private readonly observer?: (opcode: number, seconds: number, errno: number) => void;

  private readonly lockWaiters = new Map<bigint, LockWaiter>();
  /** INTERRUPTs that arrived before the request they name was dispatched (another reader). */
  private readonly earlyInterrupts = new Set<bigint>();

  private readonly notifyQueue: Buffer[] = [];
  private notifying = false;

  private initResolve!: () => void;
  private initReject!: (e: Error) => void;
  /** Resolves once INIT is answered (the mount serves requests from then on). */
  readonly initialized: Promise<void>;
  private endResolve!: () => void;
  /** Resolves once every reader has seen the connection end (ENODEV after unmount or abort). */
  readonly ended: Promise<void>;

  constructor(
    readonly fd: number,
    readonly vfs: Vfs,
    private readonly opts: FuseServerOptions = {},
  ) {
    this.log = opts.log ?? ((m) => process.stderr.write(`artifacts fuse: ${m}\n`));
    this.observer = opts.observer;
    this.readerCount = Math.max(1, opts.readers ?? defaultReaders());
    this.initialized = new Promise<void>((res, rej) => {
      this.initResolve = res;
      this.initReject = rej;
    });
    this.initialized.catch(() => {});
    this.ended = new Promise<void>((res) => (this.endResolve = res));
    this.buildTable();
  }

  /**
   * Start serving. Call only after mount(2) succeeded: a read on a /dev/fuse descriptor with no
   * mount behind it blocks its thread forever, even across close().
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    // One reader until INIT is answered; the rest join once the connection is up.
    this.startReader();
  }

  // ---- reading -----------------------------------------------------------------------------------

  private takeBuffer(): Buffer {
    return this.pool.pop() ?? Buffer.allocUnsafe(READ_BUFFER_SIZE);
  }

  private startReader(): void {
    this.activeReaders++;
    let buf = this.takeBuffer();
    const loop = (): void => {
      fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // ENOENT: the request was interrupted before we got it; EINTR/EAGAIN: just retry.
          if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') return loop();
          if (code !== 'ENODEV' && code !== 'ECONNABORTED') this.logOnce('read', `read /dev/fuse: ${code ?? err.message}`);
          this.readerDone(buf);
          return;
        }
        let kept = false;
        try {
          kept = this.dispatch(buf, n);
        } catch (e) {
          this.logOnce('dispatch', `dispatch failed: ${(e as Error).message}`);
        }
        if (kept) buf = this.takeBuffer();
        loop();
      });
    };
    loop();
  }

  private readerDone(buf: Buffer): void {
    this.pool.push(buf);
    this.activeReaders--;
    if (this.activeReaders > 0) return;
    this.connectionGone = true;
    for (const w of this.lockWaiters.values()) {
      w.interrupted = true;
      if (w.timer) clearTimeout(w.timer);
    }
    this.lockWaiters.clear();
    this.initReject(new Error('FUSE connection ended before INIT'));
    this.endResolve();
  }

  /** Decodes one request and starts its handler. Returns true if the handler kept `buf`. */
  private dispatch(buf: Buffer, n: number): boolean {
    if (n < IN_HEADER_SIZE) {
      this.logOnce('short', `short request (${n} bytes)`);
      return false;
    }
    const h = decodeInHeader(buf);
    this.stats.requests++;
    const end = Math.min(n, h.len) - h.extLen;
    const handler = this.table[h.opcode];
    if (handler === undefined) {
      this.replyError(h.unique, ENOSYS);
      return false;
    }
    try {
      return handler.call(this, h, buf, IN_HEADER_SIZE, end) === true;
    } catch (e) {
      // A Vfs method that threw synchronously, or a malformed request.
      this.fail(h, e);
      return false;
    }
  }

  // ---- replying ----------------------------------------------------------------------------------

  private send(buf: Buffer, len: number): void {
    try {
      fs.writeSync(this.fd, buf, 0, len);
    } catch (e) {
      this.writeFailed(e);
    }
  }

  private writeFailed(e: unknown): void {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOENT: the request was interrupted and answered/aborted meanwhile. ENODEV: unmounted.
    if (code === 'ENOENT' || code === 'ENODEV' || code === 'ECONNABORTED') return;
    this.logOnce(`write:${code}`, `reply write failed: ${code ?? (e as Error).message}`);
  }

  private replyError(unique: bigint, errno: number): void {
    encodeOutHeader(this.out, 0, OUT_HEADER_SIZE, -errno, unique);
    this.send(this.out, OUT_HEADER_SIZE);
  }

  private replyOk(unique: bigint): void {
    this.replyError(unique, 0);
  }

  /** Finish a reply whose body was encoded into `out` at OUT_HEADER_SIZE, ending at `end`. */
  private sendOut(unique: bigint, end: number): void {
    encodeOutHeader(this.out, 0, end, 0, unique);
    this.send(this.out, end);
  }

  private replyEntry(unique: bigint, r: EntryReply): void {
    this.sendOut(unique, encodeEntryOut(this.out, OUT_HEADER_SIZE, r.ino, r.attr, r.entryTtl, r.attrTtl));
  }

  private replyAttr(unique: bigint, ino: Ino, r: AttrReply): void {
    this.sendOut(unique, encodeAttrOut(this.out, OUT_HEADER_SIZE, ino, r.attr, r.attrTtl));
  }

  private replyOpen(unique: bigint, r: OpenReply): void {
    this.sendOut(unique, encodeOpenOut(this.out, OUT_HEADER_SIZE, r.fh, openFlagsOf(r)));
  }

  /** A data reply: small payloads are copied next to the header, large ones go out by writev. */
  private replyData(unique: bigint, data: Buffer, max: number): void {
    const len = Math.min(data.length, max);
    if (len <= 4096) {
      data.copy(this.out, OUT_HEADER_SIZE, 0, len);
      this.sendOut(unique, OUT_HEADER_SIZE + len);
      return;
    }
    encodeOutHeader(this.hdr, 0, OUT_HEADER_SIZE + len, 0, unique);
    try {
      fs.writevSync(this.fd, [this.hdr, len === data.length ? data : data.subarray(0, len)]);
    } catch (e) {
      this.writeFailed(e);
    }
  }

  private fail(h: InHeader, e: unknown): void {
    let errno = errnoOf(e);
    if (errno === 0) {
      errno = EIO;
      const name = e instanceof Error ? e.name : typeof e;
      const code = (e as { code?: unknown } | null)?.code;
      this.logOnce(
        `${h.opcode}:${name}:${String(code)}`,
        `${opName(h.opcode)} failed with a non-errno error (${name}${code ? ` ${String(code)}` : ''}: ${
          e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200)
        }); replying EIO`,
      );
    }
    this.observe(h, errno);
    this.replyError(h.unique, errno);
  }

  private logOnce(key: string, msg: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size < 1000) this.logged.add(key);
    this.stats.errorsLogged++;
    this.log(msg);
  }

  private startTimes = new Map<bigint, number>();

  private observe(h: InHeader, errno: number): void {
    if (!this.observer) return;
    const t0 = this.startTimes.get(h.unique);
    this.startTimes.delete(h.unique);
    this.observer(h.opcode, t0 === undefined ? 0 : (performance.now() - t0) / 1000, errno);
  }

  /**
   * Wire a Vfs promise to a reply: `ok` encodes the success reply, a rejection becomes -errno.
   */
  private call<T>(h: InHeader, p: Promise<T>, ok: (unique: bigint, v: T) => void): void {
    if (this.observer) this.startTimes.set(h.unique, performance.now());
    p.then(
      (v) => {
        try {
          ok.call(this, h.unique, v);
          this.observe(h, 0);
        } catch (e) {
          this.fail(h, e);
        }
      },
      (e) => this.fail(h, e),
    );
  }

  private callOk(h: InHeader, p: Promise<unknown>): void {
    this.call(h, p, (u) => this.replyOk(u));
  }

  // ---- notifications -----------------------------------------------------------------------------

  /**
   * Queue a notification. Written asynchronously on a pool thread, one at a time: invalidating an
   * entry takes the directory's lock in the kernel, which a request we have not answered yet may
   * hold; a synchronous write there would block the very thread that must answer it.
   */
  private notify(b: Buffer): void {
    if (this.connectionGone || !this.negotiated) return;
    this.notifyQueue.push(b);
    if (!this.notifying) this.drainNotifications();
  }

  private drainNotifications(): void {
    const b = this.notifyQueue.shift();
    if (b === undefined || this.connectionGone) {
      this.notifyQueue.length = 0;
      this.notifying = false;
      return;
    }
    this.notifying = true;
    fs.write(this.fd, b, 0, b.length, null, (err) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the kernel does not know that inode/entry (nothing cached): fine.
        if (code !== 'ENOENT' && code !== 'ENODEV' && code !== 'ENOTDIR') this.logOnce(`notify:${code}`, `notify failed: ${code}`);
      }
      this.drainNotifications();
    });
  }

  /** Resolves when queued notifications are written (used before closing the descriptor). */
  async notificationsDrained(): Promise<void> {
    while (this.notifying) await new Promise((r) => setTimeout(r, 5));
  }

  // ---- the opcode table --------------------------------------------------------------------------

  private buildTable(): void {
    const t = this.table;
    const on = (op: Op, fn: Handler): void => {
      t[op] = fn;
    };
    on(Op.INIT, this.opInit);
    on(Op.DESTROY, (h) => this.replyOk(h.unique));
    on(Op.LOOKUP, function (h, buf, off, end) {
      const [name] = readCString(buf, off, end);
      this.call(h, this.vfs.lookup(ctxOf(h), h.nodeid, name), this.replyEntry);
    });
    // FORGET and BATCH_FORGET take no reply, not even an error one.
    on(Op.FORGET, function (h, buf, off) {
      this.forget(h.nodeid, readU64(buf, off));
    });
    on(Op.BATCH_FORGET, function (h, buf, off, end) {
      const count = buf.readUInt32LE(off);
      let p = off + 8;
      for (let i = 0; i < count && p + 16 <= end; i++, p += 16) {
        this.forget(buf.readBigUInt64LE(p), readU64(buf, p + 8));
      }
    });
    on(Op.GETATTR, function (h, buf, off) {
      const flags = buf.readUInt32LE(off);
      const fh = flags & FUSE_GETATTR_FH ? buf.readBigUInt64LE(off + 8) : undefined;
      const ino = h.nodeid;
      this.call(h, this.vfs.getattr(ctxOf(h), ino, fh), (u, r) => this.replyAttr(u, ino, r));
    });
    on(Op.SETATTR, this.opSetattr);
    on(Op.READLINK, function (h) {
      this.call(h, this.vfs.readlink(ctxOf(h), h.nodeid), (u, target) => this.replyData(u, target, target.length));
    });
    on(Op.SYMLINK, function (h, buf, off, end) {
      const [name, p] = readCString(buf, off, end);
      const [target] = readCString(buf, p, end);
      this.call(h, this.vfs.symlink(ctxOf(h), h.nodeid, name, target), this.replyEntry);
    });
    on(Op.MKNOD, function (h, buf, off, end) {
      const mode = buf.readUInt32LE(off);
      const rdev = buf.readUInt32LE(off + 4);
      const umask = buf.readUInt32LE(off + 8);
      const [name] = readCString(buf, off + 16, end);
      this.call(h, this.vfs.mknod(ctxOf(h), h.nodeid, name, mode, rdev, umask), this.replyEntry);
    });
    on(Op.MKDIR, function (h, buf, off, end) {
      const mode = buf.readUInt32LE(off);
      const umask = buf.readUInt32LE(off + 4);
      const [name] = readCString(buf, off + 8, end);
      this.call(h, this.vfs.mkdir(ctxOf(h), h.nodeid, name, mode, umask), this.replyEntry);
    });
    on(Op.UNLINK, function (h, buf, off, end) {
      const [name] = readCString(buf, off, end);
      this.callOk(h, this.vfs.unlink(ctxOf(h), h.nodeid, name));
    });
    on(Op.RMDIR, function (h, buf, off, end) {
      const [name] = readCString(buf, off, end);
      this.callOk(h, this.vfs.rmdir(ctxOf(h), h.nodeid, name));
    });
    on(Op.RENAME, function (h, buf, off, end) {
      const newdir = buf.readBigUInt64LE(off);
      const [oldName, p] = readCString(buf, off + 8, end);
      const [newName] = readCString(buf, p, end);
      this.callOk(h, this.vfs.rename(ctxOf(h), h.nodeid, oldName, newdir, newName, 0));
    });
    on(Op.RENAME2, function (h, buf, off, end) {
      const newdir = buf.readBigUInt64LE(off);
      const flags = buf.readUInt32LE(off + 8);
      const [oldName, p] = readCString(buf, off + 16, end);
      const [newName] = readCString(buf, p, end);
      this.callOk(h, this.vfs.rename(ctxOf(h), h.nodeid, oldName, newdir, newName, flags));
    });
    on(Op.LINK, function (h, buf, off, end) {
      const oldIno = buf.readBigUInt64LE(off);
      const [name] = readCString(buf, off + 8, end);
      this.call(h, this.vfs.link(ctxOf(h), oldIno, h.nodeid, name), this.replyEntry);
    });
    on(Op.OPEN, function (h, buf, off) {
      const flags = buf.readUInt32LE(off);
      const ctx = ctxOf(h);
      let p = this.vfs.open(ctx, h.nodeid, flags);
      if (buf.readUInt32LE(off + 4) & FUSE_OPEN_KILL_SUIDGID) {
        p = p.then(async (r) => {
          await this.killSuidgid(ctx, h.nodeid);
          return r;
        });
      }
      this.call(h, p, this.replyOpen);
    });
    on(Op.CREATE, function (h, buf, off, end) {
      const flags = buf.readUInt32LE(off);
      const mode = buf.readUInt32LE(off + 4);
      const umask = buf.readUInt32LE(off + 8);
      const [name] = readCString(buf, off + 16, end);
      this.call(h, this.vfs.create(ctxOf(h), h.nodeid, name, mode, umask, flags), (u, r) => {
        let p = encodeEntryOut(this.out, OUT_HEADER_SIZE, r.ino, r.attr, r.entryTtl, r.attrTtl);
        p = encodeOpenOut(this.out, p, r.fh, openFlagsOf(r));
        this.sendOut(u, p);
      });
    });
    on(Op.READ, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const offset = readU64(buf, off + 8);
      const size = buf.readUInt32LE(off + 16);
      if (size > this.stats.maxReadSeen) this.stats.maxReadSeen = size;
      this.call(h, this.vfs.read(ctxOf(h), h.nodeid, fh, offset, size), (u, data) => this.replyData(u, data, size));
    });
    on(Op.WRITE, this.opWrite);
    on(Op.FLUSH, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const owner = buf.readBigUInt64LE(off + 16);
      this.callOk(h, this.vfs.flush(ctxOf(h), h.nodeid, fh, owner));
    });
    on(Op.FSYNC, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const flags = buf.readUInt32LE(off + 8);
      this.callOk(h, this.vfs.fsync(ctxOf(h), h.nodeid, fh, (flags & FUSE_FSYNC_FDATASYNC) !== 0));
    });
    on(Op.RELEASE, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const releaseFlags = buf.readUInt32LE(off + 12);
      const owner = buf.readBigUInt64LE(off + 16);
      this.callOk(h, this.vfs.release(ctxOf(h), h.nodeid, fh, owner, (releaseFlags & FUSE_RELEASE_FLOCK_UNLOCK) !== 0));
    });
    on(Op.OPENDIR, function (h, buf, off) {
      const flags = buf.readUInt32LE(off);
      this.call(h, this.vfs.opendir(ctxOf(h), h.nodeid, flags), (u, fh) => {
        this.sendOut(u, encodeOpenOut(this.out, OUT_HEADER_SIZE, fh, 0));
      });
    });
    on(Op.READDIR, function (h, buf, off) {
      this.readdir(h, buf, off, false);
    });
    on(Op.READDIRPLUS, function (h, buf, off) {
      this.readdir(h, buf, off, true);
    });
    on(Op.RELEASEDIR, function (h, buf, off) {
      this.callOk(h, this.vfs.releasedir(ctxOf(h), h.nodeid, buf.readBigUInt64LE(off)));
    });
    // Directory metadata is committed synchronously by the engine: nothing to sync.
    on(Op.FSYNCDIR, (h) => this.replyOk(h.unique));
    on(Op.STATFS, function (h) {
      this.call(h, this.vfs.statfs(ctxOf(h), h.nodeid), (u, s) => {
        const bs = s.blockSize > 0 ? s.blockSize : 4096;
        const avail = Math.floor(s.availSpace / bs);
        const p = encodeStatfsOut(this.out, OUT_HEADER_SIZE, {
          blocks: Math.floor(s.totalSpace / bs),
          bfree: avail,
          bavail: avail,
          files: s.usedInodes + s.availInodes,
          ffree: s.availInodes,
          bsize: bs,
          namelen: s.nameMax,
          frsize: bs,
        });
        this.sendOut(u, p);
      });
    });
    on(Op.SETXATTR, function (h, buf, off, end) {
      // fuse_setxattr_in is the 8-byte compat form: we do not negotiate FUSE_SETXATTR_EXT.
      const size = buf.readUInt32LE(off);
      const flags = buf.readUInt32LE(off + 4);
      const [name, p] = readCString(buf, off + 8, end);
      if (p + size > end) return this.replyError(h.unique, EINVAL);
      const value = Buffer.from(buf.subarray(p, p + size));
      this.callOk(h, this.vfs.setxattr(ctxOf(h), h.nodeid, name.toString('utf8'), value, flags));
    });
    on(Op.GETXATTR, function (h, buf, off, end) {
      const size = buf.readUInt32LE(off);
      const [name] = readCString(buf, off + 8, end);
      this.call(h, this.vfs.getxattr(ctxOf(h), h.nodeid, name.toString('utf8')), (u, v) => {
        if (size === 0) return this.sendOut(u, encodeGetxattrOut(this.out, OUT_HEADER_SIZE, v.length));
        if (v.length > size) return this.replyError(u, ERANGE);
        this.replyData(u, v, v.length);
      });
    });
    on(Op.LISTXATTR, function (h, buf, off) {
      const size = buf.readUInt32LE(off);
      this.call(h, this.vfs.listxattr(ctxOf(h), h.nodeid), (u, names) => {
        const list = names.length === 0 ? Buffer.alloc(0) : Buffer.from(names.join('\0') + '\0', 'utf8');
        if (size === 0) return this.sendOut(u, encodeGetxattrOut(this.out, OUT_HEADER_SIZE, list.length));
        if (list.length > size) return this.replyError(u, ERANGE);
        this.replyData(u, list, list.length);
      });
    });
    on(Op.REMOVEXATTR, function (h, buf, off, end) {
      const [name] = readCString(buf, off, end);
      this.callOk(h, this.vfs.removexattr(ctxOf(h), h.nodeid, name.toString('utf8')));
    });
    on(Op.ACCESS, function (h, buf, off) {
      this.callOk(h, this.vfs.access(ctxOf(h), h.nodeid, buf.readUInt32LE(off)));
    });
    on(Op.GETLK, this.opGetlk);
    on(Op.SETLK, function (h, buf, off) {
      this.setlk(h, buf, off, false);
    });
    on(Op.SETLKW, function (h, buf, off) {
      this.setlk(h, buf, off, true);
    });
    on(Op.INTERRUPT, this.opInterrupt);
    on(Op.FALLOCATE, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const offset = readU64(buf, off + 8);
      const length = readU64(buf, off + 16);
      const mode = buf.readUInt32LE(off + 24);
      this.callOk(h, this.vfs.fallocate(ctxOf(h), h.nodeid, fh, mode, offset, length));
    });
    on(Op.LSEEK, function (h, buf, off) {
      const fh = buf.readBigUInt64LE(off);
      const offset = readU64(buf, off + 8);
      const whence = buf.readUInt32LE(off + 16);
      this.call(h, this.vfs.lseek(ctxOf(h), h.nodeid, fh, offset, whence), (u, pos) => {
        this.sendOut(u, encodeLseekOut(this.out, OUT_HEADER_SIZE, pos));
      });
    });
    on(Op.COPY_FILE_RANGE, function (h, buf, off) {
      const fhIn = buf.readBigUInt64LE(off);
      const offIn = readU64(buf, off + 8);
      const outIno = buf.readBigUInt64LE(off + 16);
      const fhOut = buf.readBigUInt64LE(off + 24);
      const offOut = readU64(buf, off + 32);
      const len = readU64(buf, off + 40);
      const flags = Number(buf.readBigUInt64LE(off + 48) & 0xffffffffn);
      this.call(
        h,
        this.vfs.copyFileRange(ctxOf(h), h.nodeid, fhIn, offIn, outIno, fhOut, offOut, len, flags),
        (u, n) => this.sendOut(u, encodeWriteOut(this.out, OUT_HEADER_SIZE, n)),
      );
    });
    // POLL, IOCTL, BMAP, SYNCFS, TMPFILE...: no entry → ENOSYS (the kernel stops asking).
  }

  // ---- handlers with more to them ----------------------------------------------------------------

  private forget(ino: Ino, nlookup: number): void {
    try {
      this.vfs.forget(ino, nlookup);
    } catch (e) {
      this.logOnce('forget', `forget failed: ${(e as Error).message}`);
    }
  }

  private opInit(h: InHeader, buf: Buffer, off: number, end: number): void {
    const init = decodeInitIn(buf, off, end - off);
    if (init.major !== FUSE_KERNEL_VERSION || init.minor < FUSE_MIN_MINOR_VERSION) {
      if (init.major > FUSE_KERNEL_VERSION) {
        // The kernel retries INIT with our major if we reply with just it.
        const p = OUT_HEADER_SIZE;
        this.out.fill(0, p, p + 8);
        this.out.writeUInt32LE(FUSE_KERNEL_VERSION, p);
        this.sendOut(h.unique, p + 8);
        return;
      }
      this.replyError(h.unique, EPROTO);
      this.initReject(new Error(`kernel FUSE protocol ${init.major}.${init.minor} is older than 7.${FUSE_MIN_MINOR_VERSION}`));
      return;
    }
    const o = this.opts;
    let want =
      FUSE_ASYNC_READ |
      FUSE_POSIX_LOCKS |
      FUSE_FLOCK_LOCKS |
      FUSE_ATOMIC_O_TRUNC |
      FUSE_EXPORT_SUPPORT |
      FUSE_BIG_WRITES |
      FUSE_DO_READDIRPLUS |
      FUSE_READDIRPLUS_AUTO |
      FUSE_PARALLEL_DIROPS |
      FUSE_MAX_PAGES |
      FUSE_CACHE_SYMLINKS;
    if (o.autoInvalData !== false) want |= FUSE_AUTO_INVAL_DATA;
    if (this.vfs.writebackCache) want |= FUSE_WRITEBACK_CACHE;
    if (o.asyncDio) want |= FUSE_ASYNC_DIO;
    if (o.killPrivV2 !== false) want |= FUSE_HANDLE_KILLPRIV_V2;
    const flags = (init.flags & want) >>> 0;
    const minor = Math.min(init.minor, FUSE_KERNEL_MINOR_VERSION);
    const maxReadahead = Math.min(init.maxReadahead, o.maxReadahead ?? init.maxReadahead);
    const reply: InitOut = {
      major: FUSE_KERNEL_VERSION,
      minor,
      maxReadahead,
      flags,
      maxBackground: o.maxBackground ?? 64,
      congestionThreshold: o.congestionThreshold ?? 48,
      maxWrite: MAX_WRITE,
      timeGran: 1,
      maxPages: MAX_PAGES,
      flags2: 0,
    };
    this.sendOut(h.unique, encodeInitOut(this.out, OUT_HEADER_SIZE, reply));
    this.negotiated = { major: 7, minor, kernelMinor: init.minor, flags, maxWrite: MAX_WRITE, maxReadahead };
    this.vfs.invalidator = {
      inode: (ino) => this.notify(encodeNotifyInvalInode(ino)),
      entry: (parent, name) => this.notify(encodeNotifyInvalEntry(parent, name)),
    };
    for (let i = 1; i < this.readerCount; i++) this.startReader();
    this.initResolve();
  }

  private opSetattr(h: InHeader, buf: Buffer, off: number): void {
    const valid = buf.readUInt32LE(off);
    const req: Parameters<Vfs['setattr']>[2] = {};
    if (valid & FATTR_MODE) req.mode = buf.readUInt32LE(off + 68) & 0o7777;
    if (valid & FATTR_UID) req.uid = buf.readUInt32LE(off + 76);
    if (valid & FATTR_GID) req.gid = buf.readUInt32LE(off + 80);
    if (valid & FATTR_SIZE) req.size = readU64(buf, off + 16);
    if (valid & FATTR_ATIME_NOW) req.atimeNow = true;
    else if (valid & FATTR_ATIME) req.atime = { sec: readI64(buf, off + 32), nsec: buf.readUInt32LE(off + 56) };
    if (valid & FATTR_MTIME_NOW) req.mtimeNow = true;
    else if (valid & FATTR_MTIME) req.mtime = { sec: readI64(buf, off + 40), nsec: buf.readUInt32LE(off + 60) };
    const fh = valid & FATTR_FH ? buf.readBigUInt64LE(off + 8) : undefined;
    const ino = h.nodeid;
    const ctx = ctxOf(h);
    let p = this.vfs.setattr(ctx, ino, req, fh);
    if (valid & FATTR_KILL_SUIDGID && req.mode === undefined) {
      // Truncate by a caller without CAP_FSETID: clear set-id bits the reply shows.
      p = p.then((r) => (needsKill(r.attr.mode, r.attr.type) ? this.vfs.setattr(privileged(ctx), ino, { mode: killed(r.attr.mode) }, fh) : r));
    }
    this.call(h, p, (u, r) => this.replyAttr(u, ino, r));
  }

  /** Clear suid (and sgid when group-executable) as the owner would, whoever the caller is. */
  private async killSuidgid(ctx: Ctx, ino: Ino): Promise<void> {
    const { attr } = await this.vfs.getattr(ctx, ino);
    if (needsKill(attr.mode, attr.type)) await this.vfs.setattr(privileged(ctx), ino, { mode: killed(attr.mode) });
  }

  private opWrite(h: InHeader, buf: Buffer, off: number, end: number): boolean {
    const fh = buf.readBigUInt64LE(off);
    const offset = readU64(buf, off + 8);
    const size = buf.readUInt32LE(off + 16);
    const start = off + WRITE_IN_SIZE;
    if (start + size > end) {
      this.replyError(h.unique, EINVAL);
      return false;
    }
    if (size > this.stats.maxWriteSeen) this.stats.maxWriteSeen = size;
    // Zero-copy: the Vfs sees a view of the read buffer, which is recycled once the write settles.
    const data = buf.subarray(start, start + size);
    let p: Promise<number>;
    try {
      const ctx = ctxOf(h);
      p = this.vfs.write(ctx, h.nodeid, fh, offset, data);
      if (buf.readUInt32LE(off + 20) & FUSE_WRITE_KILL_SUIDGID) {
        p = p.then(async (n) => {
          await this.killSuidgid(ctx, h.nodeid);
          return n;
        });
      }
    } catch (e) {
      this.fail(h, e);
      return false;
    }
    this.call(h, p, (u, n) => this.sendOut(u, encodeWriteOut(this.out, OUT_HEADER_SIZE, n)));
    const recycle = (): void => {
      if (this.pool.length < this.readerCount * 2) this.pool.push(buf);
    };
    p.then(recycle, recycle);
    return true;
  }

  private readdir(h: InHeader, buf: Buffer, off: number, plus: boolean): void {
    const fh = buf.readBigUInt64LE(off);
    const offset = readU64(buf, off + 8);
    const size = Math.min(buf.readUInt32LE(off + 16), MAX_WRITE);
    // An upper bound of what fits (shortest names); entries beyond what fits are not sent and the
    // kernel asks again from the last cookie it got.
    const max = Math.max(1, Math.floor(size / ((plus ? DIRENTPLUS_BASE : DIRENT_BASE) + 8)));
    this.call(h, this.vfs.readdir(ctxOf(h), h.nodeid, fh, offset, plus, max), (u, entries) =>
      this.replyDir(u, entries, size, plus),
    );
  }

  private replyDir(unique: bigint, entries: DirEntryPlus[], size: number, plus: boolean): void {
    const out = this.out;
    const limit = OUT_HEADER_SIZE + size;
    let p = OUT_HEADER_SIZE;
    for (const e of entries) {
      const rec = plus ? direntplusSize(e.name.length) : direntSize(e.name.length);
      if (p + rec > limit) break;
      if (plus) {
        // nodeid 0: the kernel takes no lookup reference (always so for `.` and `..`).
        if (e.attr && !isDotName(e.name)) encodeEntryOut(out, p, e.ino, e.attr, e.entryTtl, e.attrTtl);
        else encodeEmptyEntryOut(out, p);
        p = encodeDirent(out, p + ENTRY_OUT_SIZE, e.ino, e.offset, e.type, e.name);
      } else {
        p = encodeDirent(out, p, e.ino, e.offset, e.type, e.name);
      }
    }
    this.sendOut(unique, p);
  }

  private opGetlk(h: InHeader, buf: Buffer, off: number): void {
    const fh = buf.readBigUInt64LE(off);
    const owner = buf.readBigUInt64LE(off + 8);
    const lock = decodeLock(buf, off + 16);
    this.call(h, this.vfs.getlk(ctxOf(h), h.nodeid, fh, owner, lock), (u, l) => {
      this.sendOut(u, encodeLkOut(this.out, OUT_HEADER_SIZE, l.start, l.end, l.type, l.pid));
    });
  }

  /**
   * SETLK/SETLKW, and flock(2) when FUSE_LK_FLOCK is set. The Vfs is always asked without blocking;
   * a blocking request is retried here with backoff until it succeeds or the caller is interrupted
   * (signal) — a wait inside the Vfs could not be cancelled, and an unanswered interrupted request
   * leaves the caller in an unkillable sleep.
   */
  private setlk(h: InHeader, buf: Buffer, off: number, blocking: boolean): void {
    const fh = buf.readBigUInt64LE(off);
    const owner = buf.readBigUInt64LE(off + 8);
    const lock = decodeLock(buf, off + 16);
    const isFlock = (buf.readUInt32LE(off + 40) & FUSE_LK_FLOCK) !== 0;
    const ctx = ctxOf(h);
    const ino = h.nodeid;
    const attempt = (type: number): Promise<void> =>
      isFlock
        ? this.vfs.flock(ctx, ino, fh, owner, type, false)
        : this.vfs.setlk(ctx, ino, fh, owner, { ...lock, type }, false);
    if (!blocking || lock.type === F_UNLCK) {
      this.callOk(h, attempt(lock.type));
      return;
    }
    const unique = h.unique;
    const w: LockWaiter = { interrupted: false };
    this.lockWaiters.set(unique, w);
    if (this.earlyInterrupts.delete(unique)) {
      this.lockWaiters.delete(unique);
      this.replyError(unique, EINTR);
      return;
    }
    let delay = 1;
    const tryOnce = (): void => {
      w.timer = undefined;
      attempt(lock.type).then(
        () => {
          if (w.interrupted) {
            // Granted after the caller gave up: give it back.
            attempt(F_UNLCK).catch(() => {});
            return;
          }
          this.lockWaiters.delete(unique);
          this.replyOk(unique);
        },
        (e) => {
          if (w.interrupted) return;
          if (errnoOf(e) === EAGAIN) {
            w.timer = setTimeout(tryOnce, delay);
            delay = Math.min(delay * 2, 100);
            return;
          }
          this.lockWaiters.delete(unique);
          this.fail(h, e);
        },
      );
    };
    tryOnce();
  }

  private opInterrupt(h: InHeader, buf: Buffer, off: number): void {
    const target = buf.readBigUInt64LE(off);
    const w = this.lockWaiters.get(target);
    if (w) {
      w.interrupted = true;
      if (w.timer) clearTimeout(w.timer);
      this.lockWaiters.delete(target);
      this.replyError(target, EINTR);
      return;
    }
    // Other requests run to completion (their replies are short in coming); remember the
    // interrupt in case it overtook its request on another reader.
    if (this.earlyInterrupts.size > 256) this.earlyInterrupts.clear();
    this.earlyInterrupts.add(target);
  }
}

function needsKill(mode: number, type: FileType): boolean {
  return type !== FileType.Dir && ((mode & 0o4000) !== 0 || (mode & 0o2010) === 0o2010);
}

function killed(mode: number): number {
  return mode & 0o7777 & ~(mode & 0o010 ? 0o6000 : 0o4000);
}

/** The caller's identity without permission checks: for the set-id clearing the kernel asked for. */
function privileged(ctx: Ctx): Ctx {
  return { uid: ctx.uid, gid: ctx.gid, gids: [ctx.gid], pid: ctx.pid, checkPermission: false };
}

function openFlagsOf(r: OpenReply): number {
  return (r.directIo ? FOPEN_DIRECT_IO : 0) | (r.keepCache ? FOPEN_KEEP_CACHE : 0);
}

/** Signed 64-bit little-endian → number (timestamps may predate 1970). */
function readI64(buf: Buffer, off: number): number {
  return buf.readInt32LE(off + 4) * 0x100000000 + buf.readUInt32LE(off);
}

function decodeLock(buf: Buffer, off: number): PosixLock {
  return {
    start: readU64(buf, off),
    end: buf.readBigUInt64LE(off + 8),
    type: buf.readUInt32LE(off + 16),
    pid: buf.readUInt32LE(off + 20),
  };
}

/** Reads to keep outstanding: the pool minus 4 threads for everything else, within [1, 8]. */
export function defaultReaders(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(8, pool - 4));
}
