/**
 * Meta URLs and Redis connections (juicefs-format.md 1.1).
 *
 * We accept the URLs upstream `juicefs` accepts — `redis://`, `rediss://` (TLS), `unix://` — with the
 * same mode rules (single host: standalone unless the server is a cluster node; `h1:p1,h2:p2`: cluster;
 * `MASTER,s1,s2`: sentinel), the database number in the path or `?db=`, JuiceFS' own query options and
 * go-redis' options. Anything else is rejected, as go-redis does ("unexpected option").
 *
 * One option is ours: `?prefix=<P>` sets the key prefix (e.g. `{u_1_w_2}:`). Upstream cannot open such a
 * URL (go-redis rejects the option), which is the point: a volume under a custom prefix is invisible to
 * an unpatched upstream client anyway. Default prefix: "" (standalone/sentinel), `{N}` (cluster).
 */
import { readFileSync } from 'node:fs';
// Types only at load time: parsing a URL (CLI usage checks, --help) must not pay for loading ioredis.
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { ConnectionOptions as TlsOptions } from 'node:tls';

export type MetaMode = 'standalone' | 'cluster' | 'sentinel';

export interface HostPort {
  host: string;
  port: number;
}

export interface MetaUrlOptions {
  /** read-timeout / read_timeout (ms): our per-command timeout. Default 30 s. */
  readTimeoutMs: number;
  /** write-timeout / write_timeout (ms). Default 5 s (informational; ioredis has one command timeout). */
  writeTimeoutMs: number;
  /** min-retry-backoff / max-retry-backoff (ms): reconnection backoff bounds. Defaults 20 ms / 10 s. */
  minRetryBackoffMs: number;
  maxRetryBackoffMs: number;
  /** dial_timeout (ms). Default 5 s. */
  dialTimeoutMs: number;
  /** max_retries: times a command is retried over reconnections. Default 5. */
  maxRetries: number;
  /** route-read (read-only mounts only upstream). */
  routeRead?: 'random' | 'latency' | 'replica';
  insecureSkipVerify: boolean;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsCaCertFile?: string;
  tlsServerName?: string;
  /** RESP protocol version (go-redis `protocol`); default: the client library's. */
  protocol?: 2 | 3;
  clientName?: string;
  /** Options accepted for compatibility but without effect here (client-cache, pool sizes...). */
  ignored: string[];
}

export interface MetaUrl {
  scheme: 'redis' | 'rediss' | 'unix';
  /** `standalone` for a single host means "probe": connectMeta asks CLUSTER INFO like upstream. */
  mode: MetaMode;
  /** Redis hosts (standalone: one; cluster: seeds) or the sentinels. Empty for unix sockets. */
  hosts: HostPort[];
  /** Sentinel master name. */
  masterName?: string;
  /** unix:// socket path. */
  socketPath?: string;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** `?prefix=` (ours). */
  prefix?: string;
  options: MetaUrlOptions;
  /** The URL with the password masked, for logs. */
  redacted: string;
}

export class MetaUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MetaUrlError';
  }
}

/** JuiceFS-consumed options (dash spelling; underscore aliases below). */
const JUICEFS_OPTIONS = new Set([
  'min-retry-backoff',
  'max-retry-backoff',
  'read-timeout',
  'write-timeout',
  'route-read',
  'insecure-skip-verify',
  'tls-cert-file',
  'tls-key-file',
  'tls-ca-cert-file',
  'tls-server-name',
  'client-cache',
  'client-cache-size',
  'client-cache-expire',
  'client-cache-preload',
  'client_cache_size',
  'client_cache_expire',
  'client_cache_preload',
]);

/** go-redis v9 ParseURL options. */
const GO_REDIS_OPTIONS = new Set([
  'db',
  'protocol',
  'client_name',
  'max_retries',
  'min_retry_backoff',
  'max_retry_backoff',
  'dial_timeout',
  'read_timeout',
  'write_timeout',
  'pool_fifo',
  'pool_size',
  'pool_timeout',
  'min_idle_conns',
  'max_idle_conns',
  'max_active_conns',
  'conn_max_idle_time',
  'idle_timeout',
  'conn_max_lifetime',
  'max_conn_age',
  'skip_verify',
]);

const OUR_OPTIONS = new Set(['prefix']);

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go time.ParseDuration, plus go-redis' plain integer = seconds (<= 0: disabled = -1). Returns ms. */
export function parseDuration(name: string, s: string): number {
  if (/^-?[0-9]+$/.test(s)) {
    const n = Number(s);
    return n <= 0 ? -1 : n * 1000;
  }
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest[0] === '-' ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '') throw new MetaUrlError(`invalid duration for ${name}: ${JSON.stringify(s)}`);
  let ns = 0;
  let pos = 0;
  re.lastIndex = 0;
  while (pos < rest.length) {
    re.lastIndex = pos;
    const m = re.exec(rest);
    if (!m) throw new MetaUrlError(`invalid duration for ${name}: ${JSON.stringify(s)} (use e.g. 500ms, 5s, 1m)`);
    ns += Number(m[1]) * UNIT_NS[m[2]];
    pos = re.lastIndex;
  }
  return (sign * ns) / 1e6;
}

function parseIntOption(name: string, s: string, min = 0): number {
  if (!/^-?[0-9]+$/.test(s) || Number(s) < min) throw new MetaUrlError(`invalid ${name} number: ${JSON.stringify(s)}`);
  return Number(s);
}

function parseBoolOption(name: string, s: string): boolean {
  // go-redis: true/false/1/0 or empty (true when present).
  if (s === '' || s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  throw new MetaUrlError(`invalid ${name} boolean: expected true/false/1/0 or an empty string, got ${JSON.stringify(s)}`);
}

function splitHostPort(addr: string, defaultPort: number | undefined, what: string): { host: string; port: number | undefined } {
  let host = addr;
  let port: string | undefined;
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    if (end < 0) throw new MetaUrlError(`invalid ${what} address ${JSON.stringify(addr)}`);
    host = addr.slice(1, end);
    const tail = addr.slice(end + 1);
    if (tail.startsWith(':')) port = tail.slice(1);
    else if (tail !== '') throw new MetaUrlError(`invalid ${what} address ${JSON.stringify(addr)}`);
  } else {
    const c = addr.lastIndexOf(':');
    if (c >= 0) {
      host = addr.slice(0, c);
      port = addr.slice(c + 1);
      if (host.includes(':')) throw new MetaUrlError(`invalid ${what} address ${JSON.stringify(addr)} (IPv6 needs [brackets])`);
    }
  }
  if (port !== undefined && port !== '') {
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535) throw new MetaUrlError(`invalid port in ${what} address ${JSON.stringify(addr)}`);
    return { host: host || '127.0.0.1', port: Number(port) };
  }
  return { host: host || '127.0.0.1', port: defaultPort };
}

function pctDecode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new MetaUrlError(`invalid percent-encoding in ${what}`);
  }
}

/**
 * Parse a meta URL. `env` supplies REDIS_PASSWORD / META_PASSWORD / META_PASSWORD_FILE fallbacks and
 * SENTINEL_PASSWORD (read by connectMeta); pass `{}` for a pure parse.
 */
export function parseMetaUrl(url: string, env: NodeJS.ProcessEnv = process.env): MetaUrl {
  const sm = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (!sm) throw new MetaUrlError(`invalid meta URL ${JSON.stringify(redactRaw(url))}: expected redis://, rediss:// or unix://`);
  const scheme = sm[1].toLowerCase();
  if (scheme !== 'redis' && scheme !== 'rediss' && scheme !== 'unix')
    throw new MetaUrlError(`unsupported meta URL scheme ${JSON.stringify(scheme)}: this client supports redis://, rediss:// and unix://`);
  let rest = url.slice(sm[0].length);
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  let authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash) : '';
  let username: string | undefined;
  let password: string | undefined;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) {
      username = pctDecode(userinfo.slice(0, colon), 'user name') || undefined;
      password = pctDecode(userinfo.slice(colon + 1), 'password');
    } else {
      // go-redis: a lone userinfo is the user name (redis://user@host).
      username = pctDecode(userinfo, 'user name') || undefined;
    }
  }

  // Query: JuiceFS options, go-redis options, ours; anything else is an error.
  const params = new Map<string, string>();
  const unknown: string[] = [];
  if (query !== '') {
    for (const part of query.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const k = pctDecode((eq >= 0 ? part.slice(0, eq) : part).replace(/\+/g, ' '), 'query');
      const v = pctDecode((eq >= 0 ? part.slice(eq + 1) : '').replace(/\+/g, ' '), 'query');
      if (!JUICEFS_OPTIONS.has(k) && !GO_REDIS_OPTIONS.has(k) && !OUR_OPTIONS.has(k)) unknown.push(k);
      else if (!params.has(k)) params.set(k, v); // url.Values.Get: the first value wins
    }
  }
  if (unknown.length > 0)
    throw new MetaUrlError(
      `unsupported option(s) in meta URL: ${[...new Set(unknown)].sort().join(', ')} ` +
        `(JuiceFS options: ${[...JUICEFS_OPTIONS].filter((o) => !o.includes('_')).join(', ')}; redis options: ${[...GO_REDIS_OPTIONS].join(', ')}; ours: prefix)`,
    );
  const get = (...names: string[]) => {
    for (const n of names) {
      const v = params.get(n);
      if (v !== undefined && v !== '') return v;
    }
    return undefined;
  };
  const dur = (def: number, ...names: string[]) => {
    const v = get(...names);
    return v === undefined ? def : parseDuration(names[0], v);
  };
  const routeRead = get('route-read');
  if (routeRead !== undefined && !['random', 'latency', 'replica'].includes(routeRead))
    throw new MetaUrlError(`invalid route-read ${JSON.stringify(routeRead)} (random, latency or replica)`);
  const protocol = get('protocol');
  if (protocol !== undefined && protocol !== '2' && protocol !== '3') throw new MetaUrlError(`invalid protocol ${JSON.stringify(protocol)} (2 or 3)`);
  const ignored = [...params.keys()].filter((k) =>
    /^(client[-_]cache|pool_|min_idle|max_idle|max_active|conn_max|idle_timeout|max_conn_age)/.test(k),
  );
  const skipVerify = params.has('insecure-skip-verify') ? parseBoolOption('insecure-skip-verify', params.get('insecure-skip-verify')!) : false;
  if (params.has('skip_verify') && scheme !== 'rediss') throw new MetaUrlError('skip_verify is only valid with rediss://');
  for (const b of ['pool_fifo']) if (params.has(b)) parseBoolOption(b, params.get(b)!);
  for (const n of ['pool_size', 'min_idle_conns', 'max_idle_conns', 'max_active_conns', 'client-cache-size', 'client_cache_size', 'client-cache-preload', 'client_cache_preload'])
    if (get(n) !== undefined) parseIntOption(n, get(n)!);
  for (const d of ['pool_timeout', 'conn_max_idle_time', 'idle_timeout', 'conn_max_lifetime', 'max_conn_age', 'client-cache-expire', 'client_cache_expire'])
    if (get(d) !== undefined) parseDuration(d, get(d)!);
  const options: MetaUrlOptions = {
    readTimeoutMs: dur(30_000, 'read-timeout', 'read_timeout'),
    writeTimeoutMs: dur(5_000, 'write-timeout', 'write_timeout'),
    minRetryBackoffMs: dur(20, 'min-retry-backoff', 'min_retry_backoff'),
    maxRetryBackoffMs: dur(10_000, 'max-retry-backoff', 'max_retry_backoff'),
    dialTimeoutMs: dur(5_000, 'dial_timeout'),
    maxRetries: get('max_retries') !== undefined ? parseIntOption('max_retries', get('max_retries')!, -1) : 5,
    routeRead: routeRead as MetaUrlOptions['routeRead'],
    insecureSkipVerify: skipVerify || (params.has('skip_verify') && parseBoolOption('skip_verify', params.get('skip_verify')!)),
    tlsCertFile: get('tls-cert-file'),
    tlsKeyFile: get('tls-key-file'),
    tlsCaCertFile: get('tls-ca-cert-file'),
    tlsServerName: get('tls-server-name'),
    protocol: protocol === undefined ? undefined : (Number(protocol) as 2 | 3),
    clientName: get('client_name'),
    ignored,
  };

  // Database: the single path segment, or ?db= (which wins, as in go-redis).
  let db = 0;
  let socketPath: string | undefined;
  if (scheme === 'unix') {
    socketPath = pctDecode(path, 'socket path');
    if (!socketPath || socketPath === '/') throw new MetaUrlError('unix:// meta URL needs a socket path, e.g. unix:///run/redis.sock?db=1');
    if (authority !== '') throw new MetaUrlError(`unix:// meta URL must not have a host (got ${JSON.stringify(authority)})`);
  } else {
    const segs = path.split('/').filter((s) => s !== '');
    if (segs.length > 1) throw new MetaUrlError(`invalid meta URL path ${JSON.stringify(path)}: expected /<db number>`);
    if (segs.length === 1) {
      if (!/^-?[0-9]+$/.test(segs[0]))
        throw new MetaUrlError(`invalid database number ${JSON.stringify(segs[0])} in meta URL (use ?prefix= for a key prefix)`);
      db = Number(segs[0]);
    }
  }
  const dbq = get('db');
  if (dbq !== undefined) {
    if (!/^-?[0-9]+$/.test(dbq)) throw new MetaUrlError(`invalid database number ${JSON.stringify(dbq)}`);
    db = Number(dbq);
  }
  if (db < 0 || !Number.isSafeInteger(db)) throw new MetaUrlError(`invalid database number ${db}`);

  // Mode (upstream: compare the first ',' with the first ':' of the host part).
  let mode: MetaMode = 'standalone';
  let hosts: HostPort[] = [];
  let masterName: string | undefined;
  if (scheme !== 'unix') {
    if (authority === '') throw new MetaUrlError('meta URL has no host');
    const comma = authority.indexOf(',');
    const colon = authority.indexOf(':');
    if (comma >= 0 && comma < colon) {
      mode = 'sentinel';
      const parts = authority.split(',');
      masterName = parts[0];
      const sentinels = parts.slice(1).map((a) => splitHostPort(a, undefined, 'sentinel'));
      if (sentinels.length === 0 || sentinels.some((s) => s.host === '')) throw new MetaUrlError('sentinel meta URL needs MASTER,sentinel1[:port],...');
      const lastPort = sentinels[sentinels.length - 1].port ?? 26379;
      hosts = sentinels.map((s) => ({ host: s.host, port: s.port ?? lastPort }));
    } else if (comma >= 0) {
      mode = 'cluster';
      hosts = authority.split(',').map((a) => {
        const hp = splitHostPort(a, 6379, 'cluster node');
        return { host: hp.host, port: hp.port ?? 6379 };
      });
    } else {
      const hp = splitHostPort(authority, 6379, 'redis');
      hosts = [{ host: hp.host, port: hp.port ?? 6379 }];
    }
  }

  if (password === undefined || password === '') {
    password = env.REDIS_PASSWORD || env.META_PASSWORD || undefined;
    if (!password && env.META_PASSWORD_FILE) {
      try {
        password = readFileSync(env.META_PASSWORD_FILE, 'utf8').trim() || undefined;
      } catch (e) {
        throw new MetaUrlError(`cannot read META_PASSWORD_FILE ${env.META_PASSWORD_FILE}: ${(e as Error).message}`);
      }
    }
  }

  const prefix = params.get('prefix');
  if (prefix !== undefined) validatePrefix(prefix, mode === 'cluster');

  return {
    scheme,
    mode,
    hosts,
    masterName,
    socketPath,
    db,
    username,
    password,
    tls: scheme === 'rediss',
    prefix,
    options,
    redacted: redactRaw(url),
  };
}

/** Mask the password of a meta URL (as upstream's removePassword does). */
export function redactRaw(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s.exec(url);
  if (!m) return url;
  const at = m[2].lastIndexOf('@');
  if (at < 0) return url;
  const userinfo = m[2].slice(0, at);
  const colon = userinfo.indexOf(':');
  if (colon < 0) return url;
  return m[1] + userinfo.slice(0, colon) + ':****' + m[2].slice(at) + m[3];
}

/**
 * A key prefix is used as a SCAN glob (`P*`), so it must not contain glob metacharacters; on a
 * cluster it must carry a hash tag so that every key of the volume lands in one slot.
 */
export function validatePrefix(prefix: string, cluster: boolean): void {
  if (/[*?[\]\\]/.test(prefix)) throw new MetaUrlError(`invalid key prefix ${JSON.stringify(prefix)}: it must not contain * ? [ ] or \\`);
  if (cluster) {
    // Redis hashes the part between the first '{' and the next '}' (if non-empty).
    const open = prefix.indexOf('{');
    const close = open >= 0 ? prefix.indexOf('}', open + 1) : -1;
    if (open < 0 || close < 0 || close === open + 1)
      throw new MetaUrlError(`key prefix ${JSON.stringify(prefix)} needs a hash tag like {name} on a Redis Cluster (all keys of a volume must share a slot)`);
  }
}

export type MetaRedis = Redis | Cluster;

export interface MetaConnection {
  redis: MetaRedis;
  prefix: string;
  cluster: boolean;
  url: MetaUrl;
  close(): Promise<void>;
}

export interface ConnectOptions {
  /** Overrides `?prefix=` and the mode default. */
  prefix?: string;
  /** Extra ioredis options (tests, engine tuning). */
  redisOptions?: Partial<RedisOptions>;
  /** Skip the CLUSTER INFO probe for a single host (treat as standalone). */
  noClusterProbe?: boolean;
  env?: NodeJS.ProcessEnv;
}

function tlsOptions(u: MetaUrl): TlsOptions | undefined {
  if (!u.tls) return undefined;
  const o = u.options;
  const t: TlsOptions = { rejectUnauthorized: !o.insecureSkipVerify };
  if (o.tlsServerName) t.servername = o.tlsServerName;
  const read = (what: string, f: string) => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new MetaUrlError(`cannot read ${what} ${f}: ${(e as Error).message}`);
    }
  };
  if (o.tlsCertFile) {
    t.cert = read('tls-cert-file', o.tlsCertFile);
    if (o.tlsKeyFile) t.key = read('tls-key-file', o.tlsKeyFile);
  }
  if (o.tlsCaCertFile) t.ca = read('tls-ca-cert-file', o.tlsCaCertFile);
  return t;
}

function baseOptions(u: MetaUrl, extra?: Partial<RedisOptions>): RedisOptions {
  const o = u.options;
  const opts: RedisOptions = {
    username: u.username,
    password: u.password,
    tls: tlsOptions(u),
    connectTimeout: o.dialTimeoutMs > 0 ? o.dialTimeoutMs : undefined,
    // One timeout per command in ioredis; upstream's read timeout (30 s) is the longer of its two.
    commandTimeout: o.readTimeoutMs > 0 ? o.readTimeoutMs : undefined,
    maxRetriesPerRequest: o.maxRetries < 0 ? 0 : o.maxRetries,
    retryStrategy: (times: number) => Math.min(Math.max(o.minRetryBackoffMs, 1) * 2 ** Math.min(times, 20), Math.max(o.maxRetryBackoffMs, 1)),
    enableAutoPipelining: true,
    lazyConnect: false,
    // ioredis' ready check runs INFO (waits out LOADING). Per-workspace ACL users are normally not
    // allowed INFO (it is @dangerous), and ioredis then prints a warning on every connection; for
    // them we skip it (a LOADING reply surfaces as a retryable error instead).
    enableReadyCheck: !u.username,
    connectionName: o.clientName,
    ...(o.protocol ? { protocol: o.protocol } : {}),
    ...extra,
  };
  return opts;
}

/** Upstream's test: CLUSTER INFO succeeds with `cluster_state:` in it, or fails mentioning "cluster mode". */
async function looksLikeCluster(u: MetaUrl, extra?: Partial<RedisOptions>): Promise<boolean> {
  const { Redis } = await import('ioredis');
  const probe = new Redis({
    ...baseOptions(u, extra),
    host: u.hosts[0]?.host,
    port: u.hosts[0]?.port,
    path: u.socketPath,
    db: 0,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableAutoPipelining: false,
  });
  probe.on('error', () => {});
  // Connection and authentication failures are real errors, not "not a cluster".
  try {
    await waitReady(probe, u.redacted);
  } catch (e) {
    probe.disconnect();
    throw e;
  }
  try {
    const info = (await probe.call('CLUSTER', 'INFO')) as string | Buffer;
    return String(info).includes('cluster_state:');
  } catch (e) {
    const msg = (e as Error).message ?? '';
    if (msg.includes('cluster mode')) return true;
    if (/Connection is closed|ECONNRESET/.test(msg)) throw new Error(`cannot connect to ${u.redacted}: ${msg}`);
    // e.g. "ERR This instance has cluster support disabled", or NOPERM for a restricted ACL user.
    return false;
  } finally {
    probe.disconnect();
  }
}

async function waitReady(r: MetaRedis, what: string): Promise<void> {
  if (r.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new Error(`cannot connect to ${what}: ${e.message}`));
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`cannot connect to ${what}: connection closed`));
    };
    const cleanup = () => {
      r.off('ready', onReady);
      r.off('error', onError);
      r.off('end', onEnd);
    };
    r.once('ready', onReady);
    r.once('error', onError);
    r.once('end', onEnd);
  });
}

/**
 * Connect to the metadata Redis of a meta URL. Resolves once the connection is ready; rejects (and
 * closes everything) on connection or authentication failure.
 */
export async function connectMeta(url: string | MetaUrl, opts: ConnectOptions = {}): Promise<MetaConnection> {
  const u = typeof url === 'string' ? parseMetaUrl(url, opts.env) : url;
  const { Redis, Cluster } = await import('ioredis');
  let mode = u.mode;
  if (mode === 'standalone' && !opts.noClusterProbe && (await looksLikeCluster(u, opts.redisOptions))) mode = 'cluster';
  const cluster = mode === 'cluster';
  const prefix = opts.prefix ?? u.prefix ?? (cluster ? `{${u.db}}` : '');
  validatePrefix(prefix, cluster);

  let redis: MetaRedis;
  if (cluster && u.socketPath) throw new MetaUrlError(`${u.redacted} is a Redis Cluster node; connect to it over TCP (redis://host:port)`);
  if (cluster) {
    const ro = baseOptions(u, opts.redisOptions);
    const { retryStrategy: _r, enableAutoPipelining: _a, lazyConnect: _l, ...nodeOptions } = ro;
    const copts: ClusterOptions = {
      redisOptions: nodeOptions as ClusterOptions['redisOptions'],
      enableAutoPipelining: true,
      lazyConnect: false,
      maxRedirections: 16,
      clusterRetryStrategy: (times: number) => (times > 10 ? null : Math.min(100 * times, 2000)),
      slotsRefreshTimeout: Math.max(1000, u.options.dialTimeoutMs),
      scaleReads: u.options.routeRead === 'replica' ? 'slave' : 'master',
    };
    redis = new Cluster(u.hosts, copts);
  } else if (mode === 'sentinel') {
    redis = new Redis({
      ...baseOptions(u, opts.redisOptions),
      sentinels: u.hosts,
      name: u.masterName,
      db: u.db,
      sentinelPassword: (opts.env ?? process.env).SENTINEL_PASSWORD || undefined,
      enableTLSForSentinelMode: u.tls,
      role: u.options.routeRead === 'replica' ? 'slave' : 'master',
    });
  } else {
    redis = new Redis({
      ...baseOptions(u, opts.redisOptions),
      host: u.hosts[0]?.host,
      port: u.hosts[0]?.port,
      path: u.socketPath,
      db: u.db,
    });
  }
  // Keep an 'error' listener so a transient reconnect error is not an unhandled event.
  redis.on('error', () => {});
  try {
    await waitReady(redis, u.redacted);
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  return {
    redis,
    prefix,
    cluster,
    url: u,
    async close() {
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}
