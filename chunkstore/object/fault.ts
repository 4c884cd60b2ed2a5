/**
 * Fault-injecting object store for tests: fail the next N operations, take the store "down",
 * delay operations, or corrupt the bytes of the next gets. Wraps a real store so everything that
 * is not injected behaves exactly like it.
 */
import type { ObjectInfo, ObjectStore } from '../types.js';

export type ObjectOp = 'get' | 'put' | 'delete' | 'head' | 'list';
const ALL_OPS: readonly ObjectOp[] = ['get', 'put', 'delete', 'head', 'list'];

export class InjectedFault extends Error {
  constructor(op: ObjectOp, key: string) {
    super(`injected fault: ${op} ${key}`);
    this.name = 'InjectedFault';
  }
}

export class FaultObjectStore implements ObjectStore {
  /** Operations seen, per kind (including failed ones). */
  readonly calls: Record<ObjectOp, number> = { get: 0, put: 0, delete: 0, head: 0, list: 0 };
  private failures = new Map<ObjectOp, number>();
  private skips = new Map<ObjectOp, number>();
  private downOps = new Set<ObjectOp>();
  private delays = new Map<ObjectOp, number>();
  private corruptGets = 0;

  constructor(readonly inner: ObjectStore) {}

  /** Fail the next `n` operations of the given kinds (after letting `after` of them succeed). */
  failNext(n: number, ops: readonly ObjectOp[] = ALL_OPS, after = 0): this {
    for (const op of ops) {
      this.failures.set(op, n);
      this.skips.set(op, after);
    }
    return this;
  }

  /** Every operation of these kinds fails until up(). */
  down(ops: readonly ObjectOp[] = ALL_OPS): this {
    for (const op of ops) this.downOps.add(op);
    return this;
  }

  up(): this {
    this.downOps.clear();
    this.failures.clear();
    return this;
  }

  /** Add `ms` of latency to the given kinds (0 removes it). */
  delay(ms: number, ops: readonly ObjectOp[] = ALL_OPS): this {
    for (const op of ops) this.delays.set(op, ms);
    return this;
  }

  /** Flip a byte in the result of the next `n` gets. */
  corruptNext(n: number): this {
    this.corruptGets = n;
    return this;
  }

  private async enter(op: ObjectOp, key: string): Promise<void> {
    this.calls[op]++;
    const ms = this.delays.get(op);
    if (ms) await new Promise((r) => setTimeout(r, ms));
    if (this.downOps.has(op)) throw new InjectedFault(op, key);
    const skip = this.skips.get(op) ?? 0;
    if (skip > 0) {
      this.skips.set(op, skip - 1);
      return;
    }
    const left = this.failures.get(op) ?? 0;
    if (left > 0) {
      this.failures.set(op, left - 1);
      throw new InjectedFault(op, key);
    }
  }

  describe(): string {
    return `fault+${this.inner.describe()}`;
  }

  async get(key: string, offset?: number, length?: number): Promise<Buffer> {
    await this.enter('get', key);
    const data = await this.inner.get(key, offset, length);
    if (this.corruptGets > 0 && data.length > 0) {
      this.corruptGets--;
      const copy = Buffer.from(data);
      copy[copy.length >> 1] ^= 0xff;
      return copy;
    }
    return data;
  }

  async put(key: string, data: Buffer): Promise<void> {
    await this.enter('put', key);
    await this.inner.put(key, data);
  }

  async delete(key: string): Promise<void> {
    await this.enter('delete', key);
    await this.inner.delete(key);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    await this.enter('head', key);
    return this.inner.head(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.enter('list', prefix);
    yield* this.inner.list(prefix);
  }

  async create(): Promise<void> {
    await this.inner.create?.();
  }

  close(): void {
    this.inner.close?.();
  }
}
