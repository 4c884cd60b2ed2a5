/**
 * Client-side state in ~/.config/artifacts/ (both files mode 0600):
 * - `credentials.json`: the API key and orchestrator URL saved by `artifacts login` / `up`;
 * - `byo-credentials`: S3 keys of BYO buckets (KEY=VALUE lines), never sent to the orchestrator.
 * Environment variables win over both: ARTIFACTS_API_KEY, ARTIFACTS_ORCHESTRATOR_URL,
 * ARTIFACTS_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY / _SESSION_TOKEN / _REGION.
 */
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ArtifactsClient, OrchestratorError } from './client.js';

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ARTIFACTS_CONFIG_DIR) return env.ARTIFACTS_CONFIG_DIR;
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'artifacts');
}

export const credentialsPath = (env: NodeJS.ProcessEnv = process.env) => join(configDir(env), 'credentials.json');
export const byoCredentialsPath = (env: NodeJS.ProcessEnv = process.env) => join(configDir(env), 'byo-credentials');

/** Write via a temp file + rename, created 0600 from the start (never briefly world-readable). */
export async function writePrivateFile(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

export interface SavedCredentials {
  api_key: string;
  orchestrator_url: string;
  handle?: string;
}

export async function readCredentials(env: NodeJS.ProcessEnv = process.env): Promise<SavedCredentials | null> {
  try {
    const v = JSON.parse(await readFile(credentialsPath(env), 'utf8')) as Partial<SavedCredentials>;
    if (typeof v.api_key !== 'string' || typeof v.orchestrator_url !== 'string') return null;
    return { api_key: v.api_key, orchestrator_url: v.orchestrator_url, handle: v.handle };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${credentialsPath(env)}: ${(err as Error).message}`);
  }
}

export async function saveCredentials(c: SavedCredentials, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const path = credentialsPath(env);
  await writePrivateFile(path, JSON.stringify(c, null, 2) + '\n');
  return path;
}

/** Returns true if a file was removed. */
export async function removeCredentials(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  try {
    await rm(credentialsPath(env));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export const DEFAULT_ORCHESTRATOR_URL = 'http://127.0.0.1:8787';

export interface ClientSettings {
  apiKey: string | null;
  orchestratorUrl: string;
  /** Where the key came from, for messages. */
  source: 'env' | 'file' | 'none';
}

/** API key: ARTIFACTS_API_KEY, then the credentials file. URL: ARTIFACTS_ORCHESTRATOR_URL, then the file. */
export async function clientSettings(env: NodeJS.ProcessEnv = process.env): Promise<ClientSettings> {
  const saved = await readCredentials(env);
  const apiKey = env.ARTIFACTS_API_KEY || saved?.api_key || null;
  return {
    apiKey,
    orchestratorUrl: (env.ARTIFACTS_ORCHESTRATOR_URL || saved?.orchestrator_url || DEFAULT_ORCHESTRATOR_URL).replace(/\/+$/, ''),
    source: env.ARTIFACTS_API_KEY ? 'env' : saved?.api_key ? 'file' : 'none',
  };
}

// --- BYO S3 credentials ---

export interface S3Credentials {
  ACCESS_KEY_ID?: string;
  SECRET_ACCESS_KEY?: string;
  SESSION_TOKEN?: string;
  REGION?: string;
}

export const S3_FIELDS = ['ACCESS_KEY_ID', 'SECRET_ACCESS_KEY', 'SESSION_TOKEN', 'REGION'] as const;

export async function readByoCache(env: NodeJS.ProcessEnv = process.env): Promise<S3Credentials | null> {
  let text: string;
  try {
    text = await readFile(byoCredentialsPath(env), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const out: S3Credentials = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && (S3_FIELDS as readonly string[]).includes(m[1]!) && m[2]) out[m[1] as keyof S3Credentials] = m[2];
  }
  return out;
}

export async function writeByoCache(c: S3Credentials, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const path = byoCredentialsPath(env);
  const lines = S3_FIELDS.filter((f) => c[f]).map((f) => `${f}=${c[f]}`);
  await writePrivateFile(path, lines.join('\n') + '\n');
  return path;
}

export async function clearByoCache(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  try {
    await rm(byoCredentialsPath(env));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The ARTIFACTS_S3_* variables that are set. */
export function s3FromEnv(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  const out: S3Credentials = {};
  for (const f of S3_FIELDS) {
    const v = env[`ARTIFACTS_S3_${f}`];
    if (v) out[f] = v;
  }
  return out;
}

/** Per field: environment first, then the cache (so one shell can override just REGION). */
export async function resolveS3Credentials(env: NodeJS.ProcessEnv = process.env): Promise<S3Credentials> {
  const cache = (await readByoCache(env)) ?? {};
  return { ...cache, ...s3FromEnv(env) };
}

/** `AKIAIOSFODNN7EXAMPLE` → `AKIA***MPLE`; short values are fully masked. */
export function mask(v: string | undefined): string {
  if (!v) return '(unset)';
  if (v.length <= 8) return '***';
  return `${v.slice(0, 4)}***${v.slice(-4)}`;
}

// --- the CLI's client ---


export class NotLoggedInError extends Error {
  constructor() {
    super('not logged in: run `artifacts login --token <api key>` (or `artifacts up`), or set ARTIFACTS_API_KEY');
    this.name = 'NotLoggedInError';
  }
}

/** A client from the environment and the credentials file; throws NotLoggedInError without a key. */
export async function openClient(env: NodeJS.ProcessEnv = process.env, opts: { requireKey?: boolean } = {}): Promise<ArtifactsClient> {
  const s = await clientSettings(env);
  if (!s.apiKey && opts.requireKey !== false) throw new NotLoggedInError();
  return new ArtifactsClient({ baseUrl: s.orchestratorUrl, apiKey: s.apiKey });
}

const HINTS: Record<string, string> = {
  unauthorized: 'check the key: `artifacts login --token <key>` or ARTIFACTS_API_KEY',
  forbidden: 'the workspace belongs to another user; address your own as name or <your handle>/name',
  workspace_not_found: 'list yours with `artifacts workspace list`',
  workspace_exists: 'pick another name, or delete the existing workspace first',
  workspace_not_active: 'a pending_format workspace resumes with `artifacts workspace create <name>`; a deleted one must be recreated',
  workspace_not_completable: 'the workspace is not pending_format any more; `artifacts workspace show <name>`',
  setting_key_missing: 'phase 2 did not run to the end; re-run `artifacts workspace create <name>` to resume',
  metadata_acl_provisioning_failed: 'the orchestrator could not reach Redis; retry in a few seconds',
  invalid_request: 'check the arguments (`--help`)',
  tenant_exists: 'the tenant already exists; `artifacts platform tenant list`',
  unreachable: 'is the orchestrator running? (`artifacts up` for a local one; ARTIFACTS_ORCHESTRATOR_URL)',
};

/** `code: message` plus a one-line hint, as the CLI prints API errors. */
export function describeApiError(err: unknown): string | null {
  if (!(err instanceof OrchestratorError)) return null;
  const hint = HINTS[err.code];
  return `${err.code}: ${err.message}${hint ? `\nhint: ${hint}` : ''}`;
}
