/**
 * Security properties, each of which could fail: Redis enforces read-only and workspace
 * isolation for session users; format users die at phase 3; revocation cuts open connections
 * within a second; API keys and ownership are checked; hostile input never reaches a 500.
 * Real PostgreSQL, real redis-server, real format.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis as IORedis, type Redis } from 'ioredis';
import { realFormatPhase } from '../../cli/commands/workspace.js';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { SigningKey, TicketError, verifyTicket, jwksOf, type Jwks, type TicketPayload } from '../../orchestrator/ticket.js';
import { activeWorkspace, addUser, authReply, call, collectingOutput, redisAs, startStack, type Stack } from './harness.js';
import type { WorkspaceView } from '../../orchestrator/client.js';

let s: Stack;
let client: ArtifactsClient;
let A: WorkspaceView;
let B: WorkspaceView;
let bobKey: string;

beforeAll(async () => {
  s = await startStack('postgres');
  client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
  A = await activeWorkspace(s, 'ws-a');
  B = await activeWorkspace(s, 'ws-b');
  bobKey = await addUser(s, 'bob');
  await activeWorkspace(s, 'bobs', bobKey);
});
afterAll(async () => {
  await s?.stop();
});

async function session(ws: string, mode: 'ro' | 'rw'): Promise<{ r: Redis; id: string; user: string; password: string }> {
  const m = await client.workspaces.createMountSession(ws, { mode });
  const r = redisAs(s, m.redis.username, m.redis.password);
  await r.connect();
  return { r, id: m.session.id, user: m.redis.username, password: m.redis.password };
}

/** The error message of a command, or 'OK' if it succeeded. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('read-only sessions are enforced by Redis', () => {
  it('refuses every write, in MULTI and in scripts, and still reads', async () => {
    const { r } = await session('ws-a', 'ro');
    try {
      const p = A.key_prefix;
      expect(JSON.parse((await r.get(p + 'setting'))!).Name).toBe(A.volume_name); // reads work
      const writes: [string, () => Promise<unknown>][] = [
        ['SET', () => r.set(p + 'x', '1')],
        ['HSET', () => r.hset(p + 'd1', 'f', 'v')],
        ['RPUSH', () => r.rpush(p + 'c2_0', 'x')],
        ['DEL', () => r.del(p + 'setting')],
        ['INCR', () => r.incr(p + 'nextinode')],
        ['INCRBY', () => r.incrby(p + 'nextchunk', 10)],
        ['SETNX', () => r.setnx(p + 'y', '1')],
        ['HDEL', () => r.hdel(p + 'd1', 'f')],
        ['ZADD', () => r.zadd(p + 'allSessions', 1, 'x')],
        ['EVAL', () => r.eval("return redis.call('set', KEYS[1], 'x')", 1, p + 'x')],
        ['EVAL_RO', () => r.call('EVAL_RO', "return redis.call('get', KEYS[1])", '1', p + 'setting')],
        ['FCALL', () => r.call('FCALL', 'f', '0')],
        ['SCRIPT LOAD', () => r.call('SCRIPT', 'LOAD', "return redis.call('set','a','b')")],
      ];
      for (const [name, w] of writes) expect(await outcome(w()), name).toMatch(/NOPERM/);
      const multi = await outcome(r.multi().set(p + 'x', '1').incr(p + 'nextinode').exec());
      expect(multi).toMatch(/EXECABORT|NOPERM/);
      expect(await r.exists(p + 'x')).toBe(0);
      expect(await r.get(p + 'nextinode')).toBeNull();
    } finally {
      r.disconnect();
    }
  });
});

describe('workspace isolation', () => {
  it("a session of A can neither read nor write any key of B, nor enumerate keys", async () => {
    const { r } = await session('ws-a', 'rw');
    try {
      const a = A.key_prefix;
      const b = B.key_prefix;
      await r.set(a + 'mine', '1'); // positive control: its own keys are fine
      expect(await r.get(a + 'mine')).toBe('1');
      const neighbour = a.replace('}:', '0}:') + 'x'; // {u_1_w_10}: vs {u_1_w_1}:
      const attempts: [string, () => Promise<unknown>][] = [
        ['GET B', () => r.get(b + 'setting')],
        ['SET B', () => r.set(b + 'setting', '{}')],
        ['DEL B', () => r.del(b + 'i1')],
        ['HGETALL B', () => r.hgetall(b + 'd1')],
        ['EXISTS B', () => r.exists(b + 'i1')],
        ['TYPE B', () => r.type(b + 'i1')],
        ['MGET A+B', () => r.mget(a + 'setting', b + 'setting')],
        ['WATCH B', () => r.watch(b + 'i1')],
        ['INCR B', () => r.incr(b + 'nextinode')],
        ['neighbour prefix', () => r.set(neighbour, '1')],
        ['unprefixed', () => r.get('setting')],
        ['RENAME', () => r.rename(a + 'mine', b + 'stolen')],
        ['COPY', () => r.call('COPY', b + 'setting', a + 'copy')],
        ['DUMP', () => r.call('DUMP', b + 'setting')],
        ['SORT', () => r.call('SORT', b + 'x', 'BY', 'nosort')],
        ['SCAN', () => r.scan('0', 'MATCH', '*')],
        ['KEYS', () => r.keys('*')],
        ['RANDOMKEY', () => r.randomkey()],
        ['DBSIZE', () => r.dbsize()],
        ['FLUSHALL', () => r.flushall()],
        ['FLUSHDB', () => r.flushdb()],
        ['CONFIG', () => r.config('GET', '*')],
        ['ACL', () => r.call('ACL', 'LIST')],
        ['INFO', () => r.info()],
        ['MONITOR-like CLIENT LIST', () => r.call('CLIENT', 'LIST')],
        ['CLIENT KILL', () => r.call('CLIENT', 'KILL', 'TYPE', 'normal')],
        ['DEBUG', () => r.call('DEBUG', 'SLEEP', '0')],
        ['SELECT 1', () => r.select(1)],
        ['SWAPDB', () => r.call('SWAPDB', '0', '1')],
        ['SUBSCRIBE-ish PUBLISH', () => r.publish('c', 'm')],
        ['SHUTDOWN', () => r.call('SHUTDOWN', 'NOSAVE')],
        ['SAVE', () => r.call('BGSAVE')],
        ['REPLICAOF', () => r.call('REPLICAOF', '127.0.0.1', '1')],
        ['MODULE', () => r.call('MODULE', 'LIST')],
        ['FUNCTION', () => r.call('FUNCTION', 'FLUSH')],
        ['SCRIPT FLUSH', () => r.call('SCRIPT', 'FLUSH')],
      ];
      // DEBUG is refused before the ACL check (enable-debug-command no): refused all the same.
      for (const [name, p] of attempts) expect(await outcome(p()), name).toMatch(name === 'DEBUG' ? /NOPERM|not allowed/ : /NOPERM/);
      // B is untouched.
      const admin = new IORedis({ host: '127.0.0.1', port: s.redis.port });
      try {
        expect(JSON.parse((await admin.get(b + 'setting'))!).Name).toBe(B.volume_name);
        expect(await admin.exists(b + 'i1')).toBe(1);
        expect(await admin.exists(b + 'stolen', neighbour, 'setting')).toBe(0);
      } finally {
        admin.disconnect();
      }
    } finally {
      r.disconnect();
    }
  });
});

describe('format users', () => {
  it('work during the format and stop working at format-completed (open connection too)', async () => {
    const res = await call(s.url, s.key, 'POST', '/workspaces', { name: 'fmt-check' });
    expect(res.status).toBe(201);
    const { workspace, format } = res.body;
    expect(format.redis.username).toBe(`fmt-${workspace.id}`);
    const r = redisAs(s, format.redis.username, format.redis.password);
    await r.connect();
    await r.set(workspace.key_prefix + 'probe', '1');
    expect(await outcome(r.get(B.key_prefix + 'setting'))).toMatch(/NOPERM/); // confined too
    await realFormatPhase({ workspace, format, s3: {}, resuming: false, out: collectingOutput() });
    const done = await call(s.url, s.key, 'POST', `/workspaces/alice/fmt-check/format-completed`);
    expect(done.status).toBe(200);
    expect(done.body.workspace.status).toBe('active');
    expect(await outcome(r.get(workspace.key_prefix + 'setting'))).not.toBe('OK');
    expect(await authReply(s, format.redis.username, format.redis.password)).toMatch(/WRONGPASS/);
    r.disconnect();
  });
});

describe('revocation', () => {
  it("cuts a revoked session's open connection within 1 s", async () => {
    const { r, id, user, password } = await session('ws-a', 'rw');
    await r.set(A.key_prefix + 'live', '1');
    const t0 = performance.now();
    const revoking = client.sessions.revoke(id);
    let failedAt = 0;
    while (performance.now() - t0 < 3000) {
      if ((await outcome(r.get(A.key_prefix + 'live'))) !== 'OK') {
        failedAt = performance.now() - t0;
        break;
      }
      await new Promise((res) => setTimeout(res, 5));
    }
    expect((await revoking).status).toBe('revoked');
    console.log(`revoked session's open connection failed ${Math.round(failedAt)} ms after the revoke call`);
    expect(failedAt).toBeGreaterThan(0);
    expect(failedAt).toBeLessThan(1000);
    expect(await authReply(s, user, password)).toMatch(/WRONGPASS/);
    r.disconnect();
  });

  it('revoking a grant, deleting a tenant and revoking an API key revoke their sessions', async () => {
    const g = await client.platform.createAccessGrant('ws-a', { tenantSlug: await tenant('t-grant'), mode: 'rw' });
    const t1 = await client.platform.createMountTicket('t-grant', 'run-1', { workspace: 'alice/ws-a', mode: 'ro', ttlSeconds: 600 });
    const p1 = await verifyTicket(t1.mount_ticket, await client.jwks());
    // The ticket's session hangs on the most specific covering grant: the runtime-scoped one it created.
    expect(t1.grant_id).not.toBe(g.id);
    expect((await client.platform.revokeGrant(t1.grant_id)).revoked_sessions).toBe(1);
    expect(await authReply(s, p1.redis.username, p1.redis.password)).toMatch(/WRONGPASS/);

    const t2 = await client.platform.createMountTicket('t-del', 'run-2', { workspace: 'alice/ws-a', mode: 'rw', ttlSeconds: 600 });
    const p2 = await verifyTicket(t2.mount_ticket, await client.jwks());
    const conn2 = redisAs(s, p2.redis.username, p2.redis.password);
    await conn2.connect();
    const del = await client.platform.deleteTenant('t-del');
    expect(del.revoked_sessions).toBe(1);
    expect(del.revoked_grants).toBe(1);
    expect(await outcome(conn2.get(A.key_prefix + 'setting'))).not.toBe('OK');
    conn2.disconnect();

    const extra = await client.apiKeys.create('temp');
    const c2 = new ArtifactsClient({ baseUrl: s.url, apiKey: extra.key });
    const m = await c2.workspaces.createMountSession('ws-a', { mode: 'rw' });
    const conn3 = redisAs(s, m.redis.username, m.redis.password);
    await conn3.connect();
    expect((await client.apiKeys.revoke(extra.api_key.id)).revoked_sessions).toBe(1);
    expect(await outcome(conn3.get(A.key_prefix + 'setting'))).not.toBe('OK');
    conn3.disconnect();
  });

  it('expired sessions are reaped: the ACL user disappears shortly after the TTL', async () => {
    const m = await client.workspaces.createMountSession('ws-a', { mode: 'ro', ttlSeconds: 1 });
    const r = redisAs(s, m.redis.username, m.redis.password);
    await r.connect();
    expect(await outcome(r.get(A.key_prefix + 'setting'))).toBe('OK');
    const t0 = Date.now();
    while (Date.now() - t0 < 5000 && (await outcome(r.get(A.key_prefix + 'setting'))) === 'OK') await new Promise((res) => setTimeout(res, 50));
    expect(Date.now() - t0).toBeLessThan(3000);
    const list = await client.sessions.list({ all: true });
    expect(list.find((x) => x.id === m.session.id)?.status).toBe('expired');
    r.disconnect();
  });
});

async function tenant(slug: string): Promise<string> {
  await client.platform.createTenant(slug).catch(() => undefined);
  return slug;
}

describe('mount tickets', () => {
  let jws: string;
  let jwks: Jwks;
  let payload: TicketPayload;
  beforeAll(async () => {
    const t = await client.platform.createMountTicket('t-tickets', 'rt-1', { workspace: 'alice/ws-a', mode: 'ro', ttlSeconds: 600 });
    jws = t.mount_ticket;
    jwks = await client.jwks();
    payload = verifyTicket(jws, jwks, { workspace: 'alice/ws-a' });
  });

  const reason = (f: () => unknown): string => {
    try {
      f();
      return 'accepted';
    } catch (err) {
      expect(err).toBeInstanceOf(TicketError);
      return (err as TicketError).reason;
    }
  };
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

  it('carries what the mount needs, and no credential in the URL', () => {
    expect(payload).toMatchObject({ v: 1, workspace: 'alice/ws-a', volume: A.volume_name, mode: 'ro', tenant: 't-tickets', runtime: 'rt-1', iss: s.url });
    expect(payload.redis.url).not.toContain('@');
    expect(payload.redis.key_prefix).toBe(A.key_prefix);
    expect(payload.exp - payload.iat).toBe(600);
    expect(payload.storage.backend).toBe('file');
  });

  it('refuses an expired ticket', async () => {
    expect(reason(() => verifyTicket(jws, jwks, { now: payload.exp + 31 }))).toBe('expired');
    const short = await client.platform.createMountTicket('t-tickets', 'rt-2', { workspace: 'alice/ws-a', mode: 'ro', ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    expect(reason(() => verifyTicket(short.mount_ticket, jwks, { skewSeconds: 0 }))).toBe('expired');
  });

  it('refuses a tampered payload and a tampered signature', () => {
    const [h, , sig] = jws.split('.');
    const forged = `${h}.${b64({ ...payload, mode: 'rw' })}.${sig}`;
    expect(reason(() => verifyTicket(forged, jwks))).toBe('bad_signature');
    const other = `${h}.${b64({ ...payload, workspace: 'alice/ws-b', redis: { ...payload.redis, key_prefix: B.key_prefix } })}.${sig}`;
    expect(reason(() => verifyTicket(other, jwks))).toBe('bad_signature');
    const flipped = sig!.slice(0, 10) + (sig![10] === 'A' ? 'B' : 'A') + sig!.slice(11);
    expect(reason(() => verifyTicket(`${h}.${jws.split('.')[1]}.${flipped}`, jwks))).toBe('bad_signature');
    expect(reason(() => verifyTicket(`${h}.${jws.split('.')[1]}.`, jwks))).toBe('bad_signature');
  });

  it('refuses a ticket for another workspace', () => {
    expect(reason(() => verifyTicket(jws, jwks, { workspace: 'alice/ws-b' }))).toBe('wrong_workspace');
    expect(reason(() => verifyTicket(jws, jwks, { workspace: 'artifacts://alice/ws-a' }))).toBe('accepted');
  });

  it('refuses a ticket signed by another key (unknown kid, or a forged kid), and alg none', () => {
    const evil = SigningKey.generate();
    expect(reason(() => verifyTicket(evil.sign(payload), jwks))).toBe('unknown_key');
    const body = `${b64({ alg: 'EdDSA', typ: 'JWT', kid: jwks.keys[0]!.kid })}.${b64({ ...payload, mode: 'rw' })}`;
    const forgedKid = `${body}.${evil.sign(payload).split('.')[2]}`;
    expect(reason(() => verifyTicket(forgedKid, jwks))).toBe('bad_signature');
    expect(reason(() => verifyTicket(jws, jwksOf([evil])))).toBe('unknown_key');
    const none = `${b64({ alg: 'none', kid: jwks.keys[0]!.kid })}.${b64(payload)}.`;
    expect(reason(() => verifyTicket(none, jwks))).toBe('unsupported_algorithm');
    expect(reason(() => verifyTicket('not a ticket', jwks))).toBe('malformed');
  });
});

describe('API keys and ownership', () => {
  it('answers 401 for missing, malformed, unknown and revoked keys', async () => {
    for (const [key, what] of [
      [null, 'missing'],
      ['nonsense', 'malformed'],
      ['art_' + 'x'.repeat(32), 'unknown'],
    ] as const) {
      const r = await call(s.url, key, 'GET', '/workspaces');
      expect(r.status, what).toBe(401);
      expect(r.body.code).toBe('unauthorized');
    }
    const bad = await fetch(s.url + '/workspaces', { headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(bad.status).toBe(401);
    const k = await client.apiKeys.create('short-lived');
    expect((await call(s.url, k.key, 'GET', '/whoami')).status).toBe(200);
    await client.apiKeys.revoke(k.api_key.id);
    const revoked = await call(s.url, k.key, 'GET', '/whoami');
    expect(revoked.status).toBe(401);
    expect(revoked.body.message).toBe('api key has been revoked');
  });

  it("answers 403 for another user's workspace, whatever the route", async () => {
    const routes: [string, string, unknown?][] = [
      ['GET', '/workspaces/bob/bobs'],
      ['DELETE', '/workspaces/bob/bobs'],
      ['POST', '/workspaces/bob/bobs/format-completed'],
      ['POST', '/workspaces/bob/bobs/format-credentials'],
      ['POST', '/workspaces/bob/bobs/mount-sessions', { mode: 'rw' }],
      ['GET', '/workspaces/bob/does-not-exist'],
      ['GET', '/mount-sessions?workspace=bob/bobs'],
      ['POST', '/platform/grants', { workspace: 'bob/bobs', tenant: 't-tickets', mode: 'rw' }],
      ['POST', '/platform/tickets', { workspace: 'bob/bobs', tenant: 'x', runtime: 'y', mode: 'rw', ttl_seconds: 60 }],
    ];
    for (const [m, p, body] of routes) {
      const r = await call(s.url, s.key, m, p, body);
      expect(r.status, `${m} ${p}`).toBe(403);
      expect(r.body.code).toBe('forbidden');
    }
    // And bob still has his workspace.
    expect((await call(s.url, bobKey, 'GET', '/workspaces/bob/bobs')).body.workspace.status).toBe('active');
    // Bob's sessions are not alice's to revoke (404, not 200).
    const bobClient = new ArtifactsClient({ baseUrl: s.url, apiKey: bobKey });
    const ms = await bobClient.workspaces.createMountSession('bobs', { mode: 'ro' });
    expect((await call(s.url, s.key, 'DELETE', `/mount-sessions/${ms.session.id}`)).status).toBe(404);
    expect((await bobClient.sessions.list()).find((x) => x.id === ms.session.id)?.status).toBe('active');
  });
});

describe('hostile input', () => {
  it('answers 4xx, never 5xx, to injection, malformed and oversized requests', async () => {
    const cases: [string, string, unknown, Record<string, string>?][] = [
      ['POST', '/workspaces', { name: "x'; DROP TABLE users; --" }],
      ['POST', '/workspaces', { name: 'ok-name', bucket: '/../../etc' }],
      ['POST', '/workspaces', { name: 'ok-name', backend: 'byo', bucket: 'b', endpoint: 'http://u:p@evil/' }],
      ['POST', '/workspaces', { name: 'ok-name', prefix: '../x' }],
      ['POST', '/workspaces', { name: 'ok-name', extra: 1 }],
      ['POST', '/workspaces', { name: 42 }],
      ['POST', '/workspaces', { name: ['a'] }],
      ['POST', '/workspaces', []],
      ['POST', '/workspaces', 'null'],
      ['POST', '/workspaces', '{"name": "abc",'],
      ['POST', '/workspaces', '{"name":"a\u0000b"}'],
      ['POST', '/workspaces', { name: 'a'.repeat(10_000) }],
      ['POST', '/workspaces', { name: 'ok', bucket: 'x'.repeat(2000) }],
      ['POST', '/workspaces', JSON.stringify({ name: 'big', pad: 'x'.repeat(1 << 20) })],
      ['POST', '/workspaces', 'name=abc', { 'content-type': 'application/x-www-form-urlencoded' }],
      ['POST', '/workspaces', '{"name":"abc"}', { 'content-type': 'text/plain' }],
      ['GET', "/workspaces/alice/x' OR '1'='1", undefined],
      ['GET', '/workspaces/alice/%00', undefined],
      ['GET', '/workspaces/' + 'a'.repeat(5000) + '/b', undefined],
      ['GET', '/workspaces?include_deleted=maybe', undefined],
      ['POST', '/platform/tenants', { slug: 'Robert"); DROP TABLE tenants;--' }],
      ['POST', '/platform/tenants', { slug: 'ok-slug', metadata: { deep: { deeper: {} } } }],
      ['POST', '/platform/tenants', { slug: 'ok-slug2', metadata: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'])) }],
      ['POST', '/platform/tickets', { tenant: 't', runtime: 'r', workspace: 'ws-a', mode: 'rw', ttl_seconds: -1 }],
      ['POST', '/platform/tickets', { tenant: 't', runtime: 'r', workspace: 'ws-a', mode: 'rw', ttl_seconds: 1e12 }],
      ['POST', '/platform/tickets', { tenant: 't', runtime: 'r r', workspace: 'ws-a', mode: 'rw', ttl_seconds: 60 }],
      ['POST', '/platform/tickets', { tenant: 't', runtime: 'r', workspace: '../../etc', mode: 'rw', ttl_seconds: 60 }],
      ['POST', '/platform/tickets', { tenant: 't', runtime: 'r', workspace: 'ws-a', mode: 'admin', ttl_seconds: 60 }],
      ['POST', '/platform/grants', { tenant: 'nope', workspace: 'ws-a', mode: 'ro' }],
      ['DELETE', '/platform/grants/' + encodeURIComponent("1' OR 1=1"), undefined],
      ['DELETE', '/mount-sessions/' + encodeURIComponent('x; ACL DELUSER default'), undefined],
      ['POST', '/workspaces/alice/ws-a/mount-sessions', { mode: 'rw', ttl_seconds: '60' }],
      ['DELETE', '/api-keys/' + 'k'.repeat(300), undefined],
    ];
    for (const [m, p, body, headers] of cases) {
      const r = await call(s.url, s.key, m, p, body, headers);
      expect(r.status, `${m} ${p} ${JSON.stringify(body)?.slice(0, 80)}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${m} ${p} ${JSON.stringify(body)?.slice(0, 80)}`).toBeLessThan(500);
      expect(typeof r.body.code, `${m} ${p}`).toBe('string');
    }
    const big = await call(s.url, s.key, 'POST', '/workspaces', JSON.stringify({ name: 'big', pad: 'x'.repeat(1 << 20) }));
    expect(big.status).toBe(413);
    expect(big.body.code).toBe('payload_too_large');
    expect((await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users'))[0]!.n).toBe(2);
  });

  it('survives random JSON bodies on every write route (property test)', async () => {
    const routes = ['/workspaces', '/platform/tenants', '/platform/grants', '/platform/tickets', '/api-keys', '/workspaces/alice/ws-a/mount-sessions'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.jsonValue({ maxDepth: 3 }), async (route, body) => {
        const r = await call(s.url, s.key, 'POST', route, JSON.stringify(body));
        return r.status < 500;
      }),
      { numRuns: 150 },
    );
  });
});
