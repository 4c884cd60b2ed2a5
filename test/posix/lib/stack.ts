/**
 * The real stack for POSIX tests: a real redis-server, a volume formatted on a real object store
 * (a file bucket, or SeaweedFS S3), and `artifacts mount` daemons started exactly as a user starts
 * them (the CLI's foreground daemon, `cli/main.ts mount -f`, run from source with tsx so a stale
 * dist/ can never be what is tested), mounted through the kernel.
 *
 * Every mount is unmounted by `unmount()` (SIGTERM: the daemon flushes, ends its session and
 * unmounts, as `artifacts unmount` does), at worker exit (registerCleanup: lazy unmount + SIGKILL
 * of the daemon by PID), and by a watchdog if the worker itself is SIGKILLed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { openSync, closeSync, readFileSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findMount, forceUnmount, isMountPoint, isStaleMount } from '../../../fs/fuse/mount.js';
import { format as jfsFormat } from '../../helpers/juicefs.js';
import {
  killQuietly,
  registerCleanup,
  type RedisHandle,
  type S3Handle,
  startRedis,
  startS3,
  startWatchdog,
  tmpDir,
} from '../../helpers/servers.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(REPO, 'cli/main.ts');

export interface Stack {
  dir: string;
  redis: RedisHandle;
  s3?: S3Handle;
  metaUrl: string;
  stop(): Promise<void>;
}

/**
 * Redis (+ S3 if `s3`) and one volume formatted by upstream `juicefs format` (trash off, so a
 * deleted file's space is freed at once). The scratch dir is world-traversable: other users must
 * reach the mount points below it.
 */
export async function startStack(tag: string, o: { s3?: boolean; blockSizeKiB?: number; name?: string } = {}): Promise<Stack> {
  const dir = await tmpDir(`posix-${tag}`);
  await fs.chmod(dir, 0o755);
  const [redis, s3] = await Promise.all([startRedis(), o.s3 ? startS3() : Promise.resolve(undefined)]);
  const metaUrl = `${redis.url}/1`;
  const name = o.name ?? `posix-${tag}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  try {
    if (s3) {
      await jfsFormat(metaUrl, name, {
        storage: 's3',
        bucket: s3.bucketUrl('posix'),
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        trashDays: 0,
        blockSizeKiB: o.blockSizeKiB,
      });
    } else {
      await jfsFormat(metaUrl, name, { storage: 'file', bucket: path.join(dir, 'objects') + '/', trashDays: 0, blockSizeKiB: o.blockSizeKiB });
    }
  } catch (e) {
    await Promise.all([redis.stop(), s3?.stop()]);
    throw e;
  }
  return {
    dir,
    redis,
    s3,
    metaUrl,
    stop: async () => {
      await Promise.all([redis.stop(), s3?.stop()]);
    },
  };
}

export interface ArtifactsMount {
  mountpoint: string;
  pid: number;
  log: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (flush, end session, unmount), wait for the daemon to exit; force after a timeout. */
  unmount(): Promise<void>;
  /** SIGKILL the daemon (a crash): the kernel mount stays behind, stale. */
  kill9(): Promise<void>;
  logText(): string;
}

/** Run the artifacts CLI from source (`node --import tsx cli/main.ts ...`). */
export function cliArgs(args: string[]): string[] {
  return ['--import', 'tsx', CLI, ...args];
}

/**
 * Run the artifacts CLI from source and collect its output. Asynchronous on purpose: a daemon
 * this process spawned must be reaped while the CLI waits for it to exit (`artifacts unmount`).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, cliArgs(args), { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, out });
    });
  });
}

/**
 * `artifacts mount -f <metaUrl> <mp>` as a child daemon (UV_THREADPOOL_SIZE set like the launcher
 * does, state under `stateDir`). Resolves once the mount is in mountinfo and answers a stat.
 */
export async function mountArtifacts(
  metaUrl: string,
  mountpoint: string,
  o: { cacheDir?: string; stateDir?: string; extraArgs?: string[]; timeoutMs?: number } = {},
): Promise<ArtifactsMount> {
  const mp = path.resolve(mountpoint);
  // A stale mount left by a killed daemon answers ENOTCONN: the mount command must clean it.
  await fs.mkdir(mp, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOTCONN') throw e;
  });
  const work = path.dirname(mp);
  const tag = path.basename(mp);
  const log = path.join(work, `${tag}.mount.log`);
  const cacheDir = o.cacheDir ?? path.join(work, `${tag}.cache`);
  const args = ['mount', '-f', metaUrl, mp, '--cache-dir', cacheDir, '--log-file', log, ...(o.extraArgs ?? [])];
  const fd = openSync(log, 'a');
  // Readiness is this daemon's own "mounted" line: a stale mount left at `mp` by a killed daemon
  // also shows as fuse.artifacts, and its root can still stat from the kernel's attribute cache.
  const logStart = statSync(log).size;
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, cliArgs(args), {
      cwd: REPO,
      stdio: ['ignore', fd, fd],
      env: {
        ...process.env,
        UV_THREADPOOL_SIZE: '24',
        XDG_STATE_HOME: o.stateDir ?? path.join(work, 'state'),
      },
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid!;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  // Worker exit (normal or SIGTERM): detach the mount, kill the daemon. SIGKILLed worker: watchdog.
  const unregister = registerCleanup(() => {
    spawnSync('umount', ['-l', mp], { timeout: 10_000 });
    killQuietly(pid);
  });
  const watchdog = startWatchdog(['sh', '-c', 'umount -l "$0"; kill -9 "$1" 2>/dev/null; exit 0', mp, String(pid)], pid);
  const logText = () => {
    try {
      return readFileSync(log, 'utf8');
    } catch {
      return '';
    }
  };
  const deadline = Date.now() + (o.timeoutMs ?? 90_000);
  for (;;) {
    if (gone) {
      unregister();
      if (watchdog) killQuietly(watchdog);
      throw new Error(`artifacts mount of ${mp} exited early:\n${logText().slice(-3000)}`);
    }
    const m = await findMount(mp);
    const announced = / mounted .* at /.test(logText().slice(logStart));
    if (announced && m?.fstype === 'fuse.artifacts' && (await fs.stat(mp).then(() => true, () => false))) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await forceUnmount(mp).catch(() => undefined);
      unregister();
      if (watchdog) killQuietly(watchdog);
      throw new Error(`artifacts mount of ${mp} did not come up:\n${logText().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const finish = () => {
    unregister();
    if (watchdog) killQuietly(watchdog);
  };
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint: mp,
    pid,
    log,
    child,
    exited,
    logText,
    unmount: () =>
      (unmounting ??= (async () => {
        try {
          if (!gone) {
            child.kill('SIGTERM');
            const t = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000));
            if ((await Promise.race([exited, t])) === 'timeout') {
              await forceUnmount(mp).catch(() => undefined);
              child.kill('SIGKILL');
              await exited;
              throw new Error(`artifacts mount ${mp} did not stop within 30 s of SIGTERM:\n${logText().slice(-3000)}`);
            }
          }
          if ((await findMount(mp))?.fstype === 'fuse.artifacts') {
            await forceUnmount(mp).catch(() => undefined);
            throw new Error(`${mp} still mounted after the daemon exited`);
          }
        } finally {
          finish();
        }
      })()),
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
      finish();
      // The kernel mount is left behind on purpose (stale); clean it at worker exit if the test does not.
      const un = registerCleanup(() => {
        spawnSync('umount', ['-l', mp], { timeout: 10_000 });
      });
      void un;
    },
  };
}

/** True if `mp` is a FUSE mount whose server is gone. */
export async function isStale(mp: string): Promise<boolean> {
  return (await isMountPoint(mp)) && (await isStaleMount(mp));
}

/** Run a shell command, collect output; never throws on a non-zero exit. */
export function sh(
  cmd: string,
  args: string[],
  o: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Not the repo: tools like fio drop state files in their working directory.
    const p = spawn(cmd, args, { cwd: o.cwd ?? os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', ...o.env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
