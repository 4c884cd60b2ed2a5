/**
 * A real volume for VFS integration tests: a formatted JuiceFS volume on a real redis-server (the
 * Redis engine), blocks through the real block store on a real object store (a local directory or
 * the SeaweedFS S3 gateway), optionally behind the fault-injecting wrapper.
 */
import { Redis } from 'ioredis';
import { ObjectBlockStore } from '../../chunkstore/blockstore.js';
import { FaultObjectStore } from '../../chunkstore/object/fault.js';
import { createObjectStore } from '../../chunkstore/object/index.js';
import type { ObjectStore } from '../../chunkstore/types.js';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { openMeta } from '../../metadata/index.js';
import type { RedisMeta } from '../../metadata/redis/engine.js';
import type { Ctx, Format } from '../../metadata/types.js';
import { VfsImpl, type VfsOptions } from '../../fs/vfs.js';
import type { RedisHandle, S3Handle } from '../helpers/servers.js';

export const MiB = 1024 * 1024;
export const user: Ctx = { uid: 1000, gid: 1000, gids: [1000], pid: 4242 };
export const root: Ctx = { uid: 0, gid: 0, gids: [0], pid: 1 };

export interface VolumeSpec {
  redis: RedisHandle;
  db: number;
  /** Local directory (file store) or S3 server. */
  dir?: string;
  s3?: S3Handle;
  bucket?: string;
  trashDays?: number;
  blockSizeKiB?: number;
  compression?: string;
}

export interface Volume {
  url: string;
  format: Format;
  objects: ObjectStore;
  fault: FaultObjectStore;
  /** Open a mount of the volume (each its own engine, session and block store). */
  mount(opts?: Partial<VfsOptions>, meta?: { readOnly?: boolean }): Promise<Mount>;
}

export interface Mount {
  vfs: VfsImpl;
  meta: RedisMeta;
  store: ObjectBlockStore;
  /** Unexpected (non-errno) errors the VFS logged; close() fails if there are any. */
  errors: string[];
  close(): Promise<void>;
}

/** Format a fresh volume in DB `db` (flushed first). */
export async function makeVolume(spec: VolumeSpec): Promise<Volume> {
  const url = `${spec.redis.url}/${spec.db}`;
  const r = new Redis(url);
  await r.flushdb();
  const name = `vfs${spec.db}`;
  let plain: Format;
  if (spec.s3) {
    const bucket = spec.bucket ?? `vfs-${spec.db}-${Date.now()}`;
    await spec.s3.createBucket(bucket);
    plain = newFormat({
      name,
      storage: 's3',
      bucket: spec.s3.bucketUrl(bucket),
      accessKey: spec.s3.accessKey,
      secretKey: spec.s3.secretKey,
      trashDays: spec.trashDays ?? 0,
      blockSizeKiB: spec.blockSizeKiB,
      compression: spec.compression,
    }).format;
  } else {
    plain = newFormat({
      name,
      storage: 'file',
      bucket: spec.dir!,
      trashDays: spec.trashDays ?? 0,
      blockSizeKiB: spec.blockSizeKiB,
      compression: spec.compression,
    }).format;
  }
  await formatMeta(r, '', { ...plain });
  r.disconnect();
  const objects = createObjectStore(plain);
  const fault = new FaultObjectStore(objects);
  return {
    url,
    format: plain,
    objects,
    fault,
    async mount(opts = {}, m = {}) {
      const store = new ObjectBlockStore(
        fault,
        { blockSize: plain.BlockSize * 1024, compression: (plain.Compression ?? 'none') as 'none', hashPrefix: !!plain.HashPrefix },
        undefined,
        { retries: 1, retryBaseMs: 10 },
      );
      const meta = await openMeta(url, {
        readOnly: m.readOnly,
        heartbeat: 2,
        onDeleteSlice: (id, size) => store.remove(id, size),
      });
      await meta.newSession();
      const errors: string[] = [];
      const vfs = new VfsImpl(meta, store, { logger: (msg) => errors.push(msg), ...opts, readOnly: opts.readOnly ?? m.readOnly ?? false });
      return {
        vfs,
        meta,
        store,
        errors,
        async close() {
          await vfs.shutdown();
          await meta.shutdown();
          if (errors.length) throw new Error(`unexpected VFS errors:\n${errors.join('\n')}`);
        },
      };
    },
  };
}

/** Random-ish bytes, deterministic per seed. */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;

/** Read a whole range through a handle in `piece`-sized requests, like the kernel would. */
export async function readAll(vfs: VfsImpl, ctx: Ctx, ino: bigint, fh: bigint, off: number, len: number, piece = 128 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let at = off;
  while (at < off + len) {
    const b = await vfs.read(ctx, ino, fh, at, Math.min(piece, off + len - at));
    if (b.length === 0) break;
    parts.push(Buffer.from(b));
    at += b.length;
  }
  return Buffer.concat(parts);
}
