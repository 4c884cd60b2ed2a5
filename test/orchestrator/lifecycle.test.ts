/**
 * Workspace lifecycle end to end over HTTP, on PostgreSQL and on PGlite, with a real
 * redis-server and the real in-process format (phase 2): reserve → format → complete → session
 * → delete with a live session → name reusable with a fresh prefix.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { createWorkspaceFlow } from '../../cli/commands/workspace.js';
import { call, collectingOutput as quietOutput, startStack, type DbKind, type Stack } from './harness.js';

describe.each<DbKind>(['postgres', 'pglite'])('workspace lifecycle on %s', (kind) => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack(kind);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('creates, formats, activates, mounts, deletes and frees the name', async () => {
    const client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
    const lines: string[] = [];
    const w = await createWorkspaceFlow(client, { name: 'demo' }, { out: quietOutput(lines) });
    expect(w.status).toBe('active');
    expect(w.key_prefix).toMatch(/^\{u_\d+_w_\d+\}:$/);
    expect(lines).toEqual([
      'Phase 1: reserving artifacts://alice/demo on the orchestrator',
      `Workspace artifacts://alice/demo reserved (status=pending_format, key prefix=${w.key_prefix})`,
      expect.stringMatching(/^Phase 2: formatting volume alice-demo-\d+ in-process/),
      'Phase 3: confirming format completion with the orchestrator',
      'Workspace artifacts://alice/demo is active.',
    ]);

    const admin = new Redis(s.redis.url);
    try {
      // Phase 2 really ran: setting and root inode under the prefix.
      const setting = JSON.parse((await admin.get(w.key_prefix + 'setting'))!);
      expect(setting.Name).toBe(w.volume_name);
      expect(setting.UUID).toBe(w.volume_uuid);
      expect(setting.AccessKey ?? '').toBe('');
      expect(await admin.exists(w.key_prefix + 'i1')).toBe(1);
      // The format user is gone after phase 3.
      expect(await admin.call('ACL', 'USERS')).not.toContain(`fmt-${w.id}`);

      const list = await client.workspaces.list();
      expect(list.map((x) => x.name)).toEqual(['demo']);

      // A live session with an open connection.
      const ms = await client.workspaces.createMountSession('demo', { mode: 'rw' });
      const conn = new Redis({ host: '127.0.0.1', port: s.redis.port, username: ms.redis.username, password: ms.redis.password, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
      conn.on('error', () => undefined);
      await conn.set(w.key_prefix + 'probe', '1');

      const del = await call(s.url, s.key, 'DELETE', '/workspaces/alice/demo');
      expect(del.status).toBe(202);
      expect(del.body.workspace.status).toBe('deleting');
      // Deletion completes in the background.
      let status = 'deleting';
      for (let i = 0; i < 100 && status !== 'deleted'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = (await client.workspaces.get('demo')).status;
      }
      expect(status).toBe('deleted');
      expect(await admin.call('ACL', 'USERS')).not.toContain(ms.redis.username);
      await expect(conn.get(w.key_prefix + 'setting')).rejects.toThrow();
      const [, left] = await admin.scan('0', 'MATCH', w.key_prefix + '*', 'COUNT', 1000);
      expect(left).toEqual([]);
      conn.disconnect();
      const sessions = await client.sessions.list({ all: true });
      expect(sessions.find((x) => x.id === ms.session.id)?.status).toBe('revoked');

      // The name is free again, with a fresh prefix.
      const again = await createWorkspaceFlow(client, { name: 'demo' }, { out: quietOutput([]) });
      expect(again.status).toBe('active');
      expect(again.key_prefix).not.toBe(w.key_prefix);
      expect(again.volume_name).not.toBe(w.volume_name);
    } finally {
      admin.disconnect();
    }
  });
});
