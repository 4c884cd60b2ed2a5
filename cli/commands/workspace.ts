/**
 * `artifacts workspace create|list|show|delete`. Create runs the three phases of the upstream
 * product (reserve on the orchestrator → format in-process with the 15-minute format user →
 * confirm), prints its lines, and resumes a pending_format workspace when re-run.
 */
import { mkdir } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import type { ArtifactsClient, CreateWorkspaceInput, FormatCredentials, WorkspaceView } from '../../orchestrator/client.js';
import { OrchestratorError } from '../../orchestrator/client.js';
import {
  describeApiError,
  openClient,
  resolveS3Credentials,
  s3FromEnv,
  readByoCache,
  writeByoCache,
  type S3Credentials,
} from '../../orchestrator/client-config.js';
import { redisUrlWithCredentials } from '../../orchestrator/redis-url.js';
import { type Output, outputOf, UsageError } from '../output.js';

export interface FormatPhaseInput {
  workspace: WorkspaceView;
  format: FormatCredentials;
  s3: S3Credentials;
  /** True when resuming a pending_format workspace (a previous attempt may have left objects). */
  resuming: boolean;
  out: Output;
}

/** Phase 2. Replaceable in unit tests only; every end-to-end test runs the real one. */
export type FormatPhase = (input: FormatPhaseInput) => Promise<void>;

/**
 * The Format `Bucket` of a workspace's storage: a directory (file; `prefix` is a sub-directory)
 * or a path-style S3 URL. For S3 the prefix cannot be expressed: upstream `juicefs` (measured
 * with 1.4.2) ignores any path after the bucket name and stores `<bucket>/<volume>/...`, and
 * volumes must stay mountable by it. The volume name carries the workspace id, so workspaces
 * sharing a bucket never collide.
 */
export function bucketUrl(w: WorkspaceView): { storage: string; bucket: string } {
  const prefix = w.storage.prefix.replace(/^\/+|\/+$/g, '');
  if (w.backend === 'file') {
    const dir = w.storage.bucket.endsWith('/') ? w.storage.bucket : w.storage.bucket + '/';
    return { storage: 'file', bucket: prefix ? `${dir}${prefix}/` : dir };
  }
  const endpoint = w.storage.endpoint.replace(/\/+$/, '');
  return { storage: 's3', bucket: `${endpoint}/${w.storage.bucket}` };
}

/**
 * The real phase 2: what `juicefs format` does (cli/volume.ts), as the workspace's format user,
 * under its key prefix. S3 keys go to the object store only: the `setting` stored in Redis carries
 * no storage secret (the metadata operator must never hold them).
 */
export const realFormatPhase: FormatPhase = async ({ workspace: w, format, s3, resuming, out }) => {
  // The engine and the S3 SDK load only when a create actually formats.
  const { createObjectStore } = await import('../../chunkstore/object/index.js');
  const { connectMeta } = await import('../../metadata/redis/connect.js');
  const { formatVolume } = await import('../volume.js');
  const { storage, bucket } = bucketUrl(w);
  const url = redisUrlWithCredentials(format.redis.url, format.redis.username, format.redis.password);
  // No ACCESS_KEY/SECRET_KEY in the env we hand over: upstream format would copy them into `setting`.
  const { ACCESS_KEY: _a, SECRET_KEY: _s, SESSION_TOKEN: _t, ...env } = process.env;
  if (w.storage.region) env.AWS_REGION = w.storage.region;
  const withKeys = <T extends object>(fmt: T) => ({
    ...fmt,
    AccessKey: s3.ACCESS_KEY_ID,
    SecretKey: s3.SECRET_ACCESS_KEY,
    SessionToken: s3.SESSION_TOKEN,
  });
  // INFO is not granted to format users (it reveals server-wide facts): skip ioredis' ready check.
  const conn = await connectMeta(url, { prefix: format.redis.key_prefix, redisOptions: { enableReadyCheck: false }, env });
  try {
    if (resuming && (await conn.redis.get(format.redis.key_prefix + 'setting')) === null) {
      // A previous attempt died between writing juicefs_uuid and `setting`. The volume name is
      // unique to this workspace (it carries the id), so the object is ours to remove.
      const store = createObjectStore(withKeys({ Storage: storage, Bucket: bucket, Name: w.volume_name }), { env });
      await store.delete('juicefs_uuid');
    }
    await formatVolume(
      conn,
      { name: w.volume_name, storage, bucket },
      {
        prefix: format.redis.key_prefix,
        explicit: [],
        env,
        openStore: (fmt) => createObjectStore(withKeys(fmt), { env }),
        log: { info: (m) => out.debug(m), warn: (m) => out.warn(m), debug: (m) => out.debug(m) },
      },
    );
  } finally {
    await conn.close();
  }
};

export interface CreateOptions extends CreateWorkspaceInput {
  mountpoint?: string;
}

/** Phases 1–3 with the upstream lines; resumes a pending_format workspace. */
export async function createWorkspaceFlow(
  client: ArtifactsClient,
  input: CreateWorkspaceInput,
  deps: { out: Output; format?: FormatPhase; env?: NodeJS.ProcessEnv },
): Promise<WorkspaceView> {
  const { out } = deps;
  const env = deps.env ?? process.env;
  const format = deps.format ?? realFormatPhase;
  const handle = await client.handle();
  const id = `artifacts://${handle}/${input.name}`;
  const s3 = await resolveS3Credentials(env);
  const byo = input.backend === 'byo' || (!input.backend && !!(input.bucket || input.endpoint));
  if (byo && (!s3.ACCESS_KEY_ID || !s3.SECRET_ACCESS_KEY)) {
    throw new UsageError(
      'no S3 credentials for the BYO bucket: set ARTIFACTS_S3_ACCESS_KEY_ID and ARTIFACTS_S3_SECRET_ACCESS_KEY, or run `artifacts storage set`',
    );
  }

  let reserved: { workspace: WorkspaceView; format: FormatCredentials };
  let resuming = false;
  out.info(`Phase 1: reserving ${id} on the orchestrator`);
  try {
    reserved = await client.workspaces.create(input);
    out.info(`Workspace ${id} reserved (status=pending_format, key prefix=${reserved.workspace.key_prefix})`);
  } catch (err) {
    const existing = err instanceof OrchestratorError && err.code === 'workspace_exists' ? (err.body.existing as WorkspaceView | undefined) : undefined;
    if (!existing || existing.status !== 'pending_format') throw err;
    out.info(`Resuming pending_format workspace ${id}`);
    for (const [flag, want, have] of [
      ['--bucket', input.bucket, existing.backend === 'file' ? existing.storage.bucket.replace(/\/$/, '') : existing.storage.bucket],
      ['--endpoint', input.endpoint, existing.storage.endpoint],
      ['--prefix', input.prefix, existing.storage.prefix],
    ] as const) {
      if (want !== undefined && want.replace(/\/$/, '') !== have) {
        throw new UsageError(`${id} is pending_format with ${flag} ${have || '(none)'}; re-run with the same storage or delete it first`);
      }
    }
    reserved = await client.workspaces.formatCredentials(id);
    resuming = true;
  }

  const w = reserved.workspace;
  if (w.backend === 'byo' && w.storage.prefix) {
    out.warn(`--prefix is recorded but not applied to S3 objects: the JuiceFS layout stores them under ${w.storage.bucket}/${w.volume_name}/`);
  }
  out.info(`Phase 2: formatting volume ${w.volume_name} in-process (metadata prefix ${w.key_prefix}, data ${bucketUrl(w).bucket})`);
  await format({ workspace: w, format: reserved.format, s3, resuming, out });

  out.info('Phase 3: confirming format completion with the orchestrator');
  const active = await client.workspaces.formatCompleted(id);
  out.info(`Workspace ${id} is active.`);

  if (byo) {
    const fromEnv = s3FromEnv(env);
    if (Object.keys(fromEnv).length > 0) {
      const path = await writeByoCache({ ...((await readByoCache(env)) ?? {}), ...fromEnv }, env);
      out.info(`Cached BYO credentials at ${path} (mode 0600); future mounts will use them automatically.`);
    }
  }
  return active;
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
}

export function workspaceTable(ws: WorkspaceView[]): string {
  const head = ['IDENTIFIER', 'STATUS', 'BACKEND', 'BUCKET', 'CREATED'];
  const rows = ws.map((w) => [w.identifier, w.status, w.backend, w.storage.bucket, w.created_at]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [row(head, widths), ...rows.map((r) => row(r, widths))].join('\n');
}

export function workspaceDetails(w: WorkspaceView): string {
  const dash = (s: string) => s || '-';
  return [
    `Workspace:     ${w.identifier}`,
    `Status:        ${w.status}`,
    `Volume:        ${w.volume_name}${w.volume_uuid ? ` (uuid ${w.volume_uuid})` : ''}`,
    `Key prefix:    ${w.key_prefix}`,
    `Metadata:      ${w.redis_url}`,
    `Cache profile: ${w.cache_profile}`,
    `Created:       ${w.created_at}`,
    'Storage:',
    `  Backend:     ${w.backend}`,
    `  Bucket:      ${w.storage.bucket}`,
    `  Endpoint:    ${dash(w.storage.endpoint)}`,
    `  Region:      ${dash(w.storage.region)}`,
    `  Prefix:      ${dash(w.storage.prefix)}`,
  ].join('\n');
}

/** Turn API errors into `code: message` + hint (exit 1); everything else passes through. */
export async function apiAction<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const text = describeApiError(err);
    if (text) throw new Error(text);
    throw err;
  }
}

interface CreateFlags {
  backend?: 'byo' | 'file';
  bucket?: string;
  endpoint?: string;
  region?: string;
  prefix?: string;
  cacheProfile: 'interactive' | 'benchmark' | 'custom';
}

export function register(program: Command): void {
  const ws = program.command('workspace').description('create, list, show and delete workspaces');

  ws.command('create')
    .description('create a workspace (reserve, format in-process, confirm); re-run to resume a pending_format one')
    .argument('<name>', 'workspace name (a-z, 0-9, -; 2-40 characters)')
    .argument('[mountpoint]', 'mount it there once created')
    .addOption(new Option('--backend <backend>', 'byo (your S3 bucket) or file (a local directory)').choices(['byo', 'file']))
    .addOption(new Option('--bucket <bucket>', 'S3 bucket (byo) or directory (file)').env('ARTIFACTS_S3_BUCKET'))
    .addOption(new Option('--endpoint <url>', 'S3 endpoint URL (byo)').env('ARTIFACTS_S3_ENDPOINT'))
    .option('--region <region>', 'S3 region (default: ARTIFACTS_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION)')
    .addOption(new Option('--prefix <prefix>', 'key prefix inside the bucket').env('ARTIFACTS_S3_PREFIX'))
    .addOption(new Option('--cache-profile <profile>', 'block cache profile').choices(['interactive', 'benchmark', 'custom']).default('interactive'))
    .action(async (name: string, mountpoint: string | undefined, flags: CreateFlags, cmd: Command) => {
      const out = outputOf(cmd);
      const env = process.env;
      const region = flags.region ?? (env.ARTIFACTS_S3_REGION || env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined);
      const client = await openClient();
      const w = await apiAction(() =>
        createWorkspaceFlow(
          client,
          {
            name,
            backend: flags.backend,
            bucket: flags.bucket,
            endpoint: flags.endpoint,
            region: flags.backend === 'file' || (!flags.bucket && !flags.endpoint) ? undefined : region,
            prefix: flags.prefix,
            cache_profile: flags.cacheProfile,
          },
          { out },
        ),
      );
      if (out.json) out.result({ workspace: w });
      if (mountpoint) {
        const mount = program.commands.find((c) => c.name() === 'mount');
        if (!mount) {
          out.warn(`this build has no \`artifacts mount\` yet: ${w.identifier} is created and formatted, not mounted at ${mountpoint}`);
          return;
        }
        // Like upstream: `workspace create demo ./demo` makes ./demo if needed.
        await mkdir(mountpoint, { recursive: true });
        await mount.parseAsync([w.identifier, mountpoint], { from: 'user' });
      }
    });

  ws.command('list')
    .description('list your workspaces')
    .option('--all', 'include deleted workspaces')
    .action(async (flags: { all?: boolean }, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const list = await apiAction(() => client.workspaces.list({ includeDeleted: !!flags.all }));
      if (out.json) out.result({ workspaces: list });
      else out.print(workspaceTable(list));
    });

  ws.command('show')
    .description("print one workspace's details")
    .argument('<workspace>', 'name, handle/name or artifacts://handle/name')
    .action(async (address: string, _flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const client = await openClient();
      const w = await apiAction(() => client.workspaces.get(address));
      if (out.json) out.result({ workspace: w });
      else out.print(workspaceDetails(w));
    });

  ws.command('delete')
    .description('delete a workspace: its mount sessions are revoked and its metadata deleted (bucket objects stay)')
    .argument('<workspace>', 'name, handle/name or artifacts://handle/name')
    .option('--yes', 'really delete')
    .option('--wait', 'wait until the deletion has finished')
    .action(async (address: string, flags: { yes?: boolean; wait?: boolean }, cmd: Command) => {
      const out = outputOf(cmd);
      if (!flags.yes) throw new UsageError(`refusing to delete ${address} without --yes`);
      const client = await openClient();
      let w = await apiAction(() => client.workspaces.delete(address));
      out.info(`Workspace ${w.identifier} is being deleted (status=${w.status}); bucket objects are not touched.`);
      if (flags.wait) {
        const deadline = Date.now() + 120_000;
        while (w.status !== 'deleted' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
          w = await apiAction(() => client.workspaces.get(w.identifier));
        }
        if (w.status !== 'deleted') throw new Error(`${w.identifier} is still ${w.status} after 120 s`);
        out.info(`Workspace ${w.identifier} is deleted.`);
      }
      if (out.json) out.result({ workspace: w });
    });
}
