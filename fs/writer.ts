/**
 * The write path (juicefs-format.md 5.5, 6.4): per file, per 64 MiB chunk, a list of slices being
 * written. A slice is one contiguous run of bytes with its own id; its blocks are uploaded by a
 * SliceWriter as they fill, and only once every block is stored is the slice committed to the
 * metadata engine (meta.writeSlice: RPUSH the 24-byte record, new length, new mtime).
 *
 * Rules:
 * - A write goes into the newest slice of its chunk that can take it: it must start inside the
 *   slice's still-writable region (from the last block handed to upload up to the slice's end) and
 *   no newer slice may overlap it. Otherwise it starts a new slice (id from meta.newSliceId()).
 *   Contiguous appends therefore extend one slice; random writes create many.
 * - A slice never crosses a chunk boundary; reaching the chunk end freezes it.
 * - A slice is frozen (no more writes) and committed: when it reaches the chunk end, 5 s after it
 *   started, after 1 s without writes (and ≥ 1 s old), when the file has too many pending slices,
 *   under buffer pressure, and on flush/fsync/close. Freezing a slice freezes every older open slice
 *   of the same chunk, and the slices of a chunk are committed strictly in creation order (later
 *   slices must land later in the list so they paint over earlier ones).
 * - Upload failure: the slice is aborted (its stored blocks deleted) and never committed; the
 *   error is recorded on the file (errSeq) and reported by the VFS on the next write/flush/fsync/
 *   close of each handle. Commit failure: a MetaError (ENOSPC, EDQUOT, ENOENT...) means the
 *   transaction did not happen, so the blocks are deleted; any other error (connection lost) may
 *   have committed, so after retries the blocks are left for `gc` rather than risk deleting live data.
 * - Memory: bytes of slices not yet committed are counted against `bufferSize`; a write waits
 *   (after freezing the oldest slices) while the total is above it.
 */
import type { Meta } from '../metadata/interface.js';
import { CHUNK_SIZE, type Ino, MetaError, metaErr } from '../metadata/types.js';
import type { BlockStore, SliceWriter } from '../chunkstore/types.js';
import { STD } from './metrics.js';

/** 2^57: ChunkSize << 31 (juicefs-format.md 3). */
export const MAX_FILE_SIZE = CHUNK_SIZE * 2 ** 31;
import { Mutex, type Timespec, deferred, nowTimespec, sleep } from './util.js';

export interface WriterOptions {
  /** Total bytes of uncommitted slices before writers wait (default 300 MiB). */
  bufferSize: number;
  /** Commit a slice this long after it started (default 5000 ms). */
  commitAfterMs: number;
  /** Commit a slice idle this long (and at least this old) (default 1000 ms). */
  idleMs: number;
  /** Period of the timer that applies the two rules above (default 100 ms). */
  tickMs: number;
  /** Pending slices per file before the oldest are frozen (800) / before writers wait (1000). */
  flushPendingSlices: number;
  maxPendingSlices: number;
  /** Retries of a commit that failed with a non-POSIX (connection) error. */
  commitRetries: number;
}

export const DEFAULT_WRITER_OPTIONS: WriterOptions = {
  bufferSize: 300 << 20,
  commitAfterMs: 5000,
  idleMs: 1000,
  tickMs: 100,
  flushPendingSlices: 800,
  maxPendingSlices: 1000,
  commitRetries: 10,
};

export interface WriterHooks {
  /** A slice of `ino` was committed to chunk `indx`: cached chunk maps of it are stale. */
  onCommit?(ino: Ino, indx: number, fileEnd: number, mtime: Timespec): void;
}

type SliceState = 'open' | 'frozen' | 'committed' | 'failed';

class PendingSlice {
  state: SliceState = 'open';
  /** Bytes of the slice (its size once frozen). */
  len = 0;
  /** Slice offset below which blocks were handed to the uploader (no longer writable). */
  flushed = 0;
  readonly started: number;
  lastWrite: number;
  mtime: Timespec;
  /** Resolves when the slice is committed or has failed (never rejects). */
  readonly done = deferred<void>();
  finishing?: Promise<void>;

  constructor(
    readonly chunk: ChunkWriter,
    readonly id: number,
    /** Chunk offset where the slice starts. */
    readonly pos: number,
    readonly sw: SliceWriter,
    now: number,
  ) {
    this.started = now;
    this.lastWrite = now;
    this.mtime = nowTimespec();
  }
}

class ChunkWriter {
  /** Uncommitted slices, oldest first. */
  readonly slices: PendingSlice[] = [];
  /** Commits of this chunk run one after another in creation order. */
  chain: Promise<void> = Promise.resolve();
  constructor(
    readonly file: FileWriter,
    readonly indx: number,
  ) {}
}

export class FileWriter {
  readonly chunks = new Map<number, ChunkWriter>();
  /** Serialises writes (and their slice choice) to this file. */
  readonly lock = new Mutex();
  /** Highest end offset written through this writer (or set by truncate). */
  length = 0;
  /** Uncommitted slices of this file. */
  pending = 0;
  /** Incremented on every failed slice; handles remember the value they last reported. */
  errSeq = 0;
  lastError?: MetaError;
  /** Waiters for `pending` to drop below the per-file maximum. */
  slotWaiters: Array<() => void> = [];
  /** No handle uses this state any more: drop it once the last pending slice is done. */
  orphaned = false;
  constructor(readonly ino: Ino) {}
}

export class Writer {
  private readonly files = new Map<Ino, FileWriter>();
  private readonly opts: WriterOptions;
  private readonly blockSize: number;
  /** Bytes of uncommitted slices. */
  private used = 0;
  private releaseWaiters: Array<() => void> = [];
  private ticker?: NodeJS.Timeout;
  private openSlices = 0;
  private closed = false;

  constructor(
    private readonly meta: Meta,
    private readonly store: BlockStore,
    opts: Partial<WriterOptions> = {},
    private readonly hooks: WriterHooks = {},
  ) {
    this.opts = { ...DEFAULT_WRITER_OPTIONS, ...opts };
    this.blockSize = store.config.blockSize;
  }

  get bufferUsed(): number {
    return this.used;
  }

  file(ino: Ino): FileWriter | undefined {
    return this.files.get(ino);
  }

  /** The writer state of `ino`, created on demand (holds the error sequence for handles). */
  open(ino: Ino, length: number): FileWriter {
    let f = this.files.get(ino);
    if (!f) {
      f = new FileWriter(ino);
      f.length = length;
      this.files.set(ino, f);
    } else if (f.pending === 0) {
      f.length = length;
    }
    f.orphaned = false;
    return f;
  }

  /** Length including uncommitted writes, or undefined when nothing is pending. */
  pendingLength(ino: Ino): number | undefined {
    const f = this.files.get(ino);
    return f && f.pending > 0 ? f.length : undefined;
  }

  /** Whether chunks [first, last] of `ino` (all when omitted) hold uncommitted slices. */
  hasPending(ino: Ino, first = 0, last = Number.MAX_SAFE_INTEGER): boolean {
    const f = this.files.get(ino);
    if (!f || f.pending === 0) return false;
    for (const [i, c] of f.chunks) if (i >= first && i <= last && c.slices.length > 0) return true;
    return false;
  }

  /**
   * Write `data` at file offset `off` — or, for O_APPEND, at the offset `off()` returns, evaluated
   * under the file's write lock so concurrent appenders never pick the same offset. Resolves with
   * the offset used, once the bytes are buffered (not yet durable).
   */
  async write(ino: Ino, off: number | ((f: FileWriter) => number), data: Buffer): Promise<number> {
    if (this.closed) throw metaErr('EIO', 'writer closed');
    if (this.used > this.opts.bufferSize) await this.waitForBuffer();
    const f = this.files.get(ino) ?? this.open(ino, 0);
    if (f.pending >= this.opts.maxPendingSlices) await this.waitForSlot(f);
    return f.lock.run(async () => {
      const at = typeof off === 'number' ? off : off(f);
      if (at + data.length > MAX_FILE_SIZE) throw metaErr('EFBIG');
      await this.writeLocked(f, at, data);
      return at;
    });
  }

  /** The body of write(), for callers already holding `f.lock`. */
  async writeLocked(f: FileWriter, off: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const at = off + done;
      const indx = Math.floor(at / CHUNK_SIZE);
      const cpos = at - indx * CHUNK_SIZE;
      const n = Math.min(data.length - done, CHUNK_SIZE - cpos);
      await this.writeChunk(f, indx, cpos, done === 0 && n === data.length ? data : data.subarray(done, done + n));
      done += n;
    }
    if (off + data.length > f.length) f.length = off + data.length;
  }

  private async writeChunk(f: FileWriter, indx: number, cpos: number, data: Buffer): Promise<void> {
    let c = f.chunks.get(indx);
    if (!c) {
      c = new ChunkWriter(f, indx);
      f.chunks.set(indx, c);
    }
    const end = cpos + data.length;
    let s: PendingSlice | undefined;
    for (let i = c.slices.length - 1; i >= 0; i--) {
      const t = c.slices[i]!;
      if (t.state === 'open' && cpos >= t.pos + t.flushed && cpos <= t.pos + t.len) {
        s = t;
        break;
      }
      // A newer slice overlapping the range would be painted over by an older one: start anew.
      if (cpos < t.pos + t.len && t.pos < end) break;
    }
    if (!s) {
      const id = await this.meta.newSliceId();
      s = new PendingSlice(c, id, cpos, this.store.newWriter(id), Date.now());
      c.slices.push(s);
      f.pending++;
      this.openSlices++;
      this.startTicker();
    }
    const so = cpos - s.pos;
    try {
      s.sw.write(so, data);
    } catch (e) {
      // The slice writer refused the bytes (closed after a failed upload...): fail the slice.
      this.freeze(s);
      throw e instanceof MetaError ? e : metaErr('EIO', `slice write: ${(e as Error).message}`);
    }
    const grow = so + data.length - s.len;
    if (grow > 0) {
      s.len += grow;
      this.used += grow;
      STD.bufferUsed.set(this.used);
    }
    s.lastWrite = Date.now();
    s.mtime = nowTimespec();
    if (s.pos + s.len >= CHUNK_SIZE) {
      this.freeze(s);
    } else if (s.len - s.flushed >= this.blockSize) {
      const to = Math.floor(s.len / this.blockSize) * this.blockSize;
      s.flushed = to;
      s.sw.flushTo(to);
    }
    if (f.pending > this.opts.flushPendingSlices) this.freezeOldest(f, Math.ceil(f.pending / 2));
  }

  /** Freeze `s` (and every older open slice of its chunk) and queue its commit. */
  private freeze(s: PendingSlice): void {
    if (s.state !== 'open') return;
    const c = s.chunk;
    for (const t of c.slices) {
      if (t === s) break;
      if (t.state === 'open') this.freeze(t);
    }
    s.state = 'frozen';
    this.openSlices--;
    // Upload the tail now, in parallel with older slices' commits.
    const finishing = s.len > 0 ? s.sw.finish(s.len) : Promise.resolve();
    finishing.catch(() => {}); // handled in commit(); avoid an unhandled rejection meanwhile
    s.finishing = finishing;
    // commit() settles s.done whatever happens; the catch only keeps the chain alive for later slices.
    c.chain = c.chain.then(() => this.commit(s)).catch(() => {});
  }

  private async commit(s: PendingSlice): Promise<void> {
    const c = s.chunk;
    const f = c.file;
    let committed = false;
    try {
      if (s.len === 0) {
        committed = true; // nothing to record (a slice whose only write failed)
        await s.sw.abort().catch(() => {});
        return;
      }
      try {
        await s.finishing;
      } catch (e) {
        await s.sw.abort().catch(() => {});
        this.fail(f, metaErr('EIO', `upload of slice ${s.id} failed: ${(e as Error).message}`));
        return;
      }
      const rec = { pos: s.pos, id: s.id, size: s.len, off: 0, len: s.len };
      for (let attempt = 0; ; attempt++) {
        try {
          await this.meta.writeSlice(f.ino, c.indx, s.pos, rec, s.mtime);
          committed = true;
          break;
        } catch (e) {
          if (e instanceof MetaError) {
            // The transaction did not happen: the blocks are unreferenced, delete them.
            await this.store.remove(s.id, s.len).catch(() => {});
            this.fail(f, e);
            return;
          }
          if (attempt >= this.opts.commitRetries || this.closed) {
            // Unknown outcome: leave the blocks (gc removes them if the record never landed).
            this.fail(f, metaErr('EIO', `commit of slice ${s.id} failed: ${(e as Error).message}`));
            return;
          }
          await sleep(Math.min(5000, 50 * 2 ** attempt));
        }
      }
      try {
        this.hooks.onCommit?.(f.ino, c.indx, c.indx * CHUNK_SIZE + s.pos + s.len, s.mtime);
      } catch {
        // a cache-invalidation hook must not turn a committed slice into a failed one
      }
    } finally {
      s.state = committed ? 'committed' : 'failed';
      const i = c.slices.indexOf(s);
      if (i >= 0) c.slices.splice(i, 1);
      if (c.slices.length === 0 && f.chunks.get(c.indx) === c) f.chunks.delete(c.indx);
      f.pending--;
      if (f.pending === 0 && f.orphaned && this.files.get(f.ino) === f && !f.lock.locked) this.files.delete(f.ino);
      this.used -= s.len;
      STD.bufferUsed.set(this.used);
      if (f.pending < this.opts.maxPendingSlices && f.slotWaiters.length > 0) {
        const w = f.slotWaiters;
        f.slotWaiters = [];
        for (const r of w) r();
      }
      if (this.releaseWaiters.length > 0) {
        const w = this.releaseWaiters;
        this.releaseWaiters = [];
        for (const r of w) r();
      }
      s.done.resolve();
    }
  }

  private fail(f: FileWriter, e: MetaError): void {
    f.errSeq++;
    f.lastError = e;
  }

  private freezeOldest(f: FileWriter, count: number): void {
    const open: PendingSlice[] = [];
    for (const c of f.chunks.values()) for (const s of c.slices) if (s.state === 'open') open.push(s);
    open.sort((a, b) => a.started - b.started);
    for (const s of open.slice(0, count)) this.freeze(s);
  }

  private waitForSlot(f: FileWriter): Promise<void> {
    this.freezeOldest(f, f.pending);
    return new Promise((r) => f.slotWaiters.push(r));
  }

  /** Back-pressure: freeze the oldest open slices until enough bytes are on their way out, then wait. */
  private async waitForBuffer(): Promise<void> {
    while (this.used > this.opts.bufferSize && !this.closed) {
      let frozenBytes = 0;
      const open: PendingSlice[] = [];
      for (const f of this.files.values()) {
        for (const c of f.chunks.values()) {
          for (const s of c.slices) {
            if (s.state === 'open') open.push(s);
            else frozenBytes += s.len;
          }
        }
      }
      const excess = this.used - this.opts.bufferSize;
      if (frozenBytes < excess) {
        open.sort((a, b) => a.started - b.started);
        for (const s of open) {
          if (frozenBytes >= excess) break;
          frozenBytes += s.len;
          this.freeze(s);
        }
      }
      await new Promise<void>((r) => this.releaseWaiters.push(r));
    }
  }

  /**
   * Freeze and commit every pending slice of `ino` (of chunks [first, last] only, if given) and
   * wait for them. Never rejects: failures are recorded in the file's errSeq/lastError.
   */
  async flush(ino: Ino, first = 0, last = Number.MAX_SAFE_INTEGER): Promise<void> {
    const f = this.files.get(ino);
    if (!f || f.pending === 0) return;
    // Let writes already queued on the file land first, then freeze what exists.
    const waits = await f.lock.run(() => this.freezeAll(f, first, last));
    await Promise.all(waits);
  }

  /** flush() for callers already holding `f.lock` (truncate): commits everything pending. */
  async flushLocked(f: FileWriter): Promise<void> {
    await Promise.all(this.freezeAll(f, 0, Number.MAX_SAFE_INTEGER));
  }

  private freezeAll(f: FileWriter, first: number, last: number): Promise<void>[] {
    const w: Promise<void>[] = [];
    for (const [i, c] of f.chunks) {
      if (i < first || i > last) continue;
      for (const s of c.slices) {
        this.freeze(s);
        w.push(s.done.promise);
      }
    }
    return w;
  }

  /** Flush every file (unmount). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.files.keys()].map((ino) => this.flush(ino)));
  }

  /** The file was truncated to `length` (after a flush): writes beyond it are gone. */
  truncated(ino: Ino, length: number): void {
    const f = this.files.get(ino);
    if (f) f.length = length;
  }

  /** Forget the state of `ino` if nothing is pending (last handle closed). */
  release(ino: Ino): void {
    const f = this.files.get(ino);
    if (!f) return;
    if (f.pending === 0 && !f.lock.locked) this.files.delete(ino);
    else f.orphaned = true;
  }

  /** Stop the timer; pending slices should have been flushed (flushAll) first. */
  close(): void {
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const r of this.releaseWaiters) r();
    this.releaseWaiters = [];
  }

  private startTicker(): void {
    if (this.ticker || this.closed) return;
    this.ticker = setInterval(() => this.tick(), this.opts.tickMs);
    this.ticker.unref();
  }

  /** Apply the commit timers: 5 s after start, 1 s idle (and ≥ 1 s old). */
  private tick(): void {
    if (this.openSlices === 0) {
      // Only open slices need timers; the next new slice restarts the ticker.
      if (this.ticker) clearInterval(this.ticker);
      this.ticker = undefined;
      return;
    }
    const now = Date.now();
    const { commitAfterMs, idleMs } = this.opts;
    for (const f of this.files.values()) {
      for (const c of f.chunks.values()) {
        for (const s of c.slices) {
          if (s.state !== 'open') continue;
          const age = now - s.started;
          if (age >= commitAfterMs || (now - s.lastWrite >= idleMs && age >= idleMs)) this.freeze(s);
        }
      }
    }
  }
}
