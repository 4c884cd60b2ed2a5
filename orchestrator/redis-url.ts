/**
 * Redis URLs as the orchestrator and the mount side exchange them:
 * `redis[s]://[user:pass@]host[:port][/db]` (standalone) or `redis[s]://[user:pass@]h1:p1,h2:p2[/db]`
 * (Cluster: a comma-separated seed list). Credentials never travel inside URLs we hand out:
 * tickets carry them as separate fields.
 */
export interface RedisTarget {
  tls: boolean;
  hosts: { host: string; port: number }[];
  username?: string;
  password?: string;
  db: number;
  cluster: boolean;
}

export function parseRedisUrl(url: string): RedisTarget {
  const m = /^(rediss?):\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/(\d*))?(?:\?.*)?$/.exec(url);
  if (!m) throw new Error('invalid Redis URL (want redis://[user:pass@]host:port[/db])');
  const [, scheme, auth, hostList, dbStr] = m;
  let username: string | undefined;
  let password: string | undefined;
  if (auth) {
    const i = auth.indexOf(':');
    if (i < 0) username = decodeURIComponent(auth);
    else {
      username = decodeURIComponent(auth.slice(0, i)) || undefined;
      password = decodeURIComponent(auth.slice(i + 1));
    }
  }
  const hosts = hostList!.split(',').map((h) => {
    const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h);
    if (!hm) throw new Error(`invalid Redis host ${JSON.stringify(h)}`);
    return { host: hm[1]!.replace(/^\[|\]$/g, ''), port: hm[2] ? Number(hm[2]) : 6379 };
  });
  return { tls: scheme === 'rediss', hosts, username, password, db: dbStr ? Number(dbStr) : 0, cluster: hosts.length > 1 };
}

/** The URL without credentials (what tickets and API responses carry). */
export function publicRedisUrl(t: RedisTarget): string {
  const hosts = t.hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
  return `${t.tls ? 'rediss' : 'redis'}://${hosts}${t.db ? `/${t.db}` : ''}`;
}

/** A URL with `username`/`password` put in (for the in-process format and the mount's connection). */
export function redisUrlWithCredentials(url: string, username: string, password: string): string {
  const t = parseRedisUrl(url);
  const hosts = t.hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
  return `${t.tls ? 'rediss' : 'redis'}://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${hosts}${t.db ? `/${t.db}` : ''}`;
}
