/**
 * Disk tier of the block cache, laid out like upstream's disk cache (juicefs-format.md 6.1) so a
 * cache directory can be shared with or inherited from `juicefs mount`:
 *   <dir>/<volume uuid>/.lock            random id of this cache disk
 *   <dir>/<volume uuid>/raw/<block key>  block + one BE CRC32-C per 32 KiB (checksum.ts)
 *   <dir>/<volume uuid>/rawstaging/<key> writeback: a block not yet uploaded (same file format),
 *                                        hard-linked into raw/ so reads find it like any cached block
 *
 * Guarantees (product.md 7):
 * - Never serves a corrupt or truncated file: every read is verified; a bad file is deleted and the
 *   read answered as a miss, so the caller refetches from the object store.
 * - Never grows past its limit: space is reserved (file size + 4096, upstream's charge) before a
 *   write starts and evicted files are unlinked before the write that needed the room begins, so
 *   the bytes on disk stay within the limit. The limit is the configured size, lowered while the
 *   filesystem has less than `freeRatio` of its space or inodes free (sampled with statfs).
 * - A full disk (ENOSPC) or any write error switches inserts off for `bypassMs`; reads go on.
 * - Usable at once: the index is rebuilt from disk in the background; until that scan ends, a
 *   lookup of a key not yet indexed still tries the file.
 * - A file being written is never evicted: it enters the index only once renamed into place.
 * - Staged (writeback) blocks are charged like cached ones but pinned: never evicted until
 *   unstage() after their upload. Staging refuses (the caller uploads synchronously) instead of
 *   going past the limit or the free-space floor.
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BlockCache, CacheStats } from '../types.js';
import {
  blockLengthOfKey,
  cacheFileLength,
  checksumTrailer,
  dataLengthOfFile,
  verifyCacheFile,
  verifyPieces,
  CHECKSUM_PIECE,
} from './checksum.js';
import { emptyStats } from './stats.js';

/** Marks a short read in getRange (a truncated cache file). */
const EMPTY_PIECES = Buffer.alloc(0);

/** Cache files kept open for ranged reads (an open + a close per 4 KiB read cost as much as the read). */
const OPEN_FILES = 128;

interface OpenFile {
  fh: fsp.FileHandle;
  users: number;
  dropped: boolean;
}

/**
 * An LRU of open cache files, for getRange. Cache files never change once renamed into place, so
 * a kept descriptor always reads the bytes of its key; it is dropped (closed once no read uses it)
 * whenever the file leaves the index, is removed, or is found corrupt.
 */
class OpenFiles {
  private readonly map = new Map<string, OpenFile>();
  constructor(private readonly max: number) {}

  async use<T>(key: string, path: string, fn: (fh: fsp.FileHandle) => Promise<T>): Promise<T> {
    let f = this.map.get(key);
    if (f !== undefined) {
      this.map.delete(key); // refresh its LRU position
      this.map.set(key, f);
    } else {
      const fh = await fsp.open(path, 'r');
      f = this.map.get(key);
      if (f !== undefined) await fh.close(); // another read opened it meanwhile
      else {
        f = { fh, users: 0, dropped: false };
        this.map.set(key, f);
        while (this.map.size > this.max) this.drop(this.map.keys().next().value!);
      }
    }
    const mine = f;
    mine.users++;
    try {
      return await fn(mine.fh);
    } finally {
      mine.users--;
      if (mine.dropped && mine.users === 0) mine.fh.close().catch(() => undefined);
    }
  }

  drop(key: string): void {
    const f = this.map.get(key);
    if (f === undefined) return;
    this.map.delete(key);
    f.dropped = true;
    if (f.users === 0) f.fh.close().catch(() => undefined);
  }

  dropAll(): void {
    for (const key of [...this.map.keys()]) this.drop(key);
  }
}

export type EvictionPolicy = 'lru' | '2-random';

export interface DiskCacheOptions {
  /** Cache root; this volume's files live under `<dir>/<uuid>/`. */
  dir: string;
  /** Volume UUID (Format.UUID). */
  uuid: string;
  /** Size limit in bytes (> 0). */
  capacityBytes: number;
  /** Fraction of the filesystem's space and inodes to keep free (default 0.1). */
  freeRatio?: number;
  /** Default 'lru' (by last access in this process; after a restart, by file atime/mtime). */
  eviction?: EvictionPolicy;
  /** Mode of cache files (default 0o600); directories get the matching x bits. */
  fileMode?: number;
  /** How long inserts stay off after ENOSPC or another write error (default 60 s). */
  bypassMs?: number;
  /** Bytes of blocks queued for writing; inserts beyond this are skipped (default 64 MiB). */
  maxPendingBytes?: number;
  /** Concurrent file writes (default 4). */
  writeConcurrency?: number;
  /** Minimum interval between statfs samples (default 1 s). */
  statfsIntervalMs?: number;
}

/** Upstream charges every cached block its size plus one filesystem block of overhead. */
const PER_FILE_OVERHEAD = 4096;
/** When full, shrink to this fraction of the limit (upstream: 95 % of space, 99 % of items). */
const SHRINK_SPACE = 0.95;
const SHRINK_ITEMS = 0.99;
/** `.tmp` leftovers older than this are a crashed writer's, not a live one's. */
const STALE_TMP_MS = 3600_000;
const KEY_RE = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/;
const DOT_SEGMENT_RE = /(?:^|\/)\.\.?(?:\/|$)/;

/** A relative key that stays inside raw/ and cannot collide with our temp files. */
function isValidKey(key: string): boolean {
  return KEY_RE.test(key) && !DOT_SEGMENT_RE.test(key) && !key.endsWith('.tmp');
}

interface Entry {
  charge: number;
  atime: number;
  /** Hard-linked (link count > 1): an upstream writeback staging block; never evicted. */
  pinned: boolean;
  /** Position in `slots` (2-random sampling). */
  slot: number;
}

interface FsSample {
  at: number;
  /** Our committed bytes / entries when sampled (in-flight writes excluded: conservative). */
  committedBytes: number;
  committedEntries: number;
  availBytes: number;
  floorBytes: number;
  freeFiles: number;
  floorFiles: number;
  totalFiles: number;
}

interface Job {
  key: string;
  block: Buffer;
}

function isNoSpace(code: string | undefined): boolean {
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class DiskBlockCache implements BlockCache {
  readonly root: string;
  readonly rawDir: string;
  readonly stagingDir: string;
  /** Resolves when the startup scan has finished (never rejects). */
  readonly ready: Promise<void>;

  private readonly capacity: number;
  private readonly freeRatio: number;
  private readonly policy: EvictionPolicy;
  private readonly fileMode: number;
  private readonly dirMode: number;
  private readonly bypassMs: number;
  private readonly maxPendingBytes: number;
  private readonly writeConcurrency: number;
  private readonly statfsIntervalMs: number;

  /** Map order is LRU order (oldest first): a hit deletes and re-inserts. */
  private index = new Map<string, Entry>();
  private slots: string[] = [];
  /** Charges of indexed files plus reservations of writes in progress. */
  private used = 0;
  private reserved = 0;
  private peakUsed = 0;

  /** Blocks queued or being written, served to get() meanwhile. */
  private readonly pending = new Map<string, Buffer>();
  private readonly writing = new Set<string>();
  private readonly openFiles = new OpenFiles(OPEN_FILES);
  private readonly queue: Job[] = [];
  private queueHead = 0;
  private pendingBytes = 0;
  private active = 0;
  private idleWaiters: Array<() => void> = [];

  private readonly knownDirs = new Set<string>();
  private scanning = true;
  private disabled = false;
  private closed = false;
  private bypassUntil = 0;
  private sample: FsSample | undefined;
  private sampling: Promise<void> | undefined;
  private readonly counters: CacheStats = emptyStats();

  constructor(options: DiskCacheOptions) {
    if (!options.dir) throw new RangeError('disk cache dir must be set');
    if (!/^[A-Za-z0-9-]+$/.test(options.uuid)) throw new RangeError(`bad volume uuid ${JSON.stringify(options.uuid)}`);
    if (!Number.isSafeInteger(options.capacityBytes) || options.capacityBytes <= 0) {
      throw new RangeError(`disk cache size must be a positive integer of bytes, got ${options.capacityBytes}`);
    }
    const freeRatio = options.freeRatio ?? 0.1;
    if (!(freeRatio >= 0 && freeRatio < 1)) throw new RangeError(`free-space ratio must be in [0, 1), got ${freeRatio}`);
    this.capacity = options.capacityBytes;
    this.freeRatio = freeRatio;
    this.policy = options.eviction ?? 'lru';
    this.fileMode = options.fileMode ?? 0o600;
    this.dirMode = this.fileMode | ((this.fileMode & 0o444) >> 2) | 0o700;
    this.bypassMs = options.bypassMs ?? 60_000;
    this.maxPendingBytes = options.maxPendingBytes ?? 64 << 20;
    this.writeConcurrency = Math.max(1, options.writeConcurrency ?? 4);
    this.statfsIntervalMs = options.statfsIntervalMs ?? 1000;
    this.root = join(options.dir, options.uuid);
    this.rawDir = join(this.root, 'raw');
    this.stagingDir = join(this.root, 'rawstaging');
    this.counters.capacityBytes = this.capacity;
    this.ready = this.start();
  }

  // ---------------------------------------------------------------- BlockCache

  async get(key: string): Promise<Buffer | undefined> {
    const queued = this.pending.get(key);
    if (queued !== undefined) return this.hit(queued);
    if (this.disabled || !isValidKey(key)) return this.miss();
    const entry = this.index.get(key);
    if (entry === undefined && !this.scanning) return this.miss();

    const path = join(this.rawDir, key);
    let block: Buffer | undefined;
    try {
      block = await this.readVerified(path, blockLengthOfKey(key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.counters.errors++;
      // A vanished file is simply gone; an unreadable one is dropped so we stop trying it.
      if (code === 'ENOENT' || code === 'EIO') this.dropEntry(key, code === 'EIO');
      return this.miss();
    }
    if (block === undefined) {
      this.counters.corrupt++;
      this.dropEntry(key, true);
      return this.miss();
    }
    const current = this.index.get(key);
    if (current !== undefined) this.touch(key, current);
    else if (this.scanning) this.addEntry(key, cacheFileLength(block.length) + PER_FILE_OVERHEAD, Date.now(), false);
    return this.hit(block);
  }

  has(key: string): boolean {
    return this.index.has(key) || this.pending.has(key) || this.writing.has(key);
  }

  /**
   * A range of a cached block: reads the 32 KiB pieces that cover it and their checksums only
   * (upstream's disk cache does the same), so random reads of large files cost a piece, not a block.
   * A piece whose checksum fails drops the whole file, as get() does.
   */
  async getRange(key: string, off: number, len: number): Promise<Buffer | undefined> {
    const queued = this.pending.get(key);
    if (queued !== undefined) return this.hit(queued.subarray(off, off + len));
    if (this.disabled || !isValidKey(key)) return this.miss();
    const entry = this.index.get(key);
    if (entry === undefined && !this.scanning) return this.miss();
    const dataLen = blockLengthOfKey(key);
    if (dataLen < 0 || off < 0 || len <= 0 || off + len > dataLen) {
      const whole = await this.get(key);
      return whole?.subarray(off, off + len);
    }
    const first = Math.floor(off / CHECKSUM_PIECE);
    const end = Math.ceil((off + len) / CHECKSUM_PIECE); // exclusive
    const start = first * CHECKSUM_PIECE;
    const stop = Math.min(end * CHECKSUM_PIECE, dataLen);
    let data: Buffer;
    let sums: Buffer;
    try {
      data = Buffer.allocUnsafe(stop - start);
      sums = Buffer.allocUnsafe(4 * (end - first));
      const [d, t] = await this.openFiles.use(key, join(this.rawDir, key), (fh) =>
        Promise.all([fh.read(data, 0, data.length, start), fh.read(sums, 0, sums.length, dataLen + 4 * first)]),
      );
      // Short reads mean a truncated file: corrupt, like a checksum mismatch.
      if (d.bytesRead !== data.length || t.bytesRead !== sums.length) data = EMPTY_PIECES;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.counters.errors++;
      if (code === 'ENOENT' || code === 'EIO') this.dropEntry(key, code === 'EIO');
      return this.miss();
    }
    if (data === EMPTY_PIECES || !verifyPieces(data, sums)) {
      this.counters.corrupt++;
      this.dropEntry(key, true);
      return this.miss();
    }
    const current = this.index.get(key);
    if (current !== undefined) this.touch(key, current);
    return this.hit(data.subarray(off - start, off - start + len));
  }

  put(key: string, block: Buffer): void {
    if (
      this.disabled ||
      this.closed ||
      Date.now() < this.bypassUntil ||
      !isValidKey(key) ||
      this.index.has(key) ||
      this.pending.has(key) ||
      this.writing.has(key) ||
      cacheFileLength(block.length) + PER_FILE_OVERHEAD > this.capacity ||
      this.pendingBytes + block.length > this.maxPendingBytes
    ) {
      this.counters.skipped++;
      return;
    }
    this.pending.set(key, block);
    this.pendingBytes += block.length;
    this.queue.push({ key, block });
    this.pump();
  }

  remove(key: string): void {
    if (!isValidKey(key)) return;
    // A queued write whose block is no longer in `pending` is abandoned by the writer, and one
    // already writing unlinks its file when it sees the block gone (see write()).
    this.pending.delete(key);
    this.openFiles.drop(key);
    if (this.writing.has(key)) return;
    const entry = this.index.get(key);
    if (entry !== undefined) this.unindex(key, entry);
    if (entry !== undefined || this.scanning) void this.unlinkQuiet(join(this.rawDir, key));
  }

  stats(): CacheStats {
    const bypassing = Date.now() < this.bypassUntil ? 1 : 0;
    return {
      ...this.counters,
      usedBytes: this.used,
      capacityBytes: this.limitBytes(),
      entries: this.index.size,
      bypassing,
    };
  }

  // ---------------------------------------------------------------- lifecycle / introspection

  /** Highest `usedBytes` (committed + reserved) seen so far. */
  get peakUsedBytes(): number {
    return this.peakUsed;
  }

  /** Resolves when every queued write has finished. */
  idle(): Promise<void> {
    if (this.active === 0 && this.queueHead >= this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops accepting inserts and waits for queued writes and the scan. */
  async close(): Promise<void> {
    this.closed = true;
    await this.ready;
    await this.idle();
    this.openFiles.dropAll();
  }

  // ---------------------------------------------------------------- read

  /**
   * The block of the file at `path`, undefined when the file is corrupt or truncated. `dataLen` is
   * the block length from the key, or -1 to derive it from the file length.
   * One open, one read, one close in the common case: asking for one byte more than expected tells
   * "exact", "short" and "long" apart without an fstat.
   */
  private async readVerified(path: string, dataLen: number): Promise<Buffer | undefined> {
    const fh = await fsp.open(path, 'r');
    try {
      if (dataLen < 0) {
        const st = await fh.stat();
        dataLen = dataLengthOfFile(st.size);
        if (dataLen < 0) return undefined;
      }
      const fileLen = cacheFileLength(dataLen);
      // Not from the shared pool: a small block kept by the memory tier must not pin an 8 KiB slab.
      const buf = Buffer.allocUnsafeSlow(fileLen + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
        got += bytesRead;
        // A read returning exactly the expected length is the whole file (regular files only
        // return short at EOF); otherwise keep reading until EOF or one byte too many.
        if (bytesRead === 0 || got === buf.length || (got === fileLen && bytesRead === fileLen)) break;
      }
      if (got !== fileLen) return undefined;
      const file = buf.subarray(0, fileLen);
      return verifyCacheFile(file, dataLen) ? file.subarray(0, dataLen) : undefined;
    } finally {
      await fh.close();
    }
  }

  private hit(block: Buffer): Buffer {
    this.counters.hits++;
    this.counters.hitBytes += block.length;
    return block;
  }

  private miss(): undefined {
    this.counters.misses++;
    return undefined;
  }

  // ---------------------------------------------------------------- write

  private pump(): void {
    while (this.active < this.writeConcurrency && this.queueHead < this.queue.length) {
      const job = this.queue[this.queueHead++]!;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      this.active++;
      void this.write(job).finally(() => {
        this.active--;
        this.pendingBytes -= job.block.length;
        if (this.pending.get(job.key) === job.block) this.pending.delete(job.key);
        this.pump();
        if (this.active === 0 && this.queueHead >= this.queue.length) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
    }
  }

  private async write(job: Job): Promise<void> {
    const { key, block } = job;
    if (this.pending.get(key) !== block) return; // removed while queued
    if (Date.now() < this.bypassUntil || this.index.has(key)) {
      this.counters.skipped++;
      return;
    }
    this.writing.add(key);
    try {
      // Until the scan has counted what is already on disk, the limit cannot be enforced.
      if (this.scanning) {
        await this.ready;
        if (this.pending.get(key) !== block) return;
        if (this.index.has(key)) {
          this.counters.skipped++;
          return;
        }
      }
      const charge = await this.withRoom(block, () => this.writeFile(key, block));
      if (charge === 'full') {
        this.counters.skipped++;
        return;
      }
      if (charge === undefined) return;
      if (this.pending.get(key) !== block) {
        // remove() ran while we were writing.
        await this.unlinkQuiet(join(this.rawDir, key));
        return;
      }
      this.addEntry(key, charge, Date.now(), false);
      this.counters.inserts++;
      this.counters.insertBytes += block.length;
    } finally {
      this.writing.delete(key);
    }
  }

  /**
   * Makes room for a file holding `block` and keeps its charge reserved while `store` writes it.
   * The charge when stored; 'full' when it cannot fit (everything left is pinned or being written);
   * undefined when `store` failed.
   */
  private async withRoom(block: Buffer, store: () => Promise<boolean>): Promise<number | 'full' | undefined> {
    await this.maybeSample();
    const charge = cacheFileLength(block.length) + PER_FILE_OVERHEAD;
    const unlinks = this.makeRoom(charge, 1);
    if (unlinks === undefined) return 'full';
    this.used += charge;
    this.reserved += charge;
    if (this.used > this.peakUsed) this.peakUsed = this.used;
    try {
      // The room we made is only real once the evicted files are gone.
      await unlinks;
      return (await store()) ? charge : undefined;
    } finally {
      this.reserved -= charge;
      this.used -= charge;
    }
  }

  /** Writes `<path>.tmp` and renames it into place; false (and counted) on failure. */
  private async writeFile(key: string, block: Buffer, base = this.rawDir): Promise<boolean> {
    const path = join(base, key);
    const tmp = `${path}.tmp`;
    const trailer = checksumTrailer(block);
    try {
      await this.ensureDir(dirname(path));
      const fh = await fsp.open(tmp, 'w', this.fileMode);
      try {
        const total = block.length + trailer.length;
        let done = (await fh.writev([block, trailer], 0)).bytesWritten;
        // Short writes are rare (signals, some filesystems); finish the rest piecewise.
        while (done < total) {
          const rest = Buffer.concat([block, trailer]).subarray(done);
          done += (await fh.write(rest, 0, rest.length, done)).bytesWritten;
        }
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, path);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.counters.errors++;
      await this.unlinkQuiet(tmp);
      if (code === 'ENOENT') {
        // Somebody removed part of the cache tree under us: forget what we knew about it.
        this.knownDirs.clear();
      } else {
        // ENOSPC, EDQUOT, EIO, EROFS, EACCES…: stop inserting for a while and re-read free space.
        this.bypassUntil = Date.now() + this.bypassMs;
        this.sample = undefined;
        if (isNoSpace(code)) void this.maybeSample().then(() => this.enforceLimit());
      }
      return false;
    }
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.knownDirs.has(dir)) return;
    await fsp.mkdir(dir, { recursive: true, mode: this.dirMode });
    this.knownDirs.add(dir);
  }

  // ---------------------------------------------------------------- writeback staging

  /**
   * Writes `block` to rawstaging/<key> and hard-links it into raw/ (upstream's layout), charged
   * against the limit and pinned. False when it cannot be staged within the size limit and the
   * free-space floor, or the write failed (ENOSPC...): the caller must then upload it itself.
   */
  async stage(key: string, block: Buffer): Promise<boolean> {
    if (this.disabled || this.closed || Date.now() < this.bypassUntil || !isValidKey(key)) return false;
    if (this.scanning) await this.ready;
    if (this.disabled || this.writing.has(key)) return false;
    this.writing.add(key);
    try {
      const charge = await this.withRoom(block, async () => (await this.writeFile(key, block, this.stagingDir)) && (await this.linkStaged(key)));
      if (charge === 'full' || charge === undefined) return false;
      this.pending.delete(key); // a racing put() of the same block is moot now
      this.addEntry(key, charge, Date.now(), true);
      return true;
    } finally {
      this.writing.delete(key);
    }
  }

  /** raw/<key> as a second name of the staging file; on failure the staging file is removed. */
  private async linkStaged(key: string): Promise<boolean> {
    const staged = join(this.stagingDir, key);
    const raw = join(this.rawDir, key);
    try {
      await this.ensureDir(dirname(raw));
      try {
        await fsp.link(staged, raw);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        // An older cache file of the same (immutable) key: replace it by the staged one.
        await fsp.unlink(raw);
        await fsp.link(staged, raw);
      }
      return true;
    } catch {
      this.counters.errors++;
      await this.unlinkQuiet(staged);
      return false;
    }
  }

  /**
   * The block of `key` is in the object store now: its staging name goes, and the raw/ name stays
   * as an ordinary cache entry (evictable from now on), as upstream does after an upload.
   */
  async unstage(key: string): Promise<void> {
    if (!isValidKey(key)) return;
    const e = this.index.get(key);
    if (e !== undefined) e.pinned = false;
    await this.unlinkQuiet(join(this.stagingDir, key));
  }

  /** The staged block is no longer wanted (its slice was aborted or deleted): remove both names. */
  async dropStaged(key: string): Promise<void> {
    if (!isValidKey(key)) return;
    this.pending.delete(key);
    const e = this.index.get(key);
    if (e !== undefined) this.unindex(key, e);
    await Promise.all([this.unlinkQuiet(join(this.rawDir, key)), this.unlinkQuiet(join(this.stagingDir, key))]);
  }

  /**
   * The staged block of `key`, verified; undefined when the file is corrupt or truncated. I/O
   * errors (ENOENT when it is not staged) are thrown.
   */
  readStaged(key: string): Promise<Buffer | undefined> {
    if (!isValidKey(key)) return Promise.resolve(undefined);
    return this.readVerified(join(this.stagingDir, key), blockLengthOfKey(key));
  }

  /** Keys of every block under rawstaging/ (crashed writers' `.tmp` files older than an hour are removed). */
  async listStaged(): Promise<string[]> {
    const found: string[] = [];
    try {
      await this.walk(this.stagingDir, '', (key, path, st) => {
        if (key.endsWith('.tmp')) return Date.now() - st.mtimeMs > STALE_TMP_MS ? this.unlinkQuiet(path) : undefined;
        if (isValidKey(key)) found.push(key);
        return undefined;
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return found;
  }

  // ---------------------------------------------------------------- space accounting

  /** Current limit in bytes: the configured size, lowered to keep the free-space floor. */
  private limitBytes(): number {
    const s = this.sample;
    if (s === undefined) return this.capacity;
    return Math.max(0, Math.min(this.capacity, s.committedBytes + s.availBytes - s.floorBytes));
  }

  private limitItems(): number {
    const s = this.sample;
    if (s === undefined || s.totalFiles === 0) return Number.POSITIVE_INFINITY;
    return Math.max(0, s.committedEntries + s.freeFiles - s.floorFiles);
  }

  private maybeSample(): Promise<void> {
    if (this.sample !== undefined && Date.now() - this.sample.at < this.statfsIntervalMs) return Promise.resolve();
    if (this.sampling === undefined) {
      const committedBytes = this.used - this.reserved;
      const committedEntries = this.index.size;
      this.sampling = fsp
        .statfs(this.root)
        .then((st) => {
          this.sample = {
            at: Date.now(),
            committedBytes,
            committedEntries,
            availBytes: st.bavail * st.bsize,
            floorBytes: this.freeRatio * st.blocks * st.bsize,
            freeFiles: st.ffree,
            floorFiles: this.freeRatio * st.files,
            totalFiles: st.files,
          };
        })
        .catch(() => {
          this.counters.errors++;
        })
        .finally(() => {
          this.sampling = undefined;
        });
    }
    return this.sampling;
  }

  /**
   * Evicts so that `charge` more bytes and `items` more files fit; returns the unlinks to wait for,
   * or undefined when they cannot fit (everything left is pinned or being written).
   */
  private makeRoom(charge: number, items: number): Promise<unknown> | undefined {
    const limit = this.limitBytes();
    const limitItems = this.limitItems();
    const inFlight = this.writing.size; // includes the caller
    let unlinks: Promise<unknown> = Promise.resolve();
    if (this.used + charge > limit || this.index.size + inFlight - 1 + items > limitItems) {
      unlinks = this.evict(limit * SHRINK_SPACE - charge, Math.floor(limitItems * SHRINK_ITEMS) - inFlight);
    }
    if (this.used + charge > limit || this.index.size + inFlight - 1 + items > limitItems) return undefined;
    return unlinks;
  }

  /** Evicts down to the current limits (after the scan, or after ENOSPC lowered them). */
  private enforceLimit(): void {
    const limit = this.limitBytes();
    const limitItems = this.limitItems();
    if (this.used > limit || this.index.size > limitItems) {
      void this.evict(limit * SHRINK_SPACE, Math.floor(limitItems * SHRINK_ITEMS));
    }
  }

  /** Drops entries until used ≤ targetBytes and entries ≤ targetItems, or nothing is evictable. */
  private evict(targetBytes: number, targetItems: number): Promise<unknown> {
    const unlinks: Promise<void>[] = [];
    const over = () => this.used > targetBytes || this.index.size > targetItems;
    const drop = (key: string, e: Entry) => {
      this.unindex(key, e);
      this.counters.evictions++;
      unlinks.push(this.unlinkQuiet(join(this.rawDir, key)));
    };
    if (this.policy === 'lru') {
      for (const [key, e] of this.index) {
        if (!over()) break;
        if (!e.pinned) drop(key, e);
      }
    } else {
      // 2-random: of two random entries, evict the one idle longer (upstream's default).
      let misses = 0;
      while (over() && this.slots.length > 0 && misses < 64) {
        const k1 = this.slots[Math.floor(Math.random() * this.slots.length)]!;
        const k2 = this.slots[Math.floor(Math.random() * this.slots.length)]!;
        const e1 = this.index.get(k1)!;
        const e2 = this.index.get(k2)!;
        const pick = e1.pinned ? (e2.pinned ? undefined : k2) : e2.pinned ? k1 : e1.atime <= e2.atime ? k1 : k2;
        if (pick === undefined) {
          misses++;
          continue;
        }
        drop(pick, this.index.get(pick)!);
      }
      if (over()) {
        // Mostly pinned: fall back to a linear pass so the limit still holds.
        for (const [key, e] of this.index) {
          if (!over()) break;
          if (!e.pinned) drop(key, e);
        }
      }
    }
    return Promise.all(unlinks);
  }

  // ---------------------------------------------------------------- index

  private addEntry(key: string, charge: number, atime: number, pinned: boolean): void {
    const old = this.index.get(key);
    if (old !== undefined) this.unindex(key, old);
    this.index.set(key, { charge, atime, pinned, slot: this.slots.length });
    this.slots.push(key);
    this.used += charge;
    if (this.used > this.peakUsed) this.peakUsed = this.used;
  }

  private unindex(key: string, e: Entry): void {
    this.openFiles.drop(key);
    this.index.delete(key);
    const last = this.slots.pop()!;
    if (last !== key) {
      this.slots[e.slot] = last;
      this.index.get(last)!.slot = e.slot;
    }
    this.used -= e.charge;
  }

  private touch(key: string, e: Entry): void {
    e.atime = Date.now();
    if (this.policy === 'lru') {
      this.index.delete(key);
      this.index.set(key, e);
    }
  }

  private dropEntry(key: string, unlink: boolean): void {
    this.openFiles.drop(key);
    const e = this.index.get(key);
    if (e !== undefined) this.unindex(key, e);
    if (unlink) void this.unlinkQuiet(join(this.rawDir, key));
  }

  private async unlinkQuiet(path: string): Promise<void> {
    try {
      await fsp.unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.counters.errors++;
    }
  }

  // ---------------------------------------------------------------- startup scan

  private async start(): Promise<void> {
    try {
      await fsp.mkdir(this.rawDir, { recursive: true, mode: this.dirMode });
      this.knownDirs.add(this.rawDir);
      await this.ensureLockFile();
    } catch {
      this.counters.errors++;
      this.disabled = true;
      this.scanning = false;
      return;
    }
    const found: Array<{ key: string; charge: number; atime: number; pinned: boolean }> = [];
    try {
      await this.scanDir(this.rawDir, '', found);
    } catch {
      this.counters.errors++;
    }
    // Oldest first, so LRU order survives a restart (as far as atime/mtime tell).
    found.sort((a, b) => a.atime - b.atime);
    const live = this.index;
    this.index = new Map();
    this.slots = [];
    this.used -= [...live.values()].reduce((s, e) => s + e.charge, 0);
    for (const f of found) if (!live.has(f.key)) this.addEntry(f.key, f.charge, f.atime, f.pinned);
    for (const [key, e] of live) this.addEntry(key, e.charge, e.atime, e.pinned);
    this.scanning = false;
    await this.maybeSample();
    this.enforceLimit();
  }

  private async ensureLockFile(): Promise<void> {
    const lock = join(this.root, '.lock');
    try {
      await fsp.writeFile(lock, randomUUID(), { flag: 'wx', mode: this.fileMode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }

  private async scanDir(
    dir: string,
    prefix: string,
    out: Array<{ key: string; charge: number; atime: number; pinned: boolean }>,
  ): Promise<void> {
    await this.walk(dir, prefix, async (key, path, st) => {
      if (key.endsWith('.tmp')) {
        // A crashed writer's leftover (live writers finish in well under an hour).
        if (Date.now() - st.mtimeMs > STALE_TMP_MS) await this.unlinkQuiet(path);
        return;
      }
      if (!isValidKey(key)) return;
      // Link count > 1: a writeback block (ours or upstream's) still staged, so pinned.
      out.push({ key, charge: st.size + PER_FILE_OVERHEAD, atime: Math.max(st.atimeMs, st.mtimeMs), pinned: st.nlink > 1 });
    });
  }

  /** Calls `visit` for every regular file under `dir` (key = path relative to the walk's root). */
  private async walk(dir: string, prefix: string, visit: (key: string, path: string, st: Stats) => Promise<void> | undefined): Promise<void> {
    const names = await fsp.readdir(dir, { withFileTypes: true });
    for (const d of names) {
      const key = prefix + d.name;
      const path = join(dir, d.name);
      let isDir = d.isDirectory();
      let st: Stats | undefined;
      if (!isDir && !d.isFile()) {
        // Some filesystems report no type in readdir: ask lstat. Symlinks are never ours.
        if (d.isSymbolicLink()) continue;
        try {
          st = await fsp.lstat(path);
        } catch {
          continue;
        }
        if (!st.isDirectory() && !st.isFile()) continue;
        isDir = st.isDirectory();
      }
      if (isDir) {
        this.knownDirs.add(path);
        await this.walk(path, key + '/', visit);
        continue;
      }
      try {
        st ??= await fsp.lstat(path);
      } catch {
        continue; // evicted or removed meanwhile
      }
      await visit(key, path, st);
    }
  }
}
