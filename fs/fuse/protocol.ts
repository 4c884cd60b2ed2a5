/**
 * The FUSE kernel protocol (linux/fuse.h, protocol 7.x): opcodes, flags, struct layouts, and the
 * little-endian encoders/decoders the server uses. Nothing here does I/O.
 *
 * Layouts follow the uapi header of protocol 7.38 (Debian linux-libc-dev); the server replies to
 * INIT with minor min(kernel, 38), so the kernel speaks exactly these layouts to us.
 *
 * Encoders write into a caller-supplied Buffer at an offset and return the offset after what they
 * wrote: the server encodes every small reply into one reused scratch buffer and writes it with one
 * synchronous write, so a reply costs no allocation.
 */
import { type Attr, FileType } from '../../metadata/types.js';

export const FUSE_KERNEL_VERSION = 7;
/** Newest minor whose layouts this file knows. */
export const FUSE_KERNEL_MINOR_VERSION = 38;
/** Oldest kernel minor we accept (max_pages, cache_symlinks, explicit flags). */
export const FUSE_MIN_MINOR_VERSION = 31;
export const FUSE_ROOT_ID = 1n;

// ---- opcodes -------------------------------------------------------------------------------------
export enum Op {
  LOOKUP = 1,
  FORGET = 2,
  GETATTR = 3,
  SETATTR = 4,
  READLINK = 5,
  SYMLINK = 6,
  MKNOD = 8,
  MKDIR = 9,
  UNLINK = 10,
  RMDIR = 11,
  RENAME = 12,
  LINK = 13,
  OPEN = 14,
  READ = 15,
  WRITE = 16,
  STATFS = 17,
  RELEASE = 18,
  FSYNC = 20,
  SETXATTR = 21,
  GETXATTR = 22,
  LISTXATTR = 23,
  REMOVEXATTR = 24,
  FLUSH = 25,
  INIT = 26,
  OPENDIR = 27,
  READDIR = 28,
  RELEASEDIR = 29,
  FSYNCDIR = 30,
  GETLK = 31,
  SETLK = 32,
  SETLKW = 33,
  ACCESS = 34,
  CREATE = 35,
  INTERRUPT = 36,
  BMAP = 37,
  DESTROY = 38,
  IOCTL = 39,
  POLL = 40,
  NOTIFY_REPLY = 41,
  BATCH_FORGET = 42,
  FALLOCATE = 43,
  READDIRPLUS = 44,
  RENAME2 = 45,
  LSEEK = 46,
  COPY_FILE_RANGE = 47,
  SETUPMAPPING = 48,
  REMOVEMAPPING = 49,
  SYNCFS = 50,
  TMPFILE = 51,
  STATX = 52,
}

const OP_NAMES: Record<number, string> = {
  1: 'lookup', 2: 'forget', 3: 'getattr', 4: 'setattr', 5: 'readlink', 6: 'symlink', 8: 'mknod',
  9: 'mkdir', 10: 'unlink', 11: 'rmdir', 12: 'rename', 13: 'link', 14: 'open', 15: 'read',
  16: 'write', 17: 'statfs', 18: 'release', 20: 'fsync', 21: 'setxattr', 22: 'getxattr',
  23: 'listxattr', 24: 'removexattr', 25: 'flush', 26: 'init', 27: 'opendir', 28: 'readdir',
  29: 'releasedir', 30: 'fsyncdir', 31: 'getlk', 32: 'setlk', 33: 'setlkw', 34: 'access',
  35: 'create', 36: 'interrupt', 37: 'bmap', 38: 'destroy', 39: 'ioctl', 40: 'poll',
  41: 'notify_reply', 42: 'batch_forget', 43: 'fallocate', 44: 'readdirplus', 45: 'rename2',
  46: 'lseek', 47: 'copy_file_range', 48: 'setupmapping', 49: 'removemapping', 50: 'syncfs',
  51: 'tmpfile', 52: 'statx',
};

export function opName(op: number): string {
  return OP_NAMES[op] ?? `op${op}`;
}

// ---- notifications -------------------------------------------------------------------------------
export const NOTIFY_INVAL_INODE = 2;
export const NOTIFY_INVAL_ENTRY = 3;

// ---- INIT flags (fuse_init_in/out.flags) ---------------------------------------------------------
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_POSIX_LOCKS = 1 << 1;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_EXPORT_SUPPORT = 1 << 4;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_DONT_MASK = 1 << 6;
export const FUSE_FLOCK_LOCKS = 1 << 10;
export const FUSE_AUTO_INVAL_DATA = 1 << 12;
export const FUSE_DO_READDIRPLUS = 1 << 13;
export const FUSE_READDIRPLUS_AUTO = 1 << 14;
export const FUSE_ASYNC_DIO = 1 << 15;
export const FUSE_WRITEBACK_CACHE = 1 << 16;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
export const FUSE_HANDLE_KILLPRIV = 1 << 19;
export const FUSE_MAX_PAGES = 1 << 22;
export const FUSE_CACHE_SYMLINKS = 1 << 23;
export const FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
export const FUSE_INIT_EXT = 1 << 30;

// ---- other flag words ----------------------------------------------------------------------------
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;

export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;
export const FATTR_LOCKOWNER = 1 << 9;
export const FATTR_CTIME = 1 << 10;
export const FATTR_KILL_SUIDGID = 1 << 11;
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;

export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
export const FUSE_GETATTR_FH = 1 << 0;
export const FUSE_LK_FLOCK = 1 << 0;
export const FUSE_FSYNC_FDATASYNC = 1 << 0;

// ---- sizes ---------------------------------------------------------------------------------------
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE; // 128
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE; // 104
export const OPEN_OUT_SIZE = 16;
export const WRITE_OUT_SIZE = 8;
export const STATFS_OUT_SIZE = 80;
export const GETXATTR_OUT_SIZE = 8;
export const LK_OUT_SIZE = 24;
export const LSEEK_OUT_SIZE = 8;
export const INIT_OUT_SIZE = 64;
export const DIRENT_BASE = 24;
export const DIRENTPLUS_BASE = ENTRY_OUT_SIZE + DIRENT_BASE; // 152
export const WRITE_IN_SIZE = 40;
export const MAX_PAGES = 256;
export const PAGE_SIZE = 4096;
/** Largest WRITE payload we negotiate: 256 pages = 1 MiB. */
export const MAX_WRITE = MAX_PAGES * PAGE_SIZE;
/**
 * Size of each /dev/fuse read buffer. The kernel refuses (EINVAL) reads into a buffer smaller than
 * header + write_in + max_write; one extra page leaves room for the largest SETXATTR too.
 */
export const READ_BUFFER_SIZE = MAX_WRITE + PAGE_SIZE;

/** Linux's OFFSET_MAX: the `end` of a lock that runs to EOF. */
export const OFFSET_MAX = 0x7fffffffffffffffn;

// ---- request header ------------------------------------------------------------------------------
/** Decoded fuse_in_header. One object per request, reused fields only. */
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
  /** Extension bytes at the end of the request (total_extlen × 8). */
  extLen: number;
}

export function decodeInHeader(buf: Buffer): InHeader {
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: buf.readBigUInt64LE(16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
    extLen: buf.readUInt16LE(36) * 8,
  };
}

/** Writes a fuse_out_header at `off`. `error` is 0 or a negative errno. */
export function encodeOutHeader(buf: Buffer, off: number, len: number, error: number, unique: bigint): number {
  buf.writeUInt32LE(len, off);
  buf.writeInt32LE(error, off + 4);
  buf.writeBigUInt64LE(unique, off + 8);
  return off + OUT_HEADER_SIZE;
}

// ---- little helpers ------------------------------------------------------------------------------
/** u64 field → number; offsets and sizes stay far below 2^53 in practice, clamp just in case. */
export function readU64(buf: Buffer, off: number): number {
  const lo = buf.readUInt32LE(off);
  const hi = buf.readUInt32LE(off + 4);
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return hi * 0x100000000 + lo;
}

function writeU64(buf: Buffer, value: number, off: number): void {
  // Faster than writeBigUInt64LE(BigInt(v)) and allocation-free; negative values are clamped to 0.
  const v = value > 0 ? value : 0;
  buf.writeUInt32LE(v % 0x100000000 >>> 0, off);
  buf.writeUInt32LE(Math.floor(v / 0x100000000) >>> 0, off + 4);
}

/** Signed 64-bit write for timestamps (files may predate 1970). */
function writeI64(buf: Buffer, value: number, off: number): void {
  const hi = Math.floor(value / 0x100000000);
  buf.writeUInt32LE((value - hi * 0x100000000) >>> 0, off);
  buf.writeInt32LE(Math.max(-0x80000000, Math.min(0x7fffffff, hi)), off + 4);
}

/**
 * A NUL-terminated string starting at `off`, bounded by `end`. Returns a COPY (the read buffer is
 * reused for the next request as soon as decoding is done) and the offset after the NUL.
 */
export function readCString(buf: Buffer, off: number, end: number): [Buffer, number] {
  let z = buf.indexOf(0, off);
  if (z < 0 || z > end) z = end;
  return [Buffer.from(buf.subarray(off, z)), z + 1];
}

// ---- attributes ----------------------------------------------------------------------------------
const S_IFMT_OF: Record<number, number> = {
  [FileType.File]: 0o100000,
  [FileType.Dir]: 0o040000,
  [FileType.Symlink]: 0o120000,
  [FileType.Fifo]: 0o010000,
  [FileType.BlockDev]: 0o060000,
  [FileType.CharDev]: 0o020000,
  [FileType.Socket]: 0o140000,
};
/** d_type values (DT_*) for dirents. */
const DT_OF: Record<number, number> = {
  [FileType.File]: 8,
  [FileType.Dir]: 4,
  [FileType.Symlink]: 10,
  [FileType.Fifo]: 1,
  [FileType.BlockDev]: 6,
  [FileType.CharDev]: 2,
  [FileType.Socket]: 12,
};

export function modeOf(attr: Attr): number {
  return (S_IFMT_OF[attr.type] ?? 0) | (attr.mode & 0o7777);
}

export function fileTypeOfMode(mode: number): FileType {
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

/** st_blksize we report: cp/rsync size their buffers from it, and bigger means fewer round trips. */
export const REPORTED_BLKSIZE = 65536;

/** Encodes a fuse_attr (88 bytes). */
export function encodeAttr(buf: Buffer, off: number, ino: bigint, a: Attr): number {
  buf.writeBigUInt64LE(ino, off);
  writeU64(buf, a.length, off + 8);
  // st_blocks in 512-byte units: what du reports. Directories count one 4 KiB block like JuiceFS.
  const blocks = a.type === FileType.Dir ? 8 : Math.ceil(a.length / 512);
  writeU64(buf, blocks, off + 16);
  writeI64(buf, a.atime, off + 24);
  writeI64(buf, a.mtime, off + 32);
  writeI64(buf, a.ctime, off + 40);
  buf.writeUInt32LE(a.atimensec >>> 0, off + 48);
  buf.writeUInt32LE(a.mtimensec >>> 0, off + 52);
  buf.writeUInt32LE(a.ctimensec >>> 0, off + 56);
  buf.writeUInt32LE(modeOf(a) >>> 0, off + 60);
  buf.writeUInt32LE(a.nlink >>> 0, off + 64);
  buf.writeUInt32LE(a.uid >>> 0, off + 68);
  buf.writeUInt32LE(a.gid >>> 0, off + 72);
  buf.writeUInt32LE(a.rdev >>> 0, off + 76);
  buf.writeUInt32LE(REPORTED_BLKSIZE, off + 80);
  buf.writeUInt32LE(0, off + 84);
  return off + ATTR_SIZE;
}

/** Seconds (float) → (u64 seconds, u32 nanoseconds) cache timeout. */
function writeTimeout(buf: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  const s = seconds > 0 ? seconds : 0;
  const whole = Math.floor(s);
  writeU64(buf, whole, secOff);
  buf.writeUInt32LE(Math.min(999_999_999, Math.round((s - whole) * 1e9)), nsecOff);
}

/** Encodes a fuse_entry_out (128 bytes). nodeid 0 = "no entry/attributes for this name". */
export function encodeEntryOut(
  buf: Buffer,
  off: number,
  ino: bigint,
  attr: Attr,
  entryTtl: number,
  attrTtl: number,
): number {
  buf.writeBigUInt64LE(ino, off);
  writeU64(buf, 0, off + 8); // generation: JuiceFS never reuses inode numbers
  writeTimeout(buf, off + 16, off + 32, entryTtl);
  writeTimeout(buf, off + 24, off + 36, attrTtl);
  return encodeAttr(buf, off + 40, ino, attr);
}

/** An all-zero fuse_entry_out (direntplus for `.`/`..`: the kernel does not look them up). */
export function encodeEmptyEntryOut(buf: Buffer, off: number): number {
  buf.fill(0, off, off + ENTRY_OUT_SIZE);
  return off + ENTRY_OUT_SIZE;
}

export function encodeAttrOut(buf: Buffer, off: number, ino: bigint, attr: Attr, attrTtl: number): number {
  writeTimeout(buf, off, off + 8, attrTtl);
  buf.writeUInt32LE(0, off + 12);
  return encodeAttr(buf, off + 16, ino, attr);
}

export function encodeOpenOut(buf: Buffer, off: number, fh: bigint, openFlags: number): number {
  buf.writeBigUInt64LE(fh, off);
  buf.writeUInt32LE(openFlags >>> 0, off + 8);
  buf.writeUInt32LE(0, off + 12);
  return off + OPEN_OUT_SIZE;
}

export function encodeWriteOut(buf: Buffer, off: number, size: number): number {
  buf.writeUInt32LE(size >>> 0, off);
  buf.writeUInt32LE(0, off + 4);
  return off + WRITE_OUT_SIZE;
}

export interface KStatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

export function encodeStatfsOut(buf: Buffer, off: number, s: KStatFs): number {
  writeU64(buf, s.blocks, off);
  writeU64(buf, s.bfree, off + 8);
  writeU64(buf, s.bavail, off + 16);
  writeU64(buf, s.files, off + 24);
  writeU64(buf, s.ffree, off + 32);
  buf.writeUInt32LE(s.bsize >>> 0, off + 40);
  buf.writeUInt32LE(s.namelen >>> 0, off + 44);
  buf.writeUInt32LE(s.frsize >>> 0, off + 48);
  buf.fill(0, off + 52, off + STATFS_OUT_SIZE);
  return off + STATFS_OUT_SIZE;
}

export function encodeGetxattrOut(buf: Buffer, off: number, size: number): number {
  buf.writeUInt32LE(size >>> 0, off);
  buf.writeUInt32LE(0, off + 4);
  return off + GETXATTR_OUT_SIZE;
}

/** fuse_file_lock: start u64, end u64, type u32, pid u32. */
export function encodeLkOut(buf: Buffer, off: number, start: number, end: bigint, type: number, pid: number): number {
  writeU64(buf, start, off);
  buf.writeBigUInt64LE(end < 0n ? 0n : end, off + 8);
  buf.writeUInt32LE(type >>> 0, off + 16);
  buf.writeUInt32LE(pid >>> 0, off + 20);
  return off + LK_OUT_SIZE;
}

export function encodeLseekOut(buf: Buffer, off: number, offset: number): number {
  writeU64(buf, offset, off);
  return off + LSEEK_OUT_SIZE;
}

// ---- INIT ----------------------------------------------------------------------------------------
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

export function decodeInitIn(buf: Buffer, off: number, bodyLen: number): InitIn {
  return {
    major: buf.readUInt32LE(off),
    minor: buf.readUInt32LE(off + 4),
    maxReadahead: buf.readUInt32LE(off + 8),
    flags: buf.readUInt32LE(off + 12),
    flags2: bodyLen >= 20 ? buf.readUInt32LE(off + 16) : 0,
  };
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  flags2: number;
}

export function encodeInitOut(buf: Buffer, off: number, o: InitOut): number {
  buf.fill(0, off, off + INIT_OUT_SIZE);
  buf.writeUInt32LE(o.major, off);
  buf.writeUInt32LE(o.minor, off + 4);
  buf.writeUInt32LE(o.maxReadahead >>> 0, off + 8);
  buf.writeUInt32LE(o.flags >>> 0, off + 12);
  buf.writeUInt16LE(o.maxBackground, off + 16);
  buf.writeUInt16LE(o.congestionThreshold, off + 18);
  buf.writeUInt32LE(o.maxWrite >>> 0, off + 20);
  buf.writeUInt32LE(o.timeGran >>> 0, off + 24);
  buf.writeUInt16LE(o.maxPages, off + 28);
  buf.writeUInt16LE(0, off + 30); // map_alignment (DAX only)
  buf.writeUInt32LE(o.flags2 >>> 0, off + 32);
  return off + INIT_OUT_SIZE;
}

// ---- directory entries ---------------------------------------------------------------------------
/** FUSE_DIRENT_ALIGN: records are padded to 8 bytes. */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

export function direntSize(nameLen: number): number {
  return align8(DIRENT_BASE + nameLen);
}

export function direntplusSize(nameLen: number): number {
  return align8(DIRENTPLUS_BASE + nameLen);
}

export function dtypeOf(type: FileType): number {
  return DT_OF[type] ?? 0;
}

/** Encodes one fuse_dirent (with zeroed padding). Caller checks it fits. */
export function encodeDirent(buf: Buffer, off: number, ino: bigint, nextOff: number, type: FileType, name: Buffer): number {
  buf.writeBigUInt64LE(ino, off);
  writeU64(buf, nextOff, off + 8);
  buf.writeUInt32LE(name.length, off + 16);
  buf.writeUInt32LE(dtypeOf(type), off + 20);
  name.copy(buf, off + DIRENT_BASE);
  const end = off + direntSize(name.length);
  buf.fill(0, off + DIRENT_BASE + name.length, end);
  return end;
}

// ---- notifications -------------------------------------------------------------------------------
/**
 * FUSE_NOTIFY_INVAL_INODE for the whole file: offset 0 and length 0 drop every cached page and
 * the cached attributes.
 */
export function encodeNotifyInvalInode(ino: bigint): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + 24);
  encodeOutHeader(b, 0, b.length, NOTIFY_INVAL_INODE, 0n);
  b.writeBigUInt64LE(ino, 16);
  b.writeBigInt64LE(0n, 24);
  b.writeBigInt64LE(0n, 32);
  return b;
}

/** FUSE_NOTIFY_INVAL_ENTRY: parent u64, namelen u32, flags u32, name, NUL. */
export function encodeNotifyInvalEntry(parent: bigint, name: Buffer): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + 16 + name.length + 1);
  encodeOutHeader(b, 0, b.length, NOTIFY_INVAL_ENTRY, 0n);
  b.writeBigUInt64LE(parent, 16);
  b.writeUInt32LE(name.length, 24);
  b.writeUInt32LE(0, 28);
  name.copy(b, 32);
  b[32 + name.length] = 0;
  return b;
}
