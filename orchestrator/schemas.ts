/**
 * JSON schemas of every request and response. Bodies reject unknown fields, strings are bounded,
 * so malformed or oversized input is a 4xx before any handler runs. Response schemas also act as
 * an allow-list: fastify serialises only the declared fields.
 */
import type { FastifySchema } from 'fastify';

const str = (maxLength: number, extra: Record<string, unknown> = {}) => ({ type: 'string', maxLength, ...extra });
const nullable = (s: Record<string, unknown>) => ({ anyOf: [s, { type: 'null' }] });
const dateTime = { type: 'string', format: 'date-time' };

export const NAME = str(40, { pattern: '^[a-z][a-z0-9-]{0,38}[a-z0-9]$' });
export const HANDLE = NAME;
export const SLUG = str(63, { pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
export const RUNTIME = str(128, { pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$' });
export const MODE = { type: 'string', enum: ['ro', 'rw'] };
export const WORKSPACE_ADDRESS = str(140, { pattern: '^(artifacts://)?([a-z][a-z0-9-]{0,38}[a-z0-9]/)?[a-z][a-z0-9-]{0,38}[a-z0-9]$' });
const ID = str(64, { pattern: '^[a-z0-9_]{1,64}$' });
const BOOL_QUERY = { type: 'string', enum: ['true', 'false', '1', '0'] };

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
  additionalProperties: true,
};

const storage = {
  type: 'object',
  properties: { endpoint: { type: 'string' }, bucket: { type: 'string' }, prefix: { type: 'string' }, region: { type: 'string' } },
};

export const workspaceSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    handle: { type: 'string' },
    name: { type: 'string' },
    identifier: { type: 'string' },
    status: { type: 'string', enum: ['pending_format', 'active', 'deleting', 'deleted'] },
    backend: { type: 'string', enum: ['byo', 'file'] },
    storage,
    volume_name: { type: 'string' },
    volume_uuid: nullable({ type: 'string' }),
    key_prefix: { type: 'string' },
    redis_url: { type: 'string' },
    cache_profile: { type: 'string' },
    created_at: dateTime,
    updated_at: dateTime,
    deleted_at: nullable(dateTime),
  },
};

const redisCredentials = {
  type: 'object',
  properties: { url: { type: 'string' }, username: { type: 'string' }, password: { type: 'string' }, key_prefix: { type: 'string' } },
};

const formatCredentials = {
  type: 'object',
  properties: { redis: redisCredentials, expires_at: dateTime },
};

export const sessionSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    workspace: { type: 'string' },
    mode: MODE,
    kind: { type: 'string', enum: ['owner', 'platform'] },
    status: { type: 'string', enum: ['active', 'revoked', 'expired'] },
    tenant: nullable({ type: 'string' }),
    runtime: nullable({ type: 'string' }),
    grant_id: nullable({ type: 'string' }),
    redis_user: { type: 'string' },
    created_at: dateTime,
    expires_at: nullable(dateTime),
    ended_at: nullable(dateTime),
    revoke_reason: nullable({ type: 'string' }),
  },
};

export const tenantSchema = {
  type: 'object',
  properties: {
    slug: { type: 'string' },
    external_id: nullable({ type: 'string' }),
    metadata: { type: 'object', additionalProperties: true },
    created_at: dateTime,
  },
};

export const grantSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    tenant: { type: 'string' },
    workspace: { type: 'string' },
    runtime: nullable({ type: 'string' }),
    mode: MODE,
    status: { type: 'string', enum: ['active', 'revoked', 'expired'] },
    expires_at: nullable(dateTime),
    created_at: dateTime,
    revoked_at: nullable(dateTime),
  },
};

const apiKeySchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    hint: { type: 'string' },
    created_at: dateTime,
    last_used_at: nullable(dateTime),
    revoked_at: nullable(dateTime),
  },
};

const userSchema = { type: 'object', properties: { id: { type: 'integer' }, handle: { type: 'string' }, created_at: dateTime } };

const obj = (properties: Record<string, unknown>, required: string[] = []) => ({
  type: 'object',
  properties,
  required,
  additionalProperties: false,
});

const wsParams = obj({ handle: HANDLE, name: NAME }, ['handle', 'name']);
const ok = (status: number, schema: Record<string, unknown>) => ({ [status]: schema });

/** A route without input: only documentation (the type assertion silences weak-type detection). */
function docOnly(summary: string): FastifySchema {
  return { summary, tags: ['ops'] } as FastifySchema;
}

/** Route schemas, keyed `METHOD path`. `tags` and `summary` feed /openapi.json. */
export const S = {
  healthz: docOnly('Liveness: PostgreSQL and Redis answer'),
  metrics: docOnly('Prometheus metrics'),
  jwks: docOnly('Public keys that sign mount tickets (JWKS)'),
  openapi: docOnly('This document'),
  whoami: {
    summary: 'The authenticated user and key',
    tags: ['identity'],
    response: ok(200, obj({ user: userSchema, api_key: apiKeySchema })),
  },
  createApiKey: {
    summary: 'Mint an API key (shown once)',
    tags: ['identity'],
    body: obj({ name: str(100) }),
    response: ok(201, obj({ api_key: apiKeySchema, key: { type: 'string' } })),
  },
  listApiKeys: { summary: 'List API keys', tags: ['identity'], response: ok(200, obj({ api_keys: { type: 'array', items: apiKeySchema } })) },
  revokeApiKey: {
    summary: 'Revoke an API key and every mount session it created',
    tags: ['identity'],
    params: obj({ id: ID }, ['id']),
    response: ok(200, obj({ api_key: apiKeySchema, revoked_sessions: { type: 'integer' } })),
  },
  createWorkspace: {
    summary: 'Phase 1: reserve a workspace and mint a 15-minute format user',
    tags: ['workspaces'],
    body: obj(
      {
        name: NAME,
        backend: { type: 'string', enum: ['byo', 'file'] },
        bucket: str(1024, { minLength: 1 }),
        endpoint: str(1024, { minLength: 1 }),
        region: str(64),
        prefix: str(512),
        cache_profile: { type: 'string', enum: ['interactive', 'benchmark', 'custom'] },
      },
      ['name'],
    ),
    response: ok(201, obj({ workspace: workspaceSchema, format: formatCredentials })),
  },
  listWorkspaces: {
    summary: 'List your workspaces',
    tags: ['workspaces'],
    querystring: obj({ include_deleted: BOOL_QUERY }),
    response: ok(200, obj({ workspaces: { type: 'array', items: workspaceSchema } })),
  },
  getWorkspace: { summary: 'Show a workspace', tags: ['workspaces'], params: wsParams, response: ok(200, obj({ workspace: workspaceSchema })) },
  deleteWorkspace: {
    summary: 'Delete a workspace: sessions revoked, keys deleted (202, asynchronous)',
    tags: ['workspaces'],
    params: wsParams,
    response: ok(202, obj({ workspace: workspaceSchema })),
  },
  formatCredentials: {
    summary: 'Resume: fresh format credentials for a pending_format workspace',
    tags: ['workspaces'],
    params: wsParams,
    response: ok(200, obj({ workspace: workspaceSchema, format: formatCredentials })),
  },
  formatCompleted: {
    summary: 'Phase 3: confirm the format (checks setting), status active',
    tags: ['workspaces'],
    params: wsParams,
    response: ok(200, obj({ workspace: workspaceSchema })),
  },
  createMountSession: {
    summary: "Create an owner's mount session (and its ticket)",
    tags: ['sessions'],
    params: wsParams,
    body: obj({ mode: MODE, ttl_seconds: { type: 'integer', minimum: 1, maximum: 31_536_000 } }),
    response: ok(201, obj({ session: sessionSchema, redis: redisCredentials, mount_ticket: { type: 'string' } })),
  },
  listMountSessions: {
    summary: 'List mount sessions',
    tags: ['sessions'],
    querystring: obj({ workspace: WORKSPACE_ADDRESS, all: BOOL_QUERY }),
    response: ok(200, obj({ mount_sessions: { type: 'array', items: sessionSchema } })),
  },
  deleteMountSession: {
    summary: 'Revoke a mount session (ACL user deleted, connections killed)',
    tags: ['sessions'],
    params: obj({ id: ID }, ['id']),
    response: ok(200, obj({ session: sessionSchema })),
  },
  createTenant: {
    summary: 'Create a tenant',
    tags: ['platform'],
    body: obj(
      {
        slug: SLUG,
        external_id: str(256),
        metadata: { type: 'object', maxProperties: 64, additionalProperties: { anyOf: [str(1024), { type: 'number' }, { type: 'boolean' }, { type: 'null' }] } },
      },
      ['slug'],
    ),
    response: ok(201, obj({ tenant: tenantSchema })),
  },
  listTenants: { summary: 'List tenants', tags: ['platform'], response: ok(200, obj({ tenants: { type: 'array', items: tenantSchema } })) },
  getTenant: { summary: 'Show a tenant', tags: ['platform'], params: obj({ slug: SLUG }, ['slug']), response: ok(200, obj({ tenant: tenantSchema })) },
  deleteTenant: {
    summary: 'Delete a tenant: its grants and sessions are revoked',
    tags: ['platform'],
    params: obj({ slug: SLUG }, ['slug']),
    response: ok(200, obj({ tenant: tenantSchema, revoked_grants: { type: 'integer' }, revoked_sessions: { type: 'integer' } })),
  },
  createGrant: {
    summary: 'Create an access grant (tenant-wide, or runtime-scoped with runtime)',
    tags: ['platform'],
    body: obj({ workspace: WORKSPACE_ADDRESS, tenant: SLUG, runtime: RUNTIME, mode: MODE, ttl_seconds: { type: 'integer', minimum: 1, maximum: 31_536_000 } }, [
      'workspace',
      'tenant',
      'mode',
    ]),
    response: ok(201, obj({ grant: grantSchema })),
  },
  listGrants: {
    summary: 'List access grants',
    tags: ['platform'],
    querystring: obj({ tenant: SLUG, workspace: WORKSPACE_ADDRESS, all: BOOL_QUERY }),
    response: ok(200, obj({ grants: { type: 'array', items: grantSchema } })),
  },
  revokeGrant: {
    summary: 'Revoke an access grant and its sessions',
    tags: ['platform'],
    params: obj({ id: ID }, ['id']),
    response: ok(200, obj({ grant: grantSchema, revoked_sessions: { type: 'integer' } })),
  },
  createTicket: {
    summary: 'Issue a mount ticket (creates a missing tenant and runtime-scoped grant)',
    tags: ['platform'],
    body: obj({ tenant: SLUG, runtime: RUNTIME, workspace: WORKSPACE_ADDRESS, mode: MODE, ttl_seconds: { type: 'integer', minimum: 1, maximum: 604_800 } }, [
      'tenant',
      'runtime',
      'workspace',
      'mode',
      'ttl_seconds',
    ]),
    response: ok(
      201,
      obj({ mount_ticket: { type: 'string' }, session_id: { type: 'string' }, grant_id: { type: 'string' }, expires_at: nullable(dateTime) }),
    ),
  },
} as const;
