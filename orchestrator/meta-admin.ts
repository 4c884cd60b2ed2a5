/**
 * The orchestrator's one admin connection to the metadata Redis: it creates and deletes the ACL
 * users of format runs and mount sessions, checks `setting`, and deletes a workspace's keys.
 * ACL users are per node in Redis Cluster (not replicated), so user changes go to every node.
 */
import { Cluster, Redis } from 'ioredis';
import { aclSetUserArgs, type AclMode } from './acl.js';
import { parseRedisUrl, publicRedisUrl, type RedisTarget } from './redis-url.js';

export interface MetaAdminOptions {
  /** Called when the connection is (re)established after a loss: Redis may have restarted. */
  onReconnect?: () => void;
  /** Per-command timeout; a hung Redis must not hang the API. Default 5 s. */
  commandTimeoutMs?: number;
}

export class MetaAdmin {
  private knownCommands: Set<string> | null = null;
  private readyCount = 0;

  private constructor(
    readonly target: RedisTarget,
    private readonly client: Redis | Cluster,
  ) {}

  static async connect(url: string, opts: MetaAdminOptions = {}): Promise<MetaAdmin> {
    const target = parseRedisUrl(url);
    const common = {
      username: target.username,
      password: target.password,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      // Fail fast while Redis is away: callers turn the error into metadata_acl_provisioning_failed.
      maxRetriesPerRequest: 1,
      connectionName: 'artifacts-orchestrator',
      tls: target.tls ? {} : undefined,
    };
    const client: Redis | Cluster = target.cluster
      ? new Cluster(target.hosts, { redisOptions: common, enableReadyCheck: true })
      : new Redis({ ...common, host: target.hosts[0]!.host, port: target.hosts[0]!.port, db: target.db });
    const admin = new MetaAdmin(target, client);
    client.on('error', () => undefined); // reconnects on its own; errors surface on commands
    client.on('ready', () => {
      admin.readyCount++;
      if (admin.readyCount > 1) opts.onReconnect?.();
    });
    await admin.ping();
    return admin;
  }

  /** The Redis URL clients should use, without credentials. */
  get publicUrl(): string {
    return publicRedisUrl(this.target);
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  /** Every node that holds ACL users (all masters and replicas in a cluster). */
  private nodes(): Redis[] {
    return this.client instanceof Cluster ? this.client.nodes('all') : [this.client];
  }

  private async commands(): Promise<Set<string>> {
    if (!this.knownCommands) {
      const node = this.nodes()[0]!;
      const list = (await node.call('COMMAND', 'LIST')) as string[];
      this.knownCommands = new Set(list.map((c) => c.toLowerCase()));
    }
    return this.knownCommands;
  }

  /**
   * The ACL SETUSER arguments, minus commands this Redis does not know (e.g. CLIENT SETINFO
   * before 7.2): an unknown name would make Redis reject the whole rule.
   */
  private async rule(name: string, passwordHash: string, prefix: string, mode: AclMode): Promise<string[]> {
    const known = await this.commands();
    return aclSetUserArgs(name, passwordHash, prefix, mode, this.target.db).filter((a) => {
      if (!a.startsWith('+')) return true;
      const cmd = a.slice(1);
      const bar = cmd.indexOf('|');
      // `select|3` is the first-argument form, not a subcommand: keep it when SELECT exists.
      if (bar > 0 && /^\d+$/.test(cmd.slice(bar + 1))) return known.has(cmd.slice(0, bar));
      return known.has(cmd);
    });
  }

  /**
   * Create or replace user `name` on every node (idempotent).
   */
  async setUser(name: string, passwordHash: string, prefix: string, mode: AclMode): Promise<void> {
    const args = await this.rule(name, passwordHash, prefix, mode);
    await Promise.all(this.nodes().map((n) => n.call('ACL', 'SETUSER', ...args)));
  }

  /**
   * Revoke users at once: switch them off (no new AUTH), kill their connections, delete them.
   * Missing users are fine (idempotent).
   */
  async deleteUsers(names: string[]): Promise<void> {
    if (names.length === 0) return;
    await Promise.all(
      this.nodes().map(async (n) => {
        const existing = new Set((await n.call('ACL', 'USERS')) as string[]);
        const present = names.filter((u) => existing.has(u));
        if (present.length === 0) return;
        const p = n.pipeline();
        for (const u of present) p.call('ACL', 'SETUSER', u, 'off');
        for (const u of present) p.call('CLIENT', 'KILL', 'USER', u);
        p.call('ACL', 'DELUSER', ...present);
        const res = (await p.exec()) ?? [];
        const failed = res.find(([err]) => err && !/No such user/i.test(String(err.message)));
        if (failed) throw failed[0];
      }),
    );
  }

  /** ACL user names starting with one of `prefixes`, per node (index-aligned with the nodes). */
  async listUsers(prefixes: string[]): Promise<{ node: string; users: Set<string> }[]> {
    return Promise.all(
      this.nodes().map(async (n) => {
        const all = (await n.call('ACL', 'USERS')) as string[];
        return {
          node: `${n.options.host}:${n.options.port}`,
          users: new Set(all.filter((u) => prefixes.some((p) => u.startsWith(p)))),
        };
      }),
    );
  }

  /** Create `name` on the nodes where it is missing (after a Redis restart). */
  async ensureUserOnNodes(nodes: string[], name: string, passwordHash: string, prefix: string, mode: AclMode): Promise<void> {
    const args = await this.rule(name, passwordHash, prefix, mode);
    const want = new Set(nodes);
    await Promise.all(
      this.nodes()
        .filter((n) => want.has(`${n.options.host}:${n.options.port}`))
        .map((n) => n.call('ACL', 'SETUSER', ...args)),
    );
  }

  /** The raw `setting` value under `prefix`, or null. */
  async getSetting(prefix: string): Promise<string | null> {
    return this.client.get(prefix + 'setting');
  }

  /**
   * Delete every key under `prefix` (SCAN MATCH + UNLINK, in batches). In a cluster the keys share
   * one hash slot, but we scan every master: cheap, and robust during slot migration.
   */
  async deletePrefix(prefix: string): Promise<number> {
    if (/[*?[\]\\]/.test(prefix) || prefix === '') throw new Error('refusing to delete an unsafe prefix');
    const masters = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    let deleted = 0;
    for (const node of masters) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', prefix + '*', 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) deleted += await node.unlink(...keys);
      } while (cursor !== '0');
    }
    return deleted;
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
