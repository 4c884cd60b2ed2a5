/**
 * VfsImpl: the filesystem the FUSE transport serves, in inode terms. It composes the metadata
 * engine (Meta) and the block store (BlockStore) and owns what is per-mount state:
 *   - the handle table (fh → inode, open flags, read stream, error sequence),
 *   - the write path (writer.ts: slice buffers, commit timers) and read path (reader.ts: chunk maps,
 *     readahead),
 *   - close-to-open consistency: open re-reads the attributes from Redis; a changed mtime drops the
 *     cached chunk maps and tells the kernel not to keep its page cache,
 *   - virtual files (system.ts) and metrics/access log for every operation.
 *
 * Consistency model and POSIX coverage: docs/SEMANTICS.md.
 */
import type { Compactor, Meta } from '../metadata/interface.js';
import {
  type Attr,
  CHUNK_SIZE,
  type Ctx,
  type Entry,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  FileType,
  type Format,
  type Ino,
  MAX_NAME_LEN,
  MetaError,
  type PosixLock,
  ROOT_INODE,
  type SetAttrRequest,
  type Slice,
  type StatFs,
  TRASH_INODE,
  metaErr,
} from '../metadata/types.js';
import type { BlockCache, BlockStore } from '../chunkstore/types.js';
import type { BlockStoreStats } from '../chunkstore/blockstore.js';
import { cacheStatsToPrometheus, stagingStatsToPrometheus } from '../chunkstore/cache/metrics.js';
import type { StagingStats } from '../chunkstore/cache/staging.js';
import type { AttrReply, DirEntryPlus, EntryReply, OpenReply, Vfs } from './types.js';
import { asMetaError, errnoName } from './errors.js';
import { STD, metrics as defaultRegistry, type MetricsRegistry } from './metrics.js';
import { Reader, type ReadStream, SEEK_DATA, SEEK_HOLE } from './reader.js';
import { ACCESSLOG_INODE, isVirtual, SystemFiles, type VirtualHandle } from './system.js';
import { MAX_FILE_SIZE, Writer, type WriterOptions } from './writer.js';

export { MAX_FILE_SIZE };

export const O_ACCMODE = 0o3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;

const PLOCK_WHOLE_END = 0x7fffffffffffffffn;

export interface VfsOptions {
  /** Kernel entry/attr cache TTLs in seconds (interactive 1, benchmark 0). */
  entryTtl: number;
  attrTtl: number;
  readOnly: boolean;
  /** Ask for FUSE writeback cache at INIT (the kernel then handles O_APPEND offsets itself). */
  writebackCache: boolean;
  /** Every file handle bypasses the page cache. */
  directIo: boolean;
  /** Largest readahead window of one stream in bytes (default 32 MiB). */
  readaheadMax: number;
  /** Write buffer bytes (default 300 MiB); readahead may use 80 % of it as well. */
  bufferSize: number;
  /** Fetch files smaller than a block in one GET at open (interactive profile). */
  prefetchSmallFiles?: boolean;
  /** Commit-timer and back-pressure knobs (tests shorten the timers). */
  writer?: Partial<Omit<WriterOptions, 'bufferSize'>>;
  /** Hide `.trash` from the root (sub-directory mounts). */
  hideTrash?: boolean;
  /** What `.config` shows besides the Format (secrets are removed). */
  config?: Record<string, unknown>;
  /** Owner of the virtual files (default: this process). */
  uid?: number;
  gid?: number;
  /** Also close Meta's connections at shutdown (after ending the session). */
  closeMetaOnShutdown?: boolean;
  registry?: MetricsRegistry;
  /** Where unexpected internal errors are reported (they reach the caller as EIO). */
  logger?: (msg: string) => void;
  /**
   * Store `security.capability` / `security.selinux` (upstream --enable-cap / --enable-selinux).
   * Off by default, as upstream: the kernel asks for security.capability before every write to a
   * file, and answering ENODATA here saves a metadata round trip per write.
   */
  enableCap?: boolean;
  enableSelinux?: boolean;
}

export const DEFAULT_VFS_OPTIONS: VfsOptions = {
  entryTtl: 1,
  attrTtl: 1,
  readOnly: false,
  writebackCache: false,
  directIo: false,
  readaheadMax: 32 << 20,
  bufferSize: 300 << 20,
  prefetchSmallFiles: true,
};

interface FileHandle {
  kind: 'file';
  fh: bigint;
  ino: Ino;
  flags: number;
  readable: boolean;
  writable: boolean;
  append: boolean;
  stream?: ReadStream;
  /** Writer errSeq value this handle has reported (POSIX errseq-like: each error once per handle). */
  errSeen: number;
  virtual?: VirtualHandle;
}

interface DirHandle {
  kind: 'dir';
  fh: bigint;
  ino: Ino;
  entries?: DirEntryPlus[];
  plus: boolean;
  /** A readdir was served from `entries`: an offset-0 readdir now means rewinddir → re-list. */
  served: boolean;
}

/** Per-mount state of an inode with open handles. */
class OpenFile {
  handles = 0;
  /** Last mtime seen (from Redis or set by our own commit), as "sec.nsec". */
  mtime = '';
  /** Length from the last attributes seen (or our own commits/truncates). */
  length = 0;
  readonly plockOwners = new Set<bigint>();
  readonly flockOwners = new Set<bigint>();
  constructor(readonly ino: Ino) {}
}

function mtimeKey(a: { mtime: number; mtimensec: number }): string {
  return `${a.mtime}.${a.mtimensec}`;
}

/** File type from the S_IFMT bits of a mode. */
function typeFromMode(mode: number): FileType {
  switch (mode & 0o170000) {
    case 0o010000:
      return FileType.Fifo;
    case 0o020000:
      return FileType.CharDev;
    case 0o040000:
      return FileType.Dir;
    case 0o060000:
      return FileType.BlockDev;
    case 0o120000:
      return FileType.Symlink;
    case 0o140000:
      return FileType.Socket;
    default:
      return FileType.File;
  }
}

/** Compaction: concatenate live segments of a chunk (holes as zeros) into a new slice. */
export function makeCompactor(store: BlockStore): Compactor {
  return async (segs: Slice[], newId: number, size: number) => {
    const base = segs[0]?.pos ?? 0;
    const buf = Buffer.alloc(size);
    await Promise.all(
      segs
        .filter((s) => s.id !== 0)
        .map(async (s) => {
          const b = await store.read(s.id, s.size, s.off, s.len);
          if (b.length !== s.len) throw new Error(`short read of slice ${s.id} during compaction`);
          b.copy(buf, s.pos - base);
        }),
    );
    await store.writeSlice(newId, buf);
  };
}

const SEEN_MAX = 16384;

/**
 * Meta with every method call timed into juicefs_meta_ops_durations_histogram_seconds{method}.
 * Wrappers are built once per method name, so a call costs one Map lookup and a timestamp.
 */
function timedMeta(meta: Meta): Meta {
  const wrappers = new Map<string, unknown>();
  return new Proxy(meta, {
    get(target, p) {
      const v = Reflect.get(target, p, target) as unknown;
      if (typeof v !== 'function' || typeof p !== 'string') return v;
      let w = wrappers.get(p);
      if (!w) {
        const fn = v as (...a: unknown[]) => unknown;
        const label = { method: p };
        w = (...args: unknown[]) => {
          const t0 = performance.now();
          const r = fn.apply(target, args);
          if (r instanceof Promise) {
            const done = () => STD.metaOps.observe((performance.now() - t0) / 1000, label);
            r.then(done, done);
          }
          return r;
        };
        wrappers.set(p, w);
      }
      return w;
    },
  });
}

const OBJECT_REQUESTS = defaultRegistry.counter('artifacts_object_requests_total', 'Object store requests by method (after retries count separately).', ['method']);
const OBJECT_RETRIES = defaultRegistry.counter('artifacts_object_retries_total', 'Object store operations retried.');

export class VfsImpl implements Vfs {
  readonly entryTtl: number;
  readonly attrTtl: number;
  readonly readOnly: boolean;
  readonly writebackCache: boolean;
  invalidator?: { inode(ino: Ino): void; entry(parent: Ino, name: Buffer): void };

  readonly opts: VfsOptions;
  readonly writer: Writer;
  readonly reader: Reader;
  readonly system: SystemFiles;
  private readonly handles = new Map<bigint, FileHandle | DirHandle>();
  private readonly files = new Map<Ino, OpenFile>();
  /** mtime of inodes at their last close, for keepCache on the next open (bounded). */
  private readonly seen = new Map<Ino, string>();
  private nextFh = 1n;
  private shuttingDown = false;
  private readonly log: (msg: string) => void;
  private readonly collectors: Array<() => void> = [];
  readonly meta: Meta;

  constructor(
    meta: Meta,
    readonly store: BlockStore,
    opts: Partial<VfsOptions> = {},
  ) {
    this.opts = { ...DEFAULT_VFS_OPTIONS, ...opts };
    const o = this.opts;
    this.meta = meta = timedMeta(meta);
    this.entryTtl = o.entryTtl;
    this.attrTtl = o.attrTtl;
    this.readOnly = o.readOnly;
    this.writebackCache = o.writebackCache;
    this.log = o.logger ?? ((m) => console.error(m));
    this.writer = new Writer(meta, store, { ...o.writer, bufferSize: o.bufferSize }, {
      onCommit: (ino, indx, end, mtime) => {
        this.reader.invalidate(ino, indx);
        const f = this.files.get(ino);
        if (f) {
          // Our own change: remember its mtime so it is not mistaken for a remote one.
          f.mtime = `${mtime.sec}.${mtime.nsec}`;
          if (end > f.length) f.length = end;
        }
      },
    });
    this.reader = new Reader(meta, store, {
      readaheadMax: o.readaheadMax,
      readaheadBudget: Math.floor(o.bufferSize * 0.8),
    });
    this.system = new SystemFiles({
      registry: o.registry ?? defaultRegistry,
      config: () => ({ ...o, registry: undefined, logger: undefined, config: undefined, ...(o.config ?? {}) }),
      format: () => meta.format,
      uid: o.uid ?? process.getuid?.() ?? 0,
      gid: o.gid ?? process.getgid?.() ?? 0,
    });
    // The engine compacts chunks with many records; it needs the block store to rewrite bytes.
    const m = meta as Meta & { setCompactor?: (c: Compactor) => void };
    if (!this.readOnly && typeof m.setCompactor === 'function') m.setCompactor(makeCompactor(store));
    this.registerCollectors(o.registry ?? defaultRegistry);
  }

  /**
   * `.stats` also shows what the block store and the block cache count themselves (they keep plain
   * stats objects): mirrored at render time, so nothing is added to their hot paths.
   */
  private registerCollectors(reg: MetricsRegistry): void {
    const bs = (this.store as BlockStore & { stats?: BlockStoreStats }).stats;
    if (bs) {
      this.collectors.push(
        reg.addCollector(() => {
          OBJECT_REQUESTS.set(bs.getRequests, { method: 'GET' });
          OBJECT_REQUESTS.set(bs.putRequests, { method: 'PUT' });
          OBJECT_REQUESTS.set(bs.deleteRequests, { method: 'DELETE' });
          OBJECT_RETRIES.set(bs.retries);
          STD.objectBytes.set(bs.getBytes, { method: 'GET' });
          STD.objectBytes.set(bs.putBytes, { method: 'PUT' });
        }),
      );
    }
    const cache = (this.store as BlockStore & { cache?: BlockCache }).cache;
    if (cache && typeof cache.stats === 'function') {
      this.collectors.push(reg.addCollector(() => cacheStatsToPrometheus(cache.stats())));
    }
    const staged = this.store as BlockStore & { stagingStats?: () => StagingStats | undefined };
    if (typeof staged.stagingStats === 'function') {
      this.collectors.push(
        reg.addCollector(() => {
          const s = staged.stagingStats!();
          return s ? stagingStatsToPrometheus(s) : '';
        }),
      );
    }
  }

  // ------------------------------------------------------------------ instrumentation

  /**
   * Run one operation: latency histogram per op, access-log line when `.accesslog` is open, and
   * every failure turned into a MetaError (unexpected ones are logged and become EIO).
   */
  private async op<T>(name: string, ctx: Ctx | undefined, args: () => string, fn: () => Promise<T>, res?: (v: T) => string): Promise<T> {
    const t0 = performance.now();
    try {
      const v = await fn();
      const dt = (performance.now() - t0) / 1000;
      STD.fuseOps.observe(dt, { method: name });
      if (this.system.accessLog.active) this.system.accessLog.log(ctx, name, args(), res ? `OK (${res(v)})` : 'OK', dt);
      return v;
    } catch (e) {
      const dt = (performance.now() - t0) / 1000;
      STD.fuseOps.observe(dt, { method: name });
      const me = asMetaError(e);
      if (!(e instanceof MetaError)) this.log(`artifacts vfs: ${name} failed: ${(e as Error)?.stack ?? String(e)}`);
      if (this.system.accessLog.active) this.system.accessLog.log(ctx, name, args(), errnoName(me), dt);
      throw me;
    }
  }

  private checkWritableMount(): void {
    if (this.readOnly) throw metaErr('EROFS');
  }

  private fileHandle(fh: bigint, ino?: Ino): FileHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'file' || (ino !== undefined && h.ino !== ino)) throw metaErr('EBADF');
    return h;
  }

  private dirHandle(fh: bigint): DirHandle {
    const h = this.handles.get(fh);
    if (!h || h.kind !== 'dir') throw metaErr('EBADF');
    return h;
  }

  private newFh(): bigint {
    return this.nextFh++;
  }

  /** Names reserved in the root for virtual files and the trash. */
  private reservedInRoot(parent: Ino, name: Buffer): boolean {
    if (parent !== ROOT_INODE) return false;
    return this.system.lookup(name) !== undefined || name.equals(TRASH_NAME);
  }

  /**
   * Attributes seen from Redis: adjust the length for writes not yet committed, and if the inode is
   * open here and its mtime changed behind our back, drop what we cached about its data.
   */
  private observe(ino: Ino, attr: Attr): Attr {
    if (attr.type !== FileType.File) return attr;
    const pending = this.writer.pendingLength(ino);
    const f = this.files.get(ino);
    if (f) {
      const k = mtimeKey(attr);
      if (k !== f.mtime && pending === undefined) {
        f.mtime = k;
        f.length = attr.length;
        this.writer.truncated(ino, attr.length);
        this.reader.invalidate(ino);
        const inv = this.invalidator;
        // After the current reply: a kernel notification must never wait on a request of ours.
        if (inv) setImmediate(() => {
          try {
            inv.inode(ino);
          } catch {
            // best effort: the kernel re-validates on the next open anyway
          }
        });
      } else if (attr.length > f.length && pending === undefined) {
        f.length = attr.length;
      }
    }
    if (pending !== undefined && pending > attr.length) return { ...attr, length: pending };
    return attr;
  }

  private entryReply(ino: Ino, attr: Attr): EntryReply {
    return { ino, attr, entryTtl: this.entryTtl, attrTtl: this.attrTtl };
  }

  /** Report (once per handle) an error of the write path: failed upload or commit. */
  private takeWriteError(h: FileHandle): void {
    const f = this.writer.file(h.ino);
    if (f && f.errSeq > h.errSeen) {
      h.errSeen = f.errSeq;
      throw f.lastError ?? metaErr('EIO');
    }
  }

  /** The file length as this mount knows it: last attributes seen, our commits, pending writes. */
  private currentLength(ino: Ino): number {
    return Math.max(this.files.get(ino)?.length ?? 0, this.writer.pendingLength(ino) ?? 0);
  }

  private checkVirtualAccess(ctx: Ctx, ino: Ino, mask: number): void {
    if (ctx.uid === 0 || ctx.checkPermission === false) return;
    const a = this.system.attr(ino);
    const bits = ctx.uid === a.uid ? (a.mode >> 6) & 7 : ctx.gid === a.gid || ctx.gids.includes(a.gid) ? (a.mode >> 3) & 7 : a.mode & 7;
    if ((bits & mask) !== mask) throw metaErr('EACCES');
  }

  // ------------------------------------------------------------------ namespace

  lookup(ctx: Ctx, parent: Ino, name: Buffer): Promise<EntryReply> {
    return this.op('lookup', ctx, () => `${parent},${name}`, async () => {
      if (name.length > MAX_NAME_LEN) throw metaErr('ENAMETOOLONG');
      if (parent === ROOT_INODE) {
        const v = this.system.lookup(name);
        if (v !== undefined) return this.entryReply(v, this.system.attr(v));
        if (this.opts.hideTrash && name.equals(TRASH_NAME)) throw metaErr('ENOENT');
      }
      const r = await this.meta.lookup(ctx, parent, name);
      return this.entryReply(r.ino, this.observe(r.ino, r.attr));
    }, (r) => `${r.ino}`);
  }

  forget(_ino: Ino, _nlookup: number): void {
    // Nothing is kept per kernel lookup: per-inode state lives only while handles are open.
  }

  getattr(ctx: Ctx, ino: Ino, _fh?: bigint): Promise<AttrReply> {
    return this.op('getattr', ctx, () => `${ino}`, async () => {
      if (isVirtual(ino)) return { attr: this.system.attr(ino), attrTtl: this.attrTtl };
      const attr = await this.meta.getAttr(ino);
      return { attr: this.observe(ino, attr), attrTtl: this.attrTtl };
    });
  }

  setattr(ctx: Ctx, ino: Ino, req: SetAttrRequest & { size?: number }, fh?: bigint): Promise<AttrReply> {
    return this.op('setattr', ctx, () => `${ino},${JSON.stringify(req)}`, async () => {
      if (isVirtual(ino)) throw metaErr('EPERM');
      this.checkWritableMount();
      const { size, ...rest } = req;
      let attr: Attr | undefined;
      if (size !== undefined) {
        if (size < 0) throw metaErr('EINVAL');
        if (size > MAX_FILE_SIZE) throw metaErr('EFBIG');
        const h = fh !== undefined ? this.handles.get(fh) : undefined;
        const viaWritableHandle = h?.kind === 'file' && h.writable;
        attr = await this.truncateFile(ctx, ino, size, viaWritableHandle ? 1 : 0);
      }
      const hasOther =
        rest.mode !== undefined ||
        rest.uid !== undefined ||
        rest.gid !== undefined ||
        rest.atime !== undefined ||
        rest.mtime !== undefined ||
        rest.atimeNow === true ||
        rest.mtimeNow === true ||
        rest.flags !== undefined;
      if (hasOther) {
        // A later commit of pending data would overwrite an explicit mtime: commit first.
        if (rest.mtime !== undefined || rest.mtimeNow) await this.writer.flush(ino);
        attr = await this.meta.setAttr(ctx, ino, rest);
      }
      if (!attr) attr = await this.meta.getAttr(ino);
      return { attr: this.observe(ino, attr), attrTtl: this.attrTtl };
    });
  }

  /** Truncate with pending writes committed first, so no later commit resurrects cut bytes. */
  private async truncateFile(ctx: Ctx, ino: Ino, size: number, flags: number): Promise<Attr> {
    // Under the file's write lock, so no write slips between the flush and the truncate; pending
    // slices are committed first so no later commit resurrects cut bytes.
    const w = this.writer.open(ino, this.currentLength(ino));
    try {
      return await w.lock.run(async () => {
        await this.writer.flushLocked(w);
        const attr = await this.meta.truncate(ctx, ino, size, flags);
        this.afterDataChange(ino, attr);
        return attr;
      });
    } finally {
      // Truncate by path of a file not open here: its writer state has no owner.
      if (!this.files.has(ino)) this.writer.release(ino);
    }
  }

  /** After truncate/fallocate/copy_file_range by us: caches reflect the new content. */
  private afterDataChange(ino: Ino, attr: Attr): void {
    this.reader.invalidate(ino);
    this.writer.truncated(ino, attr.length);
    const f = this.files.get(ino);
    if (f) {
      f.length = attr.length;
      f.mtime = mtimeKey(attr);
    }
  }

  readlink(ctx: Ctx, ino: Ino): Promise<Buffer> {
    return this.op('readlink', ctx, () => `${ino}`, () => this.meta.readlink(ctx, ino));
  }

  mknod(ctx: Ctx, parent: Ino, name: Buffer, mode: number, rdev: number, umask: number): Promise<EntryReply> {
    return this.op('mknod', ctx, () => `${parent},${name},${mode.toString(8)},${rdev}`, async () => {
      this.checkWritableMount();
      if (this.reservedInRoot(parent, name)) throw metaErr('EEXIST');
      const type = typeFromMode(mode);
      if (type === FileType.Dir || type === FileType.Symlink) throw metaErr('EINVAL');
      const r = await this.meta.mknod({ ...ctx, umask }, parent, name, type, mode & 0o7777, rdev);
      return this.entryReply(r.ino, r.attr);
    }, (r) => `${r.ino}`);
  }

  mkdir(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number): Promise<EntryReply> {
    return this.op('mkdir', ctx, () => `${parent},${name},${mode.toString(8)}`, async () => {
      this.checkWritableMount();
      if (this.reservedInRoot(parent, name)) throw metaErr('EEXIST');
      const r = await this.meta.mkdir({ ...ctx, umask }, parent, name, mode & 0o7777);
      return this.entryReply(r.ino, r.attr);
    }, (r) => `${r.ino}`);
  }

  symlink(ctx: Ctx, parent: Ino, name: Buffer, target: Buffer): Promise<EntryReply> {
    return this.op('symlink', ctx, () => `${parent},${name},${target}`, async () => {
      this.checkWritableMount();
      if (this.reservedInRoot(parent, name)) throw metaErr('EEXIST');
      const r = await this.meta.symlink(ctx, parent, name, target);
      return this.entryReply(r.ino, r.attr);
    }, (r) => `${r.ino}`);
  }

  unlink(ctx: Ctx, parent: Ino, name: Buffer): Promise<void> {
    return this.op('unlink', ctx, () => `${parent},${name}`, async () => {
      this.checkWritableMount();
      if (parent === ROOT_INODE && this.system.lookup(name) !== undefined) throw metaErr('EPERM');
      await this.meta.unlink(ctx, parent, name);
    });
  }

  rmdir(ctx: Ctx, parent: Ino, name: Buffer): Promise<void> {
    return this.op('rmdir', ctx, () => `${parent},${name}`, async () => {
      this.checkWritableMount();
      if (parent === ROOT_INODE && this.system.lookup(name) !== undefined) throw metaErr('ENOTDIR');
      await this.meta.rmdir(ctx, parent, name);
    });
  }

  rename(ctx: Ctx, parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): Promise<void> {
    return this.op('rename', ctx, () => `${parent},${name},${newParent},${newName},${flags}`, async () => {
      this.checkWritableMount();
      if (
        (parent === ROOT_INODE && this.system.lookup(name) !== undefined) ||
        (newParent === ROOT_INODE && this.system.lookup(newName) !== undefined)
      ) {
        throw metaErr('EPERM');
      }
      await this.meta.rename(ctx, parent, name, newParent, newName, flags);
    });
  }

  link(ctx: Ctx, ino: Ino, newParent: Ino, newName: Buffer): Promise<EntryReply> {
    return this.op('link', ctx, () => `${ino},${newParent},${newName}`, async () => {
      this.checkWritableMount();
      if (isVirtual(ino)) throw metaErr('EPERM');
      if (this.reservedInRoot(newParent, newName)) throw metaErr('EEXIST');
      const attr = await this.meta.link(ctx, ino, newParent, newName);
      return this.entryReply(ino, this.observe(ino, attr));
    });
  }

  // ------------------------------------------------------------------ files

  open(ctx: Ctx, ino: Ino, flags: number): Promise<OpenReply> {
    return this.op('open', ctx, () => `${ino},0x${flags.toString(16)}`, async () => {
      if (isVirtual(ino)) return this.openVirtual(ctx, ino, flags);
      const acc = flags & O_ACCMODE;
      if (this.readOnly && (acc !== O_RDONLY || flags & O_TRUNC)) throw metaErr('EROFS');
      const attr = await this.meta.open(ctx, ino, flags);
      return this.afterOpen(ctx, ino, flags, attr, false);
    }, (r) => `fh:${r.fh},direct_io:${r.directIo ? 1 : 0},keep_cache:${r.keepCache ? 1 : 0}`);
  }

  private openVirtual(ctx: Ctx, ino: Ino, flags: number): OpenReply {
    if ((flags & O_ACCMODE) !== O_RDONLY) throw metaErr('EACCES');
    this.checkVirtualAccess(ctx, ino, 4);
    const fh = this.newFh();
    this.handles.set(fh, {
      kind: 'file',
      fh,
      ino,
      flags,
      readable: true,
      writable: false,
      append: false,
      errSeen: 0,
      virtual: this.system.open(ino),
    });
    return { fh, directIo: true, keepCache: false };
  }

  /** Shared tail of open/create: handle, close-to-open revalidation, O_TRUNC. `meta.open` is done. */
  private async afterOpen(ctx: Ctx, ino: Ino, flags: number, attr: Attr, created: boolean): Promise<OpenReply> {
    const acc = flags & O_ACCMODE;
    const writable = acc !== O_RDONLY;
    let f = this.files.get(ino);
    let keepCache = false;
    try {
      if (attr.type === FileType.Dir) throw metaErr('EISDIR');
      const k = mtimeKey(attr);
      if (!f) {
        f = new OpenFile(ino);
        this.files.set(ino, f);
        f.mtime = k;
        f.length = attr.length;
        keepCache = this.seen.get(ino) === k;
        this.reader.invalidate(ino);
      } else if (this.writer.pendingLength(ino) !== undefined) {
        keepCache = true; // our own uncommitted writes are what the kernel holds
      } else {
        keepCache = f.mtime === k;
        if (!keepCache) {
          // Changed since we last looked (close-to-open): forget cached chunk maps.
          this.reader.invalidate(ino);
          f.mtime = k;
        }
        f.length = attr.length;
      }
      f.handles++;
    } catch (e) {
      await this.meta.close(ino).catch(() => {});
      throw e;
    }
    const fh = this.newFh();
    const w = this.writer.open(ino, f.length);
    const h: FileHandle = {
      kind: 'file',
      fh,
      ino,
      flags,
      readable: acc !== O_WRONLY,
      writable,
      append: (flags & O_APPEND) !== 0,
      errSeen: w.errSeq,
    };
    this.handles.set(fh, h);
    try {
      if (writable && flags & O_TRUNC && !created && (f.length > 0 || this.writer.hasPending(ino))) {
        await this.truncateFile(ctx, ino, 0, 1);
        keepCache = false;
      }
    } catch (e) {
      await this.releaseHandle(h).catch(() => {});
      throw e;
    }
    if (h.readable) {
      h.stream = this.reader.stream(ino);
      // With keep_cache the kernel still holds the pages: fetching the chunk map would be wasted.
      if (this.opts.prefetchSmallFiles && !this.opts.directIo && !keepCache) h.stream.prefetch(f.length);
    }
    return { fh, directIo: this.opts.directIo, keepCache };
  }

  create(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number, flags: number): Promise<EntryReply & OpenReply> {
    return this.op('create', ctx, () => `${parent},${name},${mode.toString(8)},0x${flags.toString(16)}`, async () => {
      this.checkWritableMount();
      if (this.reservedInRoot(parent, name)) throw metaErr('EEXIST');
      const r = await this.meta.create({ ...ctx, umask }, parent, name, mode & 0o7777, (flags & O_EXCL) !== 0);
      // Register the open with the engine (sustained inodes on unlink).
      // A file we just created needs no permission check (creat(2) of a 0444 file still returns a
      // writable fd) and no attribute read: register the open locally, saving a round trip.
      let attr: Attr;
      if (r.created) {
        this.meta.markOpen(r.ino);
        attr = r.attr;
      } else attr = await this.meta.open(ctx, r.ino, flags);
      const o = await this.afterOpen(ctx, r.ino, flags, attr, r.created);
      return { ...this.entryReply(r.ino, this.observe(r.ino, attr)), ...o };
    }, (r) => `${r.ino},fh:${r.fh}`);
  }

  read(ctx: Ctx, ino: Ino, fh: bigint, offset: number, size: number): Promise<Buffer> {
    // Reads of .accesslog are not logged: each would produce the next line to read, forever.
    if (ino === ACCESSLOG_INODE) {
      const h = this.handles.get(fh);
      if (h?.kind === 'file' && h.virtual) return h.virtual.read(offset, size);
    }
    return this.op('read', ctx, () => `${ino},${size},${offset},${fh}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) return h.virtual.read(offset, size);
      if (!h.readable || !h.stream) throw metaErr('EBADF');
      if (offset < 0) throw metaErr('EINVAL');
      if (size <= 0) return Buffer.alloc(0);
      // Read-your-writes: commit pending slices of the chunks this read touches first.
      const first = Math.floor(offset / CHUNK_SIZE);
      const last = Math.floor((offset + size - 1) / CHUNK_SIZE);
      if (this.writer.hasPending(ino, first, last)) await this.writer.flush(ino, first, last);
      const buf = await h.stream.read(offset, size, this.currentLength(ino));
      STD.fuseReadBytes.observe(buf.length);
      return buf;
    }, (b) => `${b.length}`);
  }

  write(ctx: Ctx, ino: Ino, fh: bigint, offset: number, data: Buffer): Promise<number> {
    return this.op('write', ctx, () => `${ino},${data.length},${offset},${fh}`, async () => {
      this.checkWritableMount();
      const h = this.fileHandle(fh, ino);
      if (h.virtual) throw metaErr('EACCES');
      if (!h.writable) throw metaErr('EBADF');
      this.takeWriteError(h);
      if (data.length === 0) return 0;
      if (offset < 0) throw metaErr('EINVAL');
      // O_APPEND: the offset is the current length, taken under the file's write lock so two
      // appenders never pick the same one. With the writeback cache the kernel computes it itself.
      const appending = h.append && !this.writebackCache;
      if (!appending && offset + data.length > MAX_FILE_SIZE) throw metaErr('EFBIG');
      await this.writer.write(ino, appending ? () => this.currentLength(ino) : offset, data);
      STD.fuseWrittenBytes.observe(data.length);
      return data.length;
    }, (n) => `${n}`);
  }

  flush(ctx: Ctx, ino: Ino, fh: bigint, lockOwner: bigint): Promise<void> {
    return this.op('flush', ctx, () => `${ino},${fh},${lockOwner.toString(16)}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) return;
      if (h.writable) await this.writer.flush(ino);
      // close(2) drops the POSIX locks the closing process holds on the file.
      await this.releasePlocks(ctx, ino, lockOwner);
      this.takeWriteError(h);
    });
  }

  fsync(ctx: Ctx, ino: Ino, fh: bigint, _dataOnly: boolean): Promise<void> {
    return this.op('fsync', ctx, () => `${ino},${fh}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) return;
      await this.writer.flush(ino);
      this.takeWriteError(h);
    });
  }

  release(ctx: Ctx, ino: Ino, fh: bigint, lockOwner?: bigint, releaseFlock?: boolean): Promise<void> {
    return this.op('release', ctx, () => `${ino},${fh}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) {
        h.virtual.release();
        this.handles.delete(fh);
        return;
      }
      let err: unknown;
      try {
        if (h.writable) await this.writer.flush(ino);
        if (lockOwner !== undefined) {
          if (releaseFlock) await this.releaseFlock(ctx, ino, lockOwner);
          await this.releasePlocks(ctx, ino, lockOwner);
        }
        this.takeWriteError(h);
      } catch (e) {
        err = e;
      }
      await this.releaseHandle(h);
      if (err) throw err;
    });
  }

  /** Drop a handle; on the last one of the inode tell the engine (sustained inodes) and forget caches. */
  private async releaseHandle(h: FileHandle): Promise<void> {
    if (!this.handles.delete(h.fh)) return;
    h.stream?.close();
    const f = this.files.get(h.ino);
    if (!f) return;
    f.handles--;
    if (f.handles > 0) {
      // meta.open counted every handle (the engine's open count keeps an unlinked file alive), so
      // every handle is closed there too; the last close deletes a file unlinked while open.
      await this.meta.close(h.ino);
      return;
    }
    this.files.delete(h.ino);
    this.reader.forget(h.ino);
    this.writer.release(h.ino);
    this.seen.set(h.ino, f.mtime);
    if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.keys().next().value as Ino);
    await this.meta.close(h.ino);
  }

  private async releasePlocks(ctx: Ctx, ino: Ino, owner: bigint): Promise<void> {
    const f = this.files.get(ino);
    if (!f || !f.plockOwners.has(owner)) return;
    f.plockOwners.delete(owner);
    if (this.readOnly) return;
    await this.meta.setlk(ctx, ino, owner, false, { type: F_UNLCK, pid: 0, start: 0, end: PLOCK_WHOLE_END });
  }

  private async releaseFlock(ctx: Ctx, ino: Ino, owner: bigint): Promise<void> {
    const f = this.files.get(ino);
    if (!f || !f.flockOwners.has(owner)) return;
    f.flockOwners.delete(owner);
    if (this.readOnly) return;
    await this.meta.flock(ctx, ino, owner, F_UNLCK, false);
  }

  fallocate(ctx: Ctx, ino: Ino, fh: bigint, mode: number, offset: number, length: number): Promise<void> {
    return this.op('fallocate', ctx, () => `${ino},${mode},${offset},${length}`, async () => {
      this.checkWritableMount();
      const h = this.fileHandle(fh, ino);
      if (!h.writable) throw metaErr('EBADF');
      if (offset < 0 || length <= 0) throw metaErr('EINVAL');
      if (offset + length > MAX_FILE_SIZE) throw metaErr('EFBIG');
      await this.writer.flush(ino);
      const attr = await this.meta.fallocate(ctx, ino, mode, offset, length);
      this.afterDataChange(ino, attr);
    });
  }

  copyFileRange(
    ctx: Ctx,
    inIno: Ino,
    inFh: bigint,
    offIn: number,
    outIno: Ino,
    outFh: bigint,
    offOut: number,
    length: number,
    flags: number,
  ): Promise<number> {
    return this.op('copy_file_range', ctx, () => `${inIno},${offIn},${outIno},${offOut},${length}`, async () => {
      this.checkWritableMount();
      const hi = this.fileHandle(inFh, inIno);
      const ho = this.fileHandle(outFh, outIno);
      if (!hi.readable || !ho.writable || hi.virtual || ho.virtual) throw metaErr('EBADF');
      if (ho.append) throw metaErr('EBADF');
      if (offIn < 0 || offOut < 0) throw metaErr('EINVAL');
      if (offOut + length > MAX_FILE_SIZE) throw metaErr('EFBIG');
      await Promise.all([this.writer.flush(inIno), this.writer.flush(outIno)]);
      const n = await this.meta.copyFileRange(ctx, inIno, offIn, outIno, offOut, length, flags);
      const attr = await this.meta.getAttr(outIno);
      this.afterDataChange(outIno, attr);
      return n;
    }, (n) => `${n}`);
  }

  lseek(ctx: Ctx, ino: Ino, fh: bigint, offset: number, whence: number): Promise<number> {
    return this.op('lseek', ctx, () => `${ino},${offset},${whence}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) throw metaErr('ESPIPE');
      if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw metaErr('EINVAL');
      await this.writer.flush(ino);
      return this.reader.seek(ino, offset, this.currentLength(ino), whence);
    }, (n) => `${n}`);
  }

  // ------------------------------------------------------------------ directories

  opendir(ctx: Ctx, ino: Ino, _flags: number): Promise<bigint> {
    return this.op('opendir', ctx, () => `${ino}`, async () => {
      if (isVirtual(ino)) throw metaErr('ENOTDIR');
      if (ctx.checkPermission !== false && ctx.uid !== 0) await this.meta.access(ctx, ino, 4);
      const fh = this.newFh();
      this.handles.set(fh, { kind: 'dir', fh, ino, plus: false, served: false });
      return fh;
    }, (fh) => `fh:${fh}`);
  }

  readdir(ctx: Ctx, ino: Ino, fh: bigint, offset: number, plus: boolean, max: number): Promise<DirEntryPlus[]> {
    return this.op(plus ? 'readdirplus' : 'readdir', ctx, () => `${ino},${offset},${fh}`, async () => {
      const h = this.dirHandle(fh);
      if (h.ino !== ino) throw metaErr('EBADF');
      if (offset < 0) throw metaErr('EINVAL');
      if (!h.entries || (offset === 0 && (h.served || (plus && !h.plus)))) {
        // Offset 0 after entries were served is a rewinddir: list again. Elsewhere keep the
        // listing so offsets stay stable for a reader in the middle of it.
        h.entries = await this.list(ctx, ino, plus);
        h.plus = plus;
      } else if (plus && !h.plus) {
        h.entries = await this.withAttrs(h.entries);
        h.plus = true;
      }
      h.served = true;
      return h.entries.slice(offset, offset + Math.max(0, max));
    }, (r) => `${r.length}`);
  }

  /** The full listing of a directory with `.`/`..` first and the root's virtual entries last. */
  private async list(ctx: Ctx, ino: Ino, plus: boolean): Promise<DirEntryPlus[]> {
    const [dirAttr, entries] = await Promise.all([this.meta.getAttr(ino), this.meta.readdir(ctx, ino, plus)]);
    const parentIno = ino === ROOT_INODE ? ROOT_INODE : dirAttr.parent === 0n ? ROOT_INODE : dirAttr.parent;
    const all: Entry[] = [];
    all.push({ name: DOT, ino, type: FileType.Dir, ...(plus ? { attr: dirAttr } : {}) });
    let parentAttr: Attr | undefined;
    if (plus) parentAttr = parentIno === ino ? dirAttr : await this.meta.getAttr(parentIno).catch(() => undefined);
    all.push({ name: DOTDOT, ino: parentIno, type: FileType.Dir, ...(parentAttr ? { attr: parentAttr } : {}) });
    for (const e of entries) all.push(e);
    if (ino === ROOT_INODE) {
      if (!this.opts.hideTrash && this.trashDays() > 0) {
        const ta = plus ? await this.meta.getAttr(TRASH_INODE).catch(() => undefined) : undefined;
        all.push({ name: TRASH_NAME, ino: TRASH_INODE, type: FileType.Dir, ...(ta ? { attr: ta } : {}) });
      }
      for (const v of this.system.entries(plus)) all.push(v);
    }
    return all.map((e, i) => ({
      ...e,
      ...(e.attr ? { attr: this.observe(e.ino, e.attr) } : {}),
      offset: i + 1,
      entryTtl: this.entryTtl,
      attrTtl: this.attrTtl,
    }));
  }

  private async withAttrs(entries: DirEntryPlus[]): Promise<DirEntryPlus[]> {
    return Promise.all(
      entries.map(async (e) => {
        if (e.attr) return e;
        const attr = isVirtual(e.ino) ? this.system.attr(e.ino) : await this.meta.getAttr(e.ino).catch(() => undefined);
        return attr ? { ...e, attr: this.observe(e.ino, attr) } : e;
      }),
    );
  }

  private trashDays(): number {
    try {
      return this.meta.format.TrashDays ?? 0;
    } catch {
      return 0;
    }
  }

  releasedir(ctx: Ctx, ino: Ino, fh: bigint): Promise<void> {
    return this.op('releasedir', ctx, () => `${ino},${fh}`, async () => {
      this.dirHandle(fh);
      this.handles.delete(fh);
    });
  }

  // ------------------------------------------------------------------ misc

  statfs(ctx: Ctx, ino: Ino): Promise<StatFs & { blockSize: number; nameMax: number }> {
    return this.op('statfs', ctx, () => `${ino}`, async () => {
      const s = await this.meta.statfs(ctx, isVirtual(ino) ? ROOT_INODE : ino);
      return { ...s, blockSize: 4096, nameMax: MAX_NAME_LEN };
    });
  }

  access(ctx: Ctx, ino: Ino, mask: number): Promise<void> {
    return this.op('access', ctx, () => `${ino},${mask}`, async () => {
      if (this.readOnly && mask & 2) throw metaErr('EROFS');
      if (isVirtual(ino)) return this.checkVirtualAccess(ctx, ino, mask);
      await this.meta.access(ctx, ino, mask);
    });
  }

  /** False for the security xattrs this mount does not store (see VfsOptions.enableCap). */
  private xattrEnabled(name: string): boolean {
    if (name === 'security.capability') return this.opts.enableCap === true;
    if (name === 'security.selinux') return this.opts.enableSelinux === true;
    return true;
  }

  setxattr(ctx: Ctx, ino: Ino, name: string, value: Buffer, flags: number): Promise<void> {
    return this.op('setxattr', ctx, () => `${ino},${name},${value.length},${flags}`, async () => {
      if (isVirtual(ino)) throw metaErr('EPERM');
      this.checkWritableMount();
      if (!this.xattrEnabled(name)) throw metaErr('ENOTSUP');
      await this.meta.setXattr(ctx, ino, name, value, flags);
    });
  }

  getxattr(ctx: Ctx, ino: Ino, name: string): Promise<Buffer> {
    return this.op('getxattr', ctx, () => `${ino},${name}`, async () => {
      if (isVirtual(ino) || !this.xattrEnabled(name)) throw metaErr('ENODATA');
      return this.meta.getXattr(ctx, ino, name);
    }, (b) => `${b.length}`);
  }

  listxattr(ctx: Ctx, ino: Ino): Promise<string[]> {
    return this.op('listxattr', ctx, () => `${ino}`, async () => {
      if (isVirtual(ino)) return [];
      return this.meta.listXattr(ctx, ino);
    }, (l) => `${l.length}`);
  }

  removexattr(ctx: Ctx, ino: Ino, name: string): Promise<void> {
    return this.op('removexattr', ctx, () => `${ino},${name}`, async () => {
      if (isVirtual(ino)) throw metaErr('EPERM');
      this.checkWritableMount();
      if (!this.xattrEnabled(name)) throw metaErr('ENOTSUP');
      await this.meta.removeXattr(ctx, ino, name);
    });
  }

  getlk(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, lock: PosixLock): Promise<PosixLock> {
    return this.op('getlk', ctx, () => `${ino},${owner.toString(16)},${lock.type},${lock.start},${lock.end}`, async () => {
      this.fileHandle(fh, ino);
      if (this.readOnly) return { ...lock, type: F_UNLCK };
      return this.meta.getlk(ctx, ino, owner, lock);
    });
  }

  setlk(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, lock: PosixLock, block: boolean): Promise<void> {
    return this.op(block ? 'setlkw' : 'setlk', ctx, () => `${ino},${owner.toString(16)},${lock.type},${lock.start},${lock.end}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) throw metaErr('EBADF');
      if (lock.type !== F_RDLCK && lock.type !== F_WRLCK && lock.type !== F_UNLCK) throw metaErr('EINVAL');
      const f = this.files.get(ino);
      // Read-only mounts hold no session: locks are granted locally and not shared (SEMANTICS.md).
      if (this.readOnly) {
        if (lock.type === F_WRLCK) throw metaErr('EBADF');
        if (lock.type !== F_UNLCK) f?.plockOwners.add(owner);
        return;
      }
      if (lock.type !== F_UNLCK) f?.plockOwners.add(owner);
      await this.meta.setlk(ctx, ino, owner, block, lock);
    });
  }

  flock(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, type: number, block: boolean): Promise<void> {
    return this.op('flock', ctx, () => `${ino},${owner.toString(16)},${type},${block}`, async () => {
      const h = this.fileHandle(fh, ino);
      if (h.virtual) throw metaErr('EBADF');
      if (type !== F_RDLCK && type !== F_WRLCK && type !== F_UNLCK) throw metaErr('EINVAL');
      const f = this.files.get(ino);
      if (type === F_UNLCK) f?.flockOwners.delete(owner);
      else f?.flockOwners.add(owner);
      if (this.readOnly) return;
      await this.meta.flock(ctx, ino, owner, type, block);
    });
  }

  /** Commit every pending write, close every handle, end the session (its locks go with it). */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    await this.writer.flushAll();
    this.writer.close();
    for (const h of [...this.handles.values()]) {
      if (h.kind === 'file') {
        if (h.virtual) {
          h.virtual.release();
          this.handles.delete(h.fh);
        } else {
          await this.releaseHandle(h).catch(() => {});
        }
      } else {
        this.handles.delete(h.fh);
      }
    }
    for (const remove of this.collectors.splice(0)) remove();
    await this.meta.closeSession().catch((e) => this.log(`artifacts vfs: closing the session failed: ${(e as Error).message}`));
    if (this.opts.closeMetaOnShutdown) await this.meta.shutdown();
  }

  /** Format of the volume (for the transport's INIT and .config). */
  get format(): Format {
    return this.meta.format;
  }
}

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const TRASH_NAME = Buffer.from('.trash');
