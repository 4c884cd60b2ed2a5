/** What every orchestrator operation needs: the database, the Redis admin, keys, config, metrics. */
import type { Db } from './db.js';
import type { MetaAdmin } from './meta-admin.js';
import type { Metrics } from './metrics.js';
import type { SigningKey } from './ticket.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface OrchestratorConfig {
  /** `iss` of tickets: the orchestrator's public base URL. */
  issuer: string;
  /** Redis URL handed to clients (no credentials). */
  publicRedisUrl: string;
  /** Directory under which `file` workspaces live when the client names none. */
  fileRoot?: string;
  /** Lifetime of a format user (phase 1 → 3). Default 900 s. */
  formatTtlSeconds: number;
  /** Ticket lifetime for owner sessions created without a TTL. Default 86400 s. */
  ownerTicketSeconds: number;
}

export interface Ctx {
  db: Db;
  meta: MetaAdmin;
  /** keys[0] signs; all are published in the JWKS (rotation). */
  keys: SigningKey[];
  config: OrchestratorConfig;
  metrics: Metrics;
  log: Logger;
  /** Work that outlives a request (workspace deletion): awaited on shutdown. */
  background(name: string, work: () => Promise<unknown>): void;
}
