/**
 * Boundaries of the chunk store: `ObjectStore` (bytes by key: s3, file, fault injection) and
 * `BlockStore` (bytes of a slice: block keys, compression, cache tiers). The VFS never builds an
 * object key; metadata/ never sees block bytes. Format facts: juicefs-format.md section 5.
 */

export interface ObjectInfo {
  key: string;
  size: number;
  /** Modification time, ms since epoch. */
  mtime: number;
}

export interface ObjectStore {
  /** A description without secrets, e.g. `s3://bucket/prefix` or `file:///dir/`. */
  describe(): string;
  /** Whole object, or `length` bytes from `offset` (length -1 / undefined = to the end). Rejects with NotFoundError when absent. */
  get(key: string, offset?: number, length?: number): Promise<Buffer>;
  put(key: string, data: Buffer): Promise<void>;
  /** Deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /** null when absent. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Keys starting with `prefix`, in lexicographic order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Create the bucket/directory if needed. */
  create?(): Promise<void>;
  /** Release pooled connections (optional; S3). */
  close?(): void;
}

export class NotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
    this.name = 'NotFoundError';
  }
}

export type Compression = 'none' | 'lz4' | 'zstd';

export interface BlockStoreConfig {
  /** Bytes (Format.BlockSize × 1024). */
  blockSize: number;
  compression: Compression;
  hashPrefix: boolean;
  /** Parallel block uploads per writer (default 20 in upstream; we use 8). */
  maxUploads?: number;
}

/** Uploads the blocks of one new slice as they fill. */
export interface SliceWriter {
  readonly id: number;
  /** Write `data` at slice offset `off` (appends within the open region only). */
  write(off: number, data: Buffer): void;
  /** Start uploading every complete block below `off` (called as data arrives). */
  flushTo(off: number): void;
  /** Upload the remaining (short) block; resolves when every block of `size` bytes is stored. */
  finish(size: number): Promise<void>;
  /** Drop buffers and delete blocks already uploaded. */
  abort(): Promise<void>;
  /**
   * Back-pressure (optional): resolves once no complete block waits for an upload slot; rejects if
   * an upload failed. Fast writers should await it between writes to bound buffered memory.
   */
  drain?(): Promise<void>;
}

export interface BlockStore {
  readonly config: BlockStoreConfig;
  /** Read `length` bytes at `offset` of slice (id, size); may span blocks. */
  read(id: number, size: number, offset: number, length: number): Promise<Buffer>;
  newWriter(id: number): SliceWriter;
  /** Delete every block of slice (id, size); missing blocks are fine. */
  remove(id: number, size: number): Promise<void>;
  /** Store a whole slice at once (compaction). */
  writeSlice(id: number, data: Buffer): Promise<void>;
}

/**
 * Counters of a block cache (or of one tier of it), exported through `.stats`. Monotonic counters
 * except `usedBytes`, `capacityBytes`, `entries` and `bypassing`, which are gauges.
 */
export interface CacheStats {
  /** get() calls answered with a block. */
  hits: number;
  /** get() calls answered with undefined. */
  misses: number;
  /** Bytes returned by hits. */
  hitBytes: number;
  /** Blocks accepted by put() (for the disk tier: written to disk). */
  inserts: number;
  insertBytes: number;
  /** put() calls not stored: too big, duplicate, queue full, cache full or bypassing. */
  skipped: number;
  /** Blocks dropped to stay within the size / free-space limits. */
  evictions: number;
  /** Cache files found corrupt or truncated on read; deleted, answered as a miss. */
  corrupt: number;
  /** I/O errors (reads answered as a miss, writes abandoned). */
  errors: number;
  /** Bytes currently charged against the limit (disk tier: file size + 4096 per block). */
  usedBytes: number;
  /** Current limit in bytes (disk tier: may be below the configured size to keep the free-space floor). */
  capacityBytes: number;
  entries: number;
  /** 1 while the disk tier refuses inserts after ENOSPC / a write error, else 0. */
  bypassing: number;
  /** Per-tier counters of a composite cache (`memory`, `disk`). */
  tiers?: Record<string, CacheStats>;
}

/**
 * Whole plaintext blocks by relative block key (`chunks/0/0/1_0_4194304`, section 5.2), used by the
 * BlockStore in front of the object store. Blocks are immutable: callers must not modify a Buffer
 * after put() nor one returned by get().
 */
export interface BlockCache {
  get(key: string): Promise<Buffer | undefined>;
  /**
   * Bytes [off, off+len) of a cached block, reading (and verifying) only what covers them where the
   * tier allows: a 4 KiB random read must not cost a 4 MiB disk read. Optional.
   */
  getRange?(key: string, off: number, len: number): Promise<Buffer | undefined>;
  /** Whether the block is (or is being) cached, without reading it or counting a hit. Optional. */
  has?(key: string): boolean;
  /** Fire-and-forget insert (the disk write happens in the background; failures are only counted). */
  put(key: string, block: Buffer): void;
  remove(key: string): void;
  stats(): CacheStats;
}
