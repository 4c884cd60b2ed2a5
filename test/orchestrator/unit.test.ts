/** Unit tests of the orchestrator's pure pieces: ACL rules, Redis URLs, names, secrets, durations. */
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../cli/commands/platform.js';
import { aclSetUserArgs, READ_COMMANDS, WRITE_COMMANDS, workspacePrefix } from '../../orchestrator/acl.js';
import { mask } from '../../orchestrator/client-config.js';
import { parseRedisUrl, publicRedisUrl, redisUrlWithCredentials } from '../../orchestrator/redis-url.js';
import { API_KEY_RE, newApiKey, newId, randomBase62, sha256Hex } from '../../orchestrator/secrets.js';
import { volumeName } from '../../orchestrator/workspaces.js';
import { VOLUME_NAME_RE } from '../../metadata/format.js';

const HASH = sha256Hex('pw');

describe('ACL rules', () => {
  it('confine to the prefix, and give ro sessions no write command', () => {
    const ro = aclSetUserArgs('ms-x', HASH, '{u_1_w_2}:', 'ro');
    expect(ro.slice(0, 7)).toEqual(['ms-x', 'reset', 'on', `#${HASH}`, 'resetchannels', '~{u_1_w_2}:*', '-@all']);
    for (const w of WRITE_COMMANDS) expect(ro).not.toContain(`+${w}`);
    for (const r of READ_COMMANDS) expect(ro).toContain(`+${r}`);
    const rw = aclSetUserArgs('ms-x', HASH, '{u_1_w_2}:', 'rw');
    for (const w of WRITE_COMMANDS) expect(rw).toContain(`+${w}`);
    for (const banned of ['scan', 'keys', 'eval', 'evalsha', 'info', 'flushall', 'config', 'acl', '@all', 'select']) {
      expect(rw).not.toContain(`+${banned}`);
    }
    expect(aclSetUserArgs('ms-x', HASH, '{u_1_w_2}:', 'rw', 3)).toContain('+select|3');
  });

  it('refuse prefixes that would widen the key pattern, and bad hashes', () => {
    for (const p of ['', '*', '{u_1_w_*}:', 'a?b', '[x]', 'a\\b', 'a b']) expect(() => aclSetUserArgs('u', HASH, p, 'ro'), p).toThrow();
    expect(() => aclSetUserArgs('u', 'nothex', '{u_1_w_2}:', 'ro')).toThrow();
    expect(workspacePrefix(12, 345)).toBe('{u_12_w_345}:');
  });
});

describe('Redis URLs', () => {
  it('parse standalone, cluster, credentials and db; strip credentials for clients', () => {
    const t = parseRedisUrl('redis://admin:p%40ss@10.0.0.1:6380/3');
    expect(t).toMatchObject({ username: 'admin', password: 'p@ss', db: 3, cluster: false, hosts: [{ host: '10.0.0.1', port: 6380 }] });
    expect(publicRedisUrl(t)).toBe('redis://10.0.0.1:6380/3');
    const c = parseRedisUrl('rediss://:secret@h1:7000,h2:7001');
    expect(c).toMatchObject({ tls: true, cluster: true, password: 'secret', username: undefined });
    expect(publicRedisUrl(c)).toBe('rediss://h1:7000,h2:7001');
    expect(redisUrlWithCredentials('redis://h:1/2', 'ms-a', 'b/c')).toBe('redis://ms-a:b%2Fc@h:1/2');
    expect(parseRedisUrl('redis://[::1]:6379').hosts[0]).toEqual({ host: '::1', port: 6379 });
    expect(() => parseRedisUrl('http://x')).toThrow();
  });
});

describe('names and secrets', () => {
  it('volume names are valid JuiceFS names, unique per workspace id, at most 63 characters', () => {
    const long = volumeName('h'.repeat(40), 'n'.repeat(40), 123456);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long.endsWith('-123456')).toBe(true);
    for (const v of [long, volumeName('alice', 'demo', 1), volumeName('a-', 'b', 9)]) expect(v).toMatch(VOLUME_NAME_RE);
    expect(volumeName('alice', 'demo', 1)).not.toBe(volumeName('alice', 'demo', 2));
  });

  it('API keys, ids and passwords have the promised shape and are not repeated', () => {
    const keys = new Set(Array.from({ length: 1000 }, newApiKey));
    expect(keys.size).toBe(1000);
    for (const k of keys) expect(k).toMatch(API_KEY_RE);
    expect(newId('grt_')).toMatch(/^grt_[a-z0-9]{20}$/);
    // Rough uniformity of base62: every character shows up.
    expect(new Set(randomBase62(20_000)).size).toBe(62);
  });

  it('masks secrets like upstream, and parses durations', () => {
    expect(mask('AKIAIOSFODNN7EXAMPLE')).toBe('AKIA***MPLE');
    expect(mask('short')).toBe('***');
    expect(mask(undefined)).toBe('(unset)');
    expect(parseDuration('--ttl', '90')).toBe(90);
    expect(parseDuration('--ttl', '1h30m')).toBe(5400);
    expect(parseDuration('--ttl', '7d')).toBe(604800);
    for (const bad of ['', '1x', 'h', '0', '-5m']) expect(() => parseDuration('--ttl', bad), bad).toThrow();
  });
});
