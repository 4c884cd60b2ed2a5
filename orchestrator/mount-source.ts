/**
 * What `artifacts mount` asks the orchestrator layer: turn a workspace address or a ticket file
 * into the Redis URL (with the session's credentials), key prefix and name to mount.
 * - by workspace: the owner's mount session is created with the saved API key;
 * - by ticket: the ticket is verified against the orchestrator's JWKS (fetched from
 *   ARTIFACTS_ORCHESTRATOR_URL / the saved URL, or read from ARTIFACTS_JWKS_FILE; cached on disk
 *   so a mount does not need the orchestrator up), and refused if expired, altered, signed by an
 *   unknown key, or for another workspace than the one named.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ArtifactsClient } from './client.js';
import { clientSettings, describeApiError, openClient, resolveS3Credentials, type S3Credentials } from './client-config.js';
import { redisUrlWithCredentials } from './redis-url.js';
import { TicketError, verifyTicket, type Jwks, type TicketPayload } from './ticket.js';

export interface OrchestratedMountSource {
  metaUrl: string;
  prefix: string;
  /** `handle/name`: the mount shows as `artifacts:<handle/name>`. */
  name: string;
  readOnly: boolean;
  cacheProfile?: string;
  sessionId: string;
  /** Seconds since epoch when the session (and so the Redis user) ends; null = until revoked. */
  expiresAt: number | null;
  /** S3 keys for a BYO bucket (never stored in Redis): from ARTIFACTS_S3_* or the BYO cache. */
  storageCredentials: S3Credentials;
  storage: TicketPayload['storage'];
  /** Ends an owner session (call on unmount); a no-op for ticket sessions, which expire. */
  release(): Promise<void>;
}

function jwksCacheFile(url: string, env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'artifacts', `jwks-${createHash('sha256').update(url).digest('hex').slice(0, 16)}.json`);
}

/** The orchestrator's JWKS: ARTIFACTS_JWKS_FILE, else fetched (and cached), else the cache. */
export async function loadJwks(env: NodeJS.ProcessEnv = process.env, refresh = false): Promise<Jwks> {
  if (env.ARTIFACTS_JWKS_FILE) return JSON.parse(await readFile(env.ARTIFACTS_JWKS_FILE, 'utf8')) as Jwks;
  const { orchestratorUrl } = await clientSettings(env);
  const cache = jwksCacheFile(orchestratorUrl, env);
  if (!refresh) {
    try {
      return JSON.parse(await readFile(cache, 'utf8')) as Jwks;
    } catch {
      // not cached yet
    }
  }
  try {
    const jwks = await new ArtifactsClient({ baseUrl: orchestratorUrl }).jwks();
    await mkdir(join(cache, '..'), { recursive: true, mode: 0o700 });
    await writeFile(cache, JSON.stringify(jwks), { mode: 0o600 });
    return jwks;
  } catch (err) {
    if (refresh) {
      try {
        return JSON.parse(await readFile(cache, 'utf8')) as Jwks;
      } catch {
        // fall through
      }
    }
    throw new Error(`cannot get the orchestrator's ticket keys from ${orchestratorUrl}: ${(err as Error).message}`);
  }
}

/** Verify a ticket file's content; an unknown key id refetches the JWKS once (key rotation). */
export async function verifyTicketText(jws: string, opts: { workspace?: string; env?: NodeJS.ProcessEnv } = {}): Promise<TicketPayload> {
  const env = opts.env ?? process.env;
  let workspace = opts.workspace;
  if (workspace && !workspace.replace(/^artifacts:\/\//, '').includes('/')) workspace = undefined; // bare names: checked below
  try {
    return verifyTicket(jws, await loadJwks(env), { workspace });
  } catch (err) {
    if (err instanceof TicketError && err.reason === 'unknown_key' && !env.ARTIFACTS_JWKS_FILE) {
      return verifyTicket(jws, await loadJwks(env, true), { workspace });
    }
    throw err;
  }
}

function fromPayload(p: TicketPayload, creds: S3Credentials, release: () => Promise<void>, cacheProfile?: string): OrchestratedMountSource {
  return {
    metaUrl: redisUrlWithCredentials(p.redis.url, p.redis.username, p.redis.password),
    prefix: p.redis.key_prefix,
    name: p.workspace,
    readOnly: p.mode === 'ro',
    cacheProfile,
    sessionId: p.session_id,
    expiresAt: p.exp,
    storageCredentials: creds,
    storage: p.storage,
    release,
  };
}

export async function resolveMountSource(o: { workspace?: string; ticketFile?: string; readOnly?: boolean; env?: NodeJS.ProcessEnv }): Promise<OrchestratedMountSource> {
  const env = o.env ?? process.env;
  const creds = await resolveS3Credentials(env);
  if (o.ticketFile) {
    const jws = (await readFile(o.ticketFile, 'utf8')).trim();
    let p: TicketPayload;
    try {
      p = await verifyTicketText(jws, { workspace: o.workspace, env });
    } catch (err) {
      if (err instanceof TicketError) throw new Error(`refusing mount ticket ${o.ticketFile}: ${err.message}`);
      throw err;
    }
    if (o.workspace && !o.workspace.replace(/^artifacts:\/\//, '').includes('/') && p.workspace.split('/')[1] !== o.workspace) {
      throw new Error(`refusing mount ticket ${o.ticketFile}: it is for workspace ${p.workspace}, not ${o.workspace}`);
    }
    if (o.readOnly && p.mode === 'rw') p = { ...p, mode: 'ro' }; // a narrower mount is always fine
    return fromPayload(p, creds, async () => undefined);
  }
  if (!o.workspace) throw new Error('give a workspace or --ticket-file');
  const client = await openClient(env);
  try {
    const ws = await client.workspaces.get(o.workspace);
    const s = await client.workspaces.createMountSession(ws.identifier, { mode: o.readOnly ? 'ro' : 'rw' });
    const p = await client.verifyTicket(s.mount_ticket, { workspace: `${ws.handle}/${ws.name}` });
    return fromPayload(p, creds, async () => void (await client.sessions.revoke(s.session.id).catch(() => undefined)), ws.cache_profile);
  } catch (err) {
    const text = describeApiError(err);
    throw text ? new Error(text) : err;
  }
}
