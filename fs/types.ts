/**
 * The VFS boundary: what the FUSE transport (fs/fuse/) calls, in inode terms, with handles.
 * Every method rejects with a MetaError (errno) for filesystem-level failures; the transport
 * maps any other rejection to EIO.
 */
import type { Attr, Ctx, Entry, Ino, PosixLock, SetAttrRequest, StatFs } from '../metadata/types.js';

export interface EntryReply {
  ino: Ino;
  attr: Attr;
  /** Seconds the kernel may cache the entry / attributes. */
  entryTtl: number;
  attrTtl: number;
}

export interface AttrReply {
  attr: Attr;
  attrTtl: number;
}

export interface OpenReply {
  fh: bigint;
  /** Ask the kernel to bypass the page cache for this handle. */
  directIo: boolean;
  /** Let the kernel keep its page cache from the previous open (file unchanged). */
  keepCache: boolean;
}

export interface DirEntryPlus extends Entry {
  /** Position cookie to resume after this entry. */
  offset: number;
  entryTtl: number;
  attrTtl: number;
}

export interface Vfs {
  /** Kernel cache policy (seconds) from the cache profile. */
  readonly entryTtl: number;
  readonly attrTtl: number;
  readonly readOnly: boolean;
  /** Enable FUSE writeback cache at INIT. */
  readonly writebackCache: boolean;

  lookup(ctx: Ctx, parent: Ino, name: Buffer): Promise<EntryReply>;
  forget(ino: Ino, nlookup: number): void;
  getattr(ctx: Ctx, ino: Ino, fh?: bigint): Promise<AttrReply>;
  setattr(ctx: Ctx, ino: Ino, req: SetAttrRequest & { size?: number }, fh?: bigint): Promise<AttrReply>;
  readlink(ctx: Ctx, ino: Ino): Promise<Buffer>;
  mknod(ctx: Ctx, parent: Ino, name: Buffer, mode: number, rdev: number, umask: number): Promise<EntryReply>;
  mkdir(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number): Promise<EntryReply>;
  symlink(ctx: Ctx, parent: Ino, name: Buffer, target: Buffer): Promise<EntryReply>;
  unlink(ctx: Ctx, parent: Ino, name: Buffer): Promise<void>;
  rmdir(ctx: Ctx, parent: Ino, name: Buffer): Promise<void>;
  rename(ctx: Ctx, parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): Promise<void>;
  link(ctx: Ctx, ino: Ino, newParent: Ino, newName: Buffer): Promise<EntryReply>;

  /** `flags` are the open(2) flags. */
  open(ctx: Ctx, ino: Ino, flags: number): Promise<OpenReply>;
  create(ctx: Ctx, parent: Ino, name: Buffer, mode: number, umask: number, flags: number): Promise<EntryReply & OpenReply>;
  read(ctx: Ctx, ino: Ino, fh: bigint, offset: number, size: number): Promise<Buffer>;
  /** Returns bytes written. */
  write(ctx: Ctx, ino: Ino, fh: bigint, offset: number, data: Buffer): Promise<number>;
  flush(ctx: Ctx, ino: Ino, fh: bigint, lockOwner: bigint): Promise<void>;
  fsync(ctx: Ctx, ino: Ino, fh: bigint, dataOnly: boolean): Promise<void>;
  release(ctx: Ctx, ino: Ino, fh: bigint, lockOwner?: bigint, releaseFlock?: boolean): Promise<void>;
  fallocate(ctx: Ctx, ino: Ino, fh: bigint, mode: number, offset: number, length: number): Promise<void>;
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
  ): Promise<number>;
  /** whence: 3 = SEEK_DATA, 4 = SEEK_HOLE. */
  lseek(ctx: Ctx, ino: Ino, fh: bigint, offset: number, whence: number): Promise<number>;

  opendir(ctx: Ctx, ino: Ino, flags: number): Promise<bigint>;
  /** Entries from position `offset` (0 = start; `.` and `..` included), at most `max` of them. */
  readdir(ctx: Ctx, ino: Ino, fh: bigint, offset: number, plus: boolean, max: number): Promise<DirEntryPlus[]>;
  releasedir(ctx: Ctx, ino: Ino, fh: bigint): Promise<void>;

  statfs(ctx: Ctx, ino: Ino): Promise<StatFs & { blockSize: number; nameMax: number }>;
  access(ctx: Ctx, ino: Ino, mask: number): Promise<void>;

  setxattr(ctx: Ctx, ino: Ino, name: string, value: Buffer, flags: number): Promise<void>;
  getxattr(ctx: Ctx, ino: Ino, name: string): Promise<Buffer>;
  listxattr(ctx: Ctx, ino: Ino): Promise<string[]>;
  removexattr(ctx: Ctx, ino: Ino, name: string): Promise<void>;

  getlk(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, lock: PosixLock): Promise<PosixLock>;
  setlk(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, lock: PosixLock, block: boolean): Promise<void>;
  flock(ctx: Ctx, ino: Ino, fh: bigint, owner: bigint, type: number, block: boolean): Promise<void>;

  /** Flush every pending write, release locks, end the session. */
  shutdown(): Promise<void>;
  /** Hook the transport sets so the VFS can drop kernel caches when it learns of remote changes. */
  invalidator?: { inode(ino: Ino): void; entry(parent: Ino, name: Buffer): void };
}
