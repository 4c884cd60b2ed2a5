/**
 * Optimistic transactions as upstream runs them (juicefs-format.md 4.1): WATCH the keys, read on
 * the same connection, then MULTI/EXEC; an aborted EXEC (a watched key changed) retries from
 * scratch, up to 50 times with a growing random sleep.
 *
 * WATCH state is per connection, so each transaction borrows a dedicated connection from a small
 * pool (a Redis per slot, or a Cluster client whose node connections it keeps for itself).
 */
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { MetaError, metaErr } from '../types.js';

export type Conn = Redis | Cluster;

export interface TxnStep<T> {
  /** Queue the writes; omitted = read-only outcome (no EXEC). */
  write?: (m: ChainableCommander) => void;
  result: T;
  /** Sees the EXEC replies (e.g. the RPUSH length) before the result is returned. */
  onExec?: (replies: unknown[]) => void;
}

const MAX_RETRIES = 50;
const RETRYABLE = /^(LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|MOVED|ASK|EXECABORT)|max number of clients reached/;

export class ConnPool {
  private idle: Conn[] = [];
  private waiters: ((c: Conn) => void)[] = [];
  private all: Conn[] = [];
  constructor(
    private readonly make: () => Conn,
    private readonly max: number,
  ) {}

  async acquire(): Promise<Conn> {
    let c = this.idle.pop();
    if (!c && this.all.length < this.max) {
      c = this.make();
      // Errors surface on the commands; without a listener ioredis prints every reconnect failure.
      c.on('error', () => undefined);
      this.all.push(c);
    }
    if (!c) c = await new Promise<Conn>((resolve) => this.waiters.push(resolve));
    if (c.status !== 'ready') {
      // A transaction on a connection that is down would queue until the command timeout (30 s):
      // wait a bounded time for it to (re)connect, else fail now with EIO.
      try {
        await waitReady(c, READY_WAIT_MS);
      } catch (e) {
        this.release(c);
        throw metaErr('EIO', `metadata server unavailable: ${(e as Error).message}`);
      }
    }
    return c;
  }

  release(c: Conn): void {
    const w = this.waiters.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((c) => closeConn(c)));
    this.all = [];
    this.idle = [];
  }
}

const READY_WAIT_MS = 3000;

/** Resolves when `c` is ready; rejects after `ms` or when it gives up reconnecting. */
export function waitReady(c: Conn, ms: number): Promise<void> {
  if (c.status === 'ready') return Promise.resolve();
  if (c.status === 'end') return Promise.reject(new Error('connection closed'));
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(t);
      c.off('ready', onReady);
      c.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onEnd = () => done(new Error('connection closed'));
    const t = setTimeout(() => done(new Error(`not connected after ${ms} ms`)), ms);
    c.once('ready', onReady);
    c.once('end', onEnd);
  });
}

/** QUIT a healthy connection (bounded), drop a broken one at once. */
export async function closeConn(c: Conn): Promise<void> {
  if (c.status !== 'ready') {
    c.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([c.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 1000)))]);
  clearTimeout(timer);
  c.disconnect();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Map Redis errors to errno where upstream does (OOM → ENOSPC). */
export function mapRedisError(e: unknown): unknown {
  if (e instanceof MetaError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (msg.startsWith('OOM')) return metaErr('ENOSPC', msg);
  if (msg.startsWith('NOPERM')) return metaErr('EACCES', 'redis refused the command: ' + msg);
  return e;
}

export async function runTxn<T>(pool: ConnPool, keys: string[], body: (c: Conn) => Promise<TxnStep<T>>): Promise<T> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
    const c = await pool.acquire();
    let watching = false;
    try {
      // WATCH is not awaited on its own: ioredis writes commands in order on this connection, so
      // the body's first reads travel in the same round trip and still run after the WATCH.
      let watched: Promise<unknown> | undefined;
      if (keys.length) {
        watched = c.watch(...keys);
        watched.catch(() => undefined);
        watching = true;
      }
      const step = await body(c);
      if (watched) await watched;
      if (!step.write) {
        // Not awaited: the connection sends commands in order, so the next transaction's WATCH
        // follows this UNWATCH anyway; waiting would only add a round trip.
        if (watching) c.unwatch().catch(() => undefined);
        return step.result;
      }
      const m = c.multi();
      step.write(m);
      const res = await m.exec();
      watching = false;
      if (res === null) {
        lastErr = metaErr('EAGAIN', 'transaction conflict');
      } else {
        for (const [err] of res) {
          if (err) throw err;
        }
        step.onExec?.(res.map((r) => r[1]));
        return step.result;
      }
    } catch (e) {
      if (watching) await c.unwatch().catch(() => undefined);
      const msg = e instanceof Error ? e.message : '';
      if (e instanceof MetaError || !RETRYABLE.test(msg)) throw mapRedisError(e);
      lastErr = e;
    } finally {
      pool.release(c);
    }
    await sleep(Math.floor(Math.random() * (attempt + 1) * (attempt + 1)));
  }
  throw lastErr instanceof MetaError ? lastErr : metaErr('EIO', `transaction failed after ${MAX_RETRIES} attempts: ${String(lastErr)}`);
}
