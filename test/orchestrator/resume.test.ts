/**
 * `workspace create` resumes after a failure injected in each phase: the orchestrator failing
 * to create the format user (phase 1), the format dying after it wrote juicefs_uuid or running
 * after its 15-minute user expired (phase 2), the confirmation never arriving (phase 3).
 * The resumed run always uses the real in-process format.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createObjectStore } from '../../chunkstore/object/index.js';
import { bucketUrl, createWorkspaceFlow, realFormatPhase, type FormatPhase } from '../../cli/commands/workspace.js';
import { ArtifactsClient, OrchestratorError } from '../../orchestrator/client.js';
import { call, collectingOutput, startStack, type Stack } from './harness.js';

let s: Stack;
let client: ArtifactsClient;
let admin: Redis;

beforeAll(async () => {
  s = await startStack('postgres');
  client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
  admin = new Redis(s.redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await s?.stop();
});

async function statusOf(name: string): Promise<string> {
  return (await client.workspaces.get(name)).status;
}

async function fails(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}

describe('resume after a failure', () => {
  it('phase 1: the format user could not be created (500), the re-run resumes', async () => {
    const meta = s.orch.ctx.meta;
    const real = meta.setUser.bind(meta);
    meta.setUser = async () => {
      meta.setUser = real; // fail once
      throw new Error('injected: Redis unreachable');
    };
    const err = await fails(createWorkspaceFlow(client, { name: 'p1' }, { out: collectingOutput() }));
    expect(err).toBeInstanceOf(OrchestratorError);
    expect((err as OrchestratorError).status).toBe(500);
    expect((err as OrchestratorError).code).toBe('metadata_acl_provisioning_failed');
    expect(await statusOf('p1')).toBe('pending_format');

    const lines: string[] = [];
    const w = await createWorkspaceFlow(client, { name: 'p1' }, { out: collectingOutput(lines) });
    expect(lines).toContain('Resuming pending_format workspace artifacts://alice/p1');
    expect(w.status).toBe('active');
  });

  it('phase 2: the format died after writing juicefs_uuid; the re-run cleans up and formats', async () => {
    const crash: FormatPhase = async ({ workspace }) => {
      const { storage, bucket } = bucketUrl(workspace);
      const store = createObjectStore({ Storage: storage, Bucket: bucket, Name: workspace.volume_name });
      await store.put('juicefs_uuid', Buffer.from('00000000-dead-beef-0000-000000000000'));
      throw new Error('injected: killed after juicefs_uuid');
    };
    const err = await fails(createWorkspaceFlow(client, { name: 'p2' }, { out: collectingOutput(), format: crash }));
    expect(err.message).toMatch(/injected/);
    expect(await statusOf('p2')).toBe('pending_format');
    // Phase 3 alone is refused: nothing was formatted.
    const early = await call(s.url, s.key, 'POST', '/workspaces/alice/p2/format-completed');
    expect(early.status).toBe(422);
    expect(early.body.code).toBe('setting_key_missing');

    const w = await createWorkspaceFlow(client, { name: 'p2' }, { out: collectingOutput() });
    expect(w.status).toBe('active');
    const uuid = await readFile(join(bucketUrl(w).bucket, w.volume_name, 'juicefs_uuid'), 'utf8');
    expect(uuid).toBe(w.volume_uuid);
    expect(JSON.parse((await admin.get(w.key_prefix + 'setting'))!).UUID).toBe(w.volume_uuid);
  });

  it('phase 2: the format user expired before the format ran; the re-run gets a fresh one', async () => {
    await s.restart({ formatTtlSeconds: 1 });
    try {
      const slow: FormatPhase = async (input) => {
        // The reaper deletes the expired user; the real format then cannot authenticate.
        const deadline = Date.now() + 5000;
        while (Date.now() < deadline && ((await admin.call('ACL', 'USERS')) as string[]).includes(input.format.redis.username)) {
          await new Promise((r) => setTimeout(r, 100));
        }
        await realFormatPhase(input);
      };
      const err = await fails(createWorkspaceFlow(client, { name: 'p2b' }, { out: collectingOutput(), format: slow }));
      expect(err.message).toMatch(/WRONGPASS|NOAUTH|invalid username-password|cannot connect/i);
      expect(await statusOf('p2b')).toBe('pending_format');
    } finally {
      await s.restart();
    }
    const w = await createWorkspaceFlow(client, { name: 'p2b' }, { out: collectingOutput() });
    expect(w.status).toBe('active');
  });

  it('phase 3: the confirmation was lost; the re-run finds the volume formatted and completes', async () => {
    const flaky = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
    const real = flaky.workspaces.formatCompleted;
    flaky.workspaces.formatCompleted = async () => {
      throw new OrchestratorError(0, 'unreachable', 'injected: connection reset');
    };
    const err = await fails(createWorkspaceFlow(flaky, { name: 'p3' }, { out: collectingOutput() }));
    expect(err.message).toMatch(/injected/);
    expect(await statusOf('p3')).toBe('pending_format');
    const before = JSON.parse((await admin.get((await client.workspaces.get('p3')).key_prefix + 'setting'))!);
    flaky.workspaces.formatCompleted = real;

    const lines: string[] = [];
    const w = await createWorkspaceFlow(flaky, { name: 'p3' }, { out: collectingOutput(lines) });
    expect(lines).toContain('Resuming pending_format workspace artifacts://alice/p3');
    expect(w.status).toBe('active');
    expect(w.volume_uuid).toBe(before.UUID); // the same volume, not a re-format
    // Completing again is a no-op 200; creating again is a 409 with the live state.
    expect((await call(s.url, s.key, 'POST', '/workspaces/alice/p3/format-completed')).status).toBe(200);
    const dup = await call(s.url, s.key, 'POST', '/workspaces', { name: 'p3' });
    expect(dup.status).toBe(409);
    expect(dup.body.existing.status).toBe('active');
    await expect(createWorkspaceFlow(client, { name: 'p3' }, { out: collectingOutput() })).rejects.toThrow(/already exists/);
  });

  it('refuses to resume with different storage, and refuses completion of a deleting workspace', async () => {
    await call(s.url, s.key, 'POST', '/workspaces', { name: 'p4' });
    await expect(createWorkspaceFlow(client, { name: 'p4', backend: 'file', bucket: '/somewhere/else' }, { out: collectingOutput() })).rejects.toThrow(
      /pending_format with --bucket/,
    );
    await call(s.url, s.key, 'DELETE', '/workspaces/alice/p4');
    const r = await call(s.url, s.key, 'POST', '/workspaces/alice/p4/format-completed');
    // Still deleting: 409 workspace_not_completable; already deleted: 404. Never completed.
    expect([`409 workspace_not_completable`, `404 workspace_not_found`]).toContain(`${r.status} ${r.body.code}`);
    for (let i = 0; i < 100 && (await statusOf('p4')) !== 'deleted'; i++) await new Promise((res) => setTimeout(res, 100));
    const after = await call(s.url, s.key, 'POST', '/workspaces/alice/p4/format-completed');
    expect(`${after.status} ${after.body.code}`).toBe('404 workspace_not_found');
  });
});
