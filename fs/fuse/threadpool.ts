/**
 * libuv threadpool sizing for the FUSE server.
 *
 * Every read outstanding on /dev/fuse parks one threadpool thread in the kernel until a request
 * arrives, and the disk block cache, DNS lookups and zlib need threads too. libuv reads
 * UV_THREADPOOL_SIZE once, when the pool first starts — and under an ES-module entry point Node has
 * already used the pool to load modules before any of our code runs. So the size must be in the
 * environment when Node starts: the process that hosts the FUSE server is launched with it set, or
 * it relaunches itself once (`ensureThreadpool`).
 */
import { spawn } from 'node:child_process';

/** Pool size for a mount daemon: 8 FUSE readers + 8 threads for cache I/O and the rest. */
export const FUSE_THREADPOOL_SIZE = 16;

export function threadpoolSize(): number {
  return Number(process.env.UV_THREADPOOL_SIZE) || 4;
}

/** Environment for spawning a process that will host a FUSE server. */
export function fuseServerEnv(base: NodeJS.ProcessEnv = process.env, size = FUSE_THREADPOOL_SIZE): NodeJS.ProcessEnv {
  const current = Number(base.UV_THREADPOOL_SIZE) || 0;
  return { ...base, UV_THREADPOOL_SIZE: String(Math.max(current, size)) };
}

/**
 * Make sure this process runs with a threadpool of at least `size`. If it does, resolves at once.
 * Otherwise it re-executes the same command line with UV_THREADPOOL_SIZE set, forwards signals,
 * and exits with the child's status — so the returned promise never resolves in that case.
 * Call it first thing in a command that is about to mount (before opening /dev/fuse: this process
 * must not have reads pending when it exits).
 */
export async function ensureThreadpool(size = FUSE_THREADPOOL_SIZE): Promise<void> {
  if (threadpoolSize() >= size) return;
  if (process.env.ARTIFACTS_THREADPOOL_RELAUNCHED === '1') {
    // Never loop: the child already had the variable; run with what we have.
    return;
  }
  const env = { ...fuseServerEnv(process.env, size), ARTIFACTS_THREADPOOL_RELAUNCHED: '1' };
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as NodeJS.Signals[]) {
    const h = (): void => {
      child.kill(sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  await new Promise<never>(() => {
    child.on('exit', (code, signal) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      if (signal) process.kill(process.pid, signal);
      else process.exit(code ?? 1);
    });
  });
}
