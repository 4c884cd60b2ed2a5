/**
 * The compatibility matrix and the servers behind it. One test file starts one standalone Redis,
 * one 3-node Redis Cluster and one SeaweedFS S3 (in parallel) and gives every cell its own volume:
 * its own DB number (standalone: `/N`, cluster: prefix `{N}`), its own volume name (= object
 * prefix) in a shared bucket / directory.
 */
import path from 'node:path';
import type { FormatOptions } from '../../helpers/juicefs.js';
import {
  startRedis,
  startRedisCluster,
  startS3,
  tmpDir,
  type RedisClusterHandle,
  type RedisHandle,
  type S3Handle,
} from '../../helpers/servers.js';
import type { TreeOptions } from './tree.js';

export type Compression = 'none' | 'lz4' | 'zstd';
export type StoreKind = 's3' | 'file';
export type MetaKind = 'standalone' | 'cluster';

export interface Cell {
  /** Short id used in test names and volume names, e.g. `none-s3-sa`. */
  id: string;
  compression: Compression;
  store: StoreKind;
  meta: MetaKind;
  tree: TreeOptions['size'];
  /** Include the 64 MiB + 1 file. */
  big: boolean;
  /** Trash on (deletes are deferred) or off (our deletes must remove objects at once). */
  trashDays: number;
  /** Non-default block size (KiB) and hash-prefixed object keys. */
  blockSizeKiB?: number;
  hashPrefix?: boolean;
}

function cell(
  compression: Compression,
  store: StoreKind,
  meta: MetaKind,
  tree: 'full' | 'light',
  big: boolean,
  trashDays: number,
  layout: { blockSizeKiB?: number; hashPrefix?: boolean } = {},
): Cell {
  const suffix = (layout.blockSizeKiB ? `-bs${layout.blockSizeKiB}k` : '') + (layout.hashPrefix ? '-hp' : '');
  return { id: `${compression}-${store}-${meta === 'standalone' ? 'sa' : 'cl'}${suffix}`, compression, store, meta, tree, big, trashDays, ...layout };
}

/**
 * All 8 combinations of compression × store × meta mode. Two get the full tree with the
 * two-chunk file; the rest a light tree (one of each object kind), to keep the runtime on 2 cores
 * reasonable. Trash alternates so both delete paths are seen by fsck/gc.
 */
export const MATRIX: Cell[] = [
  cell('none', 's3', 'standalone', 'full', true, 1),
  cell('lz4', 'file', 'cluster', 'full', true, 0),
  cell('none', 'file', 'standalone', 'light', false, 0),
  cell('lz4', 's3', 'standalone', 'light', false, 1),
  cell('none', 's3', 'cluster', 'light', false, 0),
  cell('lz4', 's3', 'cluster', 'light', false, 1),
  cell('none', 'file', 'cluster', 'light', false, 1),
  cell('lz4', 'file', 'standalone', 'light', false, 0),
  // Beyond the required matrix: the other codec, a small block size (many blocks per slice, other
  // bsize suffixes) and hash-prefixed keys (chunks/{id%256 hex}/...), in one light cell.
  cell('zstd', 'file', 'standalone', 'light', false, 0, { blockSizeKiB: 256, hashPrefix: true }),
];

/** Cells selected by COMPAT_CELLS (comma-separated ids), default all. */
export function selectedCells(): Cell[] {
  const want = process.env.COMPAT_CELLS?.split(',').map((s) => s.trim()).filter(Boolean);
  if (!want || want.length === 0) return MATRIX;
  const picked = MATRIX.filter((c) => want.includes(c.id));
  if (picked.length === 0) throw new Error(`COMPAT_CELLS=${process.env.COMPAT_CELLS} matches no cell (${MATRIX.map((c) => c.id).join(', ')})`);
  return picked;
}

export interface Env {
  redis: RedisHandle;
  cluster?: RedisClusterHandle;
  s3?: S3Handle;
  /** Scratch root (mount points, file buckets). */
  dir: string;
  bucket: string;
  stop(): Promise<void>;
}

/** Start the servers the given cells need, in parallel. */
export async function startEnv(tag: string, cells: Cell[]): Promise<Env> {
  const needCluster = cells.some((c) => c.meta === 'cluster');
  const needS3 = cells.some((c) => c.store === 's3');
  const started: Array<{ stop(): Promise<void> }> = [];
  const track = <T extends { stop(): Promise<void> }>(p: Promise<T>) => p.then((h) => (started.push(h), h));
  try {
    const [redis, cluster, s3, dir] = await Promise.all([
      track(startRedis()),
      needCluster ? track(startRedisCluster()) : Promise.resolve(undefined),
      needS3 ? track(startS3()) : Promise.resolve(undefined),
      tmpDir(`compat-${tag}`),
    ]);
    const bucket = `compat-${tag}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
    if (s3) await s3.createBucket(bucket);
    return {
      redis,
      cluster,
      s3,
      dir,
      bucket,
      stop: async () => {
        await Promise.allSettled(started.map((h) => h.stop()));
      },
    };
  } catch (e) {
    await Promise.allSettled(started.map((h) => h.stop()));
    throw e;
  }
}

export interface Volume {
  cell: Cell;
  name: string;
  /** The same URL for juicefs and for us. */
  metaUrl: string;
  db: number;
  storage: StoreKind;
  /** S3: bucket URL; file: directory ending in '/'. */
  bucket: string;
  accessKey?: string;
  secretKey?: string;
  /** A fresh directory for mount points. */
  work: string;
}

/** A fresh volume location for `cell` (not formatted). `db` must be unique per Env (1..15). */
export async function volumeFor(env: Env, c: Cell, tag: string, db: number): Promise<Volume> {
  if (db < 1 || db > 15) throw new Error(`db ${db} out of range`);
  const name = `${tag}-${c.id}`.toLowerCase();
  let metaUrl: string;
  if (c.meta === 'cluster') {
    if (!env.cluster) throw new Error('cluster not started');
    metaUrl = `${env.cluster.url}/${db}`;
  } else metaUrl = `${env.redis.url}/${db}`;
  const work = await tmpDir(`${tag}-${c.id}`);
  if (c.store === 's3') {
    if (!env.s3) throw new Error('s3 not started');
    return { cell: c, name, metaUrl, db, storage: 's3', bucket: env.s3.bucketUrl(env.bucket), accessKey: env.s3.accessKey, secretKey: env.s3.secretKey, work };
  }
  return { cell: c, name, metaUrl, db, storage: 'file', bucket: path.join(env.dir, 'objects') + '/', work };
}

/** Options for the real `juicefs format` of this volume. */
export function juicefsFormatOptions(v: Volume): FormatOptions {
  return {
    storage: v.storage,
    bucket: v.bucket,
    accessKey: v.accessKey,
    secretKey: v.secretKey,
    compress: v.cell.compression,
    trashDays: v.cell.trashDays,
    blockSizeKiB: v.cell.blockSizeKiB,
    extraArgs: v.cell.hashPrefix ? ['--hash-prefix'] : [],
  };
}
