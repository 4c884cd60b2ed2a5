/**
 * Meta URL parsing (table) and real connections: standalone (db selection, passwords, ACL users),
 * a real 3-master cluster (detected from one seed like upstream, `{N}` prefix, custom prefixes).
 */
import { Redis } from 'ioredis';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connectMeta, type MetaUrl, MetaUrlError, parseDuration, parseMetaUrl, redactRaw, validatePrefix } from '../../metadata/redis/connect.js';
import {
  freePort,
  redisCommand,
  redisServerBin,
  spawnManaged,
  startRedis,
  startRedisCluster,
  tmpDir,
  waitUntil,
  type ManagedProcess,
  type RedisClusterHandle,
  type RedisHandle,
} from '../helpers/servers.js';

describe('parseMetaUrl', () => {
  const p = (u: string, env: NodeJS.ProcessEnv = {}) => parseMetaUrl(u, env);
  const pick = (m: MetaUrl) => ({ mode: m.mode, hosts: m.hosts, db: m.db, masterName: m.masterName, username: m.username, password: m.password, tls: m.tls, prefix: m.prefix });

  test('modes, hosts, db', () => {
    const table: [string, Partial<ReturnType<typeof pick>>][] = [
      ['redis://localhost', { mode: 'standalone', hosts: [{ host: 'localhost', port: 6379 }], db: 0 }],
      ['redis://127.0.0.1:6380/3', { mode: 'standalone', hosts: [{ host: '127.0.0.1', port: 6380 }], db: 3 }],
      ['redis://h:1/2/', { db: 2 }],
      ['redis://h:1/?db=7', { db: 7 }],
      ['redis://h:1/2?db=5', { db: 5 }], // ?db wins, as in go-redis
      ['redis://u:p%40ss@h:1/1', { username: 'u', password: 'p@ss' }],
      ['redis://:secret@h/1', { username: undefined, password: 'secret' }],
      ['redis://user@h/1', { username: 'user', password: undefined }],
      ['redis://a:b@c@h:1', { username: 'a', password: 'b@c', hosts: [{ host: 'h', port: 1 }] }], // last '@' splits
      ['rediss://h:6390/1', { tls: true }],
      ['redis://[::1]:7000/2', { hosts: [{ host: '::1', port: 7000 }] }],
      // the first ',' after the first ':' => cluster
      ['redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002/10', { mode: 'cluster', db: 10, hosts: [7000, 7001, 7002].map((port) => ({ host: '127.0.0.1', port })) }],
      ['redis://h1,h2/1', { mode: 'cluster', hosts: [{ host: 'h1', port: 6379 }, { host: 'h2', port: 6379 }] }], // no ':' at all => cluster
      // the first ',' before the first ':' => sentinel; default port = last sentinel's or 26379
      ['redis://mymaster,s1:26380,s2,s3:26381/4', { mode: 'sentinel', masterName: 'mymaster', db: 4, hosts: [{ host: 's1', port: 26380 }, { host: 's2', port: 26381 }, { host: 's3', port: 26381 }] }],
      ['redis://:pw@mymaster,s1,s2:1234', { mode: 'sentinel', password: 'pw', hosts: [{ host: 's1', port: 1234 }, { host: 's2', port: 1234 }] }],
      ['redis://mymaster,s1,s2/1', { mode: 'cluster' }], // no ':' anywhere: upstream picks cluster, so do we
      ['redis://h/1?prefix=%7Bu_1_w_2%7D%3A', { prefix: '{u_1_w_2}:' }],
      ['redis://h/1?prefix={u_1_w_2}:', { prefix: '{u_1_w_2}:' }],
    ];
    for (const [u, want] of table) expect(pick(p(u)), u).toMatchObject(want);
    const unix = p('unix:///run/redis.sock?db=2');
    expect(unix).toMatchObject({ scheme: 'unix', socketPath: '/run/redis.sock', db: 2, hosts: [] });
    expect(p('unix://u:pw@/tmp/r.sock')).toMatchObject({ socketPath: '/tmp/r.sock', username: 'u', password: 'pw' });
  });

  test('query options: JuiceFS, go-redis, ours; unknown rejected', () => {
    const m = p('redis://h/1?read-timeout=2s&write_timeout=500ms&min-retry-backoff=10ms&max-retry-backoff=1m&dial_timeout=3&max_retries=2&route-read=replica&client-cache=true&pool_size=10&protocol=2&client_name=x');
    expect(m.options).toMatchObject({ readTimeoutMs: 2000, writeTimeoutMs: 500, minRetryBackoffMs: 10, maxRetryBackoffMs: 60000, dialTimeoutMs: 3000, maxRetries: 2, routeRead: 'replica', protocol: 2, clientName: 'x' });
    expect(m.options.ignored).toEqual(expect.arrayContaining(['client-cache', 'pool_size']));
    expect(p('rediss://h/1?insecure-skip-verify=true&tls-server-name=x&tls-ca-cert-file=/ca').options).toMatchObject({ insecureSkipVerify: true, tlsServerName: 'x', tlsCaCertFile: '/ca' });
    expect(p('redis://h/1').options).toMatchObject({ readTimeoutMs: 30000, writeTimeoutMs: 5000, minRetryBackoffMs: 20, maxRetryBackoffMs: 10000 });
    expect(() => p('redis://h/1?abc=1&foo=2')).toThrow(/unsupported option\(s\) in meta URL: abc, foo/);
    expect(() => p('redis://h/1?username=u')).toThrow(MetaUrlError);
    expect(() => p('redis://h/1?read-timeout=fast')).toThrow(/invalid duration for read-timeout/);
    expect(() => p('redis://h/1?route-read=nearest')).toThrow(/invalid route-read/);
    expect(() => p('redis://h/1?pool_fifo=yes')).toThrow(/invalid pool_fifo boolean/);
    expect(() => p('redis://h/1?skip_verify=true')).toThrow(/only valid with rediss/);
    expect(parseDuration('x', '1h2m3.5s')).toBe(3723500);
    expect(parseDuration('x', '0')).toBe(-1);
    expect(parseDuration('x', '250us')).toBe(0.25);
  });

  test('bad URLs have clear errors', () => {
    const bad: [string, RegExp][] = [
      ['localhost:6379', /expected redis:\/\/, rediss:\/\/ or unix:\/\//],
      ['mysql://h/1', /unsupported meta URL scheme "mysql"/],
      ['redis://h/abc', /invalid database number "abc"/],
      ['redis://h/{u_1_w_2}:', /invalid database number .*use \?prefix=/],
      ['redis://h/1/2', /invalid meta URL path/],
      ['redis://h/-1', /invalid database number -1/],
      ['redis://h/?db=x', /invalid database number "x"/],
      ['redis://h:99999/1', /invalid port/],
      ['redis:///1', /no host/],
      ['unix://', /socket path/],
      ['redis://h/1?prefix=a*', /must not contain/],
      ['redis://h1:1,h2:2/1?prefix=nohashtag:', /needs a hash tag/],
      ['redis://h1:1,h2:2/1?prefix={}:', /needs a hash tag/],
      ['redis://h/1?%zz=1', /invalid percent-encoding/],
    ];
    for (const [u, re] of bad) {
      expect(() => p(u), u).toThrow(MetaUrlError);
      expect(() => p(u), u).toThrow(re);
    }
  });

  test('password fallbacks: REDIS_PASSWORD, META_PASSWORD, META_PASSWORD_FILE; URL wins', async () => {
    expect(p('redis://h/1', { REDIS_PASSWORD: 'a', META_PASSWORD: 'b' }).password).toBe('a');
    expect(p('redis://h/1', { META_PASSWORD: 'b' }).password).toBe('b');
    expect(p('redis://:url@h/1', { REDIS_PASSWORD: 'a' }).password).toBe('url');
    const f = path.join(await tmpDir('pwfile'), 'pw');
    writeFileSync(f, 'fromfile\n');
    expect(p('redis://h/1', { META_PASSWORD_FILE: f }).password).toBe('fromfile');
    expect(() => p('redis://h/1', { META_PASSWORD_FILE: f + '.missing' })).toThrow(/cannot read META_PASSWORD_FILE/);
  });

  test('redaction and prefix validation', () => {
    expect(redactRaw('redis://user:s3cret@h:1/2?x=1')).toBe('redis://user:****@h:1/2?x=1');
    expect(redactRaw('redis://h:1/2')).toBe('redis://h:1/2');
    expect(p('redis://:pw@h/1').redacted).not.toContain('pw@');
    for (const ok of ['', '{1}', 'abc:', '{u_1_w_2}:']) expect(() => validatePrefix(ok, false)).not.toThrow();
    for (const ok of ['{1}', '{u_1_w_2}:', 'x{a}y']) expect(() => validatePrefix(ok, true)).not.toThrow();
    for (const bad of ['a?', 'a[b]', 'a\\b', '*']) expect(() => validatePrefix(bad, false)).toThrow(/must not contain/);
    for (const bad of ['', 'abc:', '{}', '{abc', 'abc}']) expect(() => validatePrefix(bad, true)).toThrow(/hash tag/);
  });
});

describe('connectMeta on a real standalone redis', () => {
  let r: RedisHandle;
  let authed: RedisHandle;
  beforeAll(async () => {
    [r, authed] = await Promise.all([startRedis(), startRedis({ args: ['--requirepass', 'pw0', '--user', 'alice', 'on', '>alicepw', '~*', '+@all'] })]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([r?.stop(), authed?.stop()]);
  });

  test('selects the db, prefix "" by default, not a cluster', async () => {
    const c = await connectMeta(`${r.url}/3`, { env: {} });
    try {
      expect(c.cluster).toBe(false);
      expect(c.prefix).toBe('');
      await c.redis.set('probe', 'x');
      const raw = new Redis({ host: r.host, port: r.port, db: 3 });
      expect(await raw.get('probe')).toBe('x');
      raw.disconnect();
    } finally {
      await c.close();
    }
  });

  test('?prefix= and the prefix option', async () => {
    const a = await connectMeta(`${r.url}/4?prefix=%7Bu_1_w_2%7D%3A`, { env: {} });
    expect(a.prefix).toBe('{u_1_w_2}:');
    await a.close();
    const b = await connectMeta(`${r.url}/4?prefix=x:`, { prefix: 'y:', env: {} });
    expect(b.prefix).toBe('y:');
    await b.close();
    await expect(connectMeta(`${r.url}/4`, { prefix: 'bad*', env: {} })).rejects.toThrow(/must not contain/);
  });

  test('passwords and ACL users', async () => {
    const viaEnv = await connectMeta(`${authed.url}/1`, { env: { REDIS_PASSWORD: 'pw0' } });
    expect(await viaEnv.redis.ping()).toBe('PONG');
    await viaEnv.close();
    const user = await connectMeta(`redis://alice:alicepw@127.0.0.1:${authed.port}/2`, { env: {} });
    expect(await user.redis.call('ACL', 'WHOAMI')).toBe('alice');
    await user.close();
    await expect(connectMeta(`redis://alice:wrong@127.0.0.1:${authed.port}/2`, { env: {} })).rejects.toThrow(/WRONGPASS|invalid username-password/i);
    await expect(connectMeta(`${authed.url}/1`, { env: {} })).rejects.toThrow(/NOAUTH|auth/i);
  });

  test('connection refused fails fast with the redacted URL', async () => {
    const started = Date.now();
    await expect(connectMeta('redis://:topsecret@127.0.0.1:1/1', { env: {} })).rejects.toThrow(/ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(5000);
    const err = await connectMeta('redis://u:topsecret@127.0.0.1:1/1', { env: {} }).catch((e: Error) => e);
    expect(String(err)).not.toContain('topsecret');
  });
});

describe('connectMeta on a real 3-master cluster', () => {
  let cl: RedisClusterHandle;
  beforeAll(async () => {
    cl = await startRedisCluster();
  }, 120_000);
  afterAll(async () => {
    await cl?.stop();
  });

  test('a single seed is detected as a cluster (CLUSTER INFO), prefix {N}, keys land in one slot', async () => {
    const c = await connectMeta(`redis://127.0.0.1:${cl.ports[1]}/7`, { env: {} });
    try {
      expect(c.cluster).toBe(true);
      expect(c.prefix).toBe('{7}');
      // A multi-key transaction only works if all keys share a slot: the hash tag guarantees it.
      const res = await c.redis.multi().set(c.prefix + 'setting', 's').set(c.prefix + 'i1', 'r').incr(c.prefix + 'nextinode').exec();
      expect(res?.map(([e]) => e)).toEqual([null, null, null]);
      const slot = await c.redis.call('CLUSTER', 'KEYSLOT', '{7}i1');
      expect(await c.redis.call('CLUSTER', 'KEYSLOT', '{7}setting')).toBe(slot);
    } finally {
      await c.close();
    }
  });

  test('the multi-host URL form, and a custom hash-tag prefix', async () => {
    const c = await connectMeta(`${cl.url}/2`, { prefix: '{u_9_w_3}:', env: {} });
    try {
      expect(c.cluster).toBe(true);
      expect(c.prefix).toBe('{u_9_w_3}:');
      await c.redis.set(c.prefix + 'k', 'v');
      expect(await c.redis.get(c.prefix + 'k')).toBe('v');
    } finally {
      await c.close();
    }
    await expect(connectMeta(`${cl.url}/2`, { prefix: 'plain:', env: {} })).rejects.toThrow(/hash tag/);
    await expect(connectMeta(`redis://127.0.0.1:${cl.ports[0]}/1?prefix=plain:`, { env: {} })).rejects.toThrow(/hash tag/);
  });
});

describe('connectMeta through a real Sentinel', () => {
  let master: RedisHandle;
  let sentinel: ManagedProcess;
  let sentinelPort: number;
  beforeAll(async () => {
    master = await startRedis();
    sentinelPort = await freePort();
    const d = await tmpDir('sentinel');
    const conf = path.join(d, 'sentinel.conf');
    writeFileSync(conf, `port ${sentinelPort}\nbind 127.0.0.1\ndir ${d}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
    sentinel = spawnManaged('redis-sentinel', redisServerBin(), [conf, '--sentinel'], { cwd: d, logFile: path.join(d, 'sentinel.log') });
    await waitUntil('sentinel knows mymaster', sentinel, async () => {
      const r = await redisCommand(sentinelPort, ['SENTINEL', 'get-master-addr-by-name', 'mymaster']);
      return Array.isArray(r) && r[1] === String(master.port);
    }, 20_000, 100);
  }, 60_000);
  afterAll(async () => {
    await sentinel?.stop(0);
    await master?.stop();
  });

  test('MASTER,sentinel URL: the master is found through the sentinel, db selected, prefix ""', async () => {
    const c = await connectMeta(`redis://mymaster,127.0.0.1:${sentinelPort}/5`, { env: {} });
    try {
      expect(c.url.mode).toBe('sentinel');
      expect(c.cluster).toBe(false);
      expect(c.prefix).toBe('');
      await c.redis.set('via-sentinel', '1');
      const direct = new Redis({ host: master.host, port: master.port, db: 5 });
      expect(await direct.get('via-sentinel')).toBe('1');
      direct.disconnect();
    } finally {
      await c.close();
    }
  });
});
