/**
 * `file` object store: key → `<root>/<key>` (juicefs-format.md 5.2). Same on-disk layout as the
 * upstream `file` backend so both clients can share a bucket directory: objects are written to a
 * temp file and renamed into place (readers never see partial objects), directories are created
 * with mode 0777 (less the umask, as upstream). A key ending in `/` is a directory marker.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError, type ObjectInfo, type ObjectStore } from '../types.js';

/** Temp files of in-progress puts; hidden from listings. */
const TEMP_RE = /\.tmp[0-9a-f]{12}$/;

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code;
}

export class FileObjectStore implements ObjectStore {
  readonly root: string;

  /** `root`: absolute directory (the Format's Bucket); a trailing `/` is implied. */
  constructor(root: string) {
    if (!path.isAbsolute(root)) throw new Error(`file bucket must be an absolute path: ${root}`);
    this.root = root.endsWith('/') ? root : root + '/';
  }

  describe(): string {
    return `file://${this.root}`;
  }

  private pathOf(key: string): string {
    if (key.split('/').some((p) => p === '..')) throw new Error(`invalid object key: ${key}`);
    return this.root + key;
  }

  async create(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o777 });
  }

  async get(key: string, offset = 0, length = -1): Promise<Buffer> {
    let fh;
    try {
      fh = await open(this.pathOf(key), fsc.O_RDONLY);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) throw new NotFoundError(key);
      throw err;
    }
    try {
      const st = await fh.stat();
      if (st.isDirectory()) {
        if (key.endsWith('/')) return Buffer.alloc(0);
        throw new NotFoundError(key);
      }
      const start = Math.min(offset, st.size);
      const want = length < 0 ? st.size - start : Math.min(length, st.size - start);
      const buf = Buffer.allocUnsafe(want);
      let done = 0;
      while (done < want) {
        const { bytesRead } = await fh.read(buf, done, want - done, start + done);
        if (bytesRead === 0) break; // truncated under us
        done += bytesRead;
      }
      return done === want ? buf : buf.subarray(0, done);
    } finally {
      await fh.close();
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const p = this.pathOf(key);
    if (key.endsWith('/')) {
      await mkdir(p, { recursive: true, mode: 0o777 });
      return;
    }
    const tmp = `${p}.tmp${randomBytes(6).toString('hex')}`;
    let fh;
    try {
      fh = await open(tmp, 'w', 0o666);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      await mkdir(path.dirname(p), { recursive: true, mode: 0o777 });
      fh = await open(tmp, 'w', 0o666);
    }
    try {
      try {
        await fh.writeFile(data);
      } finally {
        await fh.close();
      }
      await rename(tmp, p);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const p = this.pathOf(key);
    try {
      if (key.endsWith('/')) await rmdir(p);
      else await unlink(p);
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await stat(this.pathOf(key));
      if (st.isDirectory() !== key.endsWith('/')) return null;
      return { key, size: st.isDirectory() ? 0 : st.size, mtime: st.mtimeMs };
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return null;
      throw err;
    }
  }

  /**
   * Depth-first walk in key order. Sorting a directory's entries with `/` appended to
   * sub-directory names makes the walk order equal to plain lexicographic order of full keys
   * (e.g. `a-b` < `a/x` because '-' < '/'). Only regular files are listed.
   */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash + 1) : '';
    yield* this.walk(dirKey, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await readdir(this.root + dirKey, { withFileTypes: true });
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw err;
    }
    const names: { key: string; dir: boolean }[] = [];
    for (const e of entries) {
      const dir = e.isDirectory();
      if (!dir && (!e.isFile() || TEMP_RE.test(e.name))) continue;
      const key = dirKey + e.name + (dir ? '/' : '');
      // Keep a directory if it can contain a match (it is a prefix of `prefix` or extends it).
      if (dir ? !(key.startsWith(prefix) || prefix.startsWith(key)) : !key.startsWith(prefix)) continue;
      names.push({ key, dir });
    }
    names.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const n of names) {
      if (n.dir) {
        yield* this.walk(n.key, prefix);
        continue;
      }
      try {
        const st = await stat(this.root + n.key);
        yield { key: n.key, size: st.size, mtime: st.mtimeMs };
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err; // deleted while listing
      }
    }
  }
}
