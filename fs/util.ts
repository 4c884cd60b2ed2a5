/**
 * Small helpers shared by the VFS modules: a FIFO async mutex and a strictly increasing wall clock
 * for mtimes.
 */

/** FIFO async mutex: `run` executes critical sections one at a time, in call order. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = 0;
  get locked(): boolean {
    return this.held > 0;
  }
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.held++;
    const p = this.tail.then(fn);
    // The next holder waits for this one whatever its outcome.
    this.tail = p.then(
      () => {
        this.held--;
      },
      () => {
        this.held--;
      },
    );
    return p;
  }
}

export interface Timespec {
  sec: number;
  nsec: number;
}

let lastNs = 0n;

/**
 * Wall-clock time with nanoseconds, strictly increasing within this process. Every data commit must
 * change mtime (including nsec): upstream readers drop their cached chunk maps only when they see a
 * different mtime, so two commits in the same millisecond must not carry the same value.
 */
export function nowTimespec(): Timespec {
  // Date.now() gives the wall clock in ms; hrtime supplies sub-millisecond digits.
  const ms = BigInt(Date.now());
  const sub = process.hrtime.bigint() % 1_000_000n;
  let ns = ms * 1_000_000n + sub;
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A promise with its resolve function exposed. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}
