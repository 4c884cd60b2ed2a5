import { describe, expect, it } from 'vitest';
import { type Attr, FileType, MetaError } from '../../metadata/types.js';
import {
  ATTR_SIZE,
  DIRENTPLUS_BASE,
  ENTRY_OUT_SIZE,
  IN_HEADER_SIZE,
  OUT_HEADER_SIZE,
  decodeInHeader,
  direntSize,
  direntplusSize,
  encodeAttr,
  encodeAttrOut,
  encodeDirent,
  encodeEntryOut,
  encodeInitOut,
  encodeLkOut,
  encodeNotifyInvalEntry,
  encodeNotifyInvalInode,
  encodeOutHeader,
  encodeStatfsOut,
  readCString,
  readU64,
} from '../../fs/fuse/protocol.js';
import { errnoOf } from '../../fs/fuse/server.js';

const attr: Attr = {
  flags: 0,
  type: FileType.File,
  mode: 0o4755,
  uid: 1000,
  gid: 100,
  atime: 1_700_000_000,
  atimensec: 1,
  mtime: -86400, // before 1970: must survive as a signed value
  mtimensec: 999_999_999,
  ctime: 1_700_000_002,
  ctimensec: 3,
  nlink: 2,
  length: 5 * 2 ** 32 + 7, // > 4 GiB: both halves of the u64
  rdev: 0,
  parent: 1n,
  accessACL: 0,
  defaultACL: 0,
  tier: 0,
};

describe('fuse protocol encoding', () => {
  it('encodes fuse_attr with the uapi layout', () => {
    const b = Buffer.alloc(ATTR_SIZE);
    const ino = 0x7fffffff10000001n; // trash inode range: beyond 2^53
    expect(encodeAttr(b, 0, ino, attr)).toBe(88);
    expect(b.readBigUInt64LE(0)).toBe(ino);
    expect(b.readBigUInt64LE(8)).toBe(BigInt(attr.length));
    expect(b.readBigUInt64LE(16)).toBe(BigInt(Math.ceil(attr.length / 512)));
    expect(b.readBigInt64LE(24)).toBe(1_700_000_000n);
    expect(b.readBigInt64LE(32)).toBe(-86400n);
    expect(b.readUInt32LE(52)).toBe(999_999_999);
    expect(b.readUInt32LE(60)).toBe(0o100000 | 0o4755);
    expect(b.readUInt32LE(64)).toBe(2);
    expect(b.readUInt32LE(68)).toBe(1000);
    expect(b.readUInt32LE(72)).toBe(100);
  });

  it('encodes entry and attr replies with second+nanosecond timeouts', () => {
    const b = Buffer.alloc(ENTRY_OUT_SIZE);
    encodeEntryOut(b, 0, 42n, { ...attr, type: FileType.Dir, mode: 0o755 }, 1.5, 0.25);
    expect(b.readBigUInt64LE(0)).toBe(42n);
    expect(b.readBigUInt64LE(16)).toBe(1n);
    expect(b.readUInt32LE(32)).toBe(500_000_000);
    expect(b.readBigUInt64LE(24)).toBe(0n);
    expect(b.readUInt32LE(36)).toBe(250_000_000);
    expect(b.readUInt32LE(40 + 60)).toBe(0o040755);
    const a = Buffer.alloc(104);
    expect(encodeAttrOut(a, 0, 9n, attr, 0)).toBe(104);
    expect(a.readBigUInt64LE(16)).toBe(9n);
  });

  it('pads dirents to 8 bytes and zeroes the padding', () => {
    expect(direntSize(1)).toBe(32);
    expect(direntSize(8)).toBe(32);
    expect(direntSize(9)).toBe(40);
    expect(direntplusSize(1)).toBe(DIRENTPLUS_BASE + 8);
    const b = Buffer.alloc(64, 0xff);
    const end = encodeDirent(b, 0, 7n, 3, FileType.Symlink, Buffer.from('abc'));
    expect(end).toBe(32);
    expect(b.readBigUInt64LE(0)).toBe(7n);
    expect(b.readBigUInt64LE(8)).toBe(3n);
    expect(b.readUInt32LE(16)).toBe(3);
    expect(b.readUInt32LE(20)).toBe(10); // DT_LNK
    expect(b.subarray(24, 27).toString()).toBe('abc');
    expect([...b.subarray(27, 32)]).toEqual([0, 0, 0, 0, 0]);
    expect(b[32]).toBe(0xff);
  });

  it('decodes the request header and NUL-terminated names as copies', () => {
    const b = Buffer.alloc(IN_HEADER_SIZE + 16);
    b.writeUInt32LE(b.length, 0);
    b.writeUInt32LE(1, 4);
    b.writeBigUInt64LE(0xdeadbeefn, 8);
    b.writeBigUInt64LE(1n, 16);
    b.writeUInt32LE(1000, 24);
    b.writeUInt32LE(1001, 28);
    b.writeUInt32LE(4242, 32);
    b.writeUInt16LE(1, 36);
    b.write('name\0x\0', IN_HEADER_SIZE);
    const h = decodeInHeader(b);
    expect(h).toMatchObject({ len: b.length, opcode: 1, unique: 0xdeadbeefn, nodeid: 1n, uid: 1000, gid: 1001, pid: 4242, extLen: 8 });
    const [name, next] = readCString(b, IN_HEADER_SIZE, b.length);
    expect(name.toString()).toBe('name');
    b.write('XXXX', IN_HEADER_SIZE);
    expect(name.toString()).toBe('name'); // not a view of the reused read buffer
    expect(readCString(b, next, b.length)[0].toString()).toBe('x');
    expect(readU64(Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]), 0)).toBe(2 * 2 ** 32 + 1);
  });

  it('encodes headers, statfs, locks, init and notifications', () => {
    const b = Buffer.alloc(256);
    encodeOutHeader(b, 0, 16, -2, 77n);
    expect(b.readInt32LE(4)).toBe(-2);
    expect(b.readBigUInt64LE(8)).toBe(77n);
    expect(encodeStatfsOut(b, 16, { blocks: 10, bfree: 5, bavail: 4, files: 3, ffree: 2, bsize: 4096, namelen: 255, frsize: 4096 })).toBe(96);
    expect(b.readUInt32LE(16 + 44)).toBe(255);
    encodeLkOut(b, 0, 10, 0x7fffffffffffffffn, 1, 99);
    expect(b.readBigUInt64LE(8)).toBe(0x7fffffffffffffffn);
    expect(b.readUInt32LE(20)).toBe(99);
    expect(
      encodeInitOut(b, 0, { major: 7, minor: 38, maxReadahead: 1, flags: 3, maxBackground: 64, congestionThreshold: 48, maxWrite: 1 << 20, timeGran: 1, maxPages: 256, flags2: 0 }),
    ).toBe(64);
    expect(b.readUInt32LE(20)).toBe(1 << 20);
    expect(b.readUInt16LE(28)).toBe(256);
    const ii = encodeNotifyInvalInode(5n);
    expect(ii.readUInt32LE(0)).toBe(ii.length);
    expect(ii.readInt32LE(4)).toBe(2);
    expect(ii.readBigUInt64LE(8)).toBe(0n);
    const ie = encodeNotifyInvalEntry(1n, Buffer.from('f'));
    expect(ie.length).toBe(OUT_HEADER_SIZE + 16 + 2);
    expect(ie.readInt32LE(4)).toBe(3);
    expect(ie.readUInt32LE(24)).toBe(1);
    expect(ie[ie.length - 1]).toBe(0);
  });

  it('maps only positive numeric errno to an errno, everything else to 0 (EIO)', () => {
    expect(errnoOf(new MetaError('ENOENT'))).toBe(2);
    expect(errnoOf(Object.assign(new Error('x'), { errno: 6 }))).toBe(6);
    expect(errnoOf(Object.assign(new Error('node'), { errno: -2, code: 'ENOENT' }))).toBe(0);
    expect(errnoOf(new Error('boom'))).toBe(0);
    expect(errnoOf('str')).toBe(0);
  });
});
