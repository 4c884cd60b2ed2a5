/**
 * Mounting and unmounting a FUSE filesystem served by this process, and dealing with mounts whose
 * server died (stale mounts).
 *
 * mount: open /dev/fuse, run `mount -i -t fuse -o fd=3,...` with the descriptor as the child's fd 3,
 * then start the server (not before: a read on a descriptor with no mount behind it blocks its
 * thread forever), and return once INIT is answered.
 *
 * unmount: `umount` first, then `vfs.shutdown()`. The kernel may still send requests while it
 * unmounts (writeback of dirty pages under the writeback cache), and a busy mount must keep working
 * when umount is refused, so the Vfs is shut down only once the connection is gone; shutdown then
 * flushes and uploads what is pending, releases locks and ends the session. A server that does not
 * answer is cut off through /sys/fs/fuse/connections/<dev>/abort, then lazily unmounted.
 *
 * Permission checks: we pass `default_permissions` (as juicefs does by default), so the kernel
 * checks too; the engine still checks every operation (metadata/access.ts) against the
 * authoritative attributes in Redis.
 * Supplementary groups, which the kernel does not send, are read from /proc only when a check
 * needs them (server.ts). Without default_permissions the kernel also needs no fresh attributes to
 * walk a path, which matters with TTL 0 (benchmark profile).
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Vfs } from '../types.js';
import { FuseServer, type FuseServerOptions } from './server.js';

export interface MountOptions extends FuseServerOptions {
  /** Mount source shown in /proc/mounts, e.g. `artifacts:demo`. */
  fsname?: string;
  /** Type suffix: the mount shows as `fuse.<subtype>`. */
  subtype?: string;
  /** Let users other than the mounting one use the mount (default true). */
  allowOther?: boolean;
  /** Let the kernel check permissions too (default true, like juicefs). */
  defaultPermissions?: boolean;
  /** Mount read-only (default: vfs.readOnly). */
  readOnly?: boolean;
  /** Clean a stale mount (dead server) found at the mount point instead of refusing (default true). */
  cleanStale?: boolean;
  /** How long INIT may take after mount(2) (default 30 s). */
  initTimeoutMs?: number;
  /** How long `umount` may take before the connection is aborted (default 10 s). */
  unmountTimeoutMs?: number;
  /**
   * Kernel readahead window for the mount's bdi (KiB; default 1024). The kernel offers 128 KiB at
   * INIT and INIT can only lower it, so it is raised through sysfs after mounting: sequential reads
   * then arrive as 1 MiB READs instead of 128 KiB ones. 0 keeps the kernel's value.
   */
  readAheadKb?: number;
}

export interface UnmountOptions {
  /** If the mount is busy, detach it (`umount -l`): open files keep working until closed. */
  lazy?: boolean;
}

export interface FuseMount {
  readonly mountpoint: string;
  readonly server: FuseServer;
  /** Resolves when the connection has ended, the Vfs is shut down and /dev/fuse is closed. */
  readonly unmounted: Promise<void>;
  unmount(opts?: UnmountOptions): Promise<void>;
}

export class MountError extends Error {
  constructor(
    readonly code: 'already_mounted' | 'not_a_directory' | 'mount_failed' | 'init_failed' | 'unmount_failed',
    message: string,
  ) {
    super(message);
    this.name = 'MountError';
  }
}

export async function mountFuse(vfs: Vfs, mountpoint: string, opts: MountOptions = {}): Promise<FuseMount> {
  const mp = await canonicalPath(mountpoint);
  if (await isMountPoint(mp)) {
    if (opts.cleanStale !== false && (await isStaleMount(mp))) await cleanStaleMount(mp);
    if (await isMountPoint(mp)) {
      throw new MountError(
        'already_mounted',
        `path ${mountpoint} is already a mount point; run \`artifacts unmount ${mountpoint}\` first`,
      );
    }
  }
  const st = await fsp.stat(mp).catch(() => undefined);
  if (!st?.isDirectory()) throw new MountError('not_a_directory', `mount point ${mountpoint} is not a directory`);

  const fd = fs.openSync('/dev/fuse', 'r+');
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const options = ['fd=3', `rootmode=${(st.mode & 0o170000).toString(8)}`, `user_id=${uid}`, `group_id=${gid}`];
  if (opts.allowOther !== false) options.push('allow_other');
  // The kernel also checks permissions from its (short-lived) attribute cache, as with juicefs'
  // default: without it a cached lookup skips the search-permission check of a parent directory,
  // exec is allowed when any x bit is set, and fs.protected_hardlinks is not applied. The engine
  // still checks every operation against the attributes in Redis.
  if (opts.defaultPermissions !== false) options.push('default_permissions');
  if (opts.readOnly ?? vfs.readOnly) options.push('ro');
  options.push(`subtype=${opts.subtype ?? 'artifacts'}`);
  const source = opts.fsname ?? 'artifacts';
  const r = await run('mount', ['-i', '-t', 'fuse', '-o', options.join(','), source, mp], {
    stdio: ['ignore', 'pipe', 'pipe', fd],
    timeoutMs: 30_000,
  });
  if (r.code !== 0) {
    fs.closeSync(fd);
    throw new MountError('mount_failed', `mount ${mountpoint} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  }

  const server = new FuseServer(fd, vfs, opts);
  server.start();
  let ended = false;
  const unmounted = (async () => {
    await server.ended;
    ended = true;
    await server.notificationsDrained();
    try {
      await vfs.shutdown();
    } catch (e) {
      (opts.log ?? console.error)(`vfs shutdown failed: ${(e as Error).message}`);
    }
    fs.closeSync(fd);
  })();

  const unmount = async (u: UnmountOptions = {}): Promise<void> => {
    if (!ended) await umountPath(mp, u.lazy ?? false, opts.unmountTimeoutMs ?? 10_000);
    await unmounted;
  };

  try {
    await withTimeout(server.initialized, opts.initTimeoutMs ?? 30_000, 'FUSE INIT timed out');
  } catch (e) {
    await forceUnmount(mp).catch(() => {});
    await unmounted;
    throw new MountError('init_failed', `mount ${mountpoint}: ${(e as Error).message}`);
  }
  const ra = opts.readAheadKb ?? 1024;
  if (ra > 0) await setReadAhead(mp, ra, opts.log);
  return { mountpoint: mp, server, unmounted, unmount };
}

async function setReadAhead(mp: string, kb: number, log?: (m: string) => void): Promise<void> {
  const m = await findMount(mp);
  if (!m) return;
  try {
    await fsp.writeFile(`/sys/class/bdi/${m.major}:${m.minor}/read_ahead_kb`, String(kb));
  } catch (e) {
    // Not fatal: reads just come in smaller pieces.
    (log ?? console.error)(`could not set read_ahead_kb on ${mp}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

/** `umount`, falling back to abort + lazy unmount when the server does not answer in time. */
async function umountPath(mp: string, lazy: boolean, timeoutMs: number): Promise<void> {
  const r = await run('umount', [mp], { timeoutMs });
  if (r.code === 0) return;
  if (r.timedOut) {
    await forceUnmount(mp);
    return;
  }
  if (/not mounted|no mount point/i.test(r.stderr)) return;
  if (lazy && /busy/i.test(r.stderr)) {
    const l = await run('umount', ['-l', mp], { timeoutMs });
    if (l.code === 0) return;
    throw new MountError('unmount_failed', `umount -l ${mp}: ${l.stderr.trim()}`);
  }
  throw new MountError('unmount_failed', `umount ${mp}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

// ---- /proc/self/mountinfo ------------------------------------------------------------------------

export interface MountInfo {
  id: number;
  parentId: number;
  major: number;
  minor: number;
  root: string;
  mountpoint: string;
  options: string;
  fstype: string;
  source: string;
  /** Per-superblock options (after the separator), e.g. user_id=0,default_permissions. */
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo; names are raw bytes (UTF-8). */
function unescapeMountField(s: string): string {
  if (!s.includes('\\')) return Buffer.from(s, 'latin1').toString('utf8');
  const bytes = s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

export function readMountInfo(file = '/proc/self/mountinfo'): MountInfo[] {
  const text = fs.readFileSync(file, 'latin1');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0 || f.length < dash + 3) continue;
    const [major, minor] = f[2]!.split(':').map(Number) as [number, number];
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      major,
      minor,
      root: unescapeMountField(f[3]!),
      mountpoint: unescapeMountField(f[4]!),
      options: f[5]!,
      fstype: f[dash + 1]!,
      superOptions: f[dash + 3] ?? '',
      source: unescapeMountField(f[dash + 2]!),
    });
  }
  return out;
}

/**
 * Absolute path without touching the last component: resolving through a stale or hung mount
 * point would fail or block, so only its parent is canonicalised.
 */
export async function canonicalPath(p: string): Promise<string> {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(await fsp.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

/** The top-most mount at `p` (the one path lookups see), if any. */
export async function findMount(p: string): Promise<MountInfo | undefined> {
  const abs = await canonicalPath(p);
  const all = readMountInfo();
  let found: MountInfo | undefined;
  for (const m of all) if (m.mountpoint === abs) found = m;
  return found;
}

export async function isMountPoint(p: string): Promise<boolean> {
  return (await findMount(p)) !== undefined;
}

/**
 * A FUSE mount whose server is gone: lookups answer ENOTCONN. The probe stats a random name (the
 * kernel cannot have it cached, unlike the mount point itself) in a child process with a timeout,
 * so a hung server cannot block this process.
 */
export async function isStaleMount(p: string): Promise<boolean> {
  const m = await findMount(p);
  if (!m || !m.fstype.startsWith('fuse')) return false;
  const probe = path.join(m.mountpoint, `.artifacts-probe-${randomBytes(6).toString('hex')}`);
  const r = await run('stat', ['--', probe], { timeoutMs: 3000, env: { ...process.env, LC_ALL: 'C' } });
  return /Transport endpoint is not connected/i.test(r.stderr);
}

/** Lazily unmount every stale mount stacked at `p`. Returns whether anything was cleaned. */
export async function cleanStaleMount(p: string): Promise<boolean> {
  let cleaned = false;
  for (let i = 0; i < 8 && (await isStaleMount(p)); i++) {
    const m = await findMount(p);
    await run('umount', ['-l', m!.mountpoint], { timeoutMs: 10_000 });
    cleaned = true;
  }
  return cleaned;
}

/** The fusectl connection name of a mount: the kernel's dev_t (major << 20 | minor). */
export function connectionId(m: MountInfo): number {
  return m.major * 2 ** 20 + m.minor;
}

const FUSECTL = '/sys/fs/fuse/connections';

async function ensureFusectl(): Promise<void> {
  if (readMountInfo().some((m) => m.fstype === 'fusectl')) return;
  await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { timeoutMs: 5000 });
}

/** Abort the FUSE connection behind `p`: every pending and future request fails with ENOTCONN. */
export async function abortConnection(p: string): Promise<boolean> {
  const m = await findMount(p);
  if (!m || !m.fstype.startsWith('fuse')) return false;
  await ensureFusectl();
  try {
    await fsp.writeFile(path.join(FUSECTL, String(connectionId(m)), 'abort'), '1');
    return true;
  } catch {
    return false;
  }
}

/** Cut off the server (if any) and detach the mount. For hung servers and the unmount CLI. */
export async function forceUnmount(p: string): Promise<void> {
  await abortConnection(p);
  const m = await findMount(p);
  if (!m) return;
  const r = await run('umount', ['-l', m.mountpoint], { timeoutMs: 10_000 });
  if (r.code !== 0 && !/not mounted/i.test(r.stderr)) {
    throw new MountError('unmount_failed', `umount -l ${m.mountpoint}: ${r.stderr.trim()}`);
  }
}

// ---- helpers -------------------------------------------------------------------------------------

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(
  cmd: string,
  args: string[],
  o: { stdio?: StdioOptions; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: o.stdio ?? ['ignore', 'pipe', 'pipe'], env: o.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, o.timeoutMs);
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + e.message, timedOut });
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr, timedOut });
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, msg: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(msg)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
