/**
 * Entry point of the metadata layer: open a volume by meta URL.
 */
import type { Cluster, Redis } from 'ioredis';
import type { MetaOptions } from './interface.js';
import { connectMeta, type ConnectOptions } from './redis/connect.js';
import { RedisMeta, type RedisMetaOptions } from './redis/engine.js';

export type { Meta, MetaOptions, Compactor, LookupResult } from './interface.js';
export { RedisMeta } from './redis/engine.js';
export * from './types.js';

export interface OpenMetaOptions extends RedisMetaOptions, MetaOptions {
  /** Key prefix override (e.g. `{u_1_w_2}:`); default "" standalone, `{N}` cluster. */
  prefix?: string;
  connect?: ConnectOptions;
  /** Do not read `setting` (used by format). */
  noLoad?: boolean;
}

/** Connect, read and validate `setting`. The caller starts a session with newSession() when it writes. */
export async function openMeta(url: string, opts: OpenMetaOptions = {}): Promise<RedisMeta> {
  const conn = await connectMeta(url, { ...opts.connect, prefix: opts.prefix ?? opts.connect?.prefix });
  const make = conn.cluster
    ? () => (conn.redis as Cluster).duplicate(undefined, { enableAutoPipelining: false })
    : () => (conn.redis as Redis).duplicate({ enableAutoPipelining: false });
  const meta = new RedisMeta(conn.redis, conn.prefix, opts, make);
  if (!opts.noLoad) {
    try {
      await meta.load();
    } catch (e) {
      await conn.close().catch(() => undefined);
      throw e;
    }
  }
  return meta;
}
