/**
 * Deterministic test content: the expected bytes of every file live in the test (not on disk), as
 * pseudo-random buffers derived from a seed string. AES-128-CTR over zeros is used as the PRNG
 * because it produces 64 MiB in a few tens of milliseconds and is incompressible (so lz4 volumes
 * store blocks that really went through the codec, with no accidental shortcuts).
 */
import { createCipheriv, createHash } from 'node:crypto';

/** `len` pseudo-random bytes determined by `seed`. */
export function bytes(seed: string, len: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(len)), c.final()]);
}

/** Compressible bytes (a repeated short phrase) — exercises lz4 blocks that actually shrink. */
export function text(seed: string, len: number): Buffer {
  const unit = Buffer.from(`${seed} the quick brown fox jumps over the lazy dog; `);
  const out = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i += unit.length) unit.copy(out, i, 0, Math.min(unit.length, len - i));
  return out;
}

/** Small seeded integer generator (xorshift32) for sizes and offsets. */
export function rng(seed: string): () => number {
  let x = createHash('sha256').update(seed).digest().readUInt32BE(0) || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Index of the first differing byte, or -1 when equal (length differences count at the shorter end). */
export function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  // Compare in 1 MiB windows with Buffer.compare (native) before going byte by byte.
  const W = 1 << 20;
  for (let off = 0; off < n; off += W) {
    const end = Math.min(n, off + W);
    if (a.subarray(off, end).equals(b.subarray(off, end))) continue;
    for (let i = off; i < end; i++) if (a[i] !== b[i]) return i;
  }
  return a.length === b.length ? -1 : n;
}

/** A short human description of a content mismatch. */
export function describeDiff(what: string, expected: Buffer, actual: Buffer): string | undefined {
  const at = firstDiff(expected, actual);
  if (at < 0) return undefined;
  const show = (b: Buffer) => b.subarray(at, at + 16).toString('hex') || '<eof>';
  return (
    `${what}: content differs at byte ${at} (expected length ${expected.length}, actual ${actual.length}; ` +
    `expected ${show(expected)}…, actual ${show(actual)}…)`
  );
}
