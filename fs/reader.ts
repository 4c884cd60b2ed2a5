/**
 * The read path (juicefs-format.md 5.4, 6.3): file offset → chunk index → resolved segments
 * (meta.readChunk, cached per inode) → BlockStore.read per segment; holes and gaps read as zeros.
 *
 * Chunk maps are cached per inode while it is open and dropped when the VFS learns that the file
 * changed (a different mtime seen by open/getattr/lookup, or a commit/truncate of its own).
 *
 * Readahead: each open handle has a ReadStream that detects sequential access. While a stream stays
 * sequential it keeps file-aligned blocks (BlockSize each) in memory and fetches the next ones in
 * the background; the window starts at one block and doubles on every block boundary the stream
 * crosses, up to `readaheadMax` (32 MiB). A random read resets the window and is served straight
 * from the block store (whose cache tiers do the caching). All streams together hold at most
 * `readaheadBudget` bytes; when that is reached windows halve instead of growing.
 */
import type { Meta } from '../metadata/interface.js';
import { CHUNK_SIZE, type Ino, type Slice } from '../metadata/types.js';
import type { BlockStore } from '../chunkstore/types.js';
import { enxio } from './errors.js';
import { STD } from './metrics.js';

export interface ReaderOptions {
  /** Largest readahead window of one stream (default 32 MiB). */
  readaheadMax: number;
  /** Bytes all streams may hold in readahead blocks (default 80 % of the 300 MiB buffer). */
  readaheadBudget: number;
}

export const DEFAULT_READER_OPTIONS: ReaderOptions = {
  readaheadMax: 32 << 20,
  readaheadBudget: 240 << 20,
};

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

class InodeChunks {
  readonly maps = new Map<number, Promise<Slice[]>>();
  readonly streams = new Set<ReadStream>();
}

export class Reader {
  private readonly inodes = new Map<Ino, InodeChunks>();
  readonly opts: ReaderOptions;
  readonly blockSize: number;
  /** Bytes held (or in flight) in readahead blocks, all streams. */
  raUsed = 0;

  constructor(
    private readonly meta: Meta,
    private readonly store: BlockStore,
    opts: Partial<ReaderOptions> = {},
  ) {
    this.opts = { ...DEFAULT_READER_OPTIONS, ...opts };
    this.blockSize = store.config.blockSize;
  }

  private state(ino: Ino): InodeChunks {
    let s = this.inodes.get(ino);
    if (!s) {
      s = new InodeChunks();
      this.inodes.set(ino, s);
    }
    return s;
  }

  /** Resolved segments of chunk `indx` (cached; a failed lookup is not cached). */
  chunkMap(ino: Ino, indx: number): Promise<Slice[]> {
    const st = this.state(ino);
    let p = st.maps.get(indx);
    if (!p) {
      p = this.meta.readChunk(ino, indx);
      st.maps.set(indx, p);
      p.catch(() => {
        if (st.maps.get(indx) === p) st.maps.delete(indx);
      });
    }
    return p;
  }

  /** Drop cached chunk maps (one chunk or all) and readahead data of `ino`. */
  invalidate(ino: Ino, indx?: number): void {
    const st = this.inodes.get(ino);
    if (!st) return;
    if (indx === undefined) st.maps.clear();
    else st.maps.delete(indx);
    for (const s of st.streams) s.drop(indx);
  }

  /** The last handle of `ino` closed: forget everything about it. */
  forget(ino: Ino): void {
    const st = this.inodes.get(ino);
    if (!st) return;
    for (const s of st.streams) s.close();
    this.inodes.delete(ino);
  }

  stream(ino: Ino): ReadStream {
    const s = new ReadStream(this, ino);
    this.state(ino).streams.add(s);
    return s;
  }

  /** @internal */
  detach(s: ReadStream): void {
    this.inodes.get(s.ino)?.streams.delete(s);
  }

  /**
   * Bytes [off, off+len) of the file, which the caller has clipped to the file length. Segments
   * are fetched in parallel; holes stay zero.
   */
  async readRange(ino: Ino, off: number, len: number): Promise<Buffer> {
    if (len <= 0) return Buffer.alloc(0);
    const first = Math.floor(off / CHUNK_SIZE);
    const last = Math.floor((off + len - 1) / CHUNK_SIZE);
    if (first === last) return this.readChunkRange(ino, first, off - first * CHUNK_SIZE, len);
    const out = Buffer.allocUnsafe(len);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const a = Math.max(off, i * CHUNK_SIZE);
      const b = Math.min(off + len, (i + 1) * CHUNK_SIZE);
      parts.push(
        this.readChunkRange(ino, i, a - i * CHUNK_SIZE, b - a).then((buf) => {
          buf.copy(out, a - off);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * Read [cpos, cpos+len) of chunk `indx` through the cached chunk map. A slice whose objects are
   * gone means the map is stale: compaction (by this mount or any other client) replaced those
   * slices with a new one and, with the trash off, deleted their blocks at once. The bytes are
   * still there under the new slice, so re-read the map once from the engine and retry.
   */
  private async readChunkRange(ino: Ino, indx: number, cpos: number, len: number): Promise<Buffer> {
    const cached = this.chunkMap(ino, indx);
    try {
      return await this.readInChunk(await cached, cpos, len);
    } catch (e) {
      if ((e as Error | undefined)?.name !== 'NotFoundError') throw e;
      const st = this.inodes.get(ino);
      if (st?.maps.get(indx) === cached) st.maps.delete(indx);
      return this.readInChunk(await this.chunkMap(ino, indx), cpos, len);
    }
  }

  /** Read [cpos, cpos+len) of one resolved chunk. */
  private async readInChunk(segs: readonly Slice[], cpos: number, len: number): Promise<Buffer> {
    const end = cpos + len;
    // Fast path: one data segment covers the whole range — hand the block store's buffer through.
    for (const s of segs) {
      if (s.pos <= cpos && s.pos + s.len >= end) {
        if (s.id === 0) return Buffer.alloc(len);
        return this.readSlice(s, s.off + (cpos - s.pos), len);
      }
      if (s.pos > cpos) break;
    }
    const out = Buffer.alloc(len); // zeros for holes and for the tail beyond the last segment
    const parts: Promise<void>[] = [];
    for (const s of segs) {
      const se = s.pos + s.len;
      if (se <= cpos) continue;
      if (s.pos >= end) break;
      if (s.id === 0) continue;
      const a = Math.max(s.pos, cpos);
      const b = Math.min(se, end);
      parts.push(
        this.readSlice(s, s.off + (a - s.pos), b - a).then((buf) => {
          buf.copy(out, a - cpos);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  private async readSlice(s: Slice, off: number, len: number): Promise<Buffer> {
    const buf = await this.store.read(s.id, s.size, off, len);
    if (buf.length !== len) {
      // A short read means a block shorter than its key says: never return partial data as if whole.
      throw new Error(`short read of slice ${s.id}: ${buf.length} of ${len} bytes at ${off}`);
    }
    return buf;
  }

  /**
   * lseek SEEK_DATA / SEEK_HOLE from the chunk maps: data is any segment with a slice id; holes
   * are id-0 segments, unpainted gaps and everything past the last segment. EOF is a hole.
   */
  async seek(ino: Ino, off: number, fileLength: number, whence: number): Promise<number> {
    if (off >= fileLength || off < 0) throw enxio();
    const last = Math.floor((fileLength - 1) / CHUNK_SIZE);
    for (let i = Math.floor(off / CHUNK_SIZE); i <= last; i++) {
      const base = i * CHUNK_SIZE;
      const segs = await this.chunkMap(ino, i);
      let pos = Math.max(off, base) - base; // chunk-relative scan position
      const limit = Math.min(CHUNK_SIZE, fileLength - base);
      for (const s of segs) {
        const se = s.pos + s.len;
        if (se <= pos) continue;
        if (s.pos >= limit) break;
        if (whence === SEEK_DATA) {
          if (s.id !== 0) return base + Math.max(pos, s.pos);
        } else {
          if (s.pos > pos || s.id === 0) return base + pos; // a gap before s, or s is a hole
          pos = se;
          if (pos >= limit) break;
        }
      }
      if (whence === SEEK_HOLE && pos < limit) return base + pos; // after the last segment
    }
    if (whence === SEEK_DATA) throw enxio();
    return fileLength;
  }
}

interface RaBlock {
  p: Promise<Buffer>;
  /** Bytes requested (the block clipped to the file length when fetched). */
  size: number;
  /** Set when the fetch failed: the entry is dropped and refetched on demand. */
  failed?: boolean;
}

/** Per-handle sequential-stream detector with readahead. */
export class ReadStream {
  private expected = -1;
  private window = 0;
  private lastGrowBlock = -1;
  private readonly blocks = new Map<number, RaBlock>();
  private closed = false;

  constructor(
    private readonly reader: Reader,
    readonly ino: Ino,
  ) {}

  /** Read [off, off+len) of a file currently `fileLength` bytes long. */
  async read(off: number, len: number, fileLength: number): Promise<Buffer> {
    if (off >= fileLength || len <= 0) return Buffer.alloc(0);
    if (off + len > fileLength) len = fileLength - off;
    const bs = this.reader.blockSize;
    const sequential = off === 0 || (this.expected >= 0 && Math.abs(off - this.expected) <= bs);
    this.expected = off + len;
    if (!sequential) {
      this.window = 0;
      this.drop();
      return this.reader.readRange(this.ino, off, len);
    }
    const firstB = Math.floor(off / bs);
    const lastB = Math.floor((off + len - 1) / bs);
    if (lastB > this.lastGrowBlock) {
      this.lastGrowBlock = lastB;
      this.grow();
    }
    // Drop blocks the stream has moved past.
    for (const k of this.blocks.keys()) if (k < firstB - 1) this.release(k);
    const bufs: Promise<Buffer>[] = [];
    for (let k = firstB; k <= lastB; k++) bufs.push(this.block(k, fileLength, true));
    this.readahead(lastB + 1, fileLength);
    if (firstB === lastB) {
      const b = await bufs[0]!;
      const start = off - firstB * bs;
      return b.subarray(start, start + len);
    }
    const out = Buffer.allocUnsafe(len);
    let at = 0;
    for (let k = firstB; k <= lastB; k++) {
      const b = await bufs[k - firstB]!;
      const bStart = k * bs;
      const a = Math.max(off, bStart) - bStart;
      const e = Math.min(off + len, bStart + bs) - bStart;
      b.copy(out, at, a, e);
      at += e - a;
    }
    return out;
  }

  /** Fetch the first block of a small file ahead of the first read (interactive profile). */
  prefetch(fileLength: number): void {
    if (fileLength > 0 && fileLength <= this.reader.blockSize) this.block(0, fileLength, false);
  }

  private grow(): void {
    const bs = this.reader.blockSize;
    const r = this.reader;
    if (r.raUsed + bs > r.opts.readaheadBudget) {
      this.window = Math.max(0, Math.floor(this.window / 2 / bs) * bs);
      return;
    }
    this.window = this.window === 0 ? bs : Math.min(this.window * 2, r.opts.readaheadMax);
  }

  private readahead(fromBlock: number, fileLength: number): void {
    const bs = this.reader.blockSize;
    const n = Math.floor(this.window / bs);
    for (let k = fromBlock; k < fromBlock + n; k++) {
      if (k * bs >= fileLength) break;
      if (this.blocks.has(k)) continue;
      if (this.reader.raUsed + bs > this.reader.opts.readaheadBudget) break;
      this.block(k, fileLength, false);
    }
  }

  /** File block `k` (clipped to the file length), fetched once and kept for the stream. */
  private block(k: number, fileLength: number, demand: boolean): Promise<Buffer> {
    const bs = this.reader.blockSize;
    const want = Math.min(bs, fileLength - k * bs);
    const have = this.blocks.get(k);
    if (have && !have.failed && have.size >= want) return have.p;
    if (have) this.release(k);
    const p = this.reader.readRange(this.ino, k * bs, want);
    const e: RaBlock = { p, size: want };
    this.blocks.set(k, e);
    this.reader.raUsed += want;
    STD.readaheadUsed.set(this.reader.raUsed);
    p.catch(() => {
      e.failed = true;
      if (this.blocks.get(k) === e) this.release(k);
    });
    if (!demand) p.catch(() => {}); // a failed readahead surfaces only if the block is read
    return p;
  }

  private release(k: number): void {
    const e = this.blocks.get(k);
    if (!e) return;
    this.blocks.delete(k);
    this.reader.raUsed -= e.size;
    STD.readaheadUsed.set(this.reader.raUsed);
  }

  /** Drop readahead data: all of it, or the blocks of chunk `indx`. */
  drop(indx?: number): void {
    const bs = this.reader.blockSize;
    for (const k of [...this.blocks.keys()]) {
      if (indx === undefined || Math.floor((k * bs) / CHUNK_SIZE) === indx) this.release(k);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    this.reader.detach(this);
  }
}
