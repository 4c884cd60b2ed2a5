/**
 * Redis ACL rules of the users the orchestrator creates. Isolation and read-only are enforced by
 * Redis itself:
 * - the key pattern `~<prefix>*` confines every key-bound command to the workspace's keys;
 * - commands are granted one by one (allow-list after `-@all`): nothing keyspace-wide (KEYS, SCAN,
 *   FLUSHALL, DBSIZE, RANDOMKEY), nothing server-wide (CONFIG, ACL, DEBUG, MONITOR, INFO,
 *   SHUTDOWN), no scripting (EVAL, FUNCTION, SCRIPT) and no pub/sub;
 * - `ro` users get read commands only, so MULTI-queued or scripted writes are refused too.
 *
 * SCAN is deliberately absent: an ACL key pattern does not filter SCAN's reply, so a session
 * could enumerate the key names of every other workspace. HSCAN/SSCAN/ZSCAN are key-bound and fine.
 */

/** Commands any client library needs on a fresh connection (handshake, cluster topology). */
const CONNECTION = [
  'ping',
  'echo',
  'quit',
  'client|setname',
  'client|getname',
  'client|setinfo',
  'client|id',
  'cluster|info',
  'cluster|slots',
  'cluster|shards',
  'cluster|nodes',
  'readonly',
  'readwrite',
  'asking',
];

/** Optimistic transactions (WATCH/MULTI/EXEC): every queued command is still checked. */
const TRANSACTIONS = ['watch', 'unwatch', 'multi', 'exec', 'discard'];

/** Key-bound reads used by the JuiceFS engine (juicefs-format.md section 4). */
export const READ_COMMANDS = [
  'get',
  'mget',
  'strlen',
  'getrange',
  'exists',
  'type',
  'hget',
  'hgetall',
  'hkeys',
  'hvals',
  'hexists',
  'hlen',
  'hmget',
  'hscan',
  'lrange',
  'llen',
  'lindex',
  'smembers',
  'sismember',
  'scard',
  'sscan',
  'zrange',
  'zrangebyscore',
  'zscore',
  'zcard',
  'zcount',
  'zscan',
];

/** Key-bound writes used by the engine; granted to `rw` sessions and format users only. */
export const WRITE_COMMANDS = [
  'set',
  'setnx',
  'del',
  'unlink',
  'incr',
  'incrby',
  'decr',
  'decrby',
  'hset',
  'hsetnx',
  'hdel',
  'hincrby',
  'rpush',
  'rpushx',
  'lpush',
  'ltrim',
  'lrem',
  'lset',
  'rpop',
  'lpop',
  'sadd',
  'srem',
  'zadd',
  'zrem',
  'zincrby',
];

export type AclMode = 'ro' | 'rw';

/** Redis glob metacharacters; a prefix containing one would widen the key pattern. */
const GLOB_META = /[*?[\]\\]/;

/**
 * Arguments of `ACL SETUSER` for a user confined to `prefix`, authenticated by SHA-256
 * `passwordHash`, allowed `mode`. `db` > 0 additionally allows `SELECT db` (and no other db).
 */
export function aclSetUserArgs(user: string, passwordHash: string, prefix: string, mode: AclMode, db = 0): string[] {
  if (!/^[0-9a-f]{64}$/.test(passwordHash)) throw new Error('password hash must be 64 hex digits');
  if (prefix === '' || GLOB_META.test(prefix) || /\s/.test(prefix)) {
    throw new Error(`refusing an ACL key pattern for prefix ${JSON.stringify(prefix)}`);
  }
  const cmds = [...CONNECTION, ...TRANSACTIONS, ...READ_COMMANDS, ...(mode === 'rw' ? WRITE_COMMANDS : [])];
  if (db > 0) cmds.push(`select|${db}`);
  return [user, 'reset', 'on', `#${passwordHash}`, 'resetchannels', `~${prefix}*`, '-@all', ...cmds.map((c) => `+${c}`)];
}

export const SESSION_USER_PREFIX = 'ms-';
export const FORMAT_USER_PREFIX = 'fmt-';

export function sessionUser(sessionId: string): string {
  return SESSION_USER_PREFIX + sessionId;
}

export function formatUser(workspaceId: number): string {
  return FORMAT_USER_PREFIX + workspaceId;
}

/** The workspace key prefix (a Redis Cluster hash tag: one slot per workspace). */
export function workspacePrefix(userId: number, workspaceId: number): string {
  return `{u_${userId}_w_${workspaceId}}:`;
}
