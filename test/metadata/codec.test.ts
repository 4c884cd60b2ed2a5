import { describe, expect, it } from 'vitest';
import { align4K, decodeAttr, decodeDentry, decodePlocks, decodeSlice, encodeAttr, encodeDentry, encodePlocks, encodeSlice } from '../../metadata/codec.js';
import { lockOwnerField, sliceRefField, Keys } from '../../metadata/keys.js';
import { buildSlices } from '../../metadata/slices.js';
import { FileType, type Attr } from '../../metadata/types.js';

const MiB = 1 << 20;

function rootAttr(): Attr {
  const t = 1700000000;
  return {
    flags: 0, type: FileType.Dir, mode: 0o777, uid: 0, gid: 0,
    atime: t, atimensec: 0, mtime: t, mtimensec: 0, ctime: t, ctimensec: 0,
    nlink: 2, length: 4096, rdev: 0, parent: 1n, accessACL: 0, defaultACL: 0, tier: 0,
  };
}

describe('attr codec (spec 1.3.1)', () => {
  it('encodes the root example byte for byte, with the spare trailing zero', () => {
    // mode = type 2 << 12 | 0o777 = 0x21ff
    const want =
      '00' + '21ff' + '00000000' + '00000000' + '000000006553f100' + '00000000' + '000000006553f100' + '00000000' +
      '000000006553f100' + '00000000' + '00000002' + '0000000000001000' + '00000000' + '0000000000000001' + '00';
    const b = encodeAttr(rootAttr());
    expect(b.length).toBe(72);
    expect(b.toString('hex')).toBe(want);
    expect(decodeAttr(b)).toEqual(rootAttr());
  });
  it('emits 73/80/81 bytes for tier and ACL, and decodes 71-byte values', () => {
    const a = rootAttr();
    a.tier = 3;
    expect(encodeAttr(a).length).toBe(73);
    expect(decodeAttr(encodeAttr(a)).tier).toBe(3);
    a.accessACL = 5;
    expect(encodeAttr(a).length).toBe(81);
    expect(decodeAttr(encodeAttr(a))).toEqual(a);
    a.tier = 0;
    expect(encodeAttr(a).length).toBe(80);
    const short = encodeAttr(rootAttr()).subarray(0, 71);
    expect(decodeAttr(short)).toEqual(rootAttr());
    expect(() => decodeAttr(Buffer.alloc(10))).toThrow(/invalid attr/);
  });
  it('keeps set-id bits and negative times', () => {
    const a = rootAttr();
    a.type = FileType.File;
    a.mode = 0o6755;
    a.mtime = -5;
    a.length = 2 ** 40 + 3;
    expect(decodeAttr(encodeAttr(a))).toEqual(a);
  });
});

describe('dentry, slice, plock codecs', () => {
  it('dentry is 9 bytes type + BE inode', () => {
    expect(encodeDentry(FileType.File, 2n).toString('hex')).toBe('010000000000000002');
    expect(decodeDentry(Buffer.from('020000000000000010', 'hex'))).toEqual({ type: FileType.Dir, ino: 16n });
    expect(() => decodeDentry(Buffer.alloc(8))).toThrow(/invalid entry/);
  });
  it('slice record matches the spec example (pos 0, id 1, 10 MiB)', () => {
    const s = { pos: 0, id: 1, size: 10 * MiB, off: 0, len: 10 * MiB };
    expect(encodeSlice(s).toString('hex')).toBe('00000000' + '0000000000000001' + '00a00000' + '00000000' + '00a00000');
    expect(decodeSlice(encodeSlice(s))).toEqual(s);
  });
  it('plock records round-trip', () => {
    const ls = [{ type: 1, pid: 42, start: 0n, end: 0x7fffffffffffffffn }];
    expect(encodePlocks(ls).length).toBe(24);
    expect(decodePlocks(encodePlocks(ls))).toEqual(ls);
  });
  it('keys and fields', () => {
    const k = new Keys('{10}');
    expect(k.inode(1n)).toBe('{10}i1');
    expect(k.chunk(123n, 0)).toBe('{10}c123_0');
    expect(k.nextInode).toBe('{10}nextinode');
    expect(k.nextTrash).toBe('{10}nextTrash');
    expect(sliceRefField(5, 100)).toBe('k5_100');
    expect(lockOwnerField(3, 255n)).toBe('3_00000000000000FF');
    expect(align4K(0)).toBe(4096);
    expect(align4K(4097)).toBe(8192);
  });
});

describe('chunk resolution (spec 5.4)', () => {
  it('resolves the worked example', () => {
    const segs = buildSlices([
      { pos: 10 * MiB, id: 10, size: 30 * MiB, off: 0, len: 30 * MiB },
      { pos: 20 * MiB, id: 11, size: 16 * MiB, off: 0, len: 16 * MiB },
      { pos: 16 * MiB, id: 12, size: 10 * MiB, off: 0, len: 10 * MiB },
    ]);
    expect(segs.map((s) => [s.pos / MiB, s.id, s.off / MiB, s.len / MiB])).toEqual([
      [0, 0, 0, 10],
      [10, 10, 0, 6],
      [16, 12, 0, 10],
      [26, 11, 6, 10],
      [36, 10, 26, 4],
    ]);
  });
  it('later records win and holes paint zeros', () => {
    const segs = buildSlices([
      { pos: 0, id: 1, size: 100, off: 0, len: 100 },
      { pos: 50, id: 0, size: 0, off: 0, len: 10 },
    ]);
    expect(segs.map((s) => [s.pos, s.id, s.off, s.len])).toEqual([
      [0, 1, 0, 50],
      [50, 0, 0, 10],
      [60, 1, 60, 40],
    ]);
  });
});
