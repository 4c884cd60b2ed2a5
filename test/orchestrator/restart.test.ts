/**
 * PostgreSQL is the source of truth for ACL users: after an orchestrator restart and after a
 * Redis restart (which forgets every ACL user), live sessions get their users back within
 * seconds, with the same credentials; revoked and expired ones do not come back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { activeWorkspace, authReply, call, redisAs, startRestartableRedis, startStack, type RestartableRedis, type Stack } from './harness.js';

let s: Stack;
let redis: RestartableRedis;
let client: ArtifactsClient;

beforeAll(async () => {
  redis = await startRestartableRedis();
  s = await startStack('postgres', {}, { redis });
  client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
  await activeWorkspace(s, 'keep');
});
afterAll(async () => {
  await s?.stop();
});

async function until(what: string, ok: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await ok()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

describe('ACL users follow PostgreSQL', () => {
  it('survive an orchestrator restart, and come back within seconds after a Redis restart', async () => {
    const c = await client.workspaces.get('keep');
    const rw = await client.workspaces.createMountSession('keep', { mode: 'rw' });
    const ro = await client.workspaces.createMountSession('keep', { mode: 'ro' });
    const t = await client.platform.createMountTicket('tenant-r', 'rt', { workspace: 'alice/keep', mode: 'rw', ttlSeconds: 3600 });
    const tp = await client.verifyTicket(t.mount_ticket);
    const gone = await client.workspaces.createMountSession('keep', { mode: 'rw' });
    await client.sessions.revoke(gone.session.id);
    const creds = [rw.redis, ro.redis, tp.redis];

    // 1. Orchestrator restart: nothing changes for live sessions.
    await s.restart();
    client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
    for (const r of creds) expect(await authReply(s, r.username, r.password)).toBe('OK');
    expect(await authReply(s, gone.redis.username, gone.redis.password)).toMatch(/WRONGPASS/);

    // 2. Redis restart (no persistence: every ACL user is gone) with the orchestrator running.
    await redis.stop();
    await redis.start();
    expect(await authReply(s, rw.redis.username, rw.redis.password)).toMatch(/WRONGPASS/); // really forgotten
    const regained = await until('ACL users re-created', async () => {
      for (const r of creds) if ((await authReply(s, r.username, r.password)) !== 'OK') return false;
      return true;
    }, 10_000);
    console.log(`ACL users back ${Math.round(regained)} ms after the Redis restart`);
    expect(regained).toBeLessThan(5000);
    expect(await authReply(s, gone.redis.username, gone.redis.password)).toMatch(/WRONGPASS/);
    // Same rules as before: ro is still read-only, and confined to the prefix.
    const conn = redisAs(s, ro.redis.username, ro.redis.password);
    await conn.connect();
    await expect(conn.set(c.key_prefix + 'x', '1')).rejects.toThrow(/NOPERM/);
    await expect(conn.get('{u_999_w_999}:setting')).rejects.toThrow(/NOPERM/);
    conn.disconnect();

    // 3. Redis restart while the orchestrator is down: users are back when it has started.
    await s.orch.close();
    await redis.stop();
    await redis.start();
    await s.restart();
    for (const r of creds) expect(await authReply(s, r.username, r.password)).toBe('OK');
  });

  it('does not resurrect a session that expired while the orchestrator was down', async () => {
    const m = await client.workspaces.createMountSession('keep', { mode: 'rw', ttlSeconds: 2 });
    expect(await authReply(s, m.redis.username, m.redis.password)).toBe('OK');
    await s.orch.close();
    await new Promise((r) => setTimeout(r, 2500));
    await s.restart();
    client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
    expect(await authReply(s, m.redis.username, m.redis.password)).toMatch(/WRONGPASS/);
    expect((await client.sessions.list({ all: true })).find((x) => x.id === m.session.id)?.status).toBe('expired');
  });

  it('answers 500 metadata_acl_provisioning_failed (fast) while Redis is down, and recovers', async () => {
    await redis.stop();
    try {
      const t0 = performance.now();
      const r = await call(s.url, s.key, 'POST', '/platform/tickets', { tenant: 'down', runtime: 'r1', workspace: 'alice/keep', mode: 'ro', ttl_seconds: 60 });
      const ms = performance.now() - t0;
      expect(r.status).toBe(500);
      expect(r.body.code).toBe('metadata_acl_provisioning_failed');
      expect(ms).toBeLessThan(10_000);
      expect((await call(s.url, null, 'GET', '/healthz')).status).toBe(503);
      // No half-created session is left active.
      const active = await s.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM mount_sessions WHERE runtime_id = 'r1' AND status = 'active'`);
      expect(active[0]!.n).toBe(0);
    } finally {
      await redis.start();
    }
    await until('healthy again', async () => (await call(s.url, null, 'GET', '/healthz')).status === 200, 10_000);
    const ok = await call(s.url, s.key, 'POST', '/platform/tickets', { tenant: 'down', runtime: 'r2', workspace: 'alice/keep', mode: 'ro', ttl_seconds: 60 });
    expect(ok.status).toBe(201);
  });

  it('removes ACL users that PostgreSQL does not know (left over by a crash)', async () => {
    const { Redis } = await import('ioredis');
    const r = new Redis({ host: '127.0.0.1', port: redis.port });
    await r.call('ACL', 'SETUSER', 'ms-orphan00000000000', 'on', '>pw', '~*', '+@all');
    await s.orch.jobs.reconcile();
    expect(await r.call('ACL', 'USERS')).not.toContain('ms-orphan00000000000');
    r.disconnect();
  });
});
