/**
 * Opening a volume for use: the one place that composes the layers — the metadata engine (by meta
 * URL and key prefix), the object store named by the volume's `setting`, the block cache of the
 * chosen cache profile, the block store and the VFS on top. `artifacts mount`, benchmarks and
 * tests all open volumes this way, so they run the same stack.
 */
import { createBlockStore, type ObjectBlockStore } from '../chunkstore/blockstore.js';
import { createBlockCache } from '../chunkstore/cache/index.js';
import { WritebackStaging } from '../chunkstore/cache/staging.js';
import { type CacheConfig, resolveCacheConfig } from '../chunkstore/cache/profiles.js';
import { createObjectStore } from '../chunkstore/object/index.js';
import type { BlockCache, Compression, ObjectStore } from '../chunkstore/types.js';
import { openMeta } from '../metadata/index.js';
import type { RedisMeta } from '../metadata/redis/engine.js';
import { decryptSecrets } from '../metadata/setting.js';
import type { ConnectOptions } from '../metadata/redis/connect.js';
import { VfsImpl, type VfsOptions } from './vfs.js';

export interface OpenVolumeOptions {
  metaUrl: string;
  /** Key prefix (workspaces: `{u_X_w_Y}:`); default from the URL. */
  prefix?: string;
  readOnly?: boolean;
  /** Recorded in sessionInfos. */
  mountPoint?: string;
  /** Resolved cache configuration; default: the interactive profile. */
  cache?: CacheConfig;
  /** Extra VFS options (tests shorten timers). */
  vfs?: Partial<VfsOptions>;
  /** Wrap the object store (fault injection in tests). */
  wrapStore?: (s: ObjectStore) => ObjectStore;
  connect?: ConnectOptions;
  /** Object-store keys for volumes whose `setting` holds none (BYO buckets: never stored in Redis). */
  credentials?: { accessKey?: string; secretKey?: string; sessionToken?: string };
  /** Register a session (default: unless read-only). */
  session?: boolean;
  backgroundJobs?: boolean;
  /**
   * How long close() waits for staged (writeback) blocks to be uploaded (default 30 s; it stops
   * early when an upload fails). What is left stays staged and is uploaded by the next open.
   * 0 = do not wait (tests simulating a crash).
   */
  stagingFlushMs?: number;
  /** Writeback upload retry pacing (tests shorten it). */
  stagingRetryMs?: number;
  log?: (message: string) => void;
}

export interface OpenVolume {
  meta: RedisMeta;
  objects: ObjectStore;
  cache?: BlockCache & { close?: () => Promise<void> };
  store: ObjectBlockStore;
  /** The disk cache's staging area (present whenever there is a disk cache). */
  staging?: WritebackStaging;
  /** Resolves when the blocks staged by an earlier mount are queued for upload (count found). */
  recovered: Promise<number>;
  vfs: VfsImpl;
  cacheConfig: CacheConfig;
  /** Flush everything, end the session, close connections. */
  close(): Promise<void>;
}

export async function openVolume(o: OpenVolumeOptions): Promise<OpenVolume> {
  const meta = await openMeta(o.metaUrl, {
    prefix: o.prefix,
    readOnly: o.readOnly,
    mountPoint: o.mountPoint,
    connect: o.connect,
    backgroundJobs: o.backgroundJobs,
  });
  try {
    const stored = decryptSecrets(meta.format);
    const c = o.credentials;
    const fmt = c
      ? { ...stored, AccessKey: stored.AccessKey || c.accessKey, SecretKey: stored.SecretKey || c.secretKey, SessionToken: stored.SessionToken || c.sessionToken }
      : stored;
    const cfg = o.cache ?? resolveCacheConfig({});
    let objects = createObjectStore(fmt);
    if (o.wrapStore) objects = o.wrapStore(objects);
    const cache = cfg.memoryCacheBytes > 0 || cfg.disk ? createBlockCache(cfg, fmt.UUID) : undefined;
    const store = createBlockStore(
      objects,
      {
        blockSize: fmt.BlockSize * 1024,
        compression: (fmt.Compression ?? 'none') as Compression,
        hashPrefix: fmt.HashPrefix === true,
        maxUploads: cfg.uploadConcurrency,
      },
      cache,
      { prefetch: cfg.prefetch },
    );
    // Blocks staged on this disk (writeback now, or by an earlier mount that crashed or did not
    // wait) are uploaded in the background whatever this mount's writeback setting.
    const log = o.log ?? ((m: string) => console.error(`${new Date().toISOString()} ${m}`));
    const staging = cache?.disk
      ? new WritebackStaging({
          disk: cache.disk,
          upload: (key, block) => store.putBlock(key, block),
          concurrency: cfg.uploadConcurrency,
          retryBaseMs: o.stagingRetryMs,
          retryMaxMs: o.stagingRetryMs === undefined ? undefined : o.stagingRetryMs * 8,
          log,
        })
      : undefined;
    if (staging) store.attachStaging(staging, cfg.writeback && !o.readOnly);
    const recovered = staging && !o.readOnly ? staging.recover().catch(() => 0) : Promise.resolve(0);
    // Slices whose last reference went away: their blocks leave the object store.
    meta.opts.onDeleteSlice = (id, size) => store.remove(id, size);
    if (o.session ?? !o.readOnly) await meta.newSession();
    const vfs = new VfsImpl(meta, store, {
      entryTtl: cfg.entryTtlSeconds,
      attrTtl: cfg.attrTtlSeconds,
      readOnly: o.readOnly === true,
      writebackCache: false,
      directIo: cfg.directIo,
      readaheadMax: cfg.readaheadMaxBytes,
      bufferSize: cfg.bufferSizeBytes,
      prefetchSmallFiles: cfg.fetchSmallFilesOnOpen,
      closeMetaOnShutdown: true,
      config: { profile: cfg.profile, cache: cfg },
      ...o.vfs,
    });
    let closed: Promise<void> | undefined;
    const flushMs = o.stagingFlushMs ?? 30_000;
    const closeStaging = async () => {
      if (!staging) return;
      await recovered;
      if (flushMs > 0 && !(await staging.flush(flushMs))) {
        const left = staging.stats();
        log(`writeback: ${left.pending} block(s) (${left.pendingBytes} bytes) stay staged in ${cache?.disk?.stagingDir}; the next mount uploads them`);
      }
      await staging.close();
    };
    return {
      meta,
      objects,
      cache,
      store,
      staging,
      recovered,
      vfs,
      cacheConfig: cfg,
      // The cache closes after the VFS (and the staging uploads) so queued disk-cache writes finish.
      // The object store's sockets go last (nothing else needs them by then).
      close: () => (closed ??= vfs.shutdown().finally(() => closeStaging().finally(async () => {
        try {
          await cache?.close();
        } finally {
          objects.close?.();
        }
      }))),
    };
  } catch (e) {
    await meta.shutdown().catch(() => undefined);
    throw e;
  }
}
