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
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** Unmount if mounted, empty the disk cache if cold, drop kernel caches, mount. */
export async function remount(t: Target, mode: 'cold' | 'warm'): Promise<void> {
  if (t.isMounted()) await t.unmount();
  if (mode === 'cold') await t.clearCache();
  await dropCaches();
  await t.mount();
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
      const args = [...(o.nodeFlags ?? []), cliMain(), 'mount', o.metaUrl, mp, '--cache-profile', o.profile, '--log-file', o.logFile, '--timeout', '120'];
      // The benchmark profile has no disk cache and refuses cache knobs.
      if (o.profile !== 'benchmark') args.push('--cache-dir', o.cacheDir);
      await run(process.execPath, args, { timeoutMs: 150_000 });
      if (!mountedAt(mp)) throw new Error(`artifacts mount returned but ${mp} is not mounted`);
    },
    async unmount() {
      try {
        await run(process.execPath, [cliMain(), 'unmount', mp, '--timeout', '300'], { timeoutMs: 320_000 });
      } finally {
        // The launcher waits for the daemon to finish; anything left is a bug worth a loud kill.
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
