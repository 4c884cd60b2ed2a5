/**
 * The orchestrator on a 3-master Redis Cluster: ACL users are per node (not replicated), so the
 * orchestrator sets them on every node; the workspace's hash-tag prefix keeps its keys in one
 * slot; the format and the sessions use cluster clients with nothing more than their ACL rule.
 */
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { redisCommand, RespError, startRedisCluster, type RedisClusterHandle } from '../helpers/servers.js';
import { activeWorkspace, startStack, type Stack } from './harness.js';

let cluster: RedisClusterHandle;
let s: Stack;
let client: ArtifactsClient;

beforeAll(async () => {
  cluster = await startRedisCluster();
  s = await startStack('postgres', {}, { redis: { ...cluster.nodes[0]!, url: cluster.url, stop: () => cluster.stop() } });
  client = new ArtifactsClient({ baseUrl: s.url, apiKey: s.key });
});
afterAll(async () => {
  await s?.stop();
});

const auth = async (port: number, u: string, p: string) => {
  const v = await redisCommand(port, ['AUTH', u, p]);
  return v instanceof RespError ? v.message : String(v);
};

function clusterAs(username: string, password: string): Cluster {
  const c = new Cluster(
    cluster.ports.map((port) => ({ host: '127.0.0.1', port })),
    { redisOptions: { username, password, enableReadyCheck: false, maxRetriesPerRequest: 0 }, clusterRetryStrategy: () => null },
  );
  c.on('error', () => undefined);
  return c;
}

describe('on Redis Cluster', () => {
  it('formats through the cluster, confines sessions on every node, revokes everywhere, deletes the slot clean', async () => {
    const w = await activeWorkspace(s, 'cw');
    expect(w.redis_url).toBe(cluster.url);
    const other = await activeWorkspace(s, 'cw-other');

    const ro = await client.workspaces.createMountSession('cw', { mode: 'ro' });
    for (const port of cluster.ports) expect(await auth(port, ro.redis.username, ro.redis.password), `node ${port}`).toBe('OK');

    const c = clusterAs(ro.redis.username, ro.redis.password);
    try {
      expect(JSON.parse((await c.get(w.key_prefix + 'setting'))!).Name).toBe(w.volume_name);
      await expect(c.set(w.key_prefix + 'x', '1')).rejects.toThrow(/NOPERM/);
      await expect(c.get(other.key_prefix + 'setting')).rejects.toThrow(/NOPERM/);
    } finally {
      c.disconnect();
    }

    const rw = await client.workspaces.createMountSession('cw', { mode: 'rw' });
    const c2 = clusterAs(rw.redis.username, rw.redis.password);
    try {
      // Multi-key transactions work: every key of the workspace is in one slot.
      await c2.multi().set(w.key_prefix + 'a', '1').set(w.key_prefix + 'b', '2').exec();
      expect(await c2.mget(w.key_prefix + 'a', w.key_prefix + 'b')).toEqual(['1', '2']);
    } finally {
      c2.disconnect();
    }

    await client.sessions.revoke(ro.session.id);
    for (const port of cluster.ports) expect(await auth(port, ro.redis.username, ro.redis.password)).toMatch(/WRONGPASS/);

    await client.workspaces.delete('cw');
    for (let i = 0; i < 100 && (await client.workspaces.get('cw')).status !== 'deleted'; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await client.workspaces.get('cw')).status).toBe('deleted');
    for (const port of cluster.ports) {
      const [, keys] = (await redisCommand(port, ['SCAN', '0', 'MATCH', w.key_prefix + '*', 'COUNT', '10000'])) as [string, string[]];
      expect(keys, `node ${port}`).toEqual([]);
      expect(await auth(port, rw.redis.username, rw.redis.password)).toMatch(/WRONGPASS/);
    }
    // The other workspace is intact.
    const anyNode = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    expect(JSON.parse((await anyNode.get(other.key_prefix + 'setting'))!).Name).toBe(other.volume_name);
    anyNode.disconnect();
  });
});
