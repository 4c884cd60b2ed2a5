/**
 * Types at the metadata boundary. Everything here mirrors the JuiceFS v1.x data model
 * (../shared/spec/juicefs-format.md sections 1–4); the Redis specifics live in redis/.
 *
 * Inode numbers are bigint: the trash lives at 0x7FFFFFFF10000000 + n, beyond 2^53.
 * Lengths, offsets and slice ids are plain numbers (exact up to 8 PiB / 2^53 ids).
 */

export type Ino = bigint;

export const ROOT_INODE: Ino = 1n;
/** `.trash` directory; hourly sub-directories are TRASH_INODE + n. */
export const TRASH_INODE: Ino = 0x7fffffff10000000n;
/** First VFS-only inode (never stored in Redis). */
export const MIN_INTERNAL_INODE: Ino = 0x7fffffff00000000n;

export const CHUNK_SIZE = 64 * 1024 * 1024;
export const CHUNK_BITS = 26;
export const MAX_NAME_LEN = 255;
export const MAX_SYMLINK_LEN = 4096;
export const MAX_XATTR_NAME = 255;
export const MAX_XATTR_VALUE = 65536;

export enum FileType {
  File = 1,
  Dir = 2,
  Symlink = 3,
  Fifo = 4,
  BlockDev = 5,
  CharDev = 6,
  Socket = 7,
}

/** Attr flag bits (byte 0 of the encoded attr). */
export const FLAG_IMMUTABLE = 0x01;
export const FLAG_APPEND = 0x02;
export const FLAG_SKIP_TRASH = 0x20;

export interface Attr {
  flags: number;
  type: FileType;
  /** Permission bits including suid/sgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  atimensec: number;
  mtime: number;
  mtimensec: number;
  ctime: number;
  ctimensec: number;
  nlink: number;
  length: number;
  rdev: number;
  /** Parent dir inode, or 0n once the inode has had more than one hard link. */
  parent: Ino;
  accessACL: number;
  defaultACL: number;
  tier: number;
}

/** A slice record as stored in `c{ino}_{indx}` (24 bytes) — and a resolved segment of a chunk. */
export interface Slice {
  /** Offset of this record inside the chunk. */
  pos: number;
  /** Slice id; 0 = hole. */
  id: number;
  /** Full stored size of the slice (determines block keys). */
  size: number;
  /** Offset inside the slice data where this record starts. */
  off: number;
  /** Bytes covered. */
  len: number;
}

export interface Entry {
  name: Buffer;
  ino: Ino;
  type: FileType;
  /** Present for readdir "plus" and lookups. */
  attr?: Attr;
}

/** Caller identity for permission checks. */
export interface Ctx {
  uid: number;
  gid: number;
  gids: number[];
  pid: number;
  /** umask applied to new inodes (mode & ~umask). */
  umask?: number;
  /** When false the engine skips permission checks (internal/admin ops). */
  checkPermission?: boolean;
}

export const ROOT_CTX: Ctx = { uid: 0, gid: 0, gids: [0], pid: 0, checkPermission: false };

/** SetAttr mask bits (what to change). Values mirror FUSE's FATTR_* bits. */
export const SET_ATTR_MODE = 1 << 0;
export const SET_ATTR_UID = 1 << 1;
export const SET_ATTR_GID = 1 << 2;
export const SET_ATTR_SIZE = 1 << 3;
export const SET_ATTR_ATIME = 1 << 4;
export const SET_ATTR_MTIME = 1 << 5;
export const SET_ATTR_ATIME_NOW = 1 << 7;
export const SET_ATTR_MTIME_NOW = 1 << 8;
export const SET_ATTR_CTIME = 1 << 10;
export const SET_ATTR_FLAG = 1 << 15;

export interface SetAttrRequest {
  mode?: number;
  uid?: number;
  gid?: number;
  /** seconds + nanoseconds */
  atime?: { sec: number; nsec: number };
  mtime?: { sec: number; nsec: number };
  atimeNow?: boolean;
  mtimeNow?: boolean;
  flags?: number;
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

export const FALLOC_KEEP_SIZE = 0x01;
export const FALLOC_PUNCH_HOLE = 0x02;
export const FALLOC_COLLAPSE_RANGE = 0x08;
export const FALLOC_ZERO_RANGE = 0x10;
export const FALLOC_INSERT_RANGE = 0x20;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** Linux fcntl lock types as stored in lockp records. */
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;

export interface PosixLock {
  type: number; // F_RDLCK / F_WRLCK / F_UNLCK
  pid: number;
  start: number;
  /** Inclusive end; 0x7FFFFFFFFFFFFFFF (as bigint-safe max) for "to EOF". */
  end: bigint;
}

export interface StatFs {
  totalSpace: number;
  availSpace: number;
  usedInodes: number;
  availInodes: number;
}

/** The `setting` JSON (Format) — field names exactly as upstream serialises them. */
export interface TierInfo {
  ID: number;
  StorageClass: string;
  Tag: string;
}

export interface Format {
  Name: string;
  UUID: string;
  Storage: string;
  StorageClass?: string;
  Tiers?: Record<string, TierInfo> | null;
  Bucket: string;
  AccessKey?: string;
  SecretKey?: string;
  SessionToken?: string;
  /** KiB */
  BlockSize: number;
  Compression?: string;
  Shards?: number;
  HashPrefix?: boolean;
  Capacity?: number;
  Inodes?: number;
  EncryptKey?: string;
  EncryptAlgo?: string;
  KeyEncrypted?: boolean;
  UploadLimit?: number;
  DownloadLimit?: number;
  TrashDays: number;
  MetaVersion?: number;
  MinClientVersion?: string;
  MaxClientVersion?: string;
  DirStats?: boolean;
  UserGroupQuota?: boolean;
  EnableACL: boolean;
  RangerRestUrl?: string;
  RangerService?: string;
  ChangeLog?: boolean;
  ChangeLogMaxAge?: number;
  ChangeLogMaxLines?: number;
  KerbConf?: string;
}

/**
 * An error carrying a POSIX errno. Every Meta operation rejects with this for
 * filesystem-level failures; anything else (connection loss...) is mapped to EIO by the VFS.
 */
export class MetaError extends Error {
  readonly code: ErrnoCode;
  constructor(code: ErrnoCode, message?: string) {
    // Bare errno errors (ENOENT from a lookup, EEXIST...) are normal answers, thousands per second
    // under `ls` or `make`; capturing a stack trace for each costs more than the rest of the
    // request. Errors with a message (the unexpected ones) keep their stack.
    const limit = Error.stackTraceLimit;
    if (message === undefined) Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.code = code;
    this.name = 'MetaError';
  }
  get errno(): number {
    return ERRNO[this.code];
  }
}

export const ERRNO = {
  EPERM: 1,
  E2BIG: 7,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  EINTR: 4,
  EDQUOT: 122,
} as const;
export type ErrnoCode = keyof typeof ERRNO;

export function metaErr(code: ErrnoCode, message?: string): MetaError {
  return new MetaError(code, message);
}
