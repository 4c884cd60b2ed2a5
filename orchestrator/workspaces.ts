/**
 * Workspace lifecycle: reserve (phase 1) → the client formats (phase 2) → format-completed
 * (phase 3) → active → deleting → deleted. Every step is idempotent so a client can resume.
 */
import { decodeSetting } from '../metadata/setting.js';
import { formatUser, workspacePrefix } from './acl.js';
import type { Ctx } from './context.js';
import { isUniqueViolation, type Queryable } from './db.js';
import { apiError } from './errors.js';
import type { Principal } from './identity.js';
import { newRedisPassword } from './secrets.js';
import { revokeSessions } from './sessions.js';

import { WORKSPACE_NAME_RE } from './names.js';

export { WORKSPACE_NAME_RE };
export type WorkspaceStatus = 'pending_format' | 'active' | 'deleting' | 'deleted';
export type Backend = 'byo' | 'file';
export const CACHE_PROFILES = ['interactive', 'benchmark', 'custom'] as const;
export type CacheProfile = (typeof CACHE_PROFILES)[number];

/** Where the blocks live. Never any credential: those stay on the machines that mount. */
export interface StorageSpec {
  endpoint: string;
  bucket: string;
  prefix: string;
  region: string;
}

export interface WorkspaceRow {
  id: number;
  user_id: number;
  handle: string;
  name: string;
  status: WorkspaceStatus;
  key_prefix: string;
  volume_name: string;
  volume_uuid: string | null;
  backend: Backend;
  storage: StorageSpec;
  cache_profile: CacheProfile;
  format_user: string | null;
  format_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
}

/** The API representation. */
export interface WorkspaceView {
  id: number;
  handle: string;
  name: string;
  identifier: string;
  status: WorkspaceStatus;
  backend: Backend;
  storage: StorageSpec;
  volume_name: string;
  volume_uuid: string | null;
  key_prefix: string;
  redis_url: string;
  cache_profile: CacheProfile;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

export interface FormatCredentials {
  redis: { url: string; username: string; password: string; key_prefix: string };
  expires_at: string;
}

const SELECT = `SELECT w.id, w.user_id, u.handle, w.name, w.status, w.key_prefix, w.volume_name, w.volume_uuid,
  w.backend, w.storage, w.cache_profile, w.format_user, w.format_expires_at, w.created_at, w.updated_at, w.deleted_at
  FROM workspaces w JOIN users u ON u.id = w.user_id`;

export function viewWorkspace(ctx: Ctx, w: WorkspaceRow): WorkspaceView {
  return {
    id: w.id,
    handle: w.handle,
    name: w.name,
    identifier: `artifacts://${w.handle}/${w.name}`,
    status: w.status,
    backend: w.backend,
    storage: w.storage,
    volume_name: w.volume_name,
    volume_uuid: w.volume_uuid,
    key_prefix: w.key_prefix,
    redis_url: ctx.config.publicRedisUrl,
    cache_profile: w.cache_profile,
    created_at: w.created_at.toISOString(),
    updated_at: w.updated_at.toISOString(),
    deleted_at: w.deleted_at ? w.deleted_at.toISOString() : null,
  };
}

/**
 * JuiceFS volume name (`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`, also the object key prefix `Name/`):
 * `<handle>-<name>-<id>`, shortened to fit. The id keeps a re-created name from landing on the
 * old incarnation's objects in the same bucket.
 */
export function volumeName(handle: string, name: string, id: number): string {
  const suffix = `-${id}`;
  const base = `${handle}-${name}`.slice(0, 63 - suffix.length).replace(/-+$/, '');
  return base + suffix;
}

export interface CreateRequest {
  name: string;
  backend?: Backend;
  bucket?: string;
  endpoint?: string;
  region?: string;
  prefix?: string;
  cache_profile?: CacheProfile;
}

function storageFor(ctx: Ctx, req: CreateRequest): { backend: Backend; storage: StorageSpec } {
  const backend: Backend = req.backend ?? (req.bucket || req.endpoint ? 'byo' : 'file');
  const prefix = (req.prefix ?? '').replace(/^\/+/, '');
  if (prefix.split('/').some((seg) => seg === '..')) throw apiError('invalid_request', 'prefix must not contain ".."');
  if (backend === 'byo') {
    if (!req.bucket) throw apiError('invalid_request', 'backend byo needs a bucket (--bucket or ARTIFACTS_S3_BUCKET)');
    if (!req.endpoint) throw apiError('invalid_request', 'backend byo needs an endpoint (--endpoint or ARTIFACTS_S3_ENDPOINT)');
    if (!/^https?:\/\/[^\s/@]+(\/[^\s]*)?$/.test(req.endpoint)) {
      throw apiError('invalid_request', 'endpoint must be an http(s) URL without credentials');
    }
    return { backend, storage: { endpoint: req.endpoint, bucket: req.bucket, prefix, region: req.region ?? '' } };
  }
  const dir = req.bucket ?? ctx.config.fileRoot;
  if (!dir) throw apiError('invalid_request', 'backend file needs a directory (bucket); this orchestrator has no default');
  if (!dir.startsWith('/') || dir.split('/').includes('..')) {
    throw apiError('invalid_request', 'a file backend directory must be an absolute path without ".."');
  }
  return { backend, storage: { endpoint: '', bucket: dir.endsWith('/') ? dir : dir + '/', prefix, region: '' } };
}

async function getRow(q: Queryable, id: number): Promise<WorkspaceRow> {
  const rows = await q.query<WorkspaceRow>(`${SELECT} WHERE w.id = $1`, [id]);
  if (!rows[0]) throw apiError('workspace_not_found', `workspace ${id} not found`);
  return rows[0];
}

/** The live workspace `name` of `userId`, or null. */
async function findLive(q: Queryable, userId: number, name: string): Promise<WorkspaceRow | null> {
  const rows = await q.query<WorkspaceRow>(`${SELECT} WHERE w.user_id = $1 AND w.name = $2 AND w.status <> 'deleted'`, [userId, name]);
  return rows[0] ?? null;
}

/**
 * Resolve `handle/name` for the caller: another user's handle is 403 (without saying whether
 * the workspace exists); a missing own workspace is 404. A name whose last incarnation was
 * deleted resolves to that deleted record unless `liveOnly`.
 */
export async function resolveWorkspace(ctx: Ctx, p: Principal, handle: string, name: string, liveOnly = false): Promise<WorkspaceRow> {
  if (handle !== p.user.handle) throw apiError('forbidden', `workspace ${handle}/${name} is not yours`);
  const rows = await ctx.db.query<WorkspaceRow>(
    `${SELECT} WHERE w.user_id = $1 AND w.name = $2 ${liveOnly ? `AND w.status <> 'deleted'` : ''}
     ORDER BY (w.status <> 'deleted') DESC, w.id DESC LIMIT 1`,
    [p.user.id, name],
  );
  if (!rows[0]) throw apiError('workspace_not_found', `workspace ${handle}/${name} not found`);
  return rows[0];
}

/** `handle/name` or `artifacts://handle/name` → parts (bare names take the caller's handle). */
export function parseAddress(address: string, defaultHandle: string): { handle: string; name: string } {
  const s = address.replace(/^artifacts:\/\//, '');
  const parts = s.split('/');
  if (parts.length === 1) return { handle: defaultHandle, name: parts[0]! };
  if (parts.length === 2) return { handle: parts[0]!, name: parts[1]! };
  throw apiError('invalid_request', `workspace address ${JSON.stringify(address)} is not name, handle/name or artifacts://handle/name`);
}

async function mintFormatUser(ctx: Ctx, w: WorkspaceRow): Promise<FormatCredentials> {
  const user = formatUser(w.id);
  const { password, hash } = newRedisPassword();
  // PostgreSQL first, Redis second: reconciliation trusts PostgreSQL (see sessions.ts).
  const rows = await ctx.db.query<{ format_expires_at: Date }>(
    `UPDATE workspaces SET format_user = $2, format_password_hash = $3,
       format_expires_at = now() + make_interval(secs => $4), updated_at = now()
     WHERE id = $1 AND status = 'pending_format' RETURNING format_expires_at`,
    [w.id, user, hash, ctx.config.formatTtlSeconds],
  );
  if (!rows[0]) throw apiError('workspace_not_completable', `workspace ${w.handle}/${w.name} is no longer pending_format`);
  try {
    await ctx.meta.setUser(user, hash, w.key_prefix, 'rw');
  } catch (err) {
    ctx.metrics.aclFailures.inc({ op: 'format_user' });
    ctx.log.error({ err: String(err), workspace: w.id }, 'creating the format ACL user failed');
    throw apiError('metadata_acl_provisioning_failed', 'could not create the format ACL user on the metadata store; retry');
  }
  return {
    redis: { url: ctx.config.publicRedisUrl, username: user, password, key_prefix: w.key_prefix },
    expires_at: rows[0].format_expires_at.toISOString(),
  };
}

/** Phase 1. 201 with format credentials, or 409 workspace_exists carrying `existing`. */
export async function reserveWorkspace(ctx: Ctx, p: Principal, req: CreateRequest): Promise<{ workspace: WorkspaceView; format: FormatCredentials }> {
  if (!WORKSPACE_NAME_RE.test(req.name)) throw apiError('invalid_request', `workspace name must match ${WORKSPACE_NAME_RE.source}`);
  const { backend, storage } = storageFor(ctx, req);
  const existing = await findLive(ctx.db, p.user.id, req.name);
  if (existing) throw conflict(ctx, existing);
  let row: WorkspaceRow;
  try {
    row = await ctx.db.tx(async (q) => {
      const [{ id }] = (await q.query<{ id: number }>(`SELECT nextval(pg_get_serial_sequence('workspaces', 'id'))::int AS id`)) as [
        { id: number },
      ];
      await q.query(
        `INSERT INTO workspaces (id, user_id, name, status, key_prefix, volume_name, backend, storage, cache_profile)
         VALUES ($1, $2, $3, 'pending_format', $4, $5, $6, $7, $8)`,
        [id, p.user.id, req.name, workspacePrefix(p.user.id, id), volumeName(p.user.handle, req.name, id), backend, JSON.stringify(storage), req.cache_profile ?? 'interactive'],
      );
      return getRow(q, id);
    });
  } catch (err) {
    if (isUniqueViolation(err)) {
      // Lost a race with a concurrent create of the same name: report the winner.
      const winner = await findLive(ctx.db, p.user.id, req.name);
      if (winner) throw conflict(ctx, winner);
    }
    throw err;
  }
  ctx.metrics.workspaces.inc({ status: 'pending_format' });
  ctx.log.info({ workspace: row.id, handle: row.handle, name: row.name }, 'workspace reserved');
  const format = await mintFormatUser(ctx, row);
  return { workspace: viewWorkspace(ctx, row), format };
}

function conflict(ctx: Ctx, w: WorkspaceRow) {
  return apiError('workspace_exists', `workspace ${w.handle}/${w.name} already exists (status=${w.status})`, {
    existing: viewWorkspace(ctx, w),
  });
}

/** Resume support: fresh format credentials for a pending_format workspace. */
export async function formatCredentials(ctx: Ctx, p: Principal, handle: string, name: string) {
  const w = await resolveWorkspace(ctx, p, handle, name, true);
  if (w.status !== 'pending_format') {
    throw apiError('workspace_not_completable', `workspace ${handle}/${name} is ${w.status}, not pending_format`);
  }
  const format = await mintFormatUser(ctx, w);
  return { workspace: viewWorkspace(ctx, w), format };
}

/** Phase 3: `setting` must exist; then active, and the format user is gone. */
export async function completeFormat(ctx: Ctx, p: Principal, handle: string, name: string): Promise<WorkspaceView> {
  const w = await resolveWorkspace(ctx, p, handle, name, true);
  if (w.status === 'active') return viewWorkspace(ctx, w);
  if (w.status !== 'pending_format') {
    throw apiError('workspace_not_completable', `workspace ${handle}/${name} is ${w.status}, not pending_format`);
  }
  let raw: string | null;
  try {
    raw = await ctx.meta.getSetting(w.key_prefix);
  } catch (err) {
    ctx.log.error({ err: String(err), workspace: w.id }, 'reading setting failed');
    throw apiError('unavailable', 'metadata store unreachable; retry');
  }
  if (raw === null) {
    throw apiError('setting_key_missing', `no setting key under ${w.key_prefix}: phase 2 (format) has not run; re-run workspace create`);
  }
  let uuid: string;
  try {
    const fmt = decodeSetting(raw);
    if (fmt.Name !== w.volume_name) {
      throw apiError('invalid_request', `setting names volume ${fmt.Name}, expected ${w.volume_name}`);
    }
    uuid = fmt.UUID;
  } catch (err) {
    if (err instanceof Error && err.name === 'ApiError') throw err;
    throw apiError('setting_key_missing', `setting under ${w.key_prefix} is not a valid volume format: ${(err as Error).message}`);
  }
  const rows = await ctx.db.query<{ id: number }>(
    `UPDATE workspaces SET status = 'active', volume_uuid = $2, updated_at = now()
     WHERE id = $1 AND status = 'pending_format' RETURNING id`,
    [w.id, uuid],
  );
  if (rows[0]) ctx.metrics.workspaces.inc({ status: 'active' });
  await dropFormatUser(ctx, w.id);
  return viewWorkspace(ctx, await getRow(ctx.db, w.id));
}

/** Delete the format user; PostgreSQL forgets it only once Redis did (reconciliation retries). */
async function dropFormatUser(ctx: Ctx, workspaceId: number): Promise<void> {
  try {
    await ctx.meta.deleteUsers([formatUser(workspaceId)]);
    await ctx.db.query(
      `UPDATE workspaces SET format_user = NULL, format_password_hash = NULL, format_expires_at = NULL WHERE id = $1`,
      [workspaceId],
    );
  } catch (err) {
    ctx.metrics.aclFailures.inc({ op: 'delete_format_user' });
    ctx.log.warn({ err: String(err), workspace: workspaceId }, 'deleting the format ACL user failed; reconciliation will retry');
  }
}

export async function listWorkspaces(ctx: Ctx, p: Principal, includeDeleted: boolean): Promise<WorkspaceView[]> {
  const rows = await ctx.db.query<WorkspaceRow>(
    `${SELECT} WHERE w.user_id = $1 ${includeDeleted ? '' : `AND w.status <> 'deleted'`} ORDER BY w.name, w.id`,
    [p.user.id],
  );
  return rows.map((r) => viewWorkspace(ctx, r));
}

/** Lease on a deleting workspace, so one orchestrator at a time runs its cleanup. */
const DELETE_LEASE_SECONDS = 120;

/** 202: status `deleting` now; sessions, format user and keys go in the background. */
export async function deleteWorkspace(ctx: Ctx, p: Principal, handle: string, name: string): Promise<WorkspaceView> {
  const w = await resolveWorkspace(ctx, p, handle, name, true);
  const rows = await ctx.db.query<{ id: number }>(
    `UPDATE workspaces SET status = 'deleting', updated_at = now(),
       delete_lease_until = now() + make_interval(secs => $2)
     WHERE id = $1 AND status IN ('pending_format', 'active') RETURNING id`,
    [w.id, DELETE_LEASE_SECONDS],
  );
  if (rows[0]) {
    ctx.metrics.workspaces.inc({ status: 'deleting' });
    ctx.log.info({ workspace: w.id }, 'workspace deleting');
    ctx.background(`delete workspace ${w.id}`, () => finishDeletion(ctx, w.id));
  }
  return viewWorkspace(ctx, await getRow(ctx.db, w.id));
}

/**
 * Revoke every session (ACL users deleted, connections killed), drop the format user, delete all
 * keys under the prefix, mark deleted. Safe to run twice; the janitor re-runs it after a crash.
 */
export async function finishDeletion(ctx: Ctx, workspaceId: number): Promise<void> {
  const w = await getRow(ctx.db, workspaceId);
  if (w.status !== 'deleting') return;
  await ctx.db.query(`UPDATE access_grants SET status = 'revoked', revoked_at = now() WHERE workspace_id = $1 AND status = 'active'`, [
    workspaceId,
  ]);
  const revoked = await revokeSessions(ctx, { workspaceId }, 'workspace_deleted', { strict: true });
  await ctx.meta.deleteUsers([formatUser(workspaceId)]);
  // Twice: a write already in flight when the session was killed may land after the first pass.
  let deleted = await ctx.meta.deletePrefix(w.key_prefix);
  deleted += await ctx.meta.deletePrefix(w.key_prefix);
  await ctx.db.query(
    `UPDATE workspaces SET status = 'deleted', deleted_at = now(), updated_at = now(), format_user = NULL,
       format_password_hash = NULL, format_expires_at = NULL, delete_lease_until = NULL
     WHERE id = $1 AND status = 'deleting'`,
    [workspaceId],
  );
  ctx.metrics.workspaces.inc({ status: 'deleted' });
  ctx.log.info({ workspace: workspaceId, sessions_revoked: revoked, keys_deleted: deleted }, 'workspace deleted');
}

/** Deletions whose orchestrator died mid-way (lease expired): claim and finish them. */
export async function resumeDeletions(ctx: Ctx): Promise<number> {
  const rows = await ctx.db.query<{ id: number }>(
    `UPDATE workspaces SET delete_lease_until = now() + make_interval(secs => $1)
     WHERE id IN (SELECT id FROM workspaces WHERE status = 'deleting'
                  AND (delete_lease_until IS NULL OR delete_lease_until < now())
                  ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED)
     RETURNING id`,
    [DELETE_LEASE_SECONDS],
  );
  for (const r of rows) {
    try {
      await finishDeletion(ctx, r.id);
    } catch (err) {
      ctx.log.warn({ err: String(err), workspace: r.id }, 'workspace deletion failed; will retry');
    }
  }
  return rows.length;
}

/**
 * Format users past their 15 minutes: forgotten in PostgreSQL (one conditional UPDATE, so a
 * rotation that just extended the lifetime is left alone), then deleted from Redis.
 */
export async function expireFormatUsers(ctx: Ctx): Promise<number> {
  const rows = await ctx.db.query<{ format_user: string }>(
    `WITH old AS (SELECT id, format_user FROM workspaces WHERE format_user IS NOT NULL AND format_expires_at <= now()
                  LIMIT 100 FOR UPDATE SKIP LOCKED)
     UPDATE workspaces w SET format_user = NULL, format_password_hash = NULL, format_expires_at = NULL
     FROM old WHERE w.id = old.id RETURNING old.format_user`,
  );
  if (rows.length > 0) await ctx.meta.deleteUsers(rows.map((r) => r.format_user));
  return rows.length;
}

export { getRow as getWorkspaceRow };
