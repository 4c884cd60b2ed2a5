/**
 * Our side of the compatibility tests: open a volume with our engine + block store (+ VFS), build
 * a tree through the VFS API (or directly on Meta + BlockStore, to tell engine bugs from VFS
 * bugs), and snapshot a volume through either layer.
 */
import { ObjectBlockStore } from '../../../chunkstore/blockstore.js';
import { createObjectStore } from '../../../chunkstore/object/index.js';
import type { Compression, ObjectStore } from '../../../chunkstore/types.js';
import { openMeta } from '../../../metadata/index.js';
import type { RedisMeta } from '../../../metadata/redis/engine.js';
import { decryptSecrets } from '../../../metadata/setting.js';
import { type Attr, CHUNK_SIZE, type Ctx, FileType, type Format, type Ino, ROOT_INODE } from '../../../metadata/types.js';
import { formatVolume } from '../../../cli/volume.js';
import { VfsImpl, O_APPEND, O_RDONLY, O_WRONLY } from '../../../fs/vfs.js';
import { nowTimespec } from '../../../fs/util.js';
import { type FsDriver, joinPath, makedev, splitPath, type Write, type WriteFileOptions } from './driver.js';
import type { NodeType, SnapEntry, Snapshot } from './snapshot.js';

export const CTX: Ctx = { uid: 0, gid: 0, gids: [0], pid: process.pid };
const O_CREAT = 0o100;

export interface OurVolume {
  meta: RedisMeta;
  format: Format;
  objects: ObjectStore;
  blocks: ObjectBlockStore;
  vfs: VfsImpl;
  /** Flush, end the session, close connections. Idempotent. */
  close(): Promise<void>;
}

export interface OpenOursOptions {
  readOnly?: boolean;
  /** Wrap the object store (fault injection). */
  wrapObjects?: (s: ObjectStore) => ObjectStore;
  /** Block store retries (default: the store's default). */
  retries?: number;
  /** Redis per-command timeout etc. are the URL's; extra meta options go here. */
  heartbeat?: number;
}

/** Everything a mount of ours would open: Meta (session if writable), object store, block store, VFS. */
export async function openOurs(metaUrl: string, opts: OpenOursOptions = {}): Promise<OurVolume> {
  let blocks: ObjectBlockStore | undefined;
  const meta = await openMeta(metaUrl, {
    readOnly: opts.readOnly,
    heartbeat: opts.heartbeat,
    // Slices whose refcount dropped below zero: delete their blocks (what gc would otherwise call leaked).
    onDeleteSlice: async (id, size) => {
      if (!blocks) throw new Error('block store not ready');
      await blocks.remove(id, size);
    },
  });
  const format = decryptSecrets(meta.format);
  const base = createObjectStore(format);
  const objects = opts.wrapObjects ? opts.wrapObjects(base) : base;
  blocks = new ObjectBlockStore(
    objects,
    { blockSize: format.BlockSize * 1024, compression: (format.Compression || 'none') as Compression, hashPrefix: !!format.HashPrefix },
    undefined,
    opts.retries !== undefined ? { retries: opts.retries, retryBaseMs: 20, retryMaxMs: 100 } : {},
  );
  if (!opts.readOnly) await meta.newSession();
  const vfs = new VfsImpl(meta, blocks, { readOnly: !!opts.readOnly, closeMetaOnShutdown: true, logger: () => {} });
  let closing: Promise<void> | undefined;
  return {
    meta,
    format,
    objects,
    blocks,
    vfs,
    close: () =>
      (closing ??= (async () => {
        try {
          await vfs.shutdown();
        } finally {
          await meta.shutdown().catch(() => undefined);
          objects.close?.();
        }
      })()),
  };
}

export interface OurFormatParams {
  metaUrl: string;
  name: string;
  storage: 'file' | 's3';
  bucket: string;
  accessKey?: string;
  secretKey?: string;
  compression: 'none' | 'lz4' | 'zstd';
  trashDays: number;
  blockSizeKiB?: number;
  hashPrefix?: boolean;
}

/** `artifacts format` (cli/volume.ts formatVolume: storage test, juicefs_uuid, then the Redis part). */
export async function ourFormat(p: OurFormatParams): Promise<Format> {
  const r = await formatVolume(p.metaUrl, {
    name: p.name,
    storage: p.storage,
    bucket: p.bucket,
    accessKey: p.accessKey,
    secretKey: p.secretKey,
    compression: p.compression,
    trashDays: p.trashDays,
    blockSizeKiB: p.blockSizeKiB,
    hashPrefix: p.hashPrefix,
  });
  if (!r.created) throw new Error(`volume at ${p.metaUrl} already existed`);
  return r.format;
}

// ------------------------------------------------------------------------------------------
// Path resolution
// ------------------------------------------------------------------------------------------

async function resolve(lookup: (parent: Ino, name: Buffer) => Promise<Ino>, p: string): Promise<Ino> {
  let ino = ROOT_INODE;
  if (p === '') return ino;
  for (const part of p.split('/')) ino = await lookup(ino, Buffer.from(part));
  return ino;
}

// ------------------------------------------------------------------------------------------
// Drivers
// ------------------------------------------------------------------------------------------

/** Builds a tree through the VFS API, the way the FUSE transport would call it. */
export class VfsDriver implements FsDriver {
  readonly name = 'vfs';
  constructor(readonly vfs: VfsImpl) {}

  private ino(p: string): Promise<Ino> {
    return resolve(async (parent, name) => (await this.vfs.lookup(CTX, parent, name)).ino, p);
  }
  private async parent(p: string): Promise<{ parent: Ino; name: Buffer }> {
    const { dir, base } = splitPath(p);
    return { parent: await this.ino(dir), name: Buffer.from(base) };
  }

  async mkdir(p: string, mode: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.mkdir(CTX, parent, name, mode, 0);
  }
  async writeFile(p: string, writes: Write[], opts: WriteFileOptions = {}): Promise<void> {
    const { parent, name } = await this.parent(p);
    const flags = O_WRONLY | (opts.append ? O_APPEND : 0);
    let ino: Ino;
    let fh: bigint;
    const existing = await this.vfs.lookup(CTX, parent, name).catch(() => undefined);
    if (existing) {
      ino = existing.ino;
      fh = (await this.vfs.open(CTX, ino, flags)).fh;
    } else {
      const r = await this.vfs.create(CTX, parent, name, opts.mode ?? 0o644, 0, flags | O_CREAT);
      ino = r.ino;
      fh = r.fh;
    }
    let failure: unknown;
    try {
      for (const w of writes) {
        if (w === 'fsync') await this.vfs.fsync(CTX, ino, fh, false);
        else if ('append' in w) await this.vfs.write(CTX, ino, fh, 0, w.append);
        else await this.vfs.write(CTX, ino, fh, w.off, w.data);
      }
      await this.vfs.flush(CTX, ino, fh, 0n);
    } catch (e) {
      failure = e;
    }
    // release always runs (a close(2) cannot be skipped); the first error wins.
    try {
      await this.vfs.release(CTX, ino, fh);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== undefined) throw failure;
  }
  async truncate(p: string, len: number): Promise<void> {
    await this.vfs.setattr(CTX, await this.ino(p), { size: len });
  }
  async symlink(target: string, p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.symlink(CTX, parent, name, Buffer.from(target));
  }
  async link(existing: string, p: string): Promise<void> {
    const ino = await this.ino(existing);
    const { parent, name } = await this.parent(p);
    await this.vfs.link(CTX, ino, parent, name);
  }
  async setxattr(p: string, name: string, value: Buffer): Promise<void> {
    await this.vfs.setxattr(CTX, await this.ino(p), name, value, 0);
  }
  async chmod(p: string, mode: number): Promise<void> {
    await this.vfs.setattr(CTX, await this.ino(p), { mode });
  }
  async chown(p: string, uid: number, gid: number): Promise<void> {
    await this.vfs.setattr(CTX, await this.ino(p), { uid, gid });
  }
  async utimes(p: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    await this.vfs.setattr(CTX, await this.ino(p), { atime: ts(atimeNs), mtime: ts(mtimeNs) });
  }
  async rename(from: string, to: string): Promise<void> {
    const a = await this.parent(from);
    const b = await this.parent(to);
    await this.vfs.rename(CTX, a.parent, a.name, b.parent, b.name, 0);
  }
  async unlink(p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.unlink(CTX, parent, name);
  }
  async rmdir(p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.rmdir(CTX, parent, name);
  }
  async mkfifo(p: string, mode: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.mknod(CTX, parent, name, 0o010000 | mode, 0, 0);
  }
  async mkchr(p: string, mode: number, major: number, minor: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.vfs.mknod(CTX, parent, name, 0o020000 | mode, makedev(major, minor), 0);
  }
}

function ts(ns: bigint): { sec: number; nsec: number } {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

/**
 * Builds a tree on Meta + BlockStore without the VFS: every write becomes its own slice(s)
 * (split at chunk boundaries), uploaded before the metadata commit. Isolates the engine and block
 * store from the VFS write path.
 */
export class EngineDriver implements FsDriver {
  readonly name = 'engine';
  private readonly ctx: Ctx = { ...CTX, umask: 0 };
  constructor(
    readonly meta: RedisMeta,
    readonly blocks: ObjectBlockStore,
  ) {}

  private ino(p: string): Promise<Ino> {
    return resolve(async (parent, name) => (await this.meta.lookup(this.ctx, parent, name)).ino, p);
  }
  private async parent(p: string): Promise<{ parent: Ino; name: string }> {
    const { dir, base } = splitPath(p);
    return { parent: await this.ino(dir), name: base };
  }

  async mkdir(p: string, mode: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.mkdir(this.ctx, parent, name, mode);
  }
  async writeFile(p: string, writes: Write[], opts: WriteFileOptions = {}): Promise<void> {
    const { parent, name } = await this.parent(p);
    const r = await this.meta.create(this.ctx, parent, name, opts.mode ?? 0o644, false);
    const attr = await this.meta.open(this.ctx, r.ino, O_WRONLY);
    let length = attr.length;
    try {
      for (const w of writes) {
        if (w === 'fsync') continue;
        const off = 'append' in w ? length : w.off;
        const data = 'append' in w ? w.append : w.data;
        await this.writeAt(r.ino, off, data);
        length = Math.max(length, off + data.length);
      }
    } finally {
      await this.meta.close(r.ino);
    }
  }
  private async writeAt(ino: Ino, off: number, data: Buffer): Promise<void> {
    for (let done = 0; done < data.length; ) {
      const at = off + done;
      const indx = Math.floor(at / CHUNK_SIZE);
      const pos = at - indx * CHUNK_SIZE;
      const n = Math.min(data.length - done, CHUNK_SIZE - pos);
      const id = await this.meta.newSliceId();
      const w = this.blocks.newWriter(id);
      w.write(0, data.subarray(done, done + n));
      await w.finish(n);
      await this.meta.writeSlice(ino, indx, pos, { pos, id, size: n, off: 0, len: n }, nowTimespec());
      done += n;
    }
  }
  async truncate(p: string, len: number): Promise<void> {
    await this.meta.truncate(this.ctx, await this.ino(p), len);
  }
  async symlink(target: string, p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.symlink(this.ctx, parent, name, target);
  }
  async link(existing: string, p: string): Promise<void> {
    const ino = await this.ino(existing);
    const { parent, name } = await this.parent(p);
    await this.meta.link(this.ctx, ino, parent, name);
  }
  async setxattr(p: string, name: string, value: Buffer): Promise<void> {
    await this.meta.setXattr(this.ctx, await this.ino(p), name, value, 0);
  }
  async chmod(p: string, mode: number): Promise<void> {
    await this.meta.setAttr(this.ctx, await this.ino(p), { mode });
  }
  async chown(p: string, uid: number, gid: number): Promise<void> {
    await this.meta.setAttr(this.ctx, await this.ino(p), { uid, gid });
  }
  async utimes(p: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    await this.meta.setAttr(this.ctx, await this.ino(p), { atime: ts(atimeNs), mtime: ts(mtimeNs) });
  }
  async rename(from: string, to: string): Promise<void> {
    const a = await this.parent(from);
    const b = await this.parent(to);
    await this.meta.rename(this.ctx, a.parent, a.name, b.parent, b.name, 0);
  }
  async unlink(p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.unlink(this.ctx, parent, name);
  }
  async rmdir(p: string): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.rmdir(this.ctx, parent, name);
  }
  async mkfifo(p: string, mode: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.mknod(this.ctx, parent, name, FileType.Fifo, mode);
  }
  async mkchr(p: string, mode: number, major: number, minor: number): Promise<void> {
    const { parent, name } = await this.parent(p);
    await this.meta.mknod(this.ctx, parent, name, FileType.CharDev, mode, makedev(major, minor));
  }
}

// ------------------------------------------------------------------------------------------
// Snapshots
// ------------------------------------------------------------------------------------------

const TYPE_NAMES: Record<number, NodeType> = {
  [FileType.File]: 'file',
  [FileType.Dir]: 'dir',
  [FileType.Symlink]: 'symlink',
  [FileType.Fifo]: 'fifo',
  [FileType.BlockDev]: 'blk',
  [FileType.CharDev]: 'chr',
  [FileType.Socket]: 'sock',
};

function entryOf(ino: Ino, a: Attr): SnapEntry {
  const ns = (sec: number, nsec: number) => BigInt(sec) * 1_000_000_000n + BigInt(nsec);
  return {
    type: TYPE_NAMES[a.type] ?? 'sock',
    ino,
    perm: a.mode & 0o7777,
    uid: a.uid,
    gid: a.gid,
    nlink: a.nlink,
    size: a.length,
    atimeNs: ns(a.atime, a.atimensec),
    mtimeNs: ns(a.mtime, a.mtimensec),
    ctimeNs: ns(a.ctime, a.ctimensec),
    rdev: a.rdev,
  };
}

/** Names our VFS lists in the root that are not part of the tree. */
const VFS_ROOT_VIRTUAL = new Set(['.accesslog', '.config', '.stats', '.control', '.trash']);

/** The tree as our VFS serves it (lookup/getattr/readdir/open/read/readlink/xattrs). */
export async function snapshotVfs(vfs: VfsImpl): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  const walk = async (rel: string, ino: Ino): Promise<void> => {
    const { attr } = await vfs.getattr(CTX, ino);
    const e = entryOf(ino, attr);
    snap.set(rel, e);
    if (e.type !== 'symlink') {
      e.xattrs = new Map();
      for (const n of await vfs.listxattr(CTX, ino)) e.xattrs.set(n, Buffer.from(await vfs.getxattr(CTX, ino, n)));
    }
    if (e.type === 'file') {
      const { fh } = await vfs.open(CTX, ino, O_RDONLY);
      try {
        const parts: Buffer[] = [];
        let off = 0;
        for (;;) {
          const b = await vfs.read(CTX, ino, fh, off, 4 << 20);
          if (b.length === 0) break;
          parts.push(Buffer.from(b));
          off += b.length;
        }
        e.data = Buffer.concat(parts);
      } finally {
        await vfs.release(CTX, ino, fh);
      }
    } else if (e.type === 'symlink') {
      e.target = Buffer.from(await vfs.readlink(CTX, ino));
    } else if (e.type === 'dir') {
      const fh = await vfs.opendir(CTX, ino, 0);
      const kids: Array<{ name: string; ino: Ino }> = [];
      try {
        for (let off = 0; ; ) {
          const batch = await vfs.readdir(CTX, ino, fh, off, true, 1000);
          if (batch.length === 0) break;
          for (const d of batch) {
            const name = d.name.toString();
            if (name === '.' || name === '..') continue;
            if (rel === '' && VFS_ROOT_VIRTUAL.has(name)) continue;
            kids.push({ name, ino: d.ino });
          }
          off = batch[batch.length - 1]!.offset;
        }
      } finally {
        await vfs.releasedir(CTX, ino, fh);
      }
      e.children = kids.map((k) => k.name).sort();
      for (const k of kids) await walk(joinPath(rel, k.name), k.ino);
    }
  };
  await walk('', ROOT_INODE);
  return snap;
}

/** The tree read straight from the engine and the block store (Meta.readChunk + BlockStore.read). */
export async function snapshotEngine(meta: RedisMeta, blocks: ObjectBlockStore): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  const walk = async (rel: string, ino: Ino): Promise<void> => {
    const attr = await meta.getAttr(ino);
    const e = entryOf(ino, attr);
    snap.set(rel, e);
    if (e.type !== 'symlink') {
      e.xattrs = new Map();
      for (const n of await meta.listXattr(CTX, ino)) e.xattrs.set(n, Buffer.from(await meta.getXattr(CTX, ino, n)));
    }
    if (e.type === 'file') e.data = await readFileEngine(meta, blocks, ino, attr.length);
    else if (e.type === 'symlink') e.target = Buffer.from(await meta.readlink(CTX, ino));
    else if (e.type === 'dir') {
      const kids = await meta.readdir(CTX, ino, false);
      e.children = kids.map((k) => k.name.toString()).sort();
      for (const k of kids) await walk(joinPath(rel, k.name.toString()), k.ino);
    }
  };
  await walk('', ROOT_INODE);
  return snap;
}

/** A whole file via resolved chunk segments; holes and the tail past the last segment are zeros. */
export async function readFileEngine(meta: RedisMeta, blocks: ObjectBlockStore, ino: Ino, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (let indx = 0; indx * CHUNK_SIZE < length; indx++) {
    const segs = await meta.readChunk(ino, indx);
    const base = indx * CHUNK_SIZE;
    await Promise.all(
      segs.map(async (s) => {
        const start = base + s.pos;
        const len = Math.min(s.len, length - start);
        if (s.id === 0 || len <= 0) return;
        const b = await blocks.read(s.id, s.size, s.off, len);
        if (b.length !== len) throw new Error(`short read of slice ${s.id}: ${b.length} of ${len} bytes`);
        b.copy(out, start);
      }),
    );
  }
  return out;
}
