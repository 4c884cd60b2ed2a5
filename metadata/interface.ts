/**
 * `Meta`: the one interface between the VFS and a metadata engine. The Redis engine
 * (redis/engine.ts) is the only implementation; the operations and their side effects follow
 * ../shared/spec/juicefs-format.md section 4 so upstream `juicefs` clients can share the volume.
 */
import type {
  Attr,
  Ctx,
  Entry,
  FileType,
  Format,
  Ino,
  PosixLock,
  SetAttrRequest,
  Slice,
  StatFs,
} from './types.js';

export interface MetaOptions {
  /** Mount point / role recorded in sessionInfos. */
  mountPoint?: string;
  /** Read-only clients register no session and refuse every write with EROFS. */
  readOnly?: boolean;
  /** Heartbeat period in seconds (default 12). */
  heartbeat?: number;
  /** Run background jobs (stale session cleanup, delfiles retries). Default true. */
  backgroundJobs?: boolean;
  /** Called when a slice's blocks must be deleted from the object store (refcount < 0). */
  onDeleteSlice?: (id: number, size: number) => Promise<void>;
}

export interface LookupResult {
  ino: Ino;
  attr: Attr;
}

export interface Meta {
  readonly prefix: string;
  /** Read (and validate) `setting`. */
  load(): Promise<Format>;
  readonly format: Format;

  newSession(): Promise<void>;
  closeSession(): Promise<void>;
  readonly sid: number;
  /** Close the Redis connections (after closeSession). */
  shutdown(): Promise<void>;

  statfs(ctx: Ctx, ino: Ino): Promise<StatFs>;
  access(ctx: Ctx, ino: Ino, mask: number, attr?: Attr): Promise<void>;
  lookup(ctx: Ctx, parent: Ino, name: Buffer | string): Promise<LookupResult>;
  getAttr(ino: Ino): Promise<Attr>;
  setAttr(ctx: Ctx, ino: Ino, req: SetAttrRequest): Promise<Attr>;

  mknod(
    ctx: Ctx,
    parent: Ino,
    name: Buffer | string,
    type: FileType,
    mode: number,
    rdev?: number,
    target?: Buffer | string,
  ): Promise<LookupResult>;
  /** Create a regular file; EEXIST unless `exclusive` is false, in which case the existing file is returned. */
  create(ctx: Ctx, parent: Ino, name: Buffer | string, mode: number, exclusive: boolean): Promise<LookupResult & { created: boolean }>;
  mkdir(ctx: Ctx, parent: Ino, name: Buffer | string, mode: number): Promise<LookupResult>;
  symlink(ctx: Ctx, parent: Ino, name: Buffer | string, target: Buffer | string): Promise<LookupResult>;
  readlink(ctx: Ctx, ino: Ino): Promise<Buffer>;
  link(ctx: Ctx, ino: Ino, parent: Ino, name: Buffer | string): Promise<Attr>;
  unlink(ctx: Ctx, parent: Ino, name: Buffer | string): Promise<void>;
  rmdir(ctx: Ctx, parent: Ino, name: Buffer | string): Promise<void>;
  rename(
    ctx: Ctx,
    srcParent: Ino,
    srcName: Buffer | string,
    dstParent: Ino,
    dstName: Buffer | string,
    flags: number,
  ): Promise<LookupResult>;
  /** Entries without `.`/`..`; with `plus` every entry carries its attr. */
  readdir(ctx: Ctx, ino: Ino, plus: boolean): Promise<Entry[]>;

  /** Record that this session opened/closed a regular file (sustained inodes on unlink). */
  open(ctx: Ctx, ino: Ino, flags: number): Promise<Attr>;
  /** Register an open of a file this client has just created (no checks, no round trip). */
  markOpen(ino: Ino): void;
  close(ino: Ino): Promise<void>;

  /** Resolved segments of chunk `indx` (gaps as id-0 segments), from chunk offset 0. */
  readChunk(ino: Ino, indx: number): Promise<Slice[]>;
  /** A fresh slice id (from a locally cached `nextchunk` batch). */
  newSliceId(): Promise<number>;
  /** Commit one written slice: RPUSH the record, extend length, set mtime. */
  writeSlice(ino: Ino, indx: number, pos: number, slice: Slice, mtime: { sec: number; nsec: number }): Promise<void>;
  /** flags 1 = ftruncate on a writable handle (skips the trash check). */
  truncate(ctx: Ctx, ino: Ino, length: number, flags?: number): Promise<Attr>;
  fallocate(ctx: Ctx, ino: Ino, mode: number, off: number, size: number): Promise<Attr>;
  /** Share the slices of [offIn, offIn+size) of `fin` at `offOut` of `fout`; returns bytes copied. */
  copyFileRange(ctx: Ctx, fin: Ino, offIn: number, fout: Ino, offOut: number, size: number, flags: number): Promise<number>;
  /** Compact chunk `indx` of `ino` (needs a block rewriter: see setCompactor). */
  compactChunk(ino: Ino, indx: number, force?: boolean): Promise<void>;

  getXattr(ctx: Ctx, ino: Ino, name: string): Promise<Buffer>;
  listXattr(ctx: Ctx, ino: Ino): Promise<string[]>;
  setXattr(ctx: Ctx, ino: Ino, name: string, value: Buffer, flags: number): Promise<void>;
  removeXattr(ctx: Ctx, ino: Ino, name: string): Promise<void>;

  /** BSD flock; `type` F_RDLCK/F_WRLCK/F_UNLCK; `block` polls until granted. */
  flock(ctx: Ctx, ino: Ino, owner: bigint, type: number, block: boolean): Promise<void>;
  getlk(ctx: Ctx, ino: Ino, owner: bigint, lock: PosixLock): Promise<PosixLock>;
  setlk(ctx: Ctx, ino: Ino, owner: bigint, block: boolean, lock: PosixLock): Promise<void>;
}

/**
 * Rewrites the live segments of a chunk into one new slice (used by compaction): the engine knows
 * slices, the chunk store knows bytes, so the VFS wires them together.
 */
export type Compactor = (segments: Slice[], newId: number, size: number) => Promise<void>;
