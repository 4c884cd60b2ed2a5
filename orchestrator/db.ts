/**
 * The orchestrator's view of its database: one `query` and one `tx`, implemented over a pg pool
 * (PostgreSQL, the production store) or PGlite (the embedded store of the local stack). Both speak
 * PostgreSQL SQL with $n parameters, so every repository is written once.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
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

/**
 * PGlite is one process's database: a second process opening the same directory corrupts it.
 * A pid file inside the directory turns that into a clear error.
 */
async function lockPglite(dir: string): Promise<() => void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, 'artifacts.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(lock, 'utf8'));
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
      if (alive) throw new Error(`the PGlite database ${dir} is in use by process ${pid} (PGlite serves one process; stop it or use PostgreSQL)`);
      rmSync(lock, { force: true }); // stale: its process is gone
    }
  }
  throw new Error(`cannot lock ${dir}`);
}

async function openPglite(dir: string): Promise<Db> {
  const memory = dir === 'memory' || dir === '';
  const unlock = memory ? () => undefined : await lockPglite(dir);
  // Loaded lazily: the WASM module costs ~300 MB and seconds, and only the local stack wants it.
  const { PGlite } = await import('@electric-sql/pglite');
  let db: import('@electric-sql/pglite').PGlite;
  try {
    db = await PGlite.create(memory ? undefined : dir);
  } catch (err) {
    unlock();
    throw err;
  }
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
    async close() {
      await db.close();
      unlock();
    },
  };
}
