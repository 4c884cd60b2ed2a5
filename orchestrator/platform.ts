/**
 * The platform model: tenants (a platform's customers), runtime ids (opaque, recorded on first
 * use), access grants (tenant-wide or runtime-scoped, ro/rw, optional TTL) and mount tickets.
 * All objects belong to the root user (the API key's user); a tenant never authenticates here.
 */
import type { AclMode } from './acl.js';
import type { Ctx } from './context.js';
import { isUniqueViolation, type Queryable } from './db.js';
import { apiError } from './errors.js';
import type { Principal } from './identity.js';
import { newId } from './secrets.js';
import { activateSession, insertSession, revokeSessions, type CreatedSession } from './sessions.js';
import { parseAddress, resolveWorkspace, type WorkspaceRow } from './workspaces.js';

import { RUNTIME_ID_RE, TENANT_SLUG_RE } from './names.js';

export { RUNTIME_ID_RE, TENANT_SLUG_RE };

export interface TenantView {
  slug: string;
  external_id: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
}

interface TenantRow {
  id: number;
  slug: string;
  external_id: string | null;
  metadata: Record<string, unknown>;
  created_at: Date;
}

export interface GrantView {
  id: string;
  tenant: string;
  workspace: string;
  runtime: string | null;
  mode: AclMode;
  status: 'active' | 'revoked' | 'expired';
  expires_at: string | null;
  created_at: string;
  revoked_at: string | null;
}

interface GrantRow {
  id: string;
  tenant_slug: string;
  handle: string;
  ws_name: string;
  runtime_id: string;
  mode: AclMode;
  status: GrantView['status'];
  expires_at: Date | null;
  created_at: Date;
  revoked_at: Date | null;
}

const tenantView = (t: TenantRow): TenantView => ({
  slug: t.slug,
  external_id: t.external_id,
  metadata: t.metadata,
  created_at: t.created_at.toISOString(),
});

const grantView = (g: GrantRow): GrantView => ({
  id: g.id,
  tenant: g.tenant_slug,
  workspace: `${g.handle}/${g.ws_name}`,
  runtime: g.runtime_id === '' ? null : g.runtime_id,
  mode: g.mode,
  // An expired grant still 'active' in the table (the reaper has not run yet) reads as expired.
  status: g.status === 'active' && g.expires_at && g.expires_at.getTime() <= Date.now() ? 'expired' : g.status,
  expires_at: g.expires_at ? g.expires_at.toISOString() : null,
  created_at: g.created_at.toISOString(),
  revoked_at: g.revoked_at ? g.revoked_at.toISOString() : null,
});

const GRANT_SELECT = `SELECT g.id, t.slug AS tenant_slug, u.handle, w.name AS ws_name, g.runtime_id, g.mode, g.status,
  g.expires_at, g.created_at, g.revoked_at
  FROM access_grants g JOIN tenants t ON t.id = g.tenant_id JOIN workspaces w ON w.id = g.workspace_id
  JOIN users u ON u.id = w.user_id`;

async function findTenant(q: Queryable, userId: number, slug: string): Promise<TenantRow | null> {
  const rows = await q.query<TenantRow>(
    `SELECT id, slug, external_id, metadata, created_at FROM tenants WHERE user_id = $1 AND slug = $2 AND deleted_at IS NULL`,
    [userId, slug],
  );
  return rows[0] ?? null;
}

async function tenantOrThrow(ctx: Ctx, p: Principal, slug: string): Promise<TenantRow> {
  const t = await findTenant(ctx.db, p.user.id, slug);
  if (!t) throw apiError('tenant_not_found', `tenant ${slug} not found`);
  return t;
}

export async function createTenant(
  ctx: Ctx,
  p: Principal,
  req: { slug: string; external_id?: string; metadata?: Record<string, unknown> },
): Promise<TenantView> {
  if (!TENANT_SLUG_RE.test(req.slug)) throw apiError('invalid_request', `tenant slug must match ${TENANT_SLUG_RE.source}`);
  try {
    const rows = await ctx.db.query<TenantRow>(
      `INSERT INTO tenants (user_id, slug, external_id, metadata) VALUES ($1, $2, $3, $4)
       RETURNING id, slug, external_id, metadata, created_at`,
      [p.user.id, req.slug, req.external_id ?? null, JSON.stringify(req.metadata ?? {})],
    );
    return tenantView(rows[0]!);
  } catch (err) {
    if (isUniqueViolation(err)) {
      const existing = await findTenant(ctx.db, p.user.id, req.slug);
      throw apiError('tenant_exists', `tenant ${req.slug} already exists`, existing ? { existing: tenantView(existing) } : undefined);
    }
    throw err;
  }
}

export async function listTenants(ctx: Ctx, p: Principal): Promise<TenantView[]> {
  const rows = await ctx.db.query<TenantRow>(
    `SELECT id, slug, external_id, metadata, created_at FROM tenants WHERE user_id = $1 AND deleted_at IS NULL ORDER BY slug`,
    [p.user.id],
  );
  return rows.map(tenantView);
}

export async function getTenant(ctx: Ctx, p: Principal, slug: string): Promise<TenantView> {
  return tenantView(await tenantOrThrow(ctx, p, slug));
}

/** Deleting a tenant revokes all its grants and sessions, at once. */
export async function deleteTenant(ctx: Ctx, p: Principal, slug: string) {
  const t = await tenantOrThrow(ctx, p, slug);
  const grants = await ctx.db.tx(async (q) => {
    await q.query(`UPDATE tenants SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL`, [t.id]);
    const g = await q.query<{ id: string }>(
      `UPDATE access_grants SET status = 'revoked', revoked_at = now() WHERE tenant_id = $1 AND status = 'active' RETURNING id`,
      [t.id],
    );
    return g.length;
  });
  const sessions = await revokeSessions(ctx, { tenantId: t.id }, 'tenant_deleted');
  ctx.log.info({ tenant: slug, grants, sessions }, 'tenant deleted');
  return { tenant: tenantView(t), revoked_grants: grants, revoked_sessions: sessions };
}

async function ownWorkspace(ctx: Ctx, p: Principal, address: string): Promise<WorkspaceRow> {
  const { handle, name } = parseAddress(address, p.user.handle);
  return resolveWorkspace(ctx, p, handle, name, true);
}

async function getGrant(q: Queryable, userId: number, id: string): Promise<GrantRow | null> {
  const rows = await q.query<GrantRow>(`${GRANT_SELECT} WHERE g.id = $1 AND g.user_id = $2`, [id, userId]);
  return rows[0] ?? null;
}

export interface GrantRequest {
  workspace: string;
  tenant: string;
  runtime?: string;
  mode: AclMode;
  ttl_seconds?: number;
}

export async function createGrant(ctx: Ctx, p: Principal, req: GrantRequest): Promise<GrantView> {
  if (req.runtime !== undefined && !RUNTIME_ID_RE.test(req.runtime)) {
    throw apiError('invalid_request', `runtime id must match ${RUNTIME_ID_RE.source}`);
  }
  const w = await ownWorkspace(ctx, p, req.workspace);
  const t = await tenantOrThrow(ctx, p, req.tenant);
  try {
    const id = await ctx.db.tx(async (q) => {
      if (req.runtime) await recordRuntime(q, t.id, req.runtime);
      const gid = newId('grt_');
      await q.query(
        `INSERT INTO access_grants (id, user_id, tenant_id, workspace_id, runtime_id, mode, status, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'active', CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(secs => $7::int) END)`,
        [gid, p.user.id, t.id, w.id, req.runtime ?? '', req.mode, req.ttl_seconds ?? null],
      );
      return gid;
    });
    return grantView((await getGrant(ctx.db, p.user.id, id))!);
  } catch (err) {
    if (isUniqueViolation(err)) {
      const rows = await ctx.db.query<GrantRow>(
        `${GRANT_SELECT} WHERE g.tenant_id = $1 AND g.workspace_id = $2 AND g.runtime_id = $3 AND g.status = 'active'`,
        [t.id, w.id, req.runtime ?? ''],
      );
      throw apiError('grant_exists', 'an active grant for this tenant, workspace and runtime already exists; revoke it first', {
        existing: rows[0] ? grantView(rows[0]) : undefined,
      });
    }
    throw err;
  }
}

export async function listGrants(ctx: Ctx, p: Principal, filter: { tenant?: string; workspace?: string; all?: boolean }): Promise<GrantView[]> {
  const params: unknown[] = [p.user.id];
  let where = 'g.user_id = $1';
  if (!filter.all) where += ` AND g.status = 'active'`;
  if (filter.tenant) {
    params.push(filter.tenant);
    where += ` AND t.slug = $${params.length} AND t.deleted_at IS NULL`;
  }
  if (filter.workspace) {
    const w = await ownWorkspace(ctx, p, filter.workspace);
    params.push(w.id);
    where += ` AND g.workspace_id = $${params.length}`;
  }
  const rows = await ctx.db.query<GrantRow>(`${GRANT_SELECT} WHERE ${where} ORDER BY g.created_at LIMIT 1000`, params);
  return rows.map(grantView);
}

/** Revoking a grant revokes every session issued under it. */
export async function revokeGrant(ctx: Ctx, p: Principal, id: string) {
  const g = await getGrant(ctx.db, p.user.id, id);
  if (!g) throw apiError('grant_not_found', `access grant ${id} not found`);
  await ctx.db.query(`UPDATE access_grants SET status = 'revoked', revoked_at = now() WHERE id = $1 AND status = 'active'`, [id]);
  const sessions = await revokeSessions(ctx, { grantId: id }, 'grant_revoked');
  return { grant: grantView((await getGrant(ctx.db, p.user.id, id))!), revoked_sessions: sessions };
}

/** Grants past their TTL: marked expired, their sessions revoked. */
export async function expireGrants(ctx: Ctx): Promise<number> {
  const rows = await ctx.db.query<{ id: string }>(
    `UPDATE access_grants SET status = 'expired' WHERE id IN (
       SELECT id FROM access_grants WHERE status = 'active' AND expires_at <= now() LIMIT 100 FOR UPDATE SKIP LOCKED)
     RETURNING id`,
  );
  for (const r of rows) await revokeSessions(ctx, { grantId: r.id }, 'grant_expired');
  return rows.length;
}

async function recordRuntime(q: Queryable, tenantId: number, runtime: string): Promise<void> {
  await q.query(
    `INSERT INTO runtimes (tenant_id, runtime_id) VALUES ($1, $2)
     ON CONFLICT (tenant_id, runtime_id) DO UPDATE SET last_seen_at = now()`,
    [tenantId, runtime],
  );
}

export interface TicketRequest {
  tenant: string;
  runtime: string;
  workspace: string;
  mode: AclMode;
  ttl_seconds: number;
}

/**
 * One-shot issuance, in one transaction: creates a missing tenant and a missing runtime-scoped
 * grant (with the requested mode), picks the most specific active grant covering the mode
 * (runtime-scoped before tenant-wide), inserts the session; then the ACL user and the ticket.
 * No row locks: parallel tickets for one tenant do not queue behind each other.
 */
export async function createTicket(ctx: Ctx, p: Principal, req: TicketRequest): Promise<CreatedSession & { grant_id: string }> {
  if (!TENANT_SLUG_RE.test(req.tenant)) throw apiError('invalid_request', `tenant slug must match ${TENANT_SLUG_RE.source}`);
  if (!RUNTIME_ID_RE.test(req.runtime)) throw apiError('invalid_request', `runtime id must match ${RUNTIME_ID_RE.source}`);
  const w = await ownWorkspace(ctx, p, req.workspace);
  if (w.status !== 'active') throw apiError('workspace_not_active', `workspace ${w.handle}/${w.name} is ${w.status}, not active`);

  const { tenant, grantId, row } = await ctx.db.tx(async (q) => {
    let t = await findTenant(q, p.user.id, req.tenant);
    if (!t) {
      await q.query(
        `INSERT INTO tenants (user_id, slug) VALUES ($1, $2) ON CONFLICT (user_id, slug) WHERE deleted_at IS NULL DO NOTHING`,
        [p.user.id, req.tenant],
      );
      t = (await findTenant(q, p.user.id, req.tenant))!;
    }
    const pick = () =>
      q.query<{ id: string; mode: AclMode }>(
        `WITH rt AS (
           INSERT INTO runtimes (tenant_id, runtime_id) VALUES ($1, $3)
           ON CONFLICT (tenant_id, runtime_id) DO UPDATE SET last_seen_at = now()),
         ins AS (
           INSERT INTO access_grants (id, user_id, tenant_id, workspace_id, runtime_id, mode, status)
           VALUES ($5, $6, $1, $2, $3, $4, 'active')
           ON CONFLICT (tenant_id, workspace_id, runtime_id) WHERE status = 'active' DO NOTHING
           RETURNING id, mode, runtime_id)
         SELECT id, mode FROM (
           SELECT id, mode, runtime_id FROM ins
           UNION ALL
           SELECT id, mode, runtime_id FROM access_grants
            WHERE tenant_id = $1 AND workspace_id = $2 AND runtime_id IN ($3, '') AND status = 'active'
              AND (expires_at IS NULL OR expires_at > now())) c
         ORDER BY (runtime_id = '') ASC, (mode = 'rw') DESC`,
        [t.id, w.id, req.runtime, req.mode, newId('grt_'), p.user.id],
      );
    let grants = await pick();
    if (!grants.some((g) => g.mode === 'rw' || req.mode === 'ro')) {
      // An expired runtime grant the reaper has not retired yet blocks the insert: retire, retry.
      const retired = await q.query(
        `UPDATE access_grants SET status = 'expired' WHERE tenant_id = $1 AND workspace_id = $2 AND runtime_id = $3
           AND status = 'active' AND expires_at <= now() RETURNING id`,
        [t.id, w.id, req.runtime],
      );
      if (retired.length > 0) grants = await pick();
    }
    const covering = grants.find((g) => g.mode === 'rw' || req.mode === 'ro');
    if (!covering) {
      throw apiError('forbidden', `no access grant lets tenant ${req.tenant} runtime ${req.runtime} mount ${w.handle}/${w.name} ${req.mode}`);
    }
    const opts = { mode: req.mode, ttlSeconds: req.ttl_seconds, tenant: { id: t.id, slug: t.slug }, runtime: req.runtime, grantId: covering.id };
    return { tenant: t, grantId: covering.id, row: await insertSession(q, p, w, opts) };
  });
  const created = await activateSession(ctx, w, row, {
    mode: req.mode,
    ttlSeconds: req.ttl_seconds,
    tenant: { id: tenant.id, slug: tenant.slug },
    runtime: req.runtime,
    grantId,
  });
  return { ...created, grant_id: grantId };
}
