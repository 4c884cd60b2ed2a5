/** Random identifiers and credentials, and the one-way hashes we keep instead of them. */
import { createHash, randomBytes } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `n` uniformly random base62 characters (rejection sampling: no modulo bias). */
export function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    const buf = randomBytes(n * 2);
    for (let i = 0; i < buf.length && out.length < n; i++) {
      const b = buf[i]! & 0x3f; // 0..63; 62 and 63 are rejected
      if (b < 62) out += BASE62[b];
    }
  }
  return out;
}

export const API_KEY_RE = /^art_[0-9A-Za-z]{32}$/;

/** `art_` + 32 base62 characters (~190 bits). Shown once; only its hash is stored. */
export function newApiKey(): string {
  return 'art_' + randomBase62(32);
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** What `api-keys` listings show of a key: enough to recognise it, useless to use it. */
export function keyHint(key: string): string {
  return `${key.slice(0, 8)}…${key.slice(-4)}`;
}

/** Lower-case ids: they end up in Redis user names, URLs and file names. */
export function newId(prefix: string, n = 20): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      if (b < 252 && out.length < n) out += alphabet[b % 36]; // 252 = 7 × 36: unbiased
    }
  }
  return prefix + out;
}

/** Redis ACL passwords: 40 base62 characters (~238 bits). Redis and PostgreSQL keep SHA-256 only. */
export function newRedisPassword(): { password: string; hash: string } {
  const password = randomBase62(40);
  return { password, hash: sha256Hex(password) };
}
