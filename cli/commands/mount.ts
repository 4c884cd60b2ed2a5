/**
 * `artifacts mount` / `artifacts unmount`.
 *
 * Process model: `artifacts mount` (the launcher) starts the FUSE server as a detached daemon
 * (`mount ... --foreground` with its output in a log file), waits until the mount answers, and
 * returns; it never restarts a dead server silently. The daemon holds /dev/fuse, the Redis
 * connections, the object-store client and the cache. SIGTERM/SIGINT to the daemon, or `artifacts
 * unmount`, flush pending writes, release locks, end the session and unmount.
 *
 * UV_THREADPOOL_SIZE must be in the environment before Node starts (reads pending on /dev/fuse
 * occupy pool threads that disk-cache I/O needs too), so a foreground mount without it re-executes
 * itself with it set.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { resolveCacheConfig } from '../../chunkstore/cache/profiles.js';
import { findMount, isMountPoint, isStaleMount } from '../../fs/fuse/mount.js';
import { cleanStaleAsUser, mountSelected, userUnmount } from '../../fs/fuse/select.js';
import { openVolume } from '../../fs/volume.js';
import { ExitError, outputOf, UsageError } from '../output.js';

const THREADPOOL = '24';

export interface MountSource {
  metaUrl: string;
  prefix?: string;
  /** Shown as the mount source `artifacts:<name>`. */
  name: string;
  readOnly?: boolean;
  cacheProfile?: string;
  /** S3 keys for BYO buckets (the orchestrator never sees or stores them). */
  storageCredentials?: { ACCESS_KEY_ID?: string; SECRET_ACCESS_KEY?: string; SESSION_TOKEN?: string };
  /** Ends an owner mount session at unmount. */
  release?: () => Promise<void>;
}

interface MountFlags {
  foreground?: boolean;
  readOnly?: boolean;
  cacheProfile?: string;
  cacheDir?: string;
  cacheSize?: string;
  cacheConfig?: string;
  writeback?: boolean;
  enableCap?: boolean;
  enableSelinux?: boolean;
  ticketFile?: string;
  prefix?: string;
  logFile?: string;
  timeout?: string;
}

function stateDir(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'artifacts', 'mounts');
}

function stateFile(mountpoint: string): string {
  return path.join(stateDir(), createHash('sha1').update(mountpoint).digest('hex').slice(0, 16) + '.json');
}

interface MountState {
  pid: number;
  mountpoint: string;
  source: string;
  log: string;
  started: string;
}

const isMetaUrl = (s: string) => /^(redis|rediss|unix):\/\//.test(s);

/** Where the volume lives: a meta URL directly, or a workspace / ticket through the orchestrator. */
async function resolveSource(source: string | undefined, flags: MountFlags): Promise<MountSource> {
  if (source && isMetaUrl(source)) {
    const u = new URL(source.replace(/^unix:/, 'redis:'));
    return { metaUrl: source, prefix: flags.prefix, name: u.hostname || 'volume', readOnly: flags.readOnly };
  }
  // Workspace names and tickets need the orchestrator's mount-session plumbing.
  let mod: { resolveMountSource?: (o: { workspace?: string; ticketFile?: string; readOnly?: boolean }) => Promise<MountSource> };
  try {
    // Resolved at run time: the orchestrator client is an optional layer for meta-URL mounts.
    const spec = '../../orchestrator/mount-source.js';
    mod = (await import(spec)) as typeof mod;
  } catch {
    throw new UsageError('mounting by workspace name or ticket needs the orchestrator client (orchestrator/mount-source), which is not available in this build');
  }
  if (!mod.resolveMountSource) throw new UsageError('orchestrator mount support is missing');
  return mod.resolveMountSource({ workspace: source, ticketFile: flags.ticketFile, readOnly: flags.readOnly });
}

async function readConfigFile(file: string | undefined): Promise<Record<string, unknown> | undefined> {
  if (!file) return undefined;
  const text = await fsp.readFile(file, 'utf8');
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`cache config ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The daemon: serve the mount until it is unmounted or told to stop. */
async function serveForeground(source: string | undefined, mountpoint: string, flags: MountFlags): Promise<void> {
  const src = await resolveSource(source, flags);
  const cache = resolveCacheConfig({ profile: src.cacheProfile, flags: flags as Record<string, unknown>, file: await readConfigFile(flags.cacheConfig) });
  const readOnly = flags.readOnly === true || src.readOnly === true;
  const creds = src.storageCredentials;
  const release = async () => {
    try {
      await src.release?.();
    } catch (e) {
      console.error(`${new Date().toISOString()} ending the mount session failed: ${(e as Error).message}`);
    }
  };
  let vol;
  try {
    vol = await openVolume({
      metaUrl: src.metaUrl,
      prefix: src.prefix,
      readOnly,
      mountPoint: mountpoint,
      cache,
      credentials: creds && { accessKey: creds.ACCESS_KEY_ID, secretKey: creds.SECRET_ACCESS_KEY, sessionToken: creds.SESSION_TOKEN },
      vfs: { enableCap: flags.enableCap === true, enableSelinux: flags.enableSelinux === true },
    });
  } catch (e) {
    await release();
    throw e;
  }
  let mount;
  try {
    // Root: our /dev/fuse transport; anyone else: the fuse-native fallback (fs/fuse/select.ts).
    mount = await mountSelected(vol.vfs, mountpoint, {
      fsname: `artifacts:${src.name}`,
      subtype: 'artifacts',
      readOnly,
      log: (m: string) => console.error(`${new Date().toISOString()} ${m}`),
    });
  } catch (e) {
    await vol.close().catch(() => undefined);
    await release();
    throw e;
  }
  const state: MountState = { pid: process.pid, mountpoint: mount.mountpoint, source: `artifacts:${src.name}`, log: flags.logFile ?? '', started: new Date().toISOString() };
  await fsp.mkdir(stateDir(), { recursive: true });
  await fsp.writeFile(stateFile(mount.mountpoint), JSON.stringify(state), { mode: 0o600 });
  console.error(`${new Date().toISOString()} mounted ${src.metaUrl.replace(/\/\/[^@/]*@/, '//***@')} at ${mount.mountpoint} (${mount.transport}, ${cache.profile} profile${readOnly ? ', read-only' : ''})`);
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`${new Date().toISOString()} ${sig}: flushing and unmounting ${mount.mountpoint}`);
    mount.unmount({ lazy: true }).catch((e) => console.error(`unmount failed: ${(e as Error).message}`));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => stop('SIGHUP'));
  await mount.unmounted;
  await vol.close(); // the VFS is already shut down by now; this also drains the disk cache
  await release();
  await fsp.rm(stateFile(mount.mountpoint), { force: true });
  console.error(`${new Date().toISOString()} unmounted ${mount.mountpoint}`);
}

function logPath(mountpoint: string): string {
  const dir = path.join(process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'artifacts', 'logs');
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `mount-${createHash('sha1').update(mountpoint).digest('hex').slice(0, 16)}.log`);
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

/** Launcher: start the daemon, wait until the mount answers. */
async function launch(argv: string[], mountpoint: string, timeoutMs: number, log: string): Promise<void> {
  const fd = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [...process.execArgv, mainScript(), ...argv, '--foreground', '--log-file', log], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? THREADPOOL },
  });
  fs.closeSync(fd);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited !== undefined) throw new ExitError(1, `mount failed (daemon exited with ${exited}):\n${tail(log)}`);
    const m = await findMount(mountpoint);
    if (m && m.fstype === 'fuse.artifacts') {
      try {
        await fsp.stat(mountpoint);
        return;
      } catch {
        // not answering yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGTERM');
  throw new ExitError(1, `mount did not answer within ${timeoutMs / 1000} s; log ${log}:\n${tail(log)}`);
}

export async function unmountPath(mountpoint: string, timeoutMs = 15_000): Promise<'unmounted' | 'stale-cleaned' | 'not-mounted'> {
  const mp = path.resolve(mountpoint);
  if (!(await isMountPoint(mp))) return 'not-mounted';
  if (await isStaleMount(mp)) {
    await cleanStaleAsUser(mp);
    return 'stale-cleaned';
  }
  let state: MountState | undefined;
  try {
    state = JSON.parse(await fsp.readFile(stateFile(mp), 'utf8')) as MountState;
  } catch {
    state = undefined;
  }
  let signalled = false;
  if (state) {
    try {
      process.kill(state.pid, 'SIGTERM');
      signalled = true;
    } catch {
      // the daemon is gone: fall through to umount
    }
  }
  if (!signalled) {
    // umount as root, fusermount -u for a user's own (fuse-native) mount.
    await userUnmount(mp, false).catch((e: Error) => {
      throw new ExitError(1, e.message);
    });
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await isMountPoint(mp))) {
      // The daemon removes its state file after its shutdown completes; wait for that too.
      if (state) {
        let alive = true;
        try {
          process.kill(state.pid, 0);
        } catch {
          alive = false;
        }
        if (alive) {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
      }
      return 'unmounted';
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new ExitError(1, `${mp} is still mounted after ${timeoutMs / 1000} s (busy?); try \`umount -l ${mp}\``);
}

export function register(program: Command): void {
  program
    .command('mount')
    .description('mount a workspace (or a volume by Redis URL) at <path>')
    .argument('[source]', 'workspace name, handle/name, or a meta URL (redis://host:port/db)')
    .argument('<path>', 'mount point (an existing directory)')
    .option('-f, --foreground', 'serve in the foreground (no daemon)')
    .option('--read-only', 'mount read-only (no session; every write fails with EROFS)')
    .option('--cache-profile <profile>', 'interactive | benchmark | custom')
    .option('--cache-dir <dir>', 'disk cache directory')
    .option('--cache-size <size>', 'disk cache size, e.g. 10G')
    .option('--cache-config <file>', 'JSON file with cache knobs (custom profile)')
    .option('--writeback', 'custom profile: commit writes once staged in the disk cache, upload in the background')
    .option('--enable-cap', 'store security.capability xattrs (off: the kernel asks on every write; as juicefs)')
    .option('--enable-selinux', 'store security.selinux xattrs (off by default, as juicefs)')
    .option('--ticket-file <file>', 'mount with a signed mount ticket')
    .option('--prefix <prefix>', 'Redis key prefix of the volume (meta URL sources)')
    .option('--log-file <file>', 'daemon log file')
    .option('--timeout <seconds>', 'how long to wait for the mount to answer', '30')
    .action(async (source: string | undefined, mountpoint: string, flags: MountFlags, cmd: Command) => {
      const out = outputOf(cmd);
      if (!source && !flags.ticketFile) throw new UsageError('give a workspace, a meta URL or --ticket-file');
      const mp = path.resolve(mountpoint);
      if (await isMountPoint(mp)) {
        if (await isStaleMount(mp)) {
          out.info(`cleaning stale mount at ${mp}`);
          await cleanStaleAsUser(mp);
        } else {
          throw new ExitError(1, `path ${mountpoint} is already a mount point; run \`artifacts unmount ${mountpoint}\` first`);
        }
      }
      if (flags.foreground) {
        if (!process.env.UV_THREADPOOL_SIZE) {
          // Too late to size the pool in this process: run again with it set, in the foreground.
          const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, UV_THREADPOOL_SIZE: THREADPOOL } });
          for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
          const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
          if (code !== 0) throw new ExitError(code);
          return;
        }
        await serveForeground(source, mp, flags);
        return;
      }
      out.info(`Mounting ${mountpoint} ...`);
      const argv = ['mount'];
      if (source) argv.push(source);
      argv.push(mp);
      for (const [k, v] of Object.entries({ readOnly: '--read-only', writeback: '--writeback', enableCap: '--enable-cap', enableSelinux: '--enable-selinux' })) if (flags[k as keyof MountFlags]) argv.push(v);
      for (const [k, v] of Object.entries({ cacheProfile: '--cache-profile', cacheDir: '--cache-dir', cacheSize: '--cache-size', cacheConfig: '--cache-config', ticketFile: '--ticket-file', prefix: '--prefix' })) {
        const val = flags[k as keyof MountFlags];
        if (typeof val === 'string') argv.push(v, k === 'cacheDir' || k === 'cacheConfig' || k === 'ticketFile' ? path.resolve(val) : val);
      }
      const log = flags.logFile ? path.resolve(flags.logFile) : logPath(mp);
      await launch(argv, mp, Number(flags.timeout ?? 30) * 1000, log);
      out.info(`Mounted ${mountpoint} (log: ${log})`);
    });

  program
    .command('unmount')
    .alias('umount')
    .description('flush pending writes, end the session and unmount <path>')
    .argument('<path>', 'mount point')
    .option('--timeout <seconds>', 'how long to wait', '15')
    .action(async (mountpoint: string, flags: { timeout?: string }, cmd: Command) => {
      const out = outputOf(cmd);
      const r = await unmountPath(mountpoint, Number(flags.timeout ?? 15) * 1000);
      if (r === 'not-mounted') throw new ExitError(1, `${mountpoint} is not mounted`);
      out.info(r === 'stale-cleaned' ? `cleaned stale mount ${mountpoint}` : `unmounted ${mountpoint}`);
    });
}
