/**
 * Namespaces an object store under a key prefix; the volume's objects live below `Name/`
 * (juicefs-format.md 5.2), so every other layer deals in relative keys only.
 */
import type { ObjectInfo, ObjectStore } from '../types.js';

export class PrefixObjectStore implements ObjectStore {
  constructor(
    readonly inner: ObjectStore,
    readonly prefix: string,
  ) {}

  describe(): string {
    return this.inner.describe() + this.prefix;
  }

  get(key: string, offset?: number, length?: number): Promise<Buffer> {
    return this.inner.get(this.prefix + key, offset, length).catch((err: unknown) => {
      // Report the key the caller asked for, not the physical one.
      if (err instanceof Error && err.name === 'NotFoundError') (err as { key?: string }).key = key;
      throw err;
    });
  }

  put(key: string, data: Buffer): Promise<void> {
    return this.inner.put(this.prefix + key, data);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(this.prefix + key);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const info = await this.inner.head(this.prefix + key);
    return info && { ...info, key };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const n = this.prefix.length;
    for await (const info of this.inner.list(this.prefix + prefix)) {
      yield { ...info, key: info.key.slice(n) };
    }
  }

  async create(): Promise<void> {
    await this.inner.create?.();
  }

  close(): void {
    this.inner.close?.();
  }
}
