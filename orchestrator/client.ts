/**
 * The orchestrator's TypeScript client (used by the CLI; usable by platforms as an SDK).
 * Every call maps to one HTTP route; errors become `OrchestratorError` with the server's
 * `{code, message}` (and `existing` for workspace_exists / tenant_exists / grant_exists).
 */
import type { AclMode } from './acl.js';
import type { GrantView, TenantView } from './platform.js';
import type { SessionView } from './sessions.js';
import { verifyTicket, type Jwks, type TicketPayload, type VerifyOptions } from './ticket.js';
import type { CacheProfile, FormatCredentials, WorkspaceView } from './workspaces.js';

export type { GrantView, SessionView, TenantView, WorkspaceView, FormatCredentials, TicketPayload, Jwks };

export class OrchestratorError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'OrchestratorError';
  }
}

export interface ClientOptions {
  baseUrl: string;
  apiKey?: string | null;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
}

export interface ApiKeyView {
  id: string;
  name: string;
  hint: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface CreateWorkspaceInput {
  name: string;
  backend?: 'byo' | 'file';
  bucket?: string;
  endpoint?: string;
  region?: string;
  prefix?: string;
  cache_profile?: CacheProfile;
}

export interface MountSessionResult {
  session: SessionView;
  redis: { url: string; username: string; password: string; key_prefix: string };
  mount_ticket: string;
}

export interface MountTicketResult {
  mount_ticket: string;
  session_id: string;
  grant_id: string;
  expires_at: string | null;
}

type Query = Record<string, string | undefined>;

export class ArtifactsClient {
  readonly baseUrl: string;
  private readonly apiKey: string | null;
  private readonly timeoutMs: number;
  private handleCache: string | null = null;
  private jwksCache: Jwks | null = null;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.apiKey = opts.apiKey ?? null;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    let url = this.baseUrl + path;
    const q = Object.entries(query ?? {}).filter(([, v]) => v !== undefined) as [string, string][];
    if (q.length > 0) url += '?' + new URLSearchParams(q).toString();
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          accept: 'application/json',
          ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new OrchestratorError(0, 'unreachable', `cannot reach the orchestrator at ${this.baseUrl} (${cause})`);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!res.ok) {
      const b = (parsed ?? {}) as { code?: string; message?: string };
      throw new OrchestratorError(res.status, b.code ?? `http_${res.status}`, b.message ?? (text.slice(0, 200) || res.statusText), (parsed ?? {}) as Record<string, unknown>);
    }
    return parsed as T;
  }

  // --- identity ---

  whoami(): Promise<{ user: { id: number; handle: string; created_at: string }; api_key: ApiKeyView }> {
    return this.request('GET', '/whoami');
  }

  /** The caller's handle (one /whoami per client). */
  async handle(): Promise<string> {
    this.handleCache ??= (await this.whoami()).user.handle;
    return this.handleCache;
  }

  /** `name`, `handle/name` or `artifacts://handle/name` → `{handle, name}`. */
  async resolve(address: string): Promise<{ handle: string; name: string }> {
    const s = address.replace(/^artifacts:\/\//, '');
    const parts = s.split('/');
    if (parts.length === 2 && parts[0] && parts[1]) return { handle: parts[0], name: parts[1] };
    if (parts.length === 1 && parts[0]) return { handle: await this.handle(), name: parts[0] };
    throw new OrchestratorError(0, 'invalid_request', `workspace address ${JSON.stringify(address)} is not name, handle/name or artifacts://handle/name`);
  }

  private async wsPath(address: string, suffix = ''): Promise<string> {
    const { handle, name } = await this.resolve(address);
    return `/workspaces/${encodeURIComponent(handle)}/${encodeURIComponent(name)}${suffix}`;
  }

  readonly apiKeys = {
    create: (name = '') => this.request<{ api_key: ApiKeyView; key: string }>('POST', '/api-keys', { name }),
    list: async () => (await this.request<{ api_keys: ApiKeyView[] }>('GET', '/api-keys')).api_keys,
    revoke: (id: string) => this.request<{ api_key: ApiKeyView; revoked_sessions: number }>('DELETE', `/api-keys/${encodeURIComponent(id)}`),
  };

  // --- workspaces ---

  readonly workspaces = {
    /** Phase 1 only; the CLI's create flow runs the three phases. */
    create: (input: CreateWorkspaceInput) => this.request<{ workspace: WorkspaceView; format: FormatCredentials }>('POST', '/workspaces', input),
    list: async (opts: { includeDeleted?: boolean } = {}) =>
      (await this.request<{ workspaces: WorkspaceView[] }>('GET', '/workspaces', undefined, { include_deleted: opts.includeDeleted ? 'true' : undefined }))
        .workspaces,
    get: async (address: string) => (await this.request<{ workspace: WorkspaceView }>('GET', await this.wsPath(address))).workspace,
    delete: async (address: string) => (await this.request<{ workspace: WorkspaceView }>('DELETE', await this.wsPath(address))).workspace,
    formatCredentials: async (address: string) =>
      this.request<{ workspace: WorkspaceView; format: FormatCredentials }>('POST', await this.wsPath(address, '/format-credentials')),
    formatCompleted: async (address: string) =>
      (await this.request<{ workspace: WorkspaceView }>('POST', await this.wsPath(address, '/format-completed'))).workspace,
    createMountSession: async (address: string, opts: { mode?: AclMode; ttlSeconds?: number } = {}) =>
      this.request<MountSessionResult>('POST', await this.wsPath(address, '/mount-sessions'), {
        mode: opts.mode ?? 'rw',
        ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
      }),
  };

  // --- mount sessions ---

  readonly sessions = {
    list: async (opts: { workspace?: string; all?: boolean } = {}) =>
      (
        await this.request<{ mount_sessions: SessionView[] }>('GET', '/mount-sessions', undefined, {
          workspace: opts.workspace,
          all: opts.all ? 'true' : undefined,
        })
      ).mount_sessions,
    revoke: async (id: string) => (await this.request<{ session: SessionView }>('DELETE', `/mount-sessions/${encodeURIComponent(id)}`)).session,
  };

  // --- platform ---

  readonly platform = {
    createTenant: async (slug: string, opts: { externalId?: string; metadata?: Record<string, unknown> } = {}) =>
      (
        await this.request<{ tenant: TenantView }>('POST', '/platform/tenants', {
          slug,
          ...(opts.externalId !== undefined ? { external_id: opts.externalId } : {}),
          ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
        })
      ).tenant,
    listTenants: async () => (await this.request<{ tenants: TenantView[] }>('GET', '/platform/tenants')).tenants,
    getTenant: async (slug: string) => (await this.request<{ tenant: TenantView }>('GET', `/platform/tenants/${encodeURIComponent(slug)}`)).tenant,
    deleteTenant: (slug: string) =>
      this.request<{ tenant: TenantView; revoked_grants: number; revoked_sessions: number }>('DELETE', `/platform/tenants/${encodeURIComponent(slug)}`),
    createAccessGrant: async (workspace: string, opts: { tenantSlug: string; runtimeId?: string; mode: AclMode; ttlSeconds?: number }) =>
      (
        await this.request<{ grant: GrantView }>('POST', '/platform/grants', {
          workspace,
          tenant: opts.tenantSlug,
          mode: opts.mode,
          ...(opts.runtimeId !== undefined ? { runtime: opts.runtimeId } : {}),
          ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
        })
      ).grant,
    listGrants: async (opts: { tenant?: string; workspace?: string; all?: boolean } = {}) =>
      (
        await this.request<{ grants: GrantView[] }>('GET', '/platform/grants', undefined, {
          tenant: opts.tenant,
          workspace: opts.workspace,
          all: opts.all ? 'true' : undefined,
        })
      ).grants,
    revokeGrant: (id: string) => this.request<{ grant: GrantView; revoked_sessions: number }>('DELETE', `/platform/grants/${encodeURIComponent(id)}`),
    /** One-shot: creates a missing tenant and runtime-scoped grant. `ttlSeconds` is required. */
    createMountTicket: (tenantSlug: string, runtimeId: string, opts: { workspace: string; mode: AclMode; ttlSeconds: number }) =>
      this.request<MountTicketResult>('POST', '/platform/tickets', {
        tenant: tenantSlug,
        runtime: runtimeId,
        workspace: opts.workspace,
        mode: opts.mode,
        ttl_seconds: opts.ttlSeconds,
      }),
    revokeSession: async (id: string) => this.sessions.revoke(id),
  };

  // --- tickets ---

  /** The orchestrator's JWKS (cached in this client; `refresh` refetches). */
  async jwks(refresh = false): Promise<Jwks> {
    if (!this.jwksCache || refresh) this.jwksCache = await this.request<Jwks>('GET', '/.well-known/jwks.json');
    return this.jwksCache;
  }

  /** Verify a ticket against this orchestrator's keys; an unknown key id triggers one refetch (rotation). */
  async verifyTicket(jws: string, opts: VerifyOptions = {}): Promise<TicketPayload> {
    try {
      return verifyTicket(jws, await this.jwks(), opts);
    } catch (err) {
      if ((err as { reason?: string }).reason !== 'unknown_key') throw err;
      return verifyTicket(jws, await this.jwks(true), opts);
    }
  }
}
