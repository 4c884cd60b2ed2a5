/**
 * Background work of one orchestrator: the reaper (expired sessions, grants and format users;
 * unfinished deletions) and ACL reconciliation (startup, every Redis reconnect, periodically).
 * Several orchestrators may run these at once: every claim uses SKIP LOCKED or is idempotent.
 */
import type { Ctx } from './context.js';
import { expireGrants } from './platform.js';
import { expireSessions, reconcile } from './sessions.js';
import { expireFormatUsers, resumeDeletions } from './workspaces.js';

export interface JobOptions {
  reapIntervalMs: number;
  reconcileIntervalMs: number;
}

export class Jobs {
  private timers: NodeJS.Timeout[] = [];
  private reaping: Promise<void> | null = null;
  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;
  private stopped = false;

  constructor(
    private readonly ctx: Ctx,
    private readonly opts: JobOptions,
  ) {}

  start(): void {
    this.timers.push(setInterval(() => void this.reap(), this.opts.reapIntervalMs));
    this.timers.push(setInterval(() => void this.reconcile(), this.opts.reconcileIntervalMs));
    for (const t of this.timers) t.unref();
  }

  /** One reaper pass (single-flight). */
  reap(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.reaping ??= (async () => {
      try {
        await expireSessions(this.ctx);
        await expireGrants(this.ctx);
        await expireFormatUsers(this.ctx);
        await resumeDeletions(this.ctx);
      } catch (err) {
        this.ctx.log.warn({ err: String(err) }, 'reaper pass failed; will retry');
      } finally {
        this.reaping = null;
      }
    })();
    return this.reaping;
  }

  /** One reconciliation pass; a request during a pass schedules exactly one more. */
  reconcile(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reconciling) {
      this.reconcileAgain = true;
      return this.reconciling;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        try {
          await reconcile(this.ctx);
        } catch (err) {
          this.ctx.log.warn({ err: String(err) }, 'ACL reconciliation failed; will retry');
        }
      } while (this.reconcileAgain && !this.stopped);
      this.reconciling = null;
    })();
    return this.reconciling;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([this.reaping, this.reconciling]);
  }
}
