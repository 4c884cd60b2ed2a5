import { describe, expect, it } from 'vitest';
import {
  blockLengthOfKey,
  cacheFileLength,
  checksumTrailer,
  dataLengthOfFile,
  trailerLength,
  verifyCacheFile,
} from '../../chunkstore/cache/checksum.js';
import { block, referenceCrc32c } from './util.js';

describe('cache file checksum format (juicefs-format.md 6.1)', () => {
  it('uses CRC32-C: the standard check value of "123456789" is 0xE3069283', () => {
    const t = checksumTrailer(Buffer.from('123456789'));
    expect(t.length).toBe(4);
    expect(t.readUInt32BE(0)).toBe(0xe3069283);
    expect(referenceCrc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('writes one big-endian CRC32-C per 32 KiB piece, the last one short', () => {
    const data = block(3 * 32768 + 1000);
    const t = checksumTrailer(data);
    expect(t.length).toBe(16);
    for (let i = 0; i < 4; i++) {
      const piece = data.subarray(i * 32768, Math.min((i + 1) * 32768, data.length));
      expect(t.readUInt32BE(i * 4)).toBe(referenceCrc32c(piece));
    }
  });

  it('sizes: 512 bytes of trailer for 4 MiB, none for an empty block', () => {
    expect(trailerLength(4 << 20)).toBe(512);
    expect(cacheFileLength(4 << 20)).toBe((4 << 20) + 512);
    expect(trailerLength(0)).toBe(0);
    expect(trailerLength(1)).toBe(4);
    expect(trailerLength(32768)).toBe(4);
    expect(trailerLength(32769)).toBe(8);
  });

  it('inverts the file length, and rejects lengths no block maps to', () => {
    for (const n of [0, 1, 100, 32767, 32768, 32769, 65536, 4 << 20, (4 << 20) - 3, 1234567]) {
      expect(dataLengthOfFile(cacheFileLength(n))).toBe(n);
    }
    // 32768 data bytes make 32772; 32769 make 32777: nothing lies between.
    for (const len of [32773, 32776, 1, 4]) expect(dataLengthOfFile(len)).toBe(-1);
    expect(dataLengthOfFile(3)).toBe(-1);
  });

  it('verifies a good file and rejects any flipped bit or wrong length', () => {
    const data = block(100_000);
    const file = Buffer.concat([data, checksumTrailer(data)]);
    expect(verifyCacheFile(file, data.length)).toBe(true);
    for (const at of [0, 50_000, 99_999, 100_000, file.length - 1]) {
      const bad = Buffer.from(file);
      bad[at]! ^= 0x10;
      expect(verifyCacheFile(bad, data.length)).toBe(false);
    }
    expect(verifyCacheFile(file.subarray(0, file.length - 1), data.length)).toBe(false);
    expect(verifyCacheFile(file, data.length - 1)).toBe(false);
  });

  it('reads the block length from the key', () => {
    expect(blockLengthOfKey('chunks/0/0/1_0_4194304')).toBe(4194304);
    expect(blockLengthOfKey('chunks/87/1/1234567_3_2097152')).toBe(2097152);
    expect(blockLengthOfKey('chunks/0/0/1_0_')).toBe(-1);
    expect(blockLengthOfKey('chunks/0/0/1_0_4x')).toBe(-1);
    expect(blockLengthOfKey('nounderscore')).toBe(-1);
  });
});
