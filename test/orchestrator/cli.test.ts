/**
 * The orchestrator side of the `artifacts` binary, end to end as a user runs it: the project is
 * compiled into a private directory, then `node main.js ...` in a fresh HOME.
 * - operator: `orchestrator migrate`, `orchestrator user create`, `orchestrator serve` (a real
 *   process on real PostgreSQL and redis-server);
 * - user: login/whoami/logout, workspace create (exact phase lines)/list/show/delete, the BYO path
 *   on a real S3 server (seaweedfs), storage set/show/clear, platform tenant/grant/ticket/session;
 * - the local stack: `artifacts up`, `workspace create demo ./demo` (created, formatted, mounted),
 *   `unmount`, `artifacts down`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveMountSource } from '../../orchestrator/mount-source.js';
import { freePort, killQuietly, redisCommand, registerCleanup, RespError, spawnManaged, startRedis, startS3, tmpDir, waitUntil, type RedisHandle, type S3Handle } from '../helpers/servers.js';
import { startPostgres, type PgHandle } from './harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let OUT = '';
let MAIN = '';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let baseEnv: Record<string, string> = {};

function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', ...baseEnv, ...env },
      cwd: baseEnv.HOME,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}


/**
 * `artifacts up` detaches its servers on purpose; a failing test must still not leave them
 * running: `down` in a finally, and a last-resort kill of the state file's pids at worker exit.
 */
function guardStack(home: string): () => Promise<void> {
  const stateFile = path.join(home, '.local/share/artifacts/stack.json');
  const killAll = () => {
    try {
      const st = JSON.parse(readFileSync(stateFile, 'utf8'));
      for (const p of [st.orchestrator?.pid, st.redis?.pid, st.postgres?.pid]) if (p) killQuietly(p, 'SIGKILL');
    } catch {
      // no state: nothing running
    }
  };
  const unregister = registerCleanup(killAll);
  return async () => {
    if (existsSync(stateFile)) await cli(['down'], { HOME: home }).catch(() => undefined);
    killAll();
    unregister();
  };
}

const lines = (s: string) => s.split('\n').filter(Boolean);
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

beforeAll(async () => {
  // Compile the project into a private directory inside the repo (node_modules must resolve).
  OUT = path.join(ROOT, '.tmp', `orch-cli-${process.pid}`);
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--outDir', OUT], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 540_000,
  });
  const mine = (tsc.stdout ?? '').split('\n').filter((l) => /^(orchestrator\/|cli\/commands\/(workspace|login|logout|whoami|storage|platform|up|down|orchestrator)\.ts|cli\/main\.ts)/.test(l));
  expect(mine, 'type errors in the orchestrator or its CLI').toEqual([]);
  MAIN = path.join(OUT, 'cli/main.js');
  expect(existsSync(MAIN), `tsc did not emit ${MAIN}:\n${tsc.stdout}${tsc.stderr}`).toBe(true);
}, 600_000);

afterAll(() => {
  if (OUT) spawnSync('rm', ['-rf', OUT]);
});

describe('operator and user commands against a served orchestrator', () => {
  let pg: PgHandle;
  let redis: RedisHandle;
  let s3: S3Handle;
  let home: string;
  let url: string;
  let key: string;
  let stopServer: () => Promise<void>;
  let serveLog = '';

  beforeAll(async () => {
    [pg, redis, s3] = await Promise.all([startPostgres(), startRedis(), startS3()]);
    home = await tmpDir('cli-home');
    baseEnv = { HOME: home };
  }, 300_000);
  afterAll(async () => {
    await stopServer?.();
    await Promise.all([pg?.stop(), redis?.stop(), s3?.stop()]);
  });

  it('migrates, creates a user (key shown once) and serves', async () => {
    const m = await cli(['orchestrator', 'migrate'], { DATABASE_URL: pg.url });
    expect(m.code, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/Applied migrations 1; schema at version 1\./);
    expect((await cli(['orchestrator', 'migrate'], { DATABASE_URL: pg.url })).stderr).toMatch(/up to date \(version 1\)/);

    const bad = await cli(['orchestrator', 'user', 'create', 'Not_A_Handle', '--database-url', pg.url]);
    expect(bad.code).toBe(2);
    const u = await cli(['orchestrator', 'user', 'create', 'carol', '--database-url', pg.url]);
    expect(u.code, u.stderr).toBe(0);
    key = u.stdout.trim();
    expect(key).toMatch(/^art_[0-9A-Za-z]{32}$/);
    expect((await cli(['orchestrator', 'user', 'create', 'carol', '--database-url', pg.url])).code).toBe(2);

    const port = await freePort();
    const dir = await tmpDir('orch-serve');
    serveLog = path.join(dir, 'orchestrator.log');
    const proc = spawnManaged(
      'orchestrator',
      process.execPath,
      [MAIN, 'orchestrator', 'serve', '--listen', `127.0.0.1:${port}`, '--signing-key', path.join(dir, 'key.pem'), '--file-root', path.join(dir, 'objects')],
      { cwd: dir, logFile: path.join(dir, 'orchestrator.log'), env: { PATH: process.env.PATH ?? '', HOME: home, DATABASE_URL: pg.url, REDIS_URL: redis.url } },
    );
    stopServer = () => proc.stop(10_000);
    url = `http://127.0.0.1:${port}`;
    await waitUntil('orchestrator', proc, async () => (await fetch(`${url}/healthz`)).status === 200, 60_000);
    expect(mode(path.join(dir, 'key.pem'))).toBe('600');
    const log = readFileSync(path.join(dir, 'orchestrator.log'), 'utf8');
    expect(log).toContain('"msg":"orchestrator listening"');
    // The OpenAPI document lists every route of product.md section 8.
    const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [p, m2] of [
      ['/whoami', 'get'], ['/api-keys', 'post'], ['/api-keys/{id}', 'delete'], ['/workspaces', 'post'], ['/workspaces', 'get'],
      ['/workspaces/{handle}/{name}', 'delete'], ['/workspaces/{handle}/{name}/format-completed', 'post'],
      ['/workspaces/{handle}/{name}/mount-sessions', 'post'], ['/mount-sessions', 'get'], ['/mount-sessions/{id}', 'delete'],
      ['/platform/tenants', 'post'], ['/platform/tenants/{slug}', 'delete'], ['/platform/grants', 'post'], ['/platform/grants/{id}', 'delete'],
      ['/platform/tickets', 'post'],
    ]) {
      expect(doc.paths[p!]?.[m2!], `${m2} ${p}`).toBeDefined();
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('artifacts_orchestrator_http_requests_total');
  });

  it('logs in, runs the workspace lifecycle with the upstream lines, and logs out', async () => {
    expect((await cli(['whoami'])).code).toBe(1); // not logged in yet
    const login = await cli(['login', '--token', key, '--url', url]);
    expect(login.code, login.stderr).toBe(0);
    const cred = path.join(home, '.config/artifacts/credentials.json');
    expect(mode(cred)).toBe('600');
    expect((await cli(['whoami'])).stdout).toMatch(/^carol \(key art_/);

    const c = await cli(['workspace', 'create', 'demo']);
    expect(c.code, c.stderr).toBe(0);
    const prefix = /key prefix=(\{u_\d+_w_\d+\}:)/.exec(c.stderr)?.[1];
    expect(lines(c.stderr)).toEqual([
      'Phase 1: reserving artifacts://carol/demo on the orchestrator',
      `Workspace artifacts://carol/demo reserved (status=pending_format, key prefix=${prefix})`,
      expect.stringMatching(/^Phase 2: formatting volume carol-demo-\d+ in-process/),
      'Phase 3: confirming format completion with the orchestrator',
      'Workspace artifacts://carol/demo is active.',
    ]);
    const again = await cli(['workspace', 'create', 'demo']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/workspace_exists: workspace carol\/demo already exists \(status=active\)\nhint: /);

    const list = await cli(['--format', 'json', 'workspace', 'list']);
    const parsed = JSON.parse(list.stdout) as { workspaces: { identifier: string; status: string }[] };
    expect(parsed.workspaces.map((w) => [w.identifier, w.status])).toEqual([['artifacts://carol/demo', 'active']]);
    expect(lines((await cli(['workspace', 'list'])).stdout)[0]).toMatch(/^IDENTIFIER\s+STATUS\s+BACKEND\s+BUCKET\s+CREATED$/);
    const show = await cli(['workspace', 'show', 'artifacts://carol/demo']);
    expect(show.stdout).toMatch(/Status:\s+active/);
    expect(show.stdout).toContain(`Key prefix:    ${prefix}`);

    const noYes = await cli(['workspace', 'delete', 'demo']);
    expect(noYes.code).toBe(2);
    const del = await cli(['workspace', 'delete', 'demo', '--yes', '--wait']);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stderr).toMatch(/is being deleted \(status=deleting\)/);
    expect(del.stderr).toMatch(/Workspace artifacts:\/\/carol\/demo is deleted\./);

    const wrong = await cli(['workspace', 'list'], { ARTIFACTS_API_KEY: 'art_' + '0'.repeat(32) });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/unauthorized: invalid api key\nhint: /);

    const out = await cli(['logout']);
    expect(out.stderr).toMatch(/Logged out/);
    expect(existsSync(cred)).toBe(false);
    expect((await cli(['whoami'])).stderr).toMatch(/not logged in/);
    await cli(['login', '--token', key, '--url', url]);
  });

  it('creates a BYO workspace on S3; the keys never reach Redis or the orchestrator; storage set/show/clear', async () => {
    await s3.createBucket('byo-bucket');
    const env = {
      ARTIFACTS_S3_ENDPOINT: s3.endpoint,
      ARTIFACTS_S3_BUCKET: 'byo-bucket',
      ARTIFACTS_S3_REGION: s3.region,
      ARTIFACTS_S3_ACCESS_KEY_ID: s3.accessKey,
      ARTIFACTS_S3_SECRET_ACCESS_KEY: s3.secretKey,
    };
    const noCreds = await cli(['workspace', 'create', 's3ws', '--bucket', 'byo-bucket', '--endpoint', s3.endpoint]);
    expect(noCreds.code).toBe(2);
    expect(noCreds.stderr).toMatch(/no S3 credentials/);

    const c = await cli(['workspace', 'create', 's3ws'], env);
    expect(c.code, c.stderr).toBe(0);
    const cache = path.join(home, '.config/artifacts/byo-credentials');
    expect(lines(c.stderr).at(-1)).toBe(`Cached BYO credentials at ${cache} (mode 0600); future mounts will use them automatically.`);
    expect(mode(cache)).toBe('600');
    const w = JSON.parse((await cli(['--format', 'json', 'workspace', 'show', 's3ws'])).stdout).workspace;
    expect(w.backend).toBe('byo');
    expect(w.storage).toEqual({ endpoint: s3.endpoint, bucket: 'byo-bucket', prefix: '', region: s3.region });

    const raw = new Redis(redis.url);
    const setting = (await raw.get(w.key_prefix + 'setting'))!;
    raw.disconnect();
    expect(setting).not.toContain(s3.secretKey);
    expect(setting).not.toContain(s3.accessKey);
    expect(JSON.parse(setting).Bucket).toBe(`${s3.endpoint}/byo-bucket`);
    const objects = await (await s3.client()).send(new ListObjectsV2Command({ Bucket: 'byo-bucket' }));
    expect((objects.Contents ?? []).map((o) => o.Key)).toEqual([`${w.volume_name}/juicefs_uuid`]);
    const rows = await fetch(`${url}/workspaces`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.text());
    expect(rows).not.toContain(s3.secretKey);

    // A mount of it gets the keys from the cache (not from the orchestrator).
    const src = await resolveMountSource({ workspace: 's3ws', env: { HOME: home, PATH: process.env.PATH ?? '' } });
    expect(src.storageCredentials.SECRET_ACCESS_KEY).toBe(s3.secretKey);
    expect(src.prefix).toBe(w.key_prefix);
    await src.release();

    const show = await cli(['storage', 'show']);
    expect(show.stdout).toContain(`ACCESS_KEY_ID: ${s3.accessKey.slice(0, 4)}***${s3.accessKey.slice(-4)}`);
    expect(show.stdout).not.toContain(s3.secretKey);
    expect(show.stdout).toContain('SESSION_TOKEN: (unset)');
    expect((await cli(['storage', 'set', '--region', 'eu-test-1'])).code).toBe(0);
    expect((await cli(['storage', 'show'])).stdout).toContain('REGION: eu-test-1');
    expect((await cli(['storage', 'show'])).stdout).toContain(`${s3.accessKey.slice(0, 4)}***`); // other fields kept
    expect((await cli(['logout'])).code).toBe(0);
    expect(existsSync(cache)).toBe(true); // logout keeps the BYO cache
    await cli(['login', '--token', key, '--url', url]);
    expect((await cli(['storage', 'clear'])).stderr).toMatch(/Removed/);
    expect(existsSync(cache)).toBe(false);
  });

  it('platform tenant, grant, ticket (file 0600, verified by the mount side) and session commands', async () => {
    expect((await cli(['workspace', 'create', 'shared'])).code).toBe(0);
    const t = await cli(['platform', 'tenant', 'create', 'acme', '--external-id', 'cust-42', '--metadata', 'plan=pro']);
    expect(t.code, t.stderr).toBe(0);
    const dup = await cli(['platform', 'tenant', 'create', 'acme']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/tenant_exists/);
    const g = await cli(['--format', 'json', 'platform', 'grant', 'create', 'shared', '--tenant', 'acme', '--mode', 'ro', '--ttl', '1h']);
    expect(g.code, g.stderr).toBe(0);
    const grant = JSON.parse(g.stdout).grant;
    expect(grant).toMatchObject({ tenant: 'acme', runtime: null, mode: 'ro', status: 'active', workspace: 'carol/shared' });

    const ticketFile = path.join(home, 'ticket.jws');
    const tk = await cli(['platform', 'ticket', 'create', 'shared', '--to', 'acme/run-7', '--mode', 'ro', '--ttl', '10m', '-o', ticketFile]);
    expect(tk.code, tk.stderr).toBe(0);
    expect(tk.stdout).toBe('');
    expect(mode(ticketFile)).toBe('600');
    // The runtime side: verify against the orchestrator's JWKS, refuse another workspace or a tampered copy.
    const env = { HOME: home, PATH: process.env.PATH ?? '', ARTIFACTS_ORCHESTRATOR_URL: url };
    const src = await resolveMountSource({ ticketFile, env });
    expect(src).toMatchObject({ name: 'carol/shared', readOnly: true });
    expect(src.metaUrl).toMatch(/^redis:\/\/ms-[a-z0-9]{20}:[0-9A-Za-z]{40}@127\.0\.0\.1:\d+$/);
    await expect(resolveMountSource({ ticketFile, workspace: 'carol/other', env })).rejects.toThrow(/for workspace carol\/shared, not carol\/other/);
    const [h, p, sig] = (await readFile(ticketFile, 'utf8')).trim().split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    await writeFile(path.join(home, 'forged.jws'), `${h}.${Buffer.from(JSON.stringify({ ...payload, mode: 'rw' })).toString('base64url')}.${sig}`);
    await expect(resolveMountSource({ ticketFile: path.join(home, 'forged.jws'), env })).rejects.toThrow(/signature is invalid/);

    const toStdout = await cli(['platform', 'ticket', 'create', 'shared', '--to', 'acme/run-8', '--mode', 'rw', '--ttl', '1h']);
    // The tenant-wide grant is ro, but the one-shot path creates an rw grant scoped to run-8.
    expect(toStdout.code, toStdout.stderr).toBe(0);
    expect(toStdout.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const sessions = JSON.parse((await cli(['--format', 'json', 'platform', 'session', 'list'])).stdout).mount_sessions;
    expect(sessions.some((x: { runtime: string }) => x.runtime === 'run-7')).toBe(true);
    const id = sessions.find((x: { runtime: string }) => x.runtime === 'run-7').id;
    expect((await cli(['platform', 'session', 'revoke', id])).code).toBe(0);
    const gl = await cli(['platform', 'grant', 'list', '--tenant', 'acme']);
    expect(gl.stdout).toMatch(/^ID\s+TENANT\s+RUNTIME\s+WORKSPACE\s+MODE\s+STATUS\s+EXPIRES/);
    expect((await cli(['platform', 'grant', 'revoke', grant.id])).stderr).toMatch(/revoked/);
    const del = await cli(['platform', 'tenant', 'delete', 'acme']);
    expect(del.code).toBe(0);
    expect(del.stderr).toMatch(/Tenant acme deleted/);
    expect((await cli(['platform', 'tenant', 'list'])).stdout).not.toMatch(/acme/);
    expect((await cli(['platform', 'ticket', 'create', 'shared', '--to', 'bad', '--mode', 'ro', '--ttl', '1h'])).code).toBe(2);
    // After all of the above, the structured log holds no secret: no API key, no Redis password, no ticket.
    const log = readFileSync(serveLog, 'utf8');
    expect(log.split('\n').filter(Boolean).every((l) => l.startsWith('{'))).toBe(true);
    expect(log).not.toContain(key);
    expect(log).not.toMatch(/art_[0-9A-Za-z]{32}/);
    expect(log).not.toContain(src.metaUrl.split(':')[2]!.split('@')[0]!); // the session password
    expect(log).not.toContain(sig!);
    expect(log).toMatch(/"msg":"mount sessions revoked"/);
    expect((await cli(['platform', 'ticket', 'create', 'shared', '--to', 'a/b', '--mode', 'ro', '--ttl', 'soon'])).code).toBe(2);
  });
});

describe('the local stack', () => {
  it('`up`, then `workspace create demo ./demo` creates, formats and mounts; `down` stops everything', async () => {
    const home = await tmpDir('stack-home');
    // A usual home (0755): when run as root, PostgreSQL's own user must reach its data directory.
    await chmod(home, 0o755);
    baseEnv = { HOME: home, ARTIFACTS_CLI_ENTRY: MAIN };
    const cleanup = guardStack(home);
    try {
      const t0 = Date.now();
      const up = await cli(['up'], {}, 300_000);
      const upMs = Date.now() - t0;
      expect(up.code, up.stderr).toBe(0);
      console.log(`artifacts up: ${upMs} ms\n${up.stderr}`);
      expect(up.stderr).toMatch(/Local stack is up/);
      expect(up.stderr).toMatch(/database\s+postgres \(pid \d+/); // PostgreSQL is installed here: preferred over PGlite
      const state = JSON.parse(readFileSync(path.join(home, '.local/share/artifacts/stack.json'), 'utf8'));
      expect(mode(path.join(home, '.local/share/artifacts/stack.json'))).toBe('600');
      // Redis really has ACLs on: no anonymous access.
      const anon = await redisCommand(state.redis.port, ['GET', 'x']);
      expect(anon).toBeInstanceOf(RespError);
      expect(String((anon as RespError).message)).toMatch(/NOAUTH/);
      expect((await cli(['up'])).stderr).toMatch(/already up/);

      const c = await cli(['workspace', 'create', 'demo', './demo'], {}, 180_000);
      expect(c.code, c.stderr).toBe(0);
      expect(c.stderr).toMatch(/Workspace artifacts:\/\/\S+\/demo is active\./);
      const mnt = path.join(home, 'demo');
      try {
        expect(readFileSync('/proc/mounts', 'utf8')).toContain(` ${mnt} fuse.artifacts `);
        await writeFile(path.join(mnt, 'hello.txt'), 'hello from the local stack\n');
        expect(await readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello from the local stack\n');
    } finally {
      const un = await cli(['unmount', './demo']);
      expect(un.code, un.stderr).toBe(0);
    }
    await mkdir(mnt, { recursive: true });
    const down = await cli(['down']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toMatch(/Stopped orchestrator \(pid \d+\), redis-server \(pid \d+\)/);
    // Gone, or a zombie nobody reaped (the sandbox's init may not): either way not running.
    const running = (pid: number) => {
      try {
        return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (const pid of [state.redis.pid, state.orchestrator.pid, state.postgres?.pid].filter(Boolean)) expect(running(pid), `pid ${pid}`).toBe(false);
    expect((await cli(['down'])).stderr).toMatch(/not running/);

    // What was written survives a restart of the stack: Redis replays its AOF, whose transactions
    // were written by mount-session users that no longer exist (they must still replay).
    const again = await cli(['up'], {}, 300_000);
    expect(again.code, again.stderr).toBe(0);
    const m2 = await cli(['mount', 'demo', './demo'], {}, 120_000);
    expect(m2.code, m2.stderr).toBe(0);
    try {
      expect(await readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello from the local stack\n');
    } finally {
      expect((await cli(['unmount', './demo'])).code).toBe(0);
      expect((await cli(['down'])).code).toBe(0);
    }
    } finally {
      await cleanup();
    }
  });

  it('`up --db pglite` runs the orchestrator on embedded PGlite', async () => {
    const home = await tmpDir('stack-pglite');
    baseEnv = { HOME: home, ARTIFACTS_CLI_ENTRY: MAIN };
    const cleanup = guardStack(home);
    try {
      const t0 = Date.now();
      const up = await cli(['up', '--db', 'pglite'], {}, 300_000);
      console.log(`artifacts up --db pglite: ${Date.now() - t0} ms`);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stderr).toMatch(/database\s+pglite/);
      const state = JSON.parse(readFileSync(path.join(home, '.local/share/artifacts/stack.json'), 'utf8'));
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${state.orchestrator.pid}/status`, 'utf8'))?.[1]) / 1024;
      console.log(`orchestrator on PGlite: RSS ${rss.toFixed(0)} MB`);
      expect((await cli(['whoami'])).stdout).toMatch(/\(key art_/);
      const c = await cli(['workspace', 'create', 'notes']);
      expect(c.code, c.stderr).toBe(0);
      // PGlite is one process's database: a second opener is refused with a clear error.
      const second = await cli(['orchestrator', 'user', 'create', 'intruder', '--database-url', `pglite:${path.join(home, '.local/share/artifacts/pglite')}`]);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/in use by process \d+/);
      expect((await cli(['down'])).code).toBe(0);
    } finally {
      await cleanup();
    }
  });
});
