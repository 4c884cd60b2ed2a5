/**
 * Test fixtures of the orchestrator: a real PostgreSQL (DATABASE_URL from the environment, where
 * a fresh database is created per test file; else a throwaway cluster of Debian's PostgreSQL on
 * a free port) or PGlite, a real redis-server, and a running orchestrator with one user.
 */
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { Output } from '../../cli/output.js';
import { createWorkspaceFlow } from '../../cli/commands/workspace.js';
import { ArtifactsClient, type WorkspaceView } from '../../orchestrator/client.js';
import { chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createApiKey, createUser } from '../../orchestrator/identity.js';
import { openDb, type Db } from '../../orchestrator/db.js';
import { migrate } from '../../orchestrator/migrations/index.js';
import { startOrchestrator, type RunningOrchestrator, type ServeOptions } from '../../orchestrator/serve.js';
import { freePort, redisCommand, RespError, spawnManaged, startRedis, tmpDir, waitUntil, type RedisHandle } from '../helpers/servers.js';

export interface PgHandle {
  url: string;
  stop(): Promise<void>;
}

const PG_BIN_DIRS = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'];

function pgBin(name: string): string {
  for (const d of PG_BIN_DIRS) if (existsSync(join(d, name))) return join(d, name);
  throw new Error(
    `REQUIRED BINARY MISSING: PostgreSQL's ${name} (looked in ${PG_BIN_DIRS.join(', ')}). Set DATABASE_URL to a server, ` +
      'or `apt-get install postgresql`. Tests must fail, not skip.',
  );
}

async function pgAnswers(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A fresh, empty PostgreSQL database for this test file. */
export async function startPostgres(): Promise<PgHandle> {
  const base = process.env.DATABASE_URL;
  if (base) {
    const name = `orch_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(base);
    u.pathname = `/${name}`;
    return {
      url: u.toString(),
      async stop() {
        const c = new pg.Client({ connectionString: base });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
        await c.end();
      },
    };
  }
  // PostgreSQL refuses to run as root: as root, run it as the `postgres` system user.
  const asRoot = process.getuid?.() === 0;
  const wrap = (cmd: string, args: string[]): [string, string[]] =>
    asRoot ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', cmd, ...args]] : [cmd, args];
  const dir = await tmpDir('pg');
  const data = join(dir, 'data');
  if (asRoot) chownSync(dir, Number(spawnSync('id', ['-u', 'postgres']).stdout.toString()), Number(spawnSync('id', ['-g', 'postgres']).stdout.toString()));
  const [icmd, iargs] = wrap(pgBin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const init = spawnSync(icmd, iargs, { encoding: 'utf8', timeout: 60_000 });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  const port = await freePort();
  const [pcmd, pargs] = wrap(pgBin('postgres'), [
    '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200',
  ]);
  const proc = spawnManaged(`postgres:${port}`, pcmd, pargs, { cwd: dir, logFile: join(dir, 'postgres.log') });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitUntil(`postgres on ${port}`, proc, () => pgAnswers(url), 30_000, 100);
  return { url, stop: () => proc.stop(5000) };
}

export type DbKind = 'postgres' | 'pglite';

export interface Stack {
  kind: DbKind;
  db: Db;
  dbUrl: string;
  redis: RedisHandle;
  orch: RunningOrchestrator;
  url: string;
  handle: string;
  key: string;
  signingKeyFile: string;
  /** Restart the orchestrator (same database, Redis and key). */
  restart(extra?: Partial<ServeOptions>): Promise<void>;
  stop(): Promise<void>;
}

/** A running orchestrator on `kind`, a fresh redis-server, and one user `alice` with a key. */
/** A redis-server that can be stopped and started again on the same port (data not persisted). */
export interface RestartableRedis extends RedisHandle {
  start(): Promise<void>;
}

export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = await tmpDir('redis-rs');
  let proc: ReturnType<typeof spawnManaged> | null = null;
  const handle: RestartableRedis = {
    url: `redis://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    pid: 0,
    dir,
    logFile: join(dir, 'redis.log'),
    async start() {
      proc = spawnManaged(`redis-server:${port}`, '/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        cwd: dir,
        logFile: join(dir, 'redis.log'),
      });
      handle.pid = proc.pid;
      await waitUntil(`redis on ${port}`, proc, async () => (await redisCommand(port, ['PING'])) === 'PONG', 15_000, 20);
    },
    async stop() {
      await proc?.stop(2000);
      proc = null;
    },
  };
  await handle.start();
  return handle;
}

export async function startStack(kind: DbKind, extra: Partial<ServeOptions> = {}, fixtures: { redis?: RedisHandle } = {}): Promise<Stack> {
  let dbUrl: string;
  let pgHandle: PgHandle | null = null;
  if (kind === 'postgres') {
    pgHandle = await startPostgres();
    dbUrl = pgHandle.url;
  } else {
    dbUrl = 'pglite:memory';
  }
  const db = await openDb(dbUrl);
  await migrate(db);
  const user = await createUser(db, 'alice');
  const { key } = await createApiKey(db, user.id, 'test');
  const redis = fixtures.redis ?? (await startRedis());
  const dir = await tmpDir('orch');
  const signingKeyFile = join(dir, 'signing-key.pem');
  const opts = (): ServeOptions => ({
    listen: '127.0.0.1:0',
    databaseUrl: dbUrl,
    db,
    redisUrl: redis.url,
    signingKeyFiles: [signingKeyFile],
    fileRoot: join(dir, 'objects'),
    reapIntervalMs: 200,
    reconcileIntervalMs: 1000,
    ...extra,
  });
  const stack: Stack = {
    kind,
    db,
    dbUrl,
    redis,
    orch: await startOrchestrator(opts()),
    url: '',
    handle: 'alice',
    key,
    signingKeyFile,
    async restart(more = {}) {
      await stack.orch.close();
      // Same port: clients keep their base URL, as behind a load balancer.
      const port = new URL(stack.url).port;
      stack.orch = await startOrchestrator({ ...opts(), listen: `127.0.0.1:${port}`, ...more });
      stack.url = stack.orch.url;
    },
    async stop() {
      await stack.orch.close().catch(() => undefined);
      await redis.stop();
      await db.close().catch(() => undefined);
      await pgHandle?.stop();
    },
  };
  stack.url = stack.orch.url;
  return stack;
}

/** fetch against the orchestrator with a bearer key; returns status and parsed JSON. */
export async function call(
  base: string,
  key: string | null,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, body: parsed };
}

/** An Output that collects lines instead of printing. */
export function collectingOutput(lines: string[] = []): Output {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return new Output({}, sink, sink);
}

/** An active workspace, created by the real three-phase flow. */
export async function activeWorkspace(s: Stack, name: string, key = s.key): Promise<WorkspaceView> {
  const client = new ArtifactsClient({ baseUrl: s.url, apiKey: key });
  return createWorkspaceFlow(client, { name }, { out: collectingOutput() });
}

/** A second user with its own key, straight in the database (what `orchestrator user create` does). */
export async function addUser(s: Stack, handle: string): Promise<string> {
  const u = await createUser(s.db, handle);
  return (await createApiKey(s.db, u.id, 'test')).key;
}

/** A raw Redis connection as some ACL user: no retries, no ready check (sessions cannot INFO). */
export function redisAs(s: Stack, username: string, password: string): Redis {
  const r = new Redis({
    host: '127.0.0.1',
    port: s.redis.port,
    username,
    password,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
  });
  r.on('error', () => undefined);
  return r;
}

/** The reply to `AUTH user password` on a fresh connection: 'OK' or the error text. */
export async function authReply(s: Stack, username: string, password: string): Promise<string> {
  const v = await redisCommand(s.redis.port, ['AUTH', username, password]);
  return v instanceof RespError ? v.message : String(v);
}
