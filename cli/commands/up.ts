/**
 * `artifacts up`: the local stack on loopback, owned by this user:
 * - redis-server with ACLs on (the `default` user is off; an `admin` user with a random password),
 *   data under ~/.local/share/artifacts/redis;
 * - a database: Debian's PostgreSQL when it is installed (spawned on a unix socket in a 0700
 *   directory; ~0.2 s start, ~60 MB), else embedded PGlite (~10 s first start, ~300-800 MB);
 *   DATABASE_URL overrides both;
 * - the orchestrator (`artifacts orchestrator serve`), with a `file` object store under
 *   ~/.local/share/artifacts/objects as the default backend;
 * - a local user whose API key is saved to ~/.config/artifacts/credentials.json.
 * Pids and ports go to a state file that `artifacts down` reads.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { readCredentials, saveCredentials, writePrivateFile } from '../../orchestrator/client-config.js';
import type { Db } from '../../orchestrator/db.js';
import { HANDLE_RE } from '../../orchestrator/names.js';
import { randomBase62, sha256Hex } from '../../orchestrator/secrets.js';
import { type Output, outputOf, UsageError } from '../output.js';

export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'artifacts');
}

export const statePath = (env: NodeJS.ProcessEnv = process.env) => join(dataDir(env), 'stack.json');

export interface StackProcess {
  pid: number;
  port?: number;
  /** Substring of /proc/<pid>/cmdline identifying it (never signal a recycled pid). */
  match: string;
}

export interface StackState {
  version: 1;
  started_at: string;
  database: 'postgres' | 'pglite' | 'external';
  redis: StackProcess & { url: string };
  postgres?: StackProcess & { dir: string };
  orchestrator: StackProcess & { url: string; log: string };
  objects: string;
  handle: string;
}

export async function readState(env: NodeJS.ProcessEnv = process.env): Promise<StackState | null> {
  try {
    return JSON.parse(await readFile(statePath(env), 'utf8')) as StackState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** True if `p.pid` is alive and still the process we started. */
export function isOurs(p: StackProcess | undefined): boolean {
  if (!p) return false;
  try {
    const cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return false;
    return cmdline.includes(p.match);
  } catch {
    return false;
  }
}

async function freePort(preferred?: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(null));
      srv.listen(port, '127.0.0.1', () => {
        const got = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(got));
      });
    });
  if (preferred) {
    const p = await tryListen(preferred);
    if (p) return p;
  }
  const p = await tryListen(0);
  if (!p) throw new Error('no free port on 127.0.0.1');
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, pid: number, log?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    const tail = log && existsSync(log) ? `\n${readFileSync(log, 'utf8').split('\n').slice(-15).join('\n')}` : '';
    if (!alive) throw new Error(`${what} exited during startup${tail}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs / 1000} s${last ? ` (${last})` : ''}${tail}`);
    await sleep(100);
  }
}

/** Spawn detached (it outlives this command), output to `log`. */
function spawnDetached(cmd: string, args: string[], log: string, env: NodeJS.ProcessEnv = process.env): number {
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env });
    child.unref();
    if (!child.pid) throw new Error(`failed to start ${cmd}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function secretFile(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const v = randomBase62(32);
    await writePrivateFile(path, v + '\n');
    return v;
  }
}

async function startRedis(dir: string, out: Output): Promise<StackState['redis'] & { adminUrl: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const password = await secretFile(join(dir, 'admin.password'));
  const port = await freePort(6390);
  const conf = join(dir, 'redis.conf');
  await writePrivateFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode yes',
      `dir ${dir}`,
      'appendonly yes',
      'daemonize no',
      `logfile ${join(dir, 'redis.log')}`,
      // ACLs on: nobody gets in without a user; mount sessions are created by the orchestrator.
      // `off` alone would also strip the default user's permissions, and Redis 7.0 replays the
      // AOF's MULTI/EXEC blocks as the default user: every transaction written by a mount session
      // (all metadata writes) was refused at the next start and the volume lost. `off` still
      // refuses every connection as default.
      'user default off ~* &* +@all',
      `user admin on #${sha256Hex(password)} ~* &* +@all`,
      '',
    ].join('\n'),
  );
  const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(existsSync) ?? 'redis-server';
  const pid = spawnDetached(bin, [conf], join(dir, 'redis.stdout.log'));
  const adminUrl = `redis://admin:${password}@127.0.0.1:${port}`;
  await waitFor(
    'redis-server',
    async () => {
      const { Redis } = await import('ioredis');
      const r = new Redis({ host: '127.0.0.1', port, username: 'admin', password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => undefined);
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } finally {
        r.disconnect();
      }
    },
    15_000,
    pid,
    join(dir, 'redis.log'),
  );
  out.debug(`redis-server pid ${pid} on ${port}`);
  return { pid, port, match: 'redis-server', url: `redis://127.0.0.1:${port}`, adminUrl };
}

const PG_BIN_DIRS = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin', '/usr/lib/postgresql/14/bin'];

function pgBinDir(): string | null {
  return PG_BIN_DIRS.find((d) => existsSync(join(d, 'postgres')) && existsSync(join(d, 'initdb'))) ?? null;
}

/**
 * How to run PostgreSQL here, or why not. It refuses to run as root: as root we use the
 * `postgres` system user when it can reach the data directory.
 */
function postgresPlan(base: string): { bin: string; asUser: { uid: number; gid: number } | null } | { reason: string } {
  const bin = pgBinDir();
  if (!bin) return { reason: 'PostgreSQL is not installed' };
  if (process.getuid?.() !== 0) return { bin, asUser: null };
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const u = id('-u');
  const g = id('-g');
  if (u.status !== 0 || g.status !== 0) return { reason: 'running as root and there is no postgres system user' };
  const probe = spawnSync('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', 'sh', '-c', `cd "$1"`, 'sh', base]);
  if (probe.status !== 0) return { reason: `running as root and the postgres user cannot reach ${base}` };
  return { bin, asUser: { uid: Number(u.stdout), gid: Number(g.stdout) } };
}

async function pgAnswers(url: string): Promise<boolean> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function startPostgres(base: string, plan: { bin: string; asUser: { uid: number; gid: number } | null }, out: Output) {
  const dir = join(base, 'postgres');
  const data = join(dir, 'data');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const user = plan.asUser ? 'postgres' : userInfo().username;
  const wrap = (cmd: string, args: string[]): [string, string[]] =>
    plan.asUser ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', cmd, ...args]] : [cmd, args];
  if (plan.asUser) await chown(dir, plan.asUser.uid, plan.asUser.gid);
  if (!existsSync(join(data, 'PG_VERSION'))) {
    out.info('Initialising PostgreSQL (first run) ...');
    const [c, a] = wrap(join(plan.bin, 'initdb'), ['-D', data, '-U', user, '-A', 'trust', '-E', 'UTF8', '--no-sync']);
    const r = spawnSync(c, a, { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`initdb failed: ${r.stderr || r.stdout}`);
  }
  // Unix socket only, in a 0700 directory: trust auth is safe because only this user gets there.
  const [c, a] = wrap(join(plan.bin, 'postgres'), ['-D', data, '-k', dir, '-c', 'listen_addresses=', '-c', 'unix_socket_permissions=0700']);
  const pid = spawnDetached(c, a, join(dir, 'postgres.log'));
  const url = `postgres://${user}@/postgres?host=${encodeURIComponent(dir)}`;
  await waitFor('postgres', () => pgAnswers(url), 30_000, pid, join(dir, 'postgres.log'));
  return { pid, match: 'postgres', dir, url };
}

function localHandle(): string {
  const raw = (process.env.USER || userInfo().username || 'local').toLowerCase().replace(/[^a-z0-9-]/g, '-');
  const h = raw.replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 40);
  return HANDLE_RE.test(h) ? h : 'local';
}

/** The local user, and an API key: the saved one if it is still valid, else a new one. */
async function ensureLocalUser(db: Db, handle: string): Promise<{ key: string | null; minted: boolean }> {
  const { migrate } = await import('../../orchestrator/migrations/index.js');
  const { createApiKey, createUser, findUserByHandle } = await import('../../orchestrator/identity.js');
  await migrate(db);
  const user = (await findUserByHandle(db, handle)) ?? (await createUser(db, handle));
  const saved = await readCredentials();
  if (saved?.api_key) {
    const rows = await db.query<{ id: string }>(`SELECT id FROM api_keys WHERE key_hash = $1 AND user_id = $2 AND revoked_at IS NULL`, [
      sha256Hex(saved.api_key),
      user.id,
    ]);
    if (rows[0]) return { key: saved.api_key, minted: false };
  }
  const { key } = await createApiKey(db, user.id, 'local-stack');
  return { key, minted: true };
}

function cliEntry(): string {
  const entry = process.env.ARTIFACTS_CLI_ENTRY || process.argv[1];
  if (!entry) throw new Error('cannot tell where the artifacts CLI lives (set ARTIFACTS_CLI_ENTRY)');
  return entry;
}

interface UpFlags {
  db: 'auto' | 'postgres' | 'pglite';
  port?: string;
}

export async function up(flags: UpFlags, out: Output): Promise<StackState> {
  const base = dataDir();
  const existing = await readState();
  if (existing && isOurs(existing.orchestrator) && isOurs(existing.redis)) {
    out.info(`The local stack is already up (orchestrator ${existing.orchestrator.url}); \`artifacts down\` stops it.`);
    return existing;
  }
  if (existing) await stopStack(existing, out); // half-dead leftovers
  // Parents we create get the usual 0755 (a 0700 ~/.local would lock PostgreSQL's user out).
  await mkdir(join(base, '..'), { recursive: true, mode: 0o755 });
  await mkdir(base, { recursive: true, mode: 0o700 });
  // 0711 lets a root-run stack hand PostgreSQL (which refuses root) its own 0700 sub-directory;
  // every sub-directory and file is private anyway.
  await chmod(base, process.getuid?.() === 0 ? 0o711 : 0o700);
  const objects = join(base, 'objects');
  await mkdir(objects, { recursive: true, mode: 0o700 });
  const t0 = Date.now();
  const started: StackProcess[] = [];
  try {
    const redis = await startRedis(join(base, 'redis'), out);
    started.push(redis);

    let database: StackState['database'];
    let dbUrl: string;
    let postgres: StackState['postgres'];
    if (process.env.DATABASE_URL) {
      database = 'external';
      dbUrl = process.env.DATABASE_URL;
    } else {
      const plan = flags.db === 'pglite' ? { reason: '--db pglite' } : postgresPlan(base);
      if ('reason' in plan) {
        if (flags.db === 'postgres') throw new UsageError(`cannot use PostgreSQL: ${plan.reason}`);
        out.debug(`database: PGlite (${plan.reason})`);
        database = 'pglite';
        dbUrl = `pglite:${join(base, 'pglite')}`;
      } else {
        const p = await startPostgres(base, plan, out);
        started.push(p);
        postgres = { pid: p.pid, match: p.match, dir: p.dir };
        database = 'postgres';
        dbUrl = p.url;
      }
    }

    const handle = localHandle();
    // PGlite serves one process: set up the user here, close, then hand it to the server.
    const { openDb } = await import('../../orchestrator/db.js');
    const db = await openDb(dbUrl);
    let key: string | null;
    try {
      ({ key } = await ensureLocalUser(db, handle));
    } finally {
      await db.close();
    }

    const orchDir = join(base, 'orchestrator');
    await mkdir(orchDir, { recursive: true, mode: 0o700 });
    const port = flags.port ? Number(flags.port) : await freePort(8787);
    const log = join(orchDir, 'orchestrator.log');
    const listen = `127.0.0.1:${port}`;
    // Secrets travel in the environment, not argv (argv is world-readable in /proc).
    const pid = spawnDetached(
      process.execPath,
      [cliEntry(), 'orchestrator', 'serve', '--listen', listen, '--signing-key', join(orchDir, 'signing-key.pem'), '--file-root', objects],
      log,
      { ...process.env, DATABASE_URL: dbUrl, REDIS_URL: redis.adminUrl },
    );
    started.push({ pid, match: 'orchestrator' });
    const url = `http://${listen}`;
    await waitFor('orchestrator', async () => (await fetch(`${url}/healthz`)).status === 200, 120_000, pid, log);

    await saveCredentials({ api_key: key!, orchestrator_url: url, handle });
    const state: StackState = {
      version: 1,
      started_at: new Date().toISOString(),
      database,
      redis: { pid: redis.pid, port: redis.port, match: redis.match, url: redis.url },
      postgres,
      orchestrator: { pid, port, match: 'orchestrator', url, log },
      objects,
      handle,
    };
    await writePrivateFile(statePath(), JSON.stringify(state, null, 2) + '\n');
    out.debug(`stack up in ${Date.now() - t0} ms`);
    return state;
  } catch (err) {
    for (const p of started.reverse()) await stopProcess(p, 10_000);
    throw err;
  }
}

async function stopProcess(p: StackProcess, graceMs: number): Promise<boolean> {
  if (!isOurs(p)) return false;
  // postgres: SIGINT = fast shutdown; the others finish cleanly on SIGTERM.
  process.kill(p.pid, p.match === 'postgres' ? 'SIGINT' : 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isOurs(p) && Date.now() < deadline) await sleep(50);
  if (isOurs(p)) process.kill(p.pid, 'SIGKILL');
  while (isOurs(p)) await sleep(20);
  return true;
}

/** Orchestrator first (it holds the others), then Redis, then PostgreSQL. */
export async function stopStack(s: StackState, out: Output): Promise<string[]> {
  const stopped: string[] = [];
  if (await stopProcess(s.orchestrator, 15_000)) stopped.push(`orchestrator (pid ${s.orchestrator.pid})`);
  if (await stopProcess(s.redis, 15_000)) stopped.push(`redis-server (pid ${s.redis.pid})`);
  if (s.postgres && (await stopProcess(s.postgres, 30_000))) stopped.push(`postgres (pid ${s.postgres.pid})`);
  await rm(statePath(), { force: true });
  out.debug(`stopped: ${stopped.join(', ') || 'nothing'}`);
  return stopped;
}

export function register(program: Command): void {
  program
    .command('up')
    .description('start the local stack (redis-server with ACLs, a database, the orchestrator) and log in to it')
    .addOption(new Option('--db <kind>', 'database: auto (PostgreSQL if installed, else PGlite), postgres or pglite').choices(['auto', 'postgres', 'pglite']).default('auto'))
    .option('--port <port>', 'orchestrator port (default 8787, or a free one)')
    .action(async (flags: UpFlags, cmd: Command) => {
      const out = outputOf(cmd);
      const s = await up(flags, out);
      if (out.json) {
        out.result({ state: s, credentials: (await readCredentials()) ? 'saved' : 'missing' });
        return;
      }
      out.info(
        [
          'Local stack is up:',
          `  redis         ${s.redis.url} (pid ${s.redis.pid}, ACLs on, data ${join(dataDir(), 'redis')})`,
          `  database      ${s.database}${s.postgres ? ` (pid ${s.postgres.pid}, ${s.postgres.dir})` : s.database === 'pglite' ? ` (${join(dataDir(), 'pglite')})` : ''}`,
          `  orchestrator  ${s.orchestrator.url} (pid ${s.orchestrator.pid}, log ${s.orchestrator.log})`,
          `  objects       file://${s.objects}/`,
          `  user          ${s.handle} (API key saved; \`artifacts whoami\`)`,
          'Next: artifacts workspace create demo ./demo',
        ].join('\n'),
      );
    });
}
