/**
 * Binary encodings of the JuiceFS Redis values (juicefs-format.md 1.3). All big-endian.
 * These must stay byte-identical with upstream: golden tests in test/metadata/codec.test.ts.
 */
import { type Attr, FileType, type Ino, type PosixLock, type Slice } from './types.js';

const ATTR_FIXED = 71;

/**
 * Upstream allocates 72 bytes (+8 ACL, +1 tier) but writes only 71 (+8, +1); the spare zero is
 * stored too, so a byte-identical encoder emits it.
 */
export function encodeAttr(a: Attr): Buffer {
  const hasAcl = a.accessACL !== 0 || a.defaultACL !== 0;
  const hasTier = a.tier !== 0;
  const size = 72 + (hasAcl ? 8 : 0) + (hasTier ? 1 : 0);
  const b = Buffer.alloc(size);
  b[0] = a.flags & 0xff;
  b.writeUInt16BE(((a.type & 0xf) << 12) | (a.mode & 0o7777), 1);
  b.writeUInt32BE(a.uid >>> 0, 3);
  b.writeUInt32BE(a.gid >>> 0, 7);
  b.writeBigInt64BE(BigInt(a.atime), 11);
  b.writeUInt32BE(a.atimensec >>> 0, 19);
  b.writeBigInt64BE(BigInt(a.mtime), 23);
  b.writeUInt32BE(a.mtimensec >>> 0, 31);
  b.writeBigInt64BE(BigInt(a.ctime), 35);
  b.writeUInt32BE(a.ctimensec >>> 0, 43);
  b.writeUInt32BE(a.nlink >>> 0, 47);
  b.writeBigUInt64BE(BigInt(a.length), 51);
  b.writeUInt32BE(a.rdev >>> 0, 59);
  b.writeBigUInt64BE(a.parent, 63);
  let off = ATTR_FIXED;
  if (hasAcl) {
    b.writeUInt32BE(a.accessACL >>> 0, off);
    b.writeUInt32BE(a.defaultACL >>> 0, off + 4);
    off += 8;
  }
  if (hasTier) b[off] = a.tier;
  return b;
}

/** Decode following upstream's rule: 63 fixed bytes, then parent, ACL ids and tier if present. */
export function decodeAttr(b: Buffer): Attr {
  if (b.length < 63) throw new Error(`invalid attr: ${b.length} bytes`);
  const m = b.readUInt16BE(1);
  const a: Attr = {
    flags: b[0],
    type: (m >> 12) as FileType,
    mode: m & 0o7777,
    uid: b.readUInt32BE(3),
    gid: b.readUInt32BE(7),
    atime: Number(b.readBigInt64BE(11)),
    atimensec: b.readUInt32BE(19),
    mtime: Number(b.readBigInt64BE(23)),
    mtimensec: b.readUInt32BE(31),
    ctime: Number(b.readBigInt64BE(35)),
    ctimensec: b.readUInt32BE(43),
    nlink: b.readUInt32BE(47),
    length: Number(b.readBigUInt64BE(51)),
    rdev: b.readUInt32BE(59),
    parent: 0n,
    accessACL: 0,
    defaultACL: 0,
    tier: 0,
  };
  let off = 63;
  if (b.length - off >= 8) {
    a.parent = b.readBigUInt64BE(off);
    off += 8;
  }
  if (b.length - off >= 8) {
    a.accessACL = b.readUInt32BE(off);
    a.defaultACL = b.readUInt32BE(off + 4);
    off += 8;
  }
  if (b.length - off >= 1) a.tier = b[off];
  return a;
}

export function encodeDentry(type: FileType, ino: Ino): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = type;
  b.writeBigUInt64BE(ino, 1);
  return b;
}

export function decodeDentry(b: Buffer): { type: FileType; ino: Ino } {
  if (b.length !== 9) throw new Error(`invalid entry: ${b.length} bytes`);
  return { type: b[0] as FileType, ino: b.readBigUInt64BE(1) };
}

export const SLICE_BYTES = 24;

export function encodeSlice(s: Slice): Buffer {
  const b = Buffer.allocUnsafe(SLICE_BYTES);
  b.writeUInt32BE(s.pos >>> 0, 0);
  b.writeBigUInt64BE(BigInt(s.id), 4);
  b.writeUInt32BE(s.size >>> 0, 12);
  b.writeUInt32BE(s.off >>> 0, 16);
  b.writeUInt32BE(s.len >>> 0, 20);
  return b;
}

export function decodeSlice(b: Buffer, at = 0): Slice {
  return {
    pos: b.readUInt32BE(at),
    id: Number(b.readBigUInt64BE(at + 4)),
    size: b.readUInt32BE(at + 12),
    off: b.readUInt32BE(at + 16),
    len: b.readUInt32BE(at + 20),
  };
}

/** Decode the raw elements of a `c{ino}_{indx}` list; malformed elements are an error (upstream skips them with a log line). */
export function decodeSlices(items: Buffer[]): Slice[] {
  const out: Slice[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    if (items[i].length !== SLICE_BYTES) throw new Error(`invalid slice record: ${items[i].length} bytes`);
    out[i] = decodeSlice(items[i]);
  }
  return out;
}

export const PLOCK_BYTES = 24;
export const PLOCK_MAX_END = 0x7fffffffffffffffn;

export interface PlockRecord {
  type: number;
  pid: number;
  start: bigint;
  /** inclusive */
  end: bigint;
}

export function encodePlocks(ls: PlockRecord[]): Buffer {
  const b = Buffer.allocUnsafe(ls.length * PLOCK_BYTES);
  let o = 0;
  for (const l of ls) {
    b.writeUInt32BE(l.type >>> 0, o);
    b.writeUInt32BE(l.pid >>> 0, o + 4);
    b.writeBigUInt64BE(l.start, o + 8);
    b.writeBigUInt64BE(l.end, o + 16);
    o += PLOCK_BYTES;
  }
  return b;
}

export function decodePlocks(b: Buffer): PlockRecord[] {
  const out: PlockRecord[] = [];
  for (let o = 0; o + PLOCK_BYTES <= b.length; o += PLOCK_BYTES) {
    out.push({
      type: b.readUInt32BE(o),
      pid: b.readUInt32BE(o + 4),
      start: b.readBigUInt64BE(o + 8),
      end: b.readBigUInt64BE(o + 16),
    });
  }
  return out;
}

/** `delSlices` value: 12-byte (id u64, size u32) records. */
export function encodeDelSlices(ss: { id: number; size: number }[]): Buffer {
  const b = Buffer.allocUnsafe(ss.length * 12);
  ss.forEach((s, i) => {
    b.writeBigUInt64BE(BigInt(s.id), i * 12);
    b.writeUInt32BE(s.size >>> 0, i * 12 + 8);
  });
  return b;
}

export function decodeDelSlices(b: Buffer): { id: number; size: number }[] {
  const out: { id: number; size: number }[] = [];
  for (let o = 0; o + 12 <= b.length; o += 12) out.push({ id: Number(b.readBigUInt64BE(o)), size: b.readUInt32BE(o + 8) });
  return out;
}

/** 4096 for 0, else rounded up to a multiple of 4096: the unit of every space counter. */
export function align4K(n: number): number {
  if (n <= 0) return 4096;
  return Math.ceil(n / 4096) * 4096;
}

/** Convenience: a fresh attr with times = now. */
export function newAttr(type: FileType, mode: number, now: { sec: number; nsec: number }): Attr {
  return {
    flags: 0,
    type,
    mode: mode & 0o7777,
    uid: 0,
    gid: 0,
    atime: now.sec,
    atimensec: now.nsec,
    mtime: now.sec,
    mtimensec: now.nsec,
    ctime: now.sec,
    ctimensec: now.nsec,
    nlink: type === FileType.Dir ? 2 : 1,
    length: type === FileType.Dir ? 4096 : 0,
    rdev: 0,
    parent: 0n,
    accessACL: 0,
    defaultACL: 0,
    tier: 0,
  };
}

/** Wall-clock now as seconds + nanoseconds, strictly increasing within this process (so every data commit changes mtime). */
let lastNs = 0n;
export function nowTime(): { sec: number; nsec: number } {
  let ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
