/** Users and API keys. Keys are shown once; PostgreSQL keeps SHA-256(key). */
import type { Db, Queryable } from './db.js';
import { isUniqueViolation } from './db.js';
import { apiError } from './errors.js';
import { API_KEY_RE, keyHint, newApiKey, newId, sha256Hex } from './secrets.js';

import { HANDLE_RE } from './names.js';

export { HANDLE_RE };

export interface User {
  id: number;
  handle: string;
  created_at: Date;
}

export interface ApiKeyRow {
  id: string;
  user_id: number;
  name: string;
  key_hint: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

/** The authenticated caller of a request. */
export interface Principal {
  user: User;
  keyId: string;
}

export async function createUser(db: Queryable, handle: string): Promise<User> {
  if (!HANDLE_RE.test(handle)) throw apiError('invalid_request', `handle must match ${HANDLE_RE.source}`);
  try {
    const rows = await db.query<User>('INSERT INTO users (handle) VALUES ($1) RETURNING id, handle, created_at', [handle]);
    return rows[0]!;
  } catch (err) {
    if (isUniqueViolation(err)) throw apiError('invalid_request', `user ${handle} already exists`);
    throw err;
  }
}

export async function findUserByHandle(db: Queryable, handle: string): Promise<User | null> {
  const rows = await db.query<User>('SELECT id, handle, created_at FROM users WHERE handle = $1', [handle]);
  return rows[0] ?? null;
}

/** Mint a key for `userId`; returns the row and the key itself (the only time it exists in clear). */
export async function createApiKey(db: Queryable, userId: number, name = ''): Promise<{ row: ApiKeyRow; key: string }> {
  const key = newApiKey();
  const rows = await db.query<ApiKeyRow>(
    `INSERT INTO api_keys (id, user_id, name, key_hash, key_hint) VALUES ($1, $2, $3, $4, $5)
     RETURNING id, user_id, name, key_hint, created_at, last_used_at, revoked_at`,
    [newId('key_'), userId, name, sha256Hex(key), keyHint(key)],
  );
  return { row: rows[0]!, key };
}

export async function listApiKeys(db: Queryable, userId: number): Promise<ApiKeyRow[]> {
  return db.query<ApiKeyRow>(
    `SELECT id, user_id, name, key_hint, created_at, last_used_at, revoked_at FROM api_keys
     WHERE user_id = $1 ORDER BY created_at`,
    [userId],
  );
}

/** Marks the key revoked; null when it is not the user's. Idempotent. */
export async function revokeApiKey(db: Queryable, userId: number, id: string): Promise<ApiKeyRow | null> {
  const rows = await db.query<ApiKeyRow>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2
     RETURNING id, user_id, name, key_hint, created_at, last_used_at, revoked_at`,
    [id, userId],
  );
  return rows[0] ?? null;
}

/**
 * Resolve `Authorization: Bearer <key>`. Every request reads PostgreSQL, so a revoked key is
 * refused on its very next use (no cache to wait out).
 */
export async function authenticate(db: Db, header: string | undefined): Promise<Principal> {
  if (!header) throw apiError('unauthorized', 'missing Authorization: Bearer <api key>');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw apiError('unauthorized', 'Authorization header must be "Bearer <api key>"');
  const key = m[1]!;
  if (!API_KEY_RE.test(key)) throw apiError('unauthorized', 'invalid api key');
  const rows = await db.query<{
    key_id: string;
    revoked_at: Date | null;
    last_used_at: Date | null;
    id: number;
    handle: string;
    created_at: Date;
  }>(
    `SELECT k.id AS key_id, k.revoked_at, k.last_used_at, u.id, u.handle, u.created_at
     FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1`,
    [sha256Hex(key)],
  );
  const r = rows[0];
  if (!r) throw apiError('unauthorized', 'invalid api key');
  if (r.revoked_at) throw apiError('unauthorized', 'api key has been revoked');
  // Touch last_used_at at most once a minute: no write per request on the hot path.
  if (!r.last_used_at || Date.now() - r.last_used_at.getTime() > 60_000) {
    db.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [r.key_id]).catch(() => undefined);
  }
  return { user: { id: r.id, handle: r.handle, created_at: r.created_at }, keyId: r.key_id };
}
