/**
 * Assemble and run an orchestrator: database (+ migrations), Redis admin, signing keys, HTTP
 * server, background jobs. Used by `artifacts orchestrator serve` and by the tests.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Ctx, Logger } from './context.js';
import { openDb, redactUrl, type Db } from './db.js';
import { Jobs } from './jobs.js';
import { MetaAdmin } from './meta-admin.js';
import { Metrics } from './metrics.js';
import { LATEST_VERSION, migrate, schemaVersion } from './migrations/index.js';
import { buildServer } from './server.js';
import { SigningKey } from './ticket.js';

export interface ServeOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  databaseUrl: string;
  /** Admin connection (may carry credentials). */
  redisUrl: string;
  /** What clients are told to connect to; default: redisUrl without credentials. */
  publicRedisUrl?: string;
  /** PEM Ed25519 private keys; the first signs, all are published. Missing files are generated. */
  signingKeyFiles: string[];
  /** Base URL for `iss`; default http://<listen address>. */
  publicUrl?: string;
  fileRoot?: string;
  /** Run pending migrations at startup (default true); false refuses an outdated schema. */
  migrate?: boolean;
  reapIntervalMs?: number;
  reconcileIntervalMs?: number;
  formatTtlSeconds?: number;
  ownerTicketSeconds?: number;
  logger?: FastifyServerOptions['logger'];
  /** An already open database (tests share one). */
  db?: Db;
}

export interface RunningOrchestrator {
  url: string;
  app: FastifyInstance;
  ctx: Ctx;
  jobs: Jobs;
  close(): Promise<void>;
}

/** Structured-log settings: JSON lines, secrets redacted wherever they could appear. */
export function defaultLogger(level = 'info'): FastifyServerOptions['logger'] {
  return {
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.key', 'password', 'key', 'mount_ticket'],
      censor: '[redacted]',
    },
  };
}

export async function loadSigningKey(file: string, log?: Logger): Promise<SigningKey> {
  try {
    return SigningKey.fromPem(await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const key = SigningKey.generate();
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, key.toPem(), { mode: 0o600, flag: 'wx' });
    await chmod(file, 0o600);
    log?.warn({ file, kid: key.kid }, 'generated a new ticket signing key');
    return key;
  }
}

export async function startOrchestrator(opts: ServeOptions): Promise<RunningOrchestrator> {
  const ownDb = !opts.db;
  const db = opts.db ?? (await openDb(opts.databaseUrl));
  let meta: MetaAdmin | null = null;
  try {
    if (opts.migrate === false) {
      const v = await schemaVersion(db);
      if (v < LATEST_VERSION) throw new Error(`database schema is at version ${v}, need ${LATEST_VERSION}: run \`artifacts orchestrator migrate\``);
    } else {
      await migrate(db);
    }
    const metrics = new Metrics();
    let jobs: Jobs | null = null;
    meta = await MetaAdmin.connect(opts.redisUrl, { onReconnect: () => void jobs?.reconcile() });
    const pending = new Set<Promise<unknown>>();
    const ctxRef: { ctx?: Ctx } = {};
    const app = buildServer(
      (ctxRef.ctx = {
        db,
        meta,
        keys: [],
        config: {
          issuer: opts.publicUrl ?? '',
          publicRedisUrl: opts.publicRedisUrl ?? meta.publicUrl,
          fileRoot: opts.fileRoot,
          formatTtlSeconds: opts.formatTtlSeconds ?? 900,
          ownerTicketSeconds: opts.ownerTicketSeconds ?? 86_400,
        },
        metrics,
        log: console as unknown as Logger,
        background(name, work) {
          const p = work()
            .catch((err: unknown) => ctxRef.ctx!.log.warn({ err: String(err), task: name }, 'background task failed; the reaper will retry'))
            .finally(() => pending.delete(p));
          pending.add(p);
        },
      }),
      { logger: opts.logger ?? false },
    );
    const ctx = ctxRef.ctx;
    ctx.log = app.log;
    ctx.keys = await Promise.all(opts.signingKeyFiles.map((f) => loadSigningKey(f, ctx.log)));
    if (ctx.keys.length === 0) throw new Error('at least one signing key file is needed');
    metrics.gauge('artifacts_orchestrator_background_tasks', 'Background tasks in flight.', () => pending.size);

    jobs = new Jobs(ctx, { reapIntervalMs: opts.reapIntervalMs ?? 1000, reconcileIntervalMs: opts.reconcileIntervalMs ?? 10_000 });
    // Redis may have restarted while we were down: live sessions get their ACL users back first.
    await jobs.reconcile();
    await jobs.reap();

    const { host, port } = splitListen(opts.listen);
    await app.listen({ host, port });
    const addr = app.server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : port;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
    if (!opts.publicUrl) ctx.config.issuer = url;
    jobs.start();
    app.log.info({ url, database: redactUrl(opts.databaseUrl), redis: ctx.config.publicRedisUrl, kid: ctx.keys[0]!.kid }, 'orchestrator listening');

    let closed = false;
    return {
      url,
      app,
      ctx,
      jobs,
      async close() {
        if (closed) return;
        closed = true;
        await jobs!.stop();
        await app.close();
        await Promise.allSettled([...pending]);
        await meta!.close();
        if (ownDb) await db.close();
      },
    };
  } catch (err) {
    await meta?.close().catch(() => undefined);
    if (ownDb) await db.close().catch(() => undefined);
    throw err;
  }
}

export function splitListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen);
  if (!m) throw new Error(`listen address must be host:port, got ${JSON.stringify(listen)}`);
  return { host: m[1] || m[2] || '127.0.0.1', port: Number(m[3]) };
}
