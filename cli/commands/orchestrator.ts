/**
 * `artifacts orchestrator serve|migrate|user create`: run the control plane, apply schema
 * migrations, create users (the first API key is printed once).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { HANDLE_RE } from '../../orchestrator/names.js';
import { outputOf, UsageError } from '../output.js';

export function defaultSigningKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'artifacts', 'orchestrator', 'signing-key.pem');
}

const dbOption = () =>
  new Option('--database-url <url>', 'postgres://… or pglite:<dir> (embedded)').env('DATABASE_URL').makeOptionMandatory();

interface ServeFlags {
  listen: string;
  databaseUrl: string;
  redisUrl: string;
  publicRedisUrl?: string;
  signingKey: string[];
  publicUrl?: string;
  fileRoot?: string;
  migrate: boolean;
  logLevel: string;
  reapInterval: string;
}

export function register(program: Command): void {
  const orch = program.command('orchestrator').description('the control plane: HTTP API, users, migrations');

  orch
    .command('serve')
    .description('run the orchestrator HTTP service')
    .addOption(new Option('--listen <host:port>', 'listen address').env('ARTIFACTS_LISTEN').default('127.0.0.1:8787'))
    .addOption(dbOption())
    .addOption(new Option('--redis-url <url>', 'admin connection to the metadata Redis (ACL users, key cleanup)').env('REDIS_URL').makeOptionMandatory())
    .addOption(new Option('--public-redis-url <url>', 'Redis URL given to clients (default: --redis-url without credentials)').env('ARTIFACTS_PUBLIC_REDIS_URL'))
    .addOption(
      new Option('--signing-key <file>', 'Ed25519 PEM key signing mount tickets; repeat to publish old keys (the first signs); created if missing')
        .env('ARTIFACTS_SIGNING_KEY_FILE')
        .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]),
    )
    .addOption(new Option('--public-url <url>', 'base URL clients use (ticket issuer)').env('ARTIFACTS_PUBLIC_URL'))
    .addOption(new Option('--file-root <dir>', 'default directory for `file` workspaces').env('ARTIFACTS_FILE_ROOT'))
    .option('--no-migrate', 'refuse to start on an outdated schema instead of migrating')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'))
    .option('--reap-interval <ms>', 'how often expired sessions are reaped', '1000')
    .action(async (flags: ServeFlags, cmd: Command) => {
      const out = outputOf(cmd);
      // Loaded here, not at startup: fastify and pg cost every other command ~250 ms.
      const { defaultLogger, startOrchestrator } = await import('../../orchestrator/serve.js');
      const signingKeyFiles = flags.signingKey?.length ? flags.signingKey : [defaultSigningKeyFile()];
      const running = await startOrchestrator({
        listen: flags.listen,
        databaseUrl: flags.databaseUrl,
        redisUrl: flags.redisUrl,
        publicRedisUrl: flags.publicRedisUrl,
        signingKeyFiles,
        publicUrl: flags.publicUrl,
        fileRoot: flags.fileRoot,
        migrate: flags.migrate,
        reapIntervalMs: Number(flags.reapInterval) || 1000,
        logger: defaultLogger(flags.logLevel),
      });
      out.debug(`orchestrator listening on ${running.url}`);
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          running.app.log.info({ signal: sig }, 'shutting down');
          void running.close().finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  orch
    .command('migrate')
    .description('apply pending schema migrations')
    .addOption(dbOption())
    .action(async (flags: { databaseUrl: string }, cmd: Command) => {
      const out = outputOf(cmd);
      const { openDb } = await import('../../orchestrator/db.js');
      const { migrate, schemaVersion } = await import('../../orchestrator/migrations/index.js');
      const db = await openDb(flags.databaseUrl);
      try {
        const applied = await migrate(db);
        const version = await schemaVersion(db);
        if (out.json) out.result({ applied, version });
        else out.info(applied.length ? `Applied migrations ${applied.join(', ')}; schema at version ${version}.` : `Schema is up to date (version ${version}).`);
      } finally {
        await db.close();
      }
    });

  const user = orch.command('user').description('users');
  user
    .command('create')
    .description('create a user and print its first API key (shown once)')
    .argument('<handle>', 'handle (a-z, 0-9, -; 2-40 characters)')
    .addOption(dbOption())
    .option('--key-name <name>', 'label of the key', 'initial')
    .action(async (handle: string, flags: { databaseUrl: string; keyName: string }, cmd: Command) => {
      const out = outputOf(cmd);
      if (!HANDLE_RE.test(handle)) throw new UsageError(`handle must match ${HANDLE_RE.source}`);
      const { openDb, redactUrl } = await import('../../orchestrator/db.js');
      const { migrate } = await import('../../orchestrator/migrations/index.js');
      const { createApiKey, createUser, findUserByHandle } = await import('../../orchestrator/identity.js');
      const db = await openDb(flags.databaseUrl);
      try {
        await migrate(db);
        if (await findUserByHandle(db, handle)) throw new UsageError(`user ${handle} already exists`);
        const { u, key, row } = await db.tx(async (q) => {
          const u = await createUser(q, handle);
          const k = await createApiKey(q, u.id, flags.keyName);
          return { u, key: k.key, row: k.row };
        });
        if (out.json) {
          out.result({ user: { id: u.id, handle: u.handle }, api_key: { id: row.id, name: row.name }, key });
        } else {
          out.info(`Created user ${u.handle} (id ${u.id}) in ${redactUrl(flags.databaseUrl)}. API key (shown once, store it now):`);
          out.print(key);
        }
      } finally {
        await db.close();
      }
    });
}
