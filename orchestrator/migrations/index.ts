/**
 * Numbered schema migrations. Each runs once, in order, inside one transaction that also records
 * it in schema_migrations; an advisory lock keeps several orchestrators starting at once from
 * racing. Never edit an applied migration: add the next number.
 */
import type { Db } from '../db.js';
import { sql as m0001 } from './0001_init.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [{ version: 1, name: 'init', sql: m0001 }];

/** Arbitrary constant: the advisory lock id serialising migrations across orchestrators. */
const MIGRATION_LOCK = 7_264_211;

/** Applies the pending migrations; returns the versions applied now. */
export async function migrate(db: Db): Promise<number[]> {
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    const done = await db.tx(async (q) => {
      await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const rows = await q.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (rows.length > 0) return false;
      await q.exec(m.sql);
      await q.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}

/** The highest applied version (0 = empty database). */
export async function schemaVersion(db: Db): Promise<number> {
  const exists = await db.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
  if (!exists[0]?.t) return 0;
  const rows = await db.query<{ v: number | null }>('SELECT max(version)::int AS v FROM schema_migrations');
  return rows[0]?.v ?? 0;
}

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
