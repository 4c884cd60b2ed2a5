/**
 * The disk-cache file format shared with upstream (juicefs-format.md 6.1): the plaintext block, then
 * one big-endian CRC32-C (Castagnoli) per 32 KiB piece of it, the last piece possibly short.
 * CRC32-C comes from @node-rs/crc32 (SSE4.2 / ARMv8 CRC instructions through a per-platform N-API
 * package): about 1.2 ms per 4 MiB block on the development machine, so verification is cheap
 * next to the disk read itself.
 */
import { crc32c } from '@node-rs/crc32';

export const CHECKSUM_PIECE = 32 * 1024;

/** Bytes of checksum trailer for a block of `dataLen` bytes. */
export function trailerLength(dataLen: number): number {
  return 4 * Math.ceil(dataLen / CHECKSUM_PIECE);
}

/** Size of the cache file holding a block of `dataLen` bytes. */
export function cacheFileLength(dataLen: number): number {
  return dataLen + trailerLength(dataLen);
}

/**
 * Inverse of cacheFileLength, or -1 when no block length maps to `fileLen` (a truncated or foreign
 * file). Used only for keys whose name does not carry the block length.
 */
export function dataLengthOfFile(fileLen: number): number {
  // With p pieces, fileLen = n + 4p and 32768(p-1) < n ≤ 32768p, so p = ceil(fileLen / 32772).
  const n = fileLen - 4 * Math.ceil(fileLen / (CHECKSUM_PIECE + 4));
  return n >= 0 && cacheFileLength(n) === fileLen ? n : -1;
}

/** The checksum trailer of `block`. */
export function checksumTrailer(block: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(trailerLength(block.length));
  let at = 0;
  for (let off = 0; off < block.length; off += CHECKSUM_PIECE) {
    out.writeUInt32BE(crc32c(block.subarray(off, Math.min(off + CHECKSUM_PIECE, block.length))), at);
    at += 4;
  }
  return out;
}

/** True when `file` (exactly cacheFileLength(dataLen) bytes) holds `dataLen` bytes with valid checksums. */
export function verifyCacheFile(file: Buffer, dataLen: number): boolean {
  if (file.length !== cacheFileLength(dataLen)) return false;
  let at = dataLen;
  for (let off = 0; off < dataLen; off += CHECKSUM_PIECE) {
    const piece = file.subarray(off, Math.min(off + CHECKSUM_PIECE, dataLen));
    if (crc32c(piece) !== file.readUInt32BE(at)) return false;
    at += 4;
  }
  return true;
}

/**
 * Block length carried by a relative block key (`…/{id}_{i}_{bsize}`, section 5.2), or -1 when the
 * key does not end in `_<digits>`.
 */
export function blockLengthOfKey(key: string): number {
  const us = key.lastIndexOf('_');
  if (us < 0 || us === key.length - 1) return -1;
  let n = 0;
  for (let i = us + 1; i < key.length; i++) {
    const c = key.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return Number.isSafeInteger(n) ? n : -1;
}

/**
 * True when `data` holds pieces [firstPiece, firstPiece + n) of a block (each CHECKSUM_PIECE bytes,
 * the last possibly short) whose checksums are the n big-endian words of `sums`.
 */
export function verifyPieces(data: Buffer, sums: Buffer): boolean {
  const n = Math.ceil(data.length / CHECKSUM_PIECE);
  if (sums.length !== 4 * n) return false;
  for (let i = 0; i < n; i++) {
    const piece = data.subarray(i * CHECKSUM_PIECE, Math.min((i + 1) * CHECKSUM_PIECE, data.length));
    if (crc32c(piece) !== sums.readUInt32BE(4 * i)) return false;
  }
  return true;
}
