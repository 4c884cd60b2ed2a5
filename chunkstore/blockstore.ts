/**
 * The block store: slice bytes ⇄ block objects (juicefs-format.md 5.1–5.5, 6.3–6.4).
 *
 * Reads resolve (id, size, offset, length) to blocks, take whole blocks from the cache when it has
 * them, issue small range GETs on uncompressed volumes, and otherwise fetch whole blocks, with all
 * concurrent readers of one block sharing one GET. Writers buffer the open blocks of a new slice,
 * upload blocks as soon as they are complete (bounded parallelism per writer), and upload the
 * short last block on finish. A missing or undecodable block is an error, never zeros.
 *
 * With writeback staging attached (attachStaging), a finished block is staged on local disk instead
 * of uploaded before the slice is committed; it is uploaded in the background, and reads of a
 * block still staged are served from its staging file.
 */
import { Limiter } from '../metadata/limiter.js';
import type { StagingStats, WritebackStaging } from './cache/staging.js';
import { codecFor, CorruptBlockError, type Codec } from './compress.js';
import { blockCount, blockKey, blockSize } from './keys.js';
import {
  NotFoundError,
  type BlockCache,
  type BlockStore,
  type BlockStoreConfig,
  type ObjectStore,
  type SliceWriter,
} from './types.js';

export interface BlockStoreOptions {
  /** Extra attempts for a failed object operation (default 3). Missing objects are not retried. */
  retries?: number;
  /** First retry delay, doubled per attempt with full jitter (default 100 ms). */
  retryBaseMs?: number;
  /** Retry delay cap (default 5 s). */
  retryMaxMs?: number;
  /** Concurrent object GETs for reads (default 64). */
  maxDownloads?: number;
  /** Also cache full blocks written by this client (upstream --cache-large-write); short ones always are. */
  cacheFullBlocksOnWrite?: boolean;
  /**
   * Decoded blocks kept in memory when there is no BlockCache (default 4; 0 with a cache), so a
   * reader walking a compressed block in small pieces does not fetch and decode it per piece.
   */
  recentBlocks?: number;
  /**
   * Whole blocks fetched in the background after a small range GET (upstream --prefetch): this
   * many at once, at most PREFETCH_QUEUE waiting, further requests dropped (default 1; 0 = off).
   */
  prefetch?: number;
}

/** Counters for `.stats`-style reporting; mutated in place. */
export interface BlockStoreStats {
  getRequests: number;
  getBytes: number;
  putRequests: number;
  putBytes: number;
  deleteRequests: number;
  retries: number;
  cacheHits: number;
  cacheMisses: number;
}

/** An object operation that failed after all retries; `cause` is the last error. */
export class BlockIOError extends Error {
  constructor(
    readonly op: 'get' | 'put' | 'delete',
    readonly key: string,
    cause: unknown,
  ) {
    super(`${op} ${key} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'BlockIOError';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waiting prefetch requests beyond the running ones; more are dropped (as upstream does). */
const PREFETCH_QUEUE = 10;

/**
 * Background whole-block loads with a fixed number of workers and a short queue. Dropping instead
 * of queueing without bound keeps prefetches from crowding out the foreground GETs of a random
 * reader, which would otherwise fetch every block of a file in full while it waits for 4 KiB.
 */
class Prefetcher {
  private readonly queue: { key: string; bsize: number }[] = [];
  private readonly wanted = new Set<string>();
  private active = 0;
  constructor(
    private readonly workers: number,
    private readonly load: (key: string, bsize: number) => Promise<unknown>,
  ) {}

  request(key: string, bsize: number): void {
    if (this.workers <= 0 || this.wanted.has(key) || this.queue.length >= PREFETCH_QUEUE) return;
    this.wanted.add(key);
    this.queue.push({ key, bsize });
    this.pump();
  }

  private pump(): void {
    while (this.active < this.workers && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.active++;
      this.load(job.key, job.bsize)
        .catch(() => undefined)
        .finally(() => {
          this.active--;
          this.wanted.delete(job.key);
          this.pump();
        });
    }
  }
}


export class ObjectBlockStore implements BlockStore {
  readonly config: BlockStoreConfig;
  readonly stats: BlockStoreStats = {
    getRequests: 0,
    getBytes: 0,
    putRequests: 0,
    putBytes: 0,
    deleteRequests: 0,
    retries: 0,
    cacheHits: 0,
    cacheMisses: 0,
  };
  readonly codec: Codec;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly downloads: Limiter;
  private readonly cacheFullBlocks: boolean;
  private readonly prefetcher: Prefetcher;
  /** Whole-block fetches in flight, by key: concurrent readers of one block share one GET. */
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Small LRU of decoded blocks (insertion order of a Map), used only without a cache. */
  private readonly recent = new Map<string, Buffer>();
  private readonly recentMax: number;
  /** Where staged blocks live (also when writeback is off: blocks left by an earlier mount). */
  private staging: WritebackStaging | undefined;
  /** Stage finished blocks instead of uploading them before the commit. */
  private writeback = false;

  constructor(
    readonly store: ObjectStore,
    config: BlockStoreConfig,
    readonly cache?: BlockCache,
    options: BlockStoreOptions = {},
  ) {
    if (!Number.isSafeInteger(config.blockSize) || config.blockSize <= 0) throw new RangeError(`bad block size ${config.blockSize}`);
    this.config = { ...config, maxUploads: config.maxUploads ?? 8 };
    this.codec = codecFor(config.compression);
    this.retries = options.retries ?? 3;
    this.retryBaseMs = options.retryBaseMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
    this.downloads = new Limiter(options.maxDownloads ?? 64);
    this.cacheFullBlocks = options.cacheFullBlocksOnWrite ?? false;
    this.recentMax = options.recentBlocks ?? (cache ? 0 : 4);
    this.prefetcher = new Prefetcher(cache ? (options.prefetch ?? 1) : 0, (key, bsize) => this.prefetchBlock(key, bsize));
  }

  private remember(key: string, block: Buffer): void {
    if (this.recentMax <= 0) return;
    this.recent.delete(key);
    this.recent.set(key, block);
    if (this.recent.size > this.recentMax) this.recent.delete(this.recent.keys().next().value!);
  }

  /**
   * Use `staging` for reads of staged blocks and deletes; with `writeback`, writers stage their
   * blocks there instead of uploading them before the commit.
   */
  attachStaging(staging: WritebackStaging, writeback: boolean): void {
    this.staging = staging;
    this.writeback = writeback;
  }
  /** Counters of the writeback staging area, if this store has one. */
  stagingStats(): StagingStats | undefined {
    return this.staging?.stats();
  }


  key(id: number, index: number, bsize: number): string {
    return blockKey(id, index, bsize, this.config.hashPrefix);
  }

  /** Runs `fn` with retries and exponential backoff; NotFoundError is final at once. */
  async withRetries<T>(op: 'get' | 'put' | 'delete', key: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof NotFoundError) throw err;
        if (attempt >= this.retries) throw new BlockIOError(op, key, err);
        this.stats.retries++;
        const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** attempt);
        await sleep(cap / 2 + Math.random() * (cap / 2));
      }
    }
  }

  // ------------------------------------------------------------------------------------ reads

  /**
   * Bytes [offset, offset+length) of slice (id, size), clipped to the slice. The result may share
   * memory with the block cache: callers must not modify it.
   */
  async read(id: number, size: number, offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0) throw new RangeError(`bad read range ${offset}+${length}`);
    const end = Math.min(offset + length, size);
    if (end <= offset) return Buffer.alloc(0);
    const bs = this.config.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    if (first === last) return this.readInBlock(id, size, first, offset - first * bs, end - offset);
    const out = Buffer.allocUnsafe(end - offset);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const start = Math.max(offset, i * bs);
      const stop = Math.min(end, (i + 1) * bs);
      parts.push(
        this.readInBlock(id, size, i, start - i * bs, stop - start).then((piece) => {
          piece.copy(out, start - offset);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  private async readInBlock(id: number, size: number, index: number, off: number, len: number): Promise<Buffer> {
    const bsize = blockSize(size, index, this.config.blockSize);
    const key = this.key(id, index, bsize);
    if (this.cache) {
      if (len <= bsize / 4 && this.cache.getRange) {
        // A small piece of a block reads only that piece from the disk tier (verified per 32 KiB).
        const piece = await this.cache.getRange(key, off, len);
        if (piece !== undefined && piece.length === len) {
          this.stats.cacheHits++;
          return piece;
        }
      } else {
        const cached = await this.cache.get(key);
        if (cached !== undefined && cached.length === bsize) {
          this.stats.cacheHits++;
          return cached.subarray(off, off + len);
        }
        if (cached !== undefined) this.cache.remove(key); // wrong length: not our block
      }
      this.stats.cacheMisses++;
    } else if (this.recentMax > 0) {
      const recent = this.recent.get(key);
      if (recent !== undefined) {
        this.recent.delete(key); // refresh its LRU position
        this.recent.set(key, recent);
        return recent.subarray(off, off + len);
      }
    }
    if (this.staging?.has(key)) {
      // Committed but not uploaded yet (writeback): the object store does not have it.
      const staged = await this.staging.read(key);
      if (staged !== undefined && staged.length === bsize) return staged.subarray(off, off + len);
    }
    // A whole-block fetch in flight (a prefetch or another reader's) serves this read too: one
    // more request for the same bytes would only compete with it (upstream's piggyback).
    const pending = this.inflight.get(key);
    if (pending) return (await pending).subarray(off, off + len);
    // Upstream's rule: a small piece of an uncompressed block is a range GET (it is not cached);
    // anything else fetches, decodes and caches the whole block.
    if (this.codec.name === 'none' && len < bsize && (this.cache === undefined || len <= bsize / 4)) {
      // With a cache, also fetch the whole block in the background (upstream's --prefetch), so the
      // next read of this block — random or sequential — is a cache hit instead of another GET.
      if (this.cache) this.prefetcher.request(key, bsize);
      return this.rangeGet(key, off, len);
    }
    return (await this.loadBlock(key, bsize)).subarray(off, off + len);
  }

  private rangeGet(key: string, off: number, len: number): Promise<Buffer> {
    return this.downloads
      .run(() =>
        this.withRetries('get', key, async () => {
          this.stats.getRequests++;
          const data = await this.store.get(key, off, len);
          this.stats.getBytes += data.length;
          if (data.length !== len) throw new CorruptBlockError(`short read of ${key}: ${data.length} of ${len} bytes at ${off}`);
          return data;
        }),
      )
      .catch(async (err: unknown) => (await this.stagedAfterMiss(key, err)).subarray(off, off + len));
  }

  /**
   * A GET found no object: the block may still be staged on this disk without being known to the
   * staging queue yet (an earlier mount's, before recover() listed it). Otherwise rethrow.
   */
  private async stagedAfterMiss(key: string, err: unknown): Promise<Buffer> {
    if (!(err instanceof NotFoundError) || this.staging === undefined) throw err;
    const staged = await this.staging.read(key);
    if (staged === undefined) throw err;
    return staged;
  }

  /** A prefetch: skipped when the block is cached (or being fetched) by the time its turn comes. */
  private async prefetchBlock(key: string, bsize: number): Promise<void> {
    if (this.inflight.has(key)) return;
    if (this.cache?.has ? this.cache.has(key) : (await this.cache?.get(key))?.length === bsize) return;
    await this.loadBlock(key, bsize);
  }

  /** Whole plaintext block, shared by concurrent callers; fills the cache. */
  private loadBlock(key: string, bsize: number): Promise<Buffer> {
    let p = this.inflight.get(key);
    if (p) return p;
    p = this.downloads
      .run(() =>
        this.withRetries('get', key, async () => {
          this.stats.getRequests++;
          const raw = await this.store.get(key);
          this.stats.getBytes += raw.length;
          return this.codec.decompress(raw, bsize); // corrupt data is retried: it may be a torn transfer
        }),
      )
      .catch((err: unknown) => this.stagedAfterMiss(key, err))
      .then((block) => {
        if (this.cache) this.cache.put(key, block);
        else this.remember(key, block);
        return block;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  // ------------------------------------------------------------------------------------ writes

  newWriter(id: number): ObjectSliceWriter {
    return new ObjectSliceWriter(this, id);
  }

  /**
   * Upload one block (compress + put with retries) and cache it per policy. `owned`: the buffer is
   * ours and never modified again, so the cache may keep it; otherwise the cache gets a copy.
   */
  async uploadBlock(key: string, block: Buffer, owned = true): Promise<void> {
    await this.putBlock(key, block);
    this.cacheWritten(key, block, owned);
  }

  /** Compress and PUT one block, with retries; the cache is not touched (staging uploads). */
  async putBlock(key: string, block: Buffer): Promise<void> {
    const data = await this.codec.compress(block);
    await this.withRetries('put', key, async () => {
      this.stats.putRequests++;
      await this.store.put(key, data);
      this.stats.putBytes += data.length;
    });
  }

  private cacheWritten(key: string, block: Buffer, owned: boolean): void {
    if (this.cache && (block.length < this.config.blockSize || this.cacheFullBlocks)) this.cache.put(key, owned ? block : Buffer.from(block));
  }

  /**
   * A finished block of a slice writer (owned, immutable): staged with writeback (then readable
   * from disk and uploaded in the background), else — or when staging refuses it — uploaded now.
   */
  async storeBlock(key: string, block: Buffer): Promise<void> {
    if (this.writeback && this.staging !== undefined && (await this.staging.stage(key, block))) {
      this.cacheWritten(key, block, true); // the disk tier has it already; the memory tier may take it
      return;
    }
    await this.uploadBlock(key, block);
  }

  async deleteBlock(key: string): Promise<void> {
    // A staged block's upload must not land after the delete below.
    await this.staging?.cancel(key);
    this.cache?.remove(key);
    this.recent.delete(key);
    await this.withRetries('delete', key, async () => {
      this.stats.deleteRequests++;
      await this.store.delete(key);
    });
  }

  async remove(id: number, size: number): Promise<void> {
    const n = blockCount(size, this.config.blockSize);
    const keys: string[] = [];
    for (let i = 0; i < n; i++) keys.push(this.key(id, i, blockSize(size, i, this.config.blockSize)));
    await this.forEachLimited(keys, (k) => this.deleteBlock(k));
  }

  async writeSlice(id: number, data: Buffer): Promise<void> {
    const bs = this.config.blockSize;
    const n = blockCount(data.length, bs);
    const keys: string[] = [];
    for (let i = 0; i < n; i++) keys.push(this.key(id, i, blockSize(data.length, i, bs)));
    const uploaded: string[] = [];
    try {
      // The caller's buffer is uploaded in place (no copy): blocks are views of `data`.
      await this.forEachLimited(keys, async (k, i) => {
        uploaded.push(k);
        await this.uploadBlock(k, data.subarray(i * bs, Math.min(data.length, (i + 1) * bs)), false);
      });
    } catch (err) {
      await this.forEachLimited(uploaded, (k) => this.deleteBlock(k)).catch(() => undefined);
      throw err;
    }
  }

  /** Runs fn over items with maxUploads parallelism; first error wins (after in-flight ones settle). */
  private async forEachLimited<T>(items: T[], fn: (item: T, index: number) => Promise<void>): Promise<void> {
    let next = 0;
    let failure: unknown;
    const lane = async () => {
      while (failure === undefined && next < items.length) {
        const i = next++;
        try {
          await fn(items[i]!, i);
        } catch (err) {
          failure ??= err;
        }
      }
    };
    const lanes = Math.min(items.length, this.config.maxUploads ?? 8);
    await Promise.all(Array.from({ length: lanes }, lane));
    if (failure !== undefined) throw failure;
  }
}

type BlockState = 'open' | 'queued' | 'uploading' | 'stored' | 'failed';

interface OpenBlock {
  /** Capacity grows by doubling up to the block size, so small slices stay small in memory. */
  buf: Buffer;
  /** Bytes written (anything below is data or zero fill). */
  len: number;
  /** Every write so far started at or before `len`: the block was filled front to back. */
  contiguous: boolean;
  state: BlockState;
  /** Plaintext length it was (or is being) uploaded with; fixed once queued. */
  bsize: number;
}

const MIN_BLOCK_BUFFER = 64 * 1024;

/**
 * Buffers the blocks of one new slice and uploads them.
 *
 * A block is uploaded as soon as it is complete: automatically when sequential writes fill it,
 * or when flushTo() passes its end, or (short last block) on finish(). A block that is queued or
 * uploaded can no longer change: writing into it throws, so callers must start a new slice for
 * such a write (`writableFrom` tells the lowest offset that is still writable when blocks are
 * filled in order). Uploads run with `maxUploads` parallelism; drain() gives back-pressure.
 */
export class ObjectSliceWriter implements SliceWriter {
  private readonly blocks: (OpenBlock | undefined)[] = [];
  private readonly bs: number;
  private readonly maxUploads: number;
  private readonly queue: number[] = [];
  private active = 0;
  private written = 0;
  private error: unknown;
  private closed: 'finished' | 'aborted' | undefined;
  /** Keys whose PUT was started: what abort() must delete. */
  private readonly started = new Set<string>();
  private idleWaiters: (() => void)[] = [];
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly store: ObjectBlockStore,
    readonly id: number,
  ) {
    this.bs = store.config.blockSize;
    this.maxUploads = Math.max(1, store.config.maxUploads ?? 8);
  }

  /** Highest slice offset written so far. */
  get length(): number {
    return this.written;
  }

  /** Lowest offset such that [writableFrom, ∞) contains no queued or uploaded block. */
  get writableFrom(): number {
    for (let i = this.blocks.length - 1; i >= 0; i--) {
      const b = this.blocks[i];
      if (b && b.state !== 'open') return (i + 1) * this.bs;
    }
    return 0;
  }

  write(off: number, data: Buffer): void {
    if (this.closed) throw new Error(`slice ${this.id}: write after ${this.closed}`);
    if (this.error !== undefined) throw this.error;
    if (off < 0 || !Number.isSafeInteger(off)) throw new RangeError(`slice ${this.id}: bad offset ${off}`);
    const end = off + data.length;
    const bs = this.bs;
    for (let pos = off; pos < end; ) {
      const i = Math.floor(pos / bs);
      const inBlock = pos - i * bs;
      const n = Math.min(end - pos, bs - inBlock);
      const b = this.openBlock(i, inBlock + n);
      if (inBlock > b.len) {
        b.buf.fill(0, b.len, inBlock); // a gap inside the slice reads as zeros
        b.contiguous = false;
      }
      data.copy(b.buf, inBlock, pos - off, pos - off + n);
      if (inBlock + n > b.len) b.len = inBlock + n;
      // Sequentially filled blocks go out at once: the common append stream overlaps upload and write.
      if (b.len === bs && b.contiguous && inBlock + n === bs) this.enqueue(i, bs);
      pos += n;
    }
    if (end > this.written) this.written = end;
  }

  private openBlock(i: number, need: number): OpenBlock {
    let b = this.blocks[i];
    if (b === undefined) {
      // A slice reaching into its second block is a stream: its later blocks get full buffers.
      b = { buf: Buffer.allocUnsafe(this.capacityFor(i > 0 ? this.bs : need)), len: 0, contiguous: true, state: 'open', bsize: 0 };
      this.blocks[i] = b;
      return b;
    }
    if (b.state !== 'open') throw new Error(`slice ${this.id}: block ${i} is already uploaded; write below offset ${(i + 1) * this.bs} needs a new slice`);
    if (need > b.buf.length) {
      const grown = Buffer.allocUnsafe(this.capacityFor(need));
      b.buf.copy(grown, 0, 0, b.len);
      b.buf = grown;
    }
    return b;
  }

  private capacityFor(need: number): number {
    // Past a quarter block the data is a stream, not a small file: take the whole block at once
    // rather than copying it through every doubling (a 1 MiB-write stream otherwise copies each
    // block twice more than it writes it).
    if (need > this.bs / 4) return this.bs;
    let cap = MIN_BLOCK_BUFFER;
    while (cap < need) cap *= 2;
    return Math.min(cap, this.bs);
  }

  flushTo(off: number): void {
    if (this.closed || this.error !== undefined) return;
    const full = Math.floor(Math.min(off, this.written) / this.bs);
    for (let i = 0; i < full; i++) {
      const b = this.blocks[i];
      if (b === undefined || b.state === 'open') this.enqueue(i, this.bs);
    }
  }

  /** Resolves once no block waits for an upload slot (rejects if an upload failed). */
  async drain(): Promise<void> {
    if (this.queue.length > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
    if (this.error !== undefined) throw this.error;
  }

  async finish(size: number): Promise<void> {
    if (this.closed) throw new Error(`slice ${this.id}: finish after ${this.closed}`);
    if (size <= 0 || !Number.isSafeInteger(size)) throw new RangeError(`slice ${this.id}: bad size ${size}`);
    const n = blockCount(size, this.bs);
    for (let i = 0; i < Math.max(n, this.blocks.length); i++) {
      const b = this.blocks[i];
      if (i >= n) {
        if (b && b.state !== 'open') throw new Error(`slice ${this.id}: finish(${size}) drops block ${i} that is already uploaded`);
        this.blocks[i] = undefined;
        continue;
      }
      const bsize = blockSize(size, i, this.bs);
      if (b && b.state !== 'open') {
        if (b.bsize !== bsize) throw new Error(`slice ${this.id}: finish(${size}) changes the length of uploaded block ${i}`);
        continue;
      }
      this.enqueue(i, bsize);
    }
    this.closed = 'finished';
    await this.idle();
    if (this.error !== undefined) throw this.error;
    if ((this.closed as string) === 'aborted') throw new Error(`slice ${this.id}: aborted while finishing`);
  }

  async abort(): Promise<void> {
    if (this.closed === 'aborted') return;
    this.closed = 'aborted';
    for (const i of this.queue.splice(0)) this.blocks[i] = undefined;
    this.wake();
    await this.idle();
    this.blocks.length = 0;
    const keys = [...this.started];
    this.started.clear();
    const results = await Promise.allSettled(keys.map((k) => this.store.deleteBlock(k)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  private enqueue(i: number, bsize: number): void {
    if (this.error !== undefined || this.closed === 'aborted') return; // nothing more goes out
    let b = this.blocks[i];
    if (b === undefined) {
      b = { buf: Buffer.alloc(bsize), len: bsize, contiguous: true, state: 'open', bsize: 0 }; // never written: zeros
      this.blocks[i] = b;
    }
    if (b.state !== 'open') return;
    if (b.len < bsize) {
      if (b.buf.length < bsize) {
        const grown = Buffer.allocUnsafe(this.capacityFor(bsize));
        b.buf.copy(grown, 0, 0, b.len);
        b.buf = grown;
      }
      b.buf.fill(0, b.len, bsize);
      b.len = bsize;
    }
    b.state = 'queued';
    b.bsize = bsize;
    this.queue.push(i);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.maxUploads && this.queue.length > 0 && this.error === undefined) {
      const i = this.queue.shift()!;
      const b = this.blocks[i]!;
      b.state = 'uploading';
      this.active++;
      const key = this.store.key(this.id, i, b.bsize);
      this.started.add(key);
      this.store
        .storeBlock(key, b.buf.subarray(0, b.bsize))
        .then(
          () => {
            b.state = 'stored';
            b.buf = EMPTY; // release the memory; the block is immutable from now on
          },
          (err: unknown) => {
            b.state = 'failed';
            if (this.error === undefined) {
              this.error = err;
              // Fail fast: what is still queued will never be needed.
              for (const j of this.queue.splice(0)) this.blocks[j]!.state = 'failed';
            }
          },
        )
        .finally(() => {
          this.active--;
          this.pump();
          this.wake();
        });
    }
    this.wake();
  }

  private wake(): void {
    if (this.queue.length === 0 && this.drainWaiters.length > 0) {
      for (const r of this.drainWaiters.splice(0)) r();
    }
    if (this.queue.length === 0 && this.active === 0 && this.idleWaiters.length > 0) {
      for (const r of this.idleWaiters.splice(0)) r();
    }
  }

  private idle(): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) return Promise.resolve();
    return new Promise<void>((r) => this.idleWaiters.push(r));
  }
}

const EMPTY = Buffer.alloc(0);

/** Convenience constructor mirroring the class. */
export function createBlockStore(store: ObjectStore, config: BlockStoreConfig, cache?: BlockCache, options?: BlockStoreOptions): ObjectBlockStore {
  return new ObjectBlockStore(store, config, cache, options);
}
