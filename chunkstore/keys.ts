/**
 * Block object keys and block geometry of a slice (juicefs-format.md 5.1, 5.2).
 *
 * Keys here are *relative*: the volume's `Name/` prefix is applied by the prefix object store, and
 * the local block cache uses the same relative key. Ids are JS numbers: slice ids come from the
 * `nextchunk` counter and stay far below 2^53.
 */

/** Blocks in a slice of `size` bytes: ceil(size / blockSize). */
export function blockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** Plaintext length of block `index` of a slice of `size` bytes (the last one may be short). */
export function blockSize(size: number, index: number, blockSize: number): number {
  const start = index * blockSize;
  if (index < 0 || start >= size) throw new RangeError(`block ${index} outside a slice of ${size} bytes`);
  return Math.min(blockSize, size - start);
}

const HEX = '0123456789ABCDEF';

/**
 * `chunks/{id/1e6}/{id/1e3}/{id}_{index}_{bsize}`, or with HashPrefix
 * `chunks/{id mod 256 as 2 upper-case hex}/{id/1e6}/{id}_{index}_{bsize}`.
 * `bsize` is the plaintext (uncompressed) length of the block.
 */
export function blockKey(id: number, index: number, bsize: number, hashPrefix = false): string {
  const m = Math.floor(id / 1_000_000);
  if (hashPrefix) {
    const h = id % 256;
    return `chunks/${HEX[h >> 4]}${HEX[h & 15]}/${m}/${id}_${index}_${bsize}`;
  }
  return `chunks/${m}/${Math.floor(id / 1000)}/${id}_${index}_${bsize}`;
}

export interface ParsedBlockKey {
  id: number;
  index: number;
  bsize: number;
}

const NAME_RE = /\/(\d+)_(\d+)_(\d+)$/;

/**
 * Inverse of blockKey for a relative key (gc/fsck style listings); null if it is not a block key
 * of the given naming scheme (the directory part must be the one blockKey would produce).
 */
export function parseBlockKey(key: string, hashPrefix = false): ParsedBlockKey | null {
  const m = NAME_RE.exec(key);
  if (!m) return null;
  const parsed = { id: Number(m[1]), index: Number(m[2]), bsize: Number(m[3]) };
  return blockKey(parsed.id, parsed.index, parsed.bsize, hashPrefix) === key ? parsed : null;
}
