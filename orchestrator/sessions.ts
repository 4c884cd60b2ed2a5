/**
 * Mount sessions: one Redis ACL user `ms-<id>` each, confined to the workspace prefix, `ro` or
 * `rw`. PostgreSQL is the source of truth; Redis follows it:
 * - create: row committed first, ACL user second, then the row is re-read (a revoke that raced
 *   the creation wins, and the fresh ACL user is removed again);
 * - revoke/expire: row updated first, then the ACL user is switched off, its connections killed
 *   and the user deleted;
 * - reconcile (startup, Redis reconnect, periodically): ACL users missing for live rows are
 *   re-created (same password hash: clients reconnect with their credentials), ACL users
 *   without a live row are deleted.
 */
import { FORMAT_USER_PREFIX, SESSION_USER_PREFIX, sessionUser, type AclMode } from './acl.js';
import type { Ctx } from './context.js';
import type { Queryable } from './db.js';
import { apiError } from './errors.js';
import type { Principal } from './identity.js';
import { newId, newRedisPassword } from './secrets.js';
import type { TicketPayload } from './ticket.js';
import type { WorkspaceRow } from './workspaces.js';

export type SessionStatus = 'active' | 'revoked' | 'expired';

export interface SessionView {
  id: string;
  workspace: string;
  mode: AclMode;
  kind: 'owner' | 'platform';
  status: SessionStatus;
  tenant: string | null;
  runtime: string | null;
  grant_id: string | null;
  redis_user: string;
  created_at: string;
  expires_at: string | null;
  ended_at: string | null;
  revoke_reason: string | null;
}

interface SessionRow {
  id: string;
  handle: string;
  name: string;
  mode: AclMode;
  status: SessionStatus;
  tenant_slug: string | null;
  runtime_id: string | null;
  grant_id: string | null;
  created_at: Date;
  expires_at: Date | null;
  ended_at: Date | null;
  revoke_reason: string | null;
}

const SELECT = `SELECT s.id, u.handle, w.name, s.mode, s.status, t.slug AS tenant_slug, s.runtime_id, s.grant_id,
  s.created_at, s.expires_at, s.ended_at, s.revoke_reason
  FROM mount_sessions s JOIN workspaces w ON w.id = s.workspace_id JOIN users u ON u.id = w.user_id
  LEFT JOIN tenants t ON t.id = s.tenant_id`;

function view(r: SessionRow): SessionView {
  return {
    id: r.id,
    workspace: `${r.handle}/${r.name}`,
    mode: r.mode,
    kind: r.tenant_slug ? 'platform' : 'owner',
    // Past its expiry but not reaped yet (the reaper runs every second): it is expired already.
    status: r.status === 'active' && r.expires_at && r.expires_at.getTime() <= Date.now() ? 'expired' : r.status,
    tenant: r.tenant_slug,
    runtime: r.runtime_id,
    grant_id: r.grant_id,
    redis_user: sessionUser(r.id),
    created_at: r.created_at.toISOString(),
    expires_at: r.expires_at ? r.expires_at.toISOString() : null,
    ended_at: r.ended_at ? r.ended_at.toISOString() : null,
    revoke_reason: r.revoke_reason,
  };
}

export interface CreateSessionOptions {
  mode: AclMode;
  ttlSeconds?: number;
  tenant?: { id: number; slug: string };
  runtime?: string;
  grantId?: string;
}

export interface CreatedSession {
  session: SessionView;
  mount_ticket: string;
  redis: TicketPayload['redis'];
}

interface InsertedSession {
  id: string;
  password: string;
  hash: string;
  created_at: Date;
  expires_at: Date | null;
}

/**
 * Insert the session row (one statement): only if the workspace is active and the grant, if
 * any, is active and unexpired. The session never outlives its grant. No row locks are taken,
 * so parallel issuance does not serialise; a revoke or delete racing us is caught by the
 * re-check in `activateSession`.
 */
export async function insertSession(q: Queryable, p: Principal, w: WorkspaceRow, opts: CreateSessionOptions): Promise<InsertedSession> {
  const id = newId('', 20);
  const { password, hash } = newRedisPassword();
  const rows = await q.query<{ created_at: Date; expires_at: Date | null }>(
    `INSERT INTO mount_sessions (id, user_id, workspace_id, tenant_id, runtime_id, grant_id, api_key_id, mode, password_hash, status, expires_at)
     SELECT $1, $2, w.id, $4, $5, g.id, $7, $8, $9, 'active',
       CASE WHEN $10::int IS NULL THEN g.expires_at
            ELSE least(now() + make_interval(secs => $10::int), coalesce(g.expires_at, 'infinity')) END
       FROM workspaces w LEFT JOIN access_grants g ON g.id = $6::text
      WHERE w.id = $3 AND w.status = 'active'
        AND ($6::text IS NULL OR (g.status = 'active' AND (g.expires_at IS NULL OR g.expires_at > now())))
     RETURNING created_at, expires_at`,
    [id, p.user.id, w.id, opts.tenant?.id ?? null, opts.runtime ?? null, opts.grantId ?? null, p.keyId, opts.mode, hash, opts.ttlSeconds ?? null],
  );
  if (!rows[0]) {
    const ws = await q.query<{ status: string }>(`SELECT status FROM workspaces WHERE id = $1`, [w.id]);
    if (ws[0]?.status !== 'active') {
      throw apiError('workspace_not_active', `workspace ${w.handle}/${w.name} is ${ws[0]?.status ?? 'gone'}, not active`);
    }
    throw apiError('forbidden', `access grant ${opts.grantId} is no longer active`);
  }
  return { id, password, hash, ...rows[0] };
}

/** After the row is committed: the ACL user, the re-check, the signed ticket. */
export async function activateSession(ctx: Ctx, w: WorkspaceRow, row: InsertedSession, opts: CreateSessionOptions): Promise<CreatedSession> {
  const { id } = row;
  const user = sessionUser(id);
  try {
    await ctx.meta.setUser(user, row.hash, w.key_prefix, opts.mode);
  } catch (err) {
    ctx.metrics.aclFailures.inc({ op: 'session_user' });
    ctx.log.error({ err: String(err), session: id }, 'creating the session ACL user failed');
    await ctx.db
      .query(`UPDATE mount_sessions SET status = 'revoked', revoke_reason = 'acl_provisioning_failed', ended_at = now() WHERE id = $1`, [id])
      .catch(() => undefined);
    throw apiError('metadata_acl_provisioning_failed', 'could not create the session ACL user on the metadata store; retry');
  }
  // Re-check: a revoke, a grant revocation or a workspace deletion that committed while we were
  // creating the user must win (their sweep may have run before our row existed).
  const after = await ctx.db.query<{ ok: boolean }>(
    `SELECT (s.status = 'active' AND w.status = 'active' AND (g.id IS NULL OR g.status = 'active')) AS ok
       FROM mount_sessions s JOIN workspaces w ON w.id = s.workspace_id LEFT JOIN access_grants g ON g.id = s.grant_id
      WHERE s.id = $1`,
    [id],
  );
  if (!after[0]?.ok) {
    await ctx.db
      .query(`UPDATE mount_sessions SET status = 'revoked', revoke_reason = coalesce(revoke_reason, 'revoked_during_creation'), ended_at = coalesce(ended_at, now()) WHERE id = $1`, [id])
      .catch(() => undefined);
    await ctx.meta.deleteUsers([user]).catch(() => undefined);
    throw apiError('workspace_not_active', `session ${id} was revoked while it was being created`);
  }
  ctx.metrics.sessionsCreated.inc({ mode: opts.mode, kind: opts.tenant ? 'ticket' : 'owner' });

  const iat = Math.floor(row.created_at.getTime() / 1000);
  const exp = row.expires_at ? Math.floor(row.expires_at.getTime() / 1000) : iat + ctx.config.ownerTicketSeconds;
  const redis = { url: ctx.config.publicRedisUrl, username: user, password: row.password, key_prefix: w.key_prefix };
  const payload: TicketPayload = {
    v: 1,
    iss: ctx.config.issuer,
    iat,
    exp,
    workspace: `${w.handle}/${w.name}`,
    volume: w.volume_name,
    mode: opts.mode,
    session_id: id,
    tenant: opts.tenant?.slug ?? null,
    runtime: opts.runtime ?? null,
    redis,
    storage: { backend: w.backend, ...w.storage },
  };
  const session: SessionView = {
    id,
    workspace: payload.workspace,
    mode: opts.mode,
    kind: opts.tenant ? 'platform' : 'owner',
    status: 'active',
    tenant: payload.tenant,
    runtime: payload.runtime,
    grant_id: opts.grantId ?? null,
    redis_user: user,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at ? row.expires_at.toISOString() : null,
    ended_at: null,
    revoke_reason: null,
  };
  return { session, mount_ticket: ctx.keys[0]!.sign(payload), redis };
}

/** Create the session, its ACL user and its signed ticket. */
export async function createSession(ctx: Ctx, p: Principal, w: WorkspaceRow, opts: CreateSessionOptions): Promise<CreatedSession> {
  return activateSession(ctx, w, await insertSession(ctx.db, p, w, opts), opts);
}

export interface SessionFilter {
  sessionId?: string;
  workspaceId?: number;
  grantId?: string;
  tenantId?: number;
  apiKeyId?: string;
  userId?: number;
}

/**
 * Revoke the active sessions matching `filter` (all conditions must hold). Returns how many.
 * With `strict`, a Redis failure is thrown (the caller retries); otherwise it is logged and
 * reconciliation deletes the ACL users once Redis answers again.
 */
export async function revokeSessions(ctx: Ctx, filter: SessionFilter, reason: string, opts: { strict?: boolean } = {}): Promise<number> {
  const cond: string[] = [`status = 'active'`];
  const params: unknown[] = [reason];
  const add = (col: string, v: unknown) => {
    params.push(v);
    cond.push(`${col} = $${params.length}`);
  };
  if (filter.sessionId !== undefined) add('id', filter.sessionId);
  if (filter.workspaceId !== undefined) add('workspace_id', filter.workspaceId);
  if (filter.grantId !== undefined) add('grant_id', filter.grantId);
  if (filter.tenantId !== undefined) add('tenant_id', filter.tenantId);
  if (filter.apiKeyId !== undefined) add('api_key_id', filter.apiKeyId);
  if (filter.userId !== undefined) add('user_id', filter.userId);
  if (cond.length === 1) throw new Error('revokeSessions needs a filter');
  const rows = await ctx.db.query<{ id: string }>(
    `UPDATE mount_sessions SET status = 'revoked', revoke_reason = $1, ended_at = now() WHERE ${cond.join(' AND ')} RETURNING id`,
    params,
  );
  await dropUsers(ctx, rows.map((r) => sessionUser(r.id)), opts.strict);
  if (rows.length > 0) {
    ctx.metrics.sessionsRevoked.inc({ reason }, rows.length);
    ctx.log.info({ sessions: rows.length, reason }, 'mount sessions revoked');
  }
  return rows.length;
}

async function dropUsers(ctx: Ctx, users: string[], strict = false): Promise<void> {
  try {
    await ctx.meta.deleteUsers(users);
  } catch (err) {
    ctx.metrics.aclFailures.inc({ op: 'delete_session_users' });
    ctx.log.warn({ err: String(err), users: users.length }, 'deleting session ACL users failed; reconciliation will retry');
    if (strict) throw err;
  }
}

/** Sessions past expires_at: marked expired (one orchestrator each: SKIP LOCKED), users deleted. */
export async function expireSessions(ctx: Ctx): Promise<number> {
  const rows = await ctx.db.query<{ id: string }>(
    `UPDATE mount_sessions SET status = 'expired', revoke_reason = 'expired', ended_at = now()
     WHERE id IN (SELECT id FROM mount_sessions WHERE status = 'active' AND expires_at <= now()
                  LIMIT 1000 FOR UPDATE SKIP LOCKED)
     RETURNING id`,
  );
  await dropUsers(ctx, rows.map((r) => sessionUser(r.id)));
  if (rows.length > 0) ctx.metrics.sessionsRevoked.inc({ reason: 'expired' }, rows.length);
  return rows.length;
}

export async function listSessions(ctx: Ctx, p: Principal, opts: { workspaceId?: number; all?: boolean }): Promise<SessionView[]> {
  const params: unknown[] = [p.user.id];
  let where = `s.user_id = $1`;
  if (!opts.all) where += ` AND s.status = 'active'`;
  if (opts.workspaceId !== undefined) {
    params.push(opts.workspaceId);
    where += ` AND s.workspace_id = $${params.length}`;
  }
  const rows = await ctx.db.query<SessionRow>(`${SELECT} WHERE ${where} ORDER BY s.created_at DESC LIMIT 1000`, params);
  return rows.map(view);
}

export async function getSession(ctx: Ctx, p: Principal, id: string): Promise<SessionView> {
  const rows = await ctx.db.query<SessionRow & { user_id: number }>(`${SELECT} WHERE s.id = $1 AND s.user_id = $2`, [id, p.user.id]);
  if (!rows[0]) throw apiError('session_not_found', `mount session ${id} not found`);
  return view(rows[0]);
}

export async function revokeSession(ctx: Ctx, p: Principal, id: string): Promise<SessionView> {
  await getSession(ctx, p, id);
  await revokeSessions(ctx, { sessionId: id, userId: p.user.id }, 'revoked');
  return getSession(ctx, p, id);
}

export interface ReconcileResult {
  created: number;
  deleted: number;
}

/**
 * Make Redis's ACL users match PostgreSQL. Order matters: Redis is read first, PostgreSQL second,
 * so an ACL user that exists in Redis always has its (earlier committed) row visible to us.
 */
export async function reconcile(ctx: Ctx): Promise<ReconcileResult> {
  const perNode = await ctx.meta.listUsers([SESSION_USER_PREFIX, FORMAT_USER_PREFIX]);
  const live = await ctx.db.query<{ user: string; hash: string; prefix: string; mode: AclMode; session_id: string | null }>(
    `SELECT 'ms-' || s.id AS user, s.password_hash AS hash, w.key_prefix AS prefix, s.mode, s.id AS session_id
       FROM mount_sessions s JOIN workspaces w ON w.id = s.workspace_id
      WHERE s.status = 'active' AND w.status = 'active' AND (s.expires_at IS NULL OR s.expires_at > now())
     UNION ALL
     SELECT format_user, format_password_hash, key_prefix, 'rw', NULL
       FROM workspaces WHERE status = 'pending_format' AND format_user IS NOT NULL
        AND format_password_hash IS NOT NULL AND format_expires_at > now()`,
  );
  const liveByUser = new Map(live.map((l) => [l.user, l]));
  const extra = new Set<string>();
  const missing = new Map<string, string[]>(); // user → nodes lacking it
  for (const { node, users } of perNode) {
    for (const u of users) if (!liveByUser.has(u)) extra.add(u);
    for (const u of liveByUser.keys()) {
      if (!users.has(u)) missing.set(u, [...(missing.get(u) ?? []), node]);
    }
  }
  if (extra.size > 0) await ctx.meta.deleteUsers([...extra]);
  for (const [u, nodes] of missing) {
    const l = liveByUser.get(u)!;
    await ctx.meta.ensureUserOnNodes(nodes, u, l.hash, l.prefix, l.mode);
  }
  if (missing.size > 0) {
    // A revoke may have committed after our read: undo re-creations it makes stale.
    const ids = [...missing.keys()].filter((u) => u.startsWith(SESSION_USER_PREFIX)).map((u) => u.slice(SESSION_USER_PREFIX.length));
    if (ids.length > 0) {
      const still = await ctx.db.query<{ id: string }>(`SELECT id FROM mount_sessions WHERE id = ANY($1::text[]) AND status = 'active'`, [ids]);
      const ok = new Set(still.map((r) => r.id));
      const stale = ids.filter((id) => !ok.has(id)).map(sessionUser);
      if (stale.length > 0) await ctx.meta.deleteUsers(stale);
    }
  }
  if (extra.size > 0) ctx.metrics.reconciled.inc({ action: 'deleted' }, extra.size);
  if (missing.size > 0) ctx.metrics.reconciled.inc({ action: 'created' }, missing.size);
  if (extra.size > 0 || missing.size > 0) {
    ctx.log.info({ created: missing.size, deleted: extra.size }, 'ACL users reconciled with PostgreSQL');
  }
  return { created: missing.size, deleted: extra.size };
}
