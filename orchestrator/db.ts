/**
 * The orchestrator's view of its database: one `query` and one `tx`, implemented over a pg pool
 * (PostgreSQL, the production store) or PGlite (the embedded store of the local stack). Both speak
 * PostgreSQL SQL with $n parameters, so every repository is written once.
 */
import pg from 'pg';

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Several statements, no parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction; rolls back when it throws. */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** SQLSTATE of a unique-index violation. */
export const UNIQUE_VIOLATION = '23505';

export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === UNIQUE_VIOLATION;
}

/**
 * `postgres://...` / `postgresql://...` → PostgreSQL; `pglite:<dir>` → PGlite on disk;
 * `pglite:memory` → PGlite in memory (tests).
 */
export async function openDb(url: string): Promise<Db> {
  if (url.startsWith('pglite:')) return openPglite(url.slice('pglite:'.length).replace(/^\/\//, ''));
  if (/^postgres(ql)?:\/\//.test(url)) return openPostgres(url);
  throw new Error(`unsupported database URL (want postgres://..., postgresql://... or pglite:<dir>): ${redactUrl(url)}`);
}

/** For messages and logs: the URL with its password replaced. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}

// int8 (COUNT(*), bigint ids) arrives as a string by default; our counts and ids fit in a double.
pg.types.setTypeParser(20, (v: string) => Number(v));

function openPostgres(url: string): Db {
  const pool = new pg.Pool({ connectionString: url, max: 10, idleTimeoutMillis: 30_000 });
  // An idle client losing its server (PostgreSQL restart) must not crash the process.
  pool.on('error', () => undefined);
  return {
    kind: 'postgres',
    async query<T>(sql: string, params?: unknown[]) {
      const r = await pool.query(sql, params as unknown[]);
      return r.rows as T[];
    },
    async exec(sql: string) {
      await pool.query(sql);
    },
    async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const q: Queryable = {
          async query<R>(sql: string, params?: unknown[]) {
            return (await client.query(sql, params as unknown[])).rows as R[];
          },
          async exec(sql: string) {
            await client.query(sql);
          },
        };
        const out = await fn(q);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

async function openPglite(dir: string): Promise<Db> {
  // Loaded lazily: the WASM module costs ~300 MB and seconds, and only the local stack wants it.
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create(dir === 'memory' || dir === '' ? undefined : dir);
  return {
    kind: 'pglite',
    async query<T>(sql: string, params?: unknown[]) {
      return (await db.query<T>(sql, params)).rows;
    },
    async exec(sql: string) {
      await db.exec(sql);
    },
    async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
      return db.transaction(async (t) =>
        fn({
          async query<R>(sql: string, params?: unknown[]) {
            return (await t.query<R>(sql, params)).rows;
          },
          async exec(sql: string) {
            await t.exec(sql);
          },
        }),
      );
    },
    close: () => db.close(),
  };
}
