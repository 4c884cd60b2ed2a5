/**
 * Writeback staging (upstream's `--writeback`, juicefs-format.md 6.4): a finished block is written
 * to the disk cache's `rawstaging/<block key>` (and linked into `raw/`), the slice is committed to
 * metadata at once, and the block is uploaded in the background.
 *
 * - Uploads retry without end (exponential backoff) while the process runs; a block whose upload
 *   fails keeps its staging file, so nothing is lost if the object store is down for a while or
 *   the process dies: `recover()` (at startup) queues every file found under rawstaging/ — ours or
 *   an upstream client's, the layout is the same.
 * - Until its upload succeeded a staged block is read from its file (`read()`), never from the
 *   object store, where it does not exist yet.
 * - `stage()` answers false when the disk cache cannot take the block (size limit, free-space
 *   floor, ENOSPC): the caller then uploads synchronously, as without writeback.
 * - `cancel()` (the slice was aborted, or deleted before its upload) forgets the block: its upload
 *   is not started any more, or waited for, so the caller's object delete comes after it.
 */
import { blockLengthOfKey } from './checksum.js';
import type { DiskBlockCache } from './disk.js';

export interface StagingOptions {
  /** Where blocks are staged. */
  disk: DiskBlockCache;
  /** Stores one plaintext block in the object store (compression, retries: the block store's). */
  upload: (key: string, block: Buffer) => Promise<void>;
  /** Concurrent background uploads (default 8). */
  concurrency?: number;
  /** First delay before retrying a failed upload, doubled per failure (default 1 s). */
  retryBaseMs?: number;
  /** Retry delay cap (default 30 s). */
  retryMaxMs?: number;
  /** Staged blocks kept in memory for their upload; beyond this they are read back from disk (default 64 MiB). */
  maxHeldBytes?: number;
  log?: (message: string) => void;
}

/** Counters (monotonic) and gauges (`pending*`) of the staging area. */
export interface StagingStats {
  staged: number;
  stagedBytes: number;
  uploaded: number;
  uploadedBytes: number;
  /** Upload attempts that failed (each is retried later). */
  uploadFailures: number;
  /** Blocks that could not be staged and were uploaded synchronously by the caller. */
  refused: number;
  /** Staged blocks found at startup. */
  recovered: number;
  /** Staged files that fail verification: kept on disk, never uploaded. */
  corrupt: number;
  /** Blocks staged and not yet uploaded. */
  pending: number;
  pendingBytes: number;
}

interface Job {
  key: string;
  size: number;
  /** The block while held in memory; otherwise read back from the staging file. */
  block: Buffer | undefined;
  failures: number;
  /** The running upload attempt. */
  running: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  cancelled: boolean;
}

export class WritebackStaging {
  private readonly disk: DiskBlockCache;
  private readonly upload: (key: string, block: Buffer) => Promise<void>;
  private readonly concurrency: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly maxHeldBytes: number;
  private readonly log: (message: string) => void;

  private readonly jobs = new Map<string, Job>();
  private readonly ready: Job[] = [];
  private active = 0;
  private held = 0;
  private closed = false;
  private waiters: Array<() => void> = [];
  private readonly counters = { staged: 0, stagedBytes: 0, uploaded: 0, uploadedBytes: 0, uploadFailures: 0, refused: 0, recovered: 0, corrupt: 0 };

  constructor(o: StagingOptions) {
    this.disk = o.disk;
    this.upload = o.upload;
    this.concurrency = Math.max(1, o.concurrency ?? 8);
    this.retryBaseMs = o.retryBaseMs ?? 1000;
    this.retryMaxMs = o.retryMaxMs ?? 30_000;
    this.maxHeldBytes = o.maxHeldBytes ?? 64 << 20;
    this.log = o.log ?? (() => undefined);
  }

  /**
   * Stages `block` (never modified afterwards by the caller) and queues its upload. False: not
   * staged (no room, disk error, closed) — the caller must upload it now.
   */
  async stage(key: string, block: Buffer): Promise<boolean> {
    if (this.closed || this.jobs.has(key) || !(await this.disk.stage(key, block))) {
      this.counters.refused++;
      return false;
    }
    this.counters.staged++;
    this.counters.stagedBytes += block.length;
    this.enqueue(key, block.length, block);
    return true;
  }

  /** True while `key` is staged and not yet uploaded. */
  has(key: string): boolean {
    return this.jobs.has(key);
  }

  /** The staged block of `key` (memory or staging file), or undefined if there is none (or it is corrupt). */
  async read(key: string): Promise<Buffer | undefined> {
    const job = this.jobs.get(key);
    if (job?.block !== undefined) return job.block;
    try {
      return await this.disk.readStaged(key);
    } catch {
      return undefined; // not staged (any more): the caller goes to the object store
    }
  }

  /** Forget `key`: no upload starts any more; resolves after a running one settled, with both cache names removed. */
  async cancel(key: string): Promise<void> {
    const job = this.jobs.get(key);
    if (job === undefined) return;
    job.cancelled = true;
    if (job.timer !== undefined) clearTimeout(job.timer);
    this.finishJob(job);
    await job.running?.catch(() => undefined);
    await this.disk.dropStaged(key);
  }

  /** Queues every block found under rawstaging/ (after a crash or an unmount that did not wait); the count found. */
  async recover(): Promise<number> {
    await this.disk.ready;
    const keys = await this.disk.listStaged();
    let n = 0;
    for (const key of keys) {
      if (this.closed || this.jobs.has(key)) continue;
      this.enqueue(key, Math.max(0, blockLengthOfKey(key)), undefined);
      n++;
    }
    this.counters.recovered += n;
    if (n > 0) this.log(`writeback: ${n} staged block(s) found, uploading`);
    return n;
  }

  stats(): StagingStats {
    let pendingBytes = 0;
    for (const j of this.jobs.values()) pendingBytes += j.size;
    return { ...this.counters, pending: this.jobs.size, pendingBytes };
  }

  /**
   * Resolves when nothing is staged any more, or after `timeoutMs`, or as soon as an upload fails
   * (the store is unreachable: waiting longer only delays an unmount). True if everything is uploaded.
   */
  async flush(timeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (this.jobs.size === 0) return true;
    const failures = this.counters.uploadFailures;
    const deadline = Date.now() + timeoutMs;
    while (this.jobs.size > 0 && this.counters.uploadFailures === failures && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(1000, Math.max(0, deadline - Date.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.jobs.size === 0;
  }

  /**
   * Stops: no new staging, no new upload attempts; waits for running ones. What is still staged
   * stays on disk for the next start.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.jobs.values()) if (j.timer !== undefined) clearTimeout(j.timer);
    await Promise.all([...this.jobs.values()].map((j) => j.running?.catch(() => undefined)));
    this.wake();
  }

  // ---------------------------------------------------------------- uploads

  private enqueue(key: string, size: number, block: Buffer | undefined): void {
    let keep = block;
    if (keep !== undefined && this.held + keep.length > this.maxHeldBytes) keep = undefined;
    if (keep !== undefined) this.held += keep.length;
    const job: Job = { key, size, block: keep, failures: 0, running: undefined, timer: undefined, cancelled: false };
    this.jobs.set(key, job);
    this.ready.push(job);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.active < this.concurrency && this.ready.length > 0) {
      const job = this.ready.shift()!;
      if (job.cancelled) continue;
      this.active++;
      job.running = this.attempt(job).finally(() => {
        job.running = undefined;
        this.active--;
        this.pump();
        this.wake();
      });
    }
  }

  private async attempt(job: Job): Promise<void> {
    let block = job.block;
    if (block === undefined) {
      try {
        block = await this.disk.readStaged(job.key);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          // Gone from rawstaging/ (another client sharing the cache dir uploaded it): nothing to do.
          this.finishJob(job);
          return;
        }
        return this.failed(job, err);
      }
      if (block === undefined) {
        // Uploading unverifiable bytes would turn local corruption into shared corruption.
        this.counters.corrupt++;
        this.log(`writeback: staged block ${job.key} is corrupt; kept in rawstaging/, not uploaded`);
        this.finishJob(job);
        return;
      }
    }
    if (job.cancelled) return;
    try {
      await this.upload(job.key, block);
    } catch (err) {
      return this.failed(job, err);
    }
    this.counters.uploaded++;
    this.counters.uploadedBytes += block.length;
    if (job.cancelled) return; // cancel() removes the files and the caller deletes the object
    this.finishJob(job);
    await this.disk.unstage(job.key);
  }

  private failed(job: Job, err: unknown): void {
    this.counters.uploadFailures++;
    job.failures++;
    if (job.failures === 1 || job.failures % 10 === 0) {
      this.log(`writeback: upload of ${job.key} failed (${job.failures}×, kept staged): ${(err as Error)?.message ?? String(err)}`);
    }
    if (this.closed || job.cancelled) return;
    const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(job.failures - 1, 20));
    job.timer = setTimeout(() => {
      job.timer = undefined;
      if (job.cancelled || this.closed) return;
      this.ready.push(job);
      this.pump();
    }, cap / 2 + Math.random() * (cap / 2));
    job.timer.unref();
  }

  private finishJob(job: Job): void {
    if (this.jobs.get(job.key) !== job) return;
    this.jobs.delete(job.key);
    if (job.block !== undefined) {
      this.held -= job.block.length;
      job.block = undefined;
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
