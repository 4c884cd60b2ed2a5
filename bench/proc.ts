/**
 * Child processes and machine state for the benchmark harness.
 *
 * Every workload runs in a child process (fio, tar, grep, find, a small node script), never as
 * synchronous calls in the harness itself: a hung mount then blocks only the child, and Ctrl-C can
 * still run the cleanups (kill the child, unmount, stop the servers).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { rm, mkdir } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { killQuietly, registerCleanup } from '../test/helpers/servers.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time of the child, start to exit. */
  seconds: number;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Throw unless the exit code is one of these (default [0]). */
  okCodes?: number[];
}

/**
 * Run a command to completion, capturing its output. The child is registered for exit-time
 * cleanup (killed before the mounts it uses are unmounted, as cleanups run last-first).
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const unregister = child.pid ? registerCleanup(() => killQuietly(child.pid!, 'SIGKILL')) : () => undefined;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30 * 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      unregister();
      reject(e);
    });
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      clearTimeout(timer);
      unregister();
      const r: RunResult = { code: code ?? (signal ? 128 : -1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), seconds };
      if (!(opts.okCodes ?? [0]).includes(r.code)) {
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${r.code}${signal ? ` (${signal})` : ''}:\n${(r.stderr || r.stdout).split('\n').slice(-30).join('\n')}`));
        return;
      }
      resolve(r);
    });
  });
}

/** Write back dirty pages and drop the page, dentry and inode caches (needs root). */
export async function dropCaches(): Promise<void> {
  await run('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Remove and recreate a directory (a disk cache dir between cold runs). */
export async function emptyDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  await mkdir(dir, { recursive: true });
}

/** 1-minute load average now; the machine is shared, so every sample records it. */
export function load1(): number {
  return os.loadavg()[0]!;
}

/** `uptime`'s line, for the run header. */
export async function uptimeLine(): Promise<string> {
  try {
    return (await run('uptime', [], { timeoutMs: 5000 })).stdout.trim();
  } catch {
    const [a, b, c] = os.loadavg();
    return `load average: ${a!.toFixed(2)}, ${b!.toFixed(2)}, ${c!.toFixed(2)}`;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
