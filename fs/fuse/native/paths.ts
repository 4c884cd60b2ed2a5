/**
 * Path → inode resolution for the fuse-native fallback. libfuse's high-level API names every file
 * by its path; the Vfs works on inodes, so each path is walked component by component with
 * `Vfs.lookup`.
 *
 * A small cache of resolved paths saves the walk. It is only an optimisation and must never make
 * an answer wrong for longer than the kernel's own dentry cache would:
 * - entries live at most `ttlMs` (the Vfs entry TTL: the staleness the kernel already accepts for
 *   names changed by other mounts); TTL 0 disables the cache;
 * - unlink, rmdir and rename through this mount drop the path and everything below it;
 * - callers retry once with a fresh walk when an operation that used cached components fails with
 *   ENOENT/ENOTDIR/ESTALE (another mount renamed or removed something under us).
 */
import type { Ino } from '../../../metadata/types.js';

interface CachedEntry {
  ino: Ino;
  at: number;
}

/** Split an absolute libfuse path into names ("/" → []). */
export function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s.length > 0);
}

/** Parent path and last name of a non-root path. */
export function parentAndName(p: string): { parent: string; name: string } {
  const parts = splitPath(p);
  const name = parts.pop();
  if (name === undefined) throw new Error('the root has no parent');
  return { parent: parts.length === 0 ? '/' : `/${parts.join('/')}`, name };
}

export class PathCache {
  private readonly map = new Map<string, CachedEntry>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 16_384,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  get(path: string): Ino | undefined {
    if (!this.enabled) return undefined;
    const e = this.map.get(path);
    if (!e) return undefined;
    if (this.now() - e.at >= this.ttlMs) {
      this.map.delete(path);
      return undefined;
    }
    return e.ino;
  }

  set(path: string, ino: Ino): void {
    if (!this.enabled || path === '/') return;
    // A crude bound: clearing everything is always correct, and a working set this large walks
    // paths often enough that one refill costs little.
    if (this.map.size >= this.maxEntries) this.map.clear();
    this.map.delete(path); // re-insert so iteration order stays insertion order
    this.map.set(path, { ino, at: this.now() });
  }

  /** Forget `path` and every path below it. */
  dropTree(path: string): void {
    if (this.map.size === 0) return;
    this.map.delete(path);
    const prefix = path.endsWith('/') ? path : `${path}/`;
    for (const k of this.map.keys()) if (k.startsWith(prefix)) this.map.delete(k);
  }

  /** Forget `path` and all its ancestors (after a failure that may mean one of them is stale). */
  dropChain(path: string): void {
    const parts = splitPath(path);
    for (let i = parts.length; i > 0; i--) this.map.delete(`/${parts.slice(0, i).join('/')}`);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
