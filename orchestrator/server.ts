/**
 * The HTTP API (fastify). Routes are thin: validate (JSON schema), authenticate, call the
 * operation, shape the reply. Errors are always `{code, message}`.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Ctx } from './context.js';
import { ApiError, apiError } from './errors.js';
import { authenticate, createApiKey, listApiKeys, revokeApiKey, type ApiKeyRow, type Principal } from './identity.js';
import { buildOpenApi, type RouteDoc } from './openapi.js';
import { createGrant, createTenant, createTicket, deleteTenant, getTenant, listGrants, listTenants, revokeGrant } from './platform.js';
import { S } from './schemas.js';
import { createSession, listSessions, revokeSession, revokeSessions } from './sessions.js';
import { jwksOf } from './ticket.js';
import {
  completeFormat,
  deleteWorkspace,
  formatCredentials,
  listWorkspaces,
  parseAddress,
  reserveWorkspace,
  resolveWorkspace,
  viewWorkspace,
  type CreateRequest,
} from './workspaces.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** false for the public routes (health, metrics, OpenAPI, JWKS). Default true. */
    auth?: boolean;
  }
}

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
  /** Max request body in bytes. Default 64 KiB: no request needs more. */
  bodyLimit?: number;
}

const keyView = (k: ApiKeyRow) => ({
  id: k.id,
  name: k.name,
  hint: k.key_hint,
  created_at: k.created_at.toISOString(),
  last_used_at: k.last_used_at ? k.last_used_at.toISOString() : null,
  revoked_at: k.revoked_at ? k.revoked_at.toISOString() : null,
});

const truthy = (v: string | undefined) => v === 'true' || v === '1';

function principal(req: FastifyRequest): Principal {
  if (!req.principal) throw apiError('unauthorized', 'not authenticated');
  return req.principal;
}

export function buildServer(ctx: Ctx, opts: BuildOptions = {}): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    // Strict bodies: no coercion ("1" is not 1), no silent stripping of unknown fields.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
    requestIdHeader: false,
    return503OnClosing: true,
  });
  const docs: RouteDoc[] = [];

  app.decorateRequest('principal', null);
  app.addHook('onRoute', (route) => {
    if (route.url === '*' || route.method === 'HEAD') return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) docs.push({ method: m, url: route.url, schema: route.schema as RouteDoc['schema'], auth: route.config?.auth !== false });
  });
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.config?.auth === false) return;
    if (!req.routeOptions.url) return; // 404s: answered by the not-found handler
    req.principal = await authenticate(ctx.db, req.headers.authorization);
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    ctx.metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
    ctx.metrics.httpDuration.observe(reply.elapsedTime / 1000, { route });
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  app.setErrorHandler((err: unknown, req, reply) => sendError(ctx, err, req, reply));

  // --- public ---
  app.get('/healthz', { config: { auth: false }, schema: S.healthz }, async (_req, reply) => {
    const checks = await Promise.allSettled([ctx.db.query('SELECT 1'), ctx.meta.ping()]);
    const [db, redis] = checks.map((c) => (c.status === 'fulfilled' ? 'ok' : 'down'));
    const healthy = db === 'ok' && redis === 'ok';
    return reply.code(healthy ? 200 : 503).send({ status: healthy ? 'ok' : 'degraded', database: db, redis });
  });
  app.get('/metrics', { config: { auth: false }, schema: S.metrics }, async (_req, reply) => {
    return reply.type('text/plain; version=0.0.4').send(ctx.metrics.render());
  });
  app.get('/.well-known/jwks.json', { config: { auth: false }, schema: S.jwks }, async (_req, reply) => {
    return reply.header('cache-control', 'public, max-age=300').send(jwksOf(ctx.keys));
  });
  app.get('/openapi.json', { config: { auth: false }, schema: S.openapi }, async () => buildOpenApi(docs));

  // --- identity ---
  app.get('/whoami', { schema: S.whoami }, async (req) => {
    const p = principal(req);
    const key = (await listApiKeys(ctx.db, p.user.id)).find((k) => k.id === p.keyId)!;
    return { user: { id: p.user.id, handle: p.user.handle, created_at: p.user.created_at.toISOString() }, api_key: keyView(key) };
  });
  app.post<{ Body: { name?: string } }>('/api-keys', { schema: S.createApiKey }, async (req, reply) => {
    const { row, key } = await createApiKey(ctx.db, principal(req).user.id, req.body?.name ?? '');
    return reply.code(201).send({ api_key: keyView(row), key });
  });
  app.get('/api-keys', { schema: S.listApiKeys }, async (req) => ({
    api_keys: (await listApiKeys(ctx.db, principal(req).user.id)).map(keyView),
  }));
  app.delete<{ Params: { id: string } }>('/api-keys/:id', { schema: S.revokeApiKey }, async (req) => {
    const p = principal(req);
    const row = await revokeApiKey(ctx.db, p.user.id, req.params.id);
    if (!row) throw apiError('api_key_not_found', `api key ${req.params.id} not found`);
    // A revoked key's sessions end with it (upstream let them live on).
    const revoked = await revokeSessions(ctx, { apiKeyId: row.id }, 'api_key_revoked');
    return { api_key: keyView(row), revoked_sessions: revoked };
  });

  // --- workspaces ---
  type WsParams = { Params: { handle: string; name: string } };
  app.post<{ Body: CreateRequest }>('/workspaces', { schema: S.createWorkspace }, async (req, reply) => {
    return reply.code(201).send(await reserveWorkspace(ctx, principal(req), req.body));
  });
  app.get<{ Querystring: { include_deleted?: string } }>('/workspaces', { schema: S.listWorkspaces }, async (req) => ({
    workspaces: await listWorkspaces(ctx, principal(req), truthy(req.query.include_deleted)),
  }));
  app.get<WsParams>('/workspaces/:handle/:name', { schema: S.getWorkspace }, async (req) => ({
    workspace: viewWorkspace(ctx, await resolveWorkspace(ctx, principal(req), req.params.handle, req.params.name)),
  }));
  app.delete<WsParams>('/workspaces/:handle/:name', { schema: S.deleteWorkspace }, async (req, reply) => {
    return reply.code(202).send({ workspace: await deleteWorkspace(ctx, principal(req), req.params.handle, req.params.name) });
  });
  app.post<WsParams>('/workspaces/:handle/:name/format-credentials', { schema: S.formatCredentials }, async (req) =>
    formatCredentials(ctx, principal(req), req.params.handle, req.params.name),
  );
  app.post<WsParams>('/workspaces/:handle/:name/format-completed', { schema: S.formatCompleted }, async (req) => ({
    workspace: await completeFormat(ctx, principal(req), req.params.handle, req.params.name),
  }));
  app.post<WsParams & { Body: { mode?: 'ro' | 'rw'; ttl_seconds?: number } }>(
    '/workspaces/:handle/:name/mount-sessions',
    { schema: S.createMountSession },
    async (req, reply) => {
      const p = principal(req);
      const w = await resolveWorkspace(ctx, p, req.params.handle, req.params.name, true);
      if (w.status !== 'active') throw apiError('workspace_not_active', `workspace ${w.handle}/${w.name} is ${w.status}, not active`);
      const s = await createSession(ctx, p, w, { mode: req.body?.mode ?? 'rw', ttlSeconds: req.body?.ttl_seconds });
      return reply.code(201).send(s);
    },
  );

  // --- sessions ---
  app.get<{ Querystring: { workspace?: string; all?: string } }>('/mount-sessions', { schema: S.listMountSessions }, async (req) => {
    const p = principal(req);
    let workspaceId: number | undefined;
    if (req.query.workspace) {
      const { handle, name } = parseAddress(req.query.workspace, p.user.handle);
      workspaceId = (await resolveWorkspace(ctx, p, handle, name)).id;
    }
    return { mount_sessions: await listSessions(ctx, p, { workspaceId, all: truthy(req.query.all) }) };
  });
  app.delete<{ Params: { id: string } }>('/mount-sessions/:id', { schema: S.deleteMountSession }, async (req) => ({
    session: await revokeSession(ctx, principal(req), req.params.id),
  }));

  // --- platform ---
  app.post<{ Body: { slug: string; external_id?: string; metadata?: Record<string, unknown> } }>(
    '/platform/tenants',
    { schema: S.createTenant },
    async (req, reply) => reply.code(201).send({ tenant: await createTenant(ctx, principal(req), req.body) }),
  );
  app.get('/platform/tenants', { schema: S.listTenants }, async (req) => ({ tenants: await listTenants(ctx, principal(req)) }));
  app.get<{ Params: { slug: string } }>('/platform/tenants/:slug', { schema: S.getTenant }, async (req) => ({
    tenant: await getTenant(ctx, principal(req), req.params.slug),
  }));
  app.delete<{ Params: { slug: string } }>('/platform/tenants/:slug', { schema: S.deleteTenant }, async (req) =>
    deleteTenant(ctx, principal(req), req.params.slug),
  );
  app.post<{ Body: Parameters<typeof createGrant>[2] }>('/platform/grants', { schema: S.createGrant }, async (req, reply) =>
    reply.code(201).send({ grant: await createGrant(ctx, principal(req), req.body) }),
  );
  app.get<{ Querystring: { tenant?: string; workspace?: string; all?: string } }>('/platform/grants', { schema: S.listGrants }, async (req) => ({
    grants: await listGrants(ctx, principal(req), { tenant: req.query.tenant, workspace: req.query.workspace, all: truthy(req.query.all) }),
  }));
  app.delete<{ Params: { id: string } }>('/platform/grants/:id', { schema: S.revokeGrant }, async (req) =>
    revokeGrant(ctx, principal(req), req.params.id),
  );
  app.post<{ Body: Parameters<typeof createTicket>[2] }>('/platform/tickets', { schema: S.createTicket }, async (req, reply) => {
    const t = await createTicket(ctx, principal(req), req.body);
    return reply.code(201).send({ mount_ticket: t.mount_ticket, session_id: t.session.id, grant_id: t.grant_id, expires_at: t.session.expires_at });
  });

  return app;
}

interface FastifyishError {
  statusCode?: number;
  code?: string;
  validation?: unknown;
  message?: string;
}

function sendError(ctx: Ctx, err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof ApiError) {
    if (err.status >= 500) req.log.error({ code: err.code }, err.message);
    return reply.code(err.status).send(err.body());
  }
  const e = (err ?? {}) as FastifyishError;
  if (e.validation) return reply.code(422).send({ code: 'invalid_request', message: e.message ?? 'invalid request' });
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ code: 'payload_too_large', message: 'request body too large' });
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return reply.code(415).send({ code: 'unsupported_media_type', message: 'send JSON (content-type: application/json)' });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    // Malformed JSON, bad content-length, empty body with a JSON content type...
    return reply.code(422).send({ code: 'invalid_request', message: e.message ?? 'invalid request' });
  }
  req.log.error({ err: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err) }, 'unhandled error');
  return reply.code(500).send({ code: 'internal', message: 'internal error' });
}
