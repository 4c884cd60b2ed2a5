import { describe, expect, it } from 'vitest';
import { blockCount, blockKey, blockSize, parseBlockKey } from '../../chunkstore/keys.js';

const MiB = 1 << 20;
const BS = 4 * MiB;

describe('block keys (juicefs-format.md 5.2 examples)', () => {
  it('slice id 1 of 10 MiB with 4 MiB blocks', () => {
    const size = 10 * MiB;
    expect(blockCount(size, BS)).toBe(3);
    const keys = [0, 1, 2].map((i) => 'myjfs/' + blockKey(1, i, blockSize(size, i, BS)));
    expect(keys).toEqual(['myjfs/chunks/0/0/1_0_4194304', 'myjfs/chunks/0/0/1_1_4194304', 'myjfs/chunks/0/0/1_2_2097152']);
  });

  it('slice id 1234567 block 3, default and hash-prefix naming', () => {
    expect('myjfs/' + blockKey(1234567, 3, BS)).toBe('myjfs/chunks/1/1234/1234567_3_4194304');
    expect('myjfs/' + blockKey(1234567, 3, BS, true)).toBe('myjfs/chunks/87/1/1234567_3_4194304');
  });

  it('hash prefix is two upper-case hex digits of id mod 256', () => {
    expect(blockKey(10, 0, 5, true)).toBe('chunks/0A/0/10_0_5');
    expect(blockKey(255, 0, 5, true)).toBe('chunks/FF/0/255_0_5');
    expect(blockKey(256, 0, 5, true)).toBe('chunks/00/0/256_0_5');
    expect(blockKey(2_000_000_171, 1, 7, true)).toBe('chunks/AB/2000/2000000171_1_7');
  });

  it('large ids use integer division without padding', () => {
    expect(blockKey(999, 0, 1)).toBe('chunks/0/0/999_0_1');
    expect(blockKey(1000, 0, 1)).toBe('chunks/0/1/1000_0_1');
    expect(blockKey(9_876_543_210, 15, 4096)).toBe('chunks/9876/9876543/9876543210_15_4096');
  });

  it('block geometry: count, short last block, errors outside the slice', () => {
    expect(blockCount(1, BS)).toBe(1);
    expect(blockCount(BS, BS)).toBe(1);
    expect(blockCount(BS + 1, BS)).toBe(2);
    expect(blockCount(64 * MiB, BS)).toBe(16);
    expect(blockSize(BS + 1, 0, BS)).toBe(BS);
    expect(blockSize(BS + 1, 1, BS)).toBe(1);
    expect(() => blockSize(BS, 1, BS)).toThrow(RangeError);
    expect(() => blockSize(BS, -1, BS)).toThrow(RangeError);
  });

  it('parseBlockKey inverts blockKey and rejects foreign keys', () => {
    expect(parseBlockKey('chunks/1/1234/1234567_3_4194304')).toEqual({ id: 1234567, index: 3, bsize: 4194304 });
    expect(parseBlockKey('chunks/87/1/1234567_3_4194304', true)).toEqual({ id: 1234567, index: 3, bsize: 4194304 });
    expect(parseBlockKey('chunks/87/1/1234567_3_4194304')).toBeNull(); // wrong directory for default naming
    expect(parseBlockKey('chunks/0/0/1_0')).toBeNull();
    expect(parseBlockKey('juicefs_uuid')).toBeNull();
  });
});
