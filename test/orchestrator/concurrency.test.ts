/**
 * Concurrency: 50 parallel creates of one name give exactly one workspace (the others see 409
 * workspace_exists with it); 200 parallel ticket requests give 200 distinct sessions, each with
 * its own working ACL user. On PostgreSQL and on PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { verifyTicket } from '../../orchestrator/ticket.js';
import { activeWorkspace, authReply, call, startStack, type DbKind, type Stack } from './harness.js';

describe.each<DbKind>(['postgres', 'pglite'])('concurrency on %s', (kind) => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack(kind);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('50 parallel creates of one name → one workspace', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, () => call(s.url, s.key, 'POST', '/workspaces', { name: 'race' })));
    const created = results.filter((r) => r.status === 201);
    const conflicts = results.filter((r) => r.status === 409);
    expect(created).toHaveLength(1);
    expect(conflicts).toHaveLength(49);
    const id = created[0]!.body.workspace.id;
    for (const c of conflicts) {
      expect(c.body.code).toBe('workspace_exists');
      expect(c.body.existing.id).toBe(id);
      expect(c.body.existing.status).toBe('pending_format');
    }
    const rows = await s.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workspaces WHERE name = 'race'`);
    expect(rows[0]!.n).toBe(1);
  });

  it('200 parallel ticket requests → 200 distinct sessions with working ACL users', async () => {
    await activeWorkspace(s, 'busy');
    const client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        call(s.url, s.key, 'POST', '/platform/tickets', {
          tenant: `tenant-${i % 5}`, // shared tenants: created once under concurrency
          runtime: `rt-${i}`,
          workspace: 'alice/busy',
          mode: i % 2 ? 'ro' : 'rw',
          ttl_seconds: 600,
        }),
      ),
    );
    const ms = performance.now() - t0;
    console.log(`[${kind}] 200 parallel tickets in ${Math.round(ms)} ms`);
    expect(results.map((r) => r.status)).toEqual(Array(200).fill(201));
    const ids = new Set(results.map((r) => r.body.session_id));
    expect(ids.size).toBe(200);
    const jwks = await client.jwks();
    const payloads = results.map((r) => verifyTicket(r.body.mount_ticket, jwks, { workspace: 'alice/busy' }));
    expect(new Set(payloads.map((p) => p.redis.username)).size).toBe(200);
    // Every ACL user exists and accepts its own password.
    for (const p of payloads.slice(0, 200)) expect(await authReply(s, p.redis.username, p.redis.password)).toBe('OK');
    const tenants = await client.platform.listTenants();
    expect(tenants.map((t) => t.slug).filter((x) => x.startsWith('tenant-')).sort()).toEqual(['tenant-0', 'tenant-1', 'tenant-2', 'tenant-3', 'tenant-4']);
    const sessions = await client.sessions.list({ workspace: 'busy' });
    expect(sessions).toHaveLength(200);
  });
});
