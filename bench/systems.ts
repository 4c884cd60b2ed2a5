/**
 * The systems under test: an artifacts mount per cache profile and the real `juicefs mount` with
 * the equivalent settings, each on its own volume of the same Redis and S3 server.
 *
 * Equivalences (product.md 7):
 * - interactive ≈ default `juicefs mount` with a private --cache-dir (1 s attr/entry TTLs, disk
 *   cache, prefetch 1) vs `artifacts mount --cache-profile interactive --cache-dir D`;
 * - benchmark ≈ `juicefs mount --cache-size 0 --attr-cache 0 --entry-cache 0 --dir-entry-cache 0`
 *   vs `--cache-profile benchmark` (no block cache, TTL 0, FUSE direct_io). juicefs has no
 *   direct_io mount option, so its page cache stays on; the harness drops it before every read.
 *
 * Each target can remount cold (disk cache emptied, kernel caches dropped) or warm (disk cache kept,
 * kernel caches dropped: the page cache must not count).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { unmountPath } from '../cli/commands/mount.js';
import { daemonPids } from '../test/helpers/juicefs.js';
import { juicefsBin, killQuietly, mountsUnder, registerCleanup } from '../test/helpers/servers.js';
import { dropCaches, emptyDir, run, sleep } from './proc.js';

export type SystemName = 'artifacts' | 'juicefs';
export type ProfileName = 'interactive' | 'benchmark';
export const PROFILES: ProfileName[] = ['interactive', 'benchmark'];

export interface Target {
  system: SystemName;
  profile: ProfileName;
  /** `artifacts/interactive`, `juicefs/benchmark`, ... */
  label: string;
  metaUrl: string;
  mountpoint: string;
  /** False when the profile keeps no block cache (cold and warm are then the same thing). */
  hasDiskCache: boolean;
  mount(): Promise<void>;
  unmount(): Promise<void>;
  /** Empty the disk block cache (only while unmounted). */
  clearCache(): Promise<void>;
  isMounted(): boolean;
}

/**
 * Unmount if mounted, empty the disk cache if cold, mount, drop kernel caches. Caches are dropped
 * after the mount on purpose: the FUSE page cache dies with the old mount anyway, and dropping
 * before would make the new daemon read its code back from disk (seconds on a loaded box).
 */
export async function remount(t: Target, mode: 'cold' | 'warm'): Promise<RemountTimes> {
  const t0 = performance.now();
  if (t.isMounted()) await t.unmount();
  const t1 = performance.now();
  if (mode === 'cold') await t.clearCache();
  await t.mount();
  const t2 = performance.now();
  await dropCaches();
  const t3 = performance.now();
  return { unmount: (t1 - t0) / 1000, mount: (t2 - t1) / 1000, drop: (t3 - t2) / 1000 };
}

/** Seconds spent in each part of a remount (not benchmark results: reported for the record). */
export interface RemountTimes {
  unmount: number;
  mount: number;
  drop: number;
}

/** dist/cli/main.js, next to this file's dist/bench/. */
export function cliMain(): string {
  return fileURLToPath(new URL('../cli/main.js', import.meta.url));
}

function mountedAt(mp: string): boolean {
  return mountsUnder(mp).includes(path.resolve(mp));
}

/** PIDs of artifacts mount daemons serving `mp` (`main.js mount ... <mp> ... --foreground`). */
function artifactsDaemonPids(mp: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.includes('mount') && argv.includes(mp) && argv.includes('--foreground') && argv.some((a) => a.endsWith('main.js'))) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}

export interface ArtifactsTargetOptions {
  profile: ProfileName;
  metaUrl: string;
  mountpoint: string;
  cacheDir: string;
  logFile: string;
  /** Extra node flags for the daemon (the launcher passes its execArgv on), e.g. --cpu-prof. */
  nodeFlags?: string[];
}

export function artifactsTarget(o: ArtifactsTargetOptions): Target {
  const mp = path.resolve(o.mountpoint);
  let unregister: (() => void) | undefined;
  const unmountSync = () => {
    if (mountedAt(mp)) spawnSync(process.execPath, [cliMain(), 'unmount', mp, '--timeout', '30'], { stdio: 'ignore', timeout: 40_000 });
    if (mountedAt(mp)) spawnSync('umount', ['-l', mp], { stdio: 'ignore', timeout: 10_000 });
    for (const pid of artifactsDaemonPids(mp)) killQuietly(pid, 'SIGKILL');
  };
  return {
    system: 'artifacts',
    profile: o.profile,
    label: `artifacts/${o.profile}`,
    metaUrl: o.metaUrl,
    mountpoint: mp,
    hasDiskCache: o.profile !== 'benchmark',
    isMounted: () => mountedAt(mp),
    async clearCache() {
      await emptyDir(o.cacheDir);
    },
    async mount() {
      await mkdir(mp, { recursive: true });
      unregister ??= registerCleanup(unmountSync);
      // Exactly the daemon `artifacts mount` launches (same argv and environment), started
      // directly: the launcher would only add one more Node start per remount.
      const args = [...(o.nodeFlags ?? []), cliMain(), 'mount', o.metaUrl, mp, '--cache-profile', o.profile, '--foreground', '--log-file', o.logFile];
      // The benchmark profile has no disk cache and refuses cache knobs.
      if (o.profile !== 'benchmark') args.push('--cache-dir', o.cacheDir);
      const fd = openSync(o.logFile, 'a');
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '24' } });
      closeSync(fd);
      let exited: number | null | undefined;
      child.on('exit', (code) => (exited = code));
      child.unref();
      const deadline = Date.now() + 150_000;
      for (;;) {
        if (exited !== undefined) throw new Error(`artifacts mount daemon exited with ${exited}; log ${o.logFile}`);
        if (mountedAt(mp)) {
          try {
            await stat(mp);
            break;
          } catch {
            // not answering yet
          }
        }
        if (Date.now() > deadline) {
          unmountSync();
          throw new Error(`artifacts mount at ${mp} did not answer; log ${o.logFile}`);
        }
        await sleep(50);
      }
    },
    async unmount() {
      // `artifacts unmount`'s own code, in process: SIGTERM to the daemon (flush, end the
      // session, unmount), then wait until the mount is gone and the daemon has exited.
      try {
        await unmountPath(mp, 300_000);
      } finally {
        const left = artifactsDaemonPids(mp);
        if (mountedAt(mp) || left.length) {
          unmountSync();
          throw new Error(`artifacts unmount of ${mp} left ${mountedAt(mp) ? 'the mount' : `daemon(s) ${left.join(',')}`} behind`);
        }
        unregister?.();
        unregister = undefined;
      }
    },
  };
}

export interface JuicefsTargetOptions {
  profile: ProfileName;
  metaUrl: string;
  mountpoint: string;
  cacheDir: string;
  logFile: string;
}

/** Mount flags of the upstream client that match an artifacts profile. */
export function juicefsProfileArgs(profile: ProfileName): string[] {
  return profile === 'benchmark' ? ['--cache-size', '0', '--attr-cache', '0', '--entry-cache', '0', '--dir-entry-cache', '0'] : [];
}

export function juicefsTarget(o: JuicefsTargetOptions): Target {
  const mp = path.resolve(o.mountpoint);
  const bin = juicefsBin();
  const env = { ...process.env, JFS_NO_USAGE_REPORT: '1' };
  let unregister: (() => void) | undefined;
  let pids: number[] = [];
  const unmountSync = () => {
    if (mountedAt(mp)) spawnSync(bin, ['--no-agent', 'umount', mp], { stdio: 'ignore', timeout: 30_000, env });
    if (mountedAt(mp)) spawnSync('umount', ['-l', mp], { stdio: 'ignore', timeout: 10_000 });
    for (const pid of [...pids, ...daemonPids(mp)]) killQuietly(pid, 'SIGKILL');
  };
  return {
    system: 'juicefs',
    profile: o.profile,
    label: `juicefs/${o.profile}`,
    metaUrl: o.metaUrl,
    mountpoint: mp,
    hasDiskCache: o.profile !== 'benchmark',
    isMounted: () => mountedAt(mp),
    async clearCache() {
      await emptyDir(o.cacheDir);
    },
    async mount() {
      await mkdir(mp, { recursive: true });
      unregister ??= registerCleanup(unmountSync);
      const args = ['--no-agent', 'mount', '-d', o.metaUrl, mp, '--no-usage-report', '--no-syslog', '--log', o.logFile, '--cache-dir', o.cacheDir,
        // A random metrics port: the default 9567 collides with other mounts on a shared machine.
        '--metrics', '127.0.0.1:0',
        // No hourly metadata backups into the bucket (artifacts makes none either).
        '--backup-meta', '0',
        ...juicefsProfileArgs(o.profile)];
      await run(bin, args, { timeoutMs: 120_000, env });
      const deadline = Date.now() + 60_000;
      while (!mountedAt(mp)) {
        if (Date.now() > deadline) throw new Error(`juicefs mount at ${mp} did not appear; log ${o.logFile}`);
        await sleep(100);
      }
      pids = daemonPids(mp);
    },
    async unmount() {
      const r = await run(bin, ['--no-agent', 'umount', mp], { timeoutMs: 300_000, env, okCodes: [0, 1] });
      const deadline = Date.now() + 30_000;
      while (daemonPids(mp).length > 0 && Date.now() < deadline) await sleep(100);
      if (mountedAt(mp) || daemonPids(mp).length > 0) {
        unmountSync();
        throw new Error(`juicefs umount ${mp} failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
      }
      unregister?.();
      unregister = undefined;
    },
  };
}
