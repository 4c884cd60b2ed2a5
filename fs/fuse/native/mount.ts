/**
 * Mounting a Vfs through fuse-native (libfuse 2.9 + fusermount): the fallback for users who
 * cannot mount /dev/fuse themselves. fusermount (setuid root) opens /dev/fuse as the caller and
 * mounts it; libfuse's threads read requests and hand them to this process's event loop.
 *
 * Options libfuse knows but fuse-native has no field for (big_writes, use_ino, the cache timeouts
 * when 0, ...) ride along in `fsname`: fuse-native joins every option into one `-o a,b,c`, and
 * libfuse splits that string on commas.
 *
 * Unmount order as for the kernel transport (../mount.ts): unmount first (fusermount -u), wait for
 * the operations in flight, then shut the Vfs down, then release fuse-native's loop handle. An
 * unmount by someone else (fusermount -u, umount by root) is noticed by polling mountinfo, and the
 * same sequence runs.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Vfs } from '../../types.js';
import { canonicalPath, cleanStaleMount, findMount, forceUnmount, isMountPoint, isStaleMount, MountError, type UnmountOptions } from '../mount.js';
import { type AdapterOptions, NativeAdapter } from './adapter.js';
import { type FuseNativeInstance, loadFuseNative } from './binding.js';

export interface NativeMountOptions extends AdapterOptions {
  /** Mount source shown in /proc/mounts, e.g. `artifacts:demo`. */
  fsname?: string;
  /** Type suffix: the mount shows as `fuse.<subtype>`. */
  subtype?: string;
  /**
   * Let other users use the mount. Default: on when allowed (root, or `user_allow_other` in
   * /etc/fuse.conf). Always paired with default_permissions, since every operation runs as the
   * mounting user (adapter.ts).
   */
  allowOther?: boolean;
  /** Mount read-only (default: vfs.readOnly). */
  readOnly?: boolean;
  /** Clean a stale mount (dead server) at the mount point instead of refusing (default true). */
  cleanStale?: boolean;
  /** How long mounting may take until libfuse's INIT (default 30 s). */
  initTimeoutMs?: number;
  /** How long `fusermount -u` may take (default 10 s). */
  unmountTimeoutMs?: number;
  /** How often an unmount by someone else is looked for (default 500 ms). */
  pollMs?: number;
}

export interface NativeFuseMount {
  readonly transport: 'fuse-native';
  readonly mountpoint: string;
  readonly adapter: NativeAdapter;
  /** The libfuse option string used (for logs and tests). */
  readonly options: string;
  /** Resolves when the mount is gone, the Vfs is shut down and the loop handle released. */
  readonly unmounted: Promise<void>;
  unmount(opts?: UnmountOptions): Promise<void>;
}

const isRoot = () => (process.geteuid?.() ?? 0) === 0;

/** `user_allow_other` in /etc/fuse.conf: fusermount then accepts allow_other from any user. */
export function userAllowOther(file = '/etc/fuse.conf'): boolean {
  try {
    return /^\s*user_allow_other\s*$/m.test(fs.readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
}

/** Whether this process may open /dev/fuse for reading and writing (fusermount3 opens it as the caller). */
export function devFuseAccessible(): boolean {
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function exec(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, LC_ALL: 'C' } }, (err, _out, stderr) => {
      if (!err) return resolve({ code: 0, stderr, timedOut: false });
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
      resolve({ code: typeof e.code === 'number' ? e.code : 127, stderr: stderr || e.message, timedOut: e.killed === true });
    });
  });
}

/**
 * Detach the mount at `mp` as this user can: `umount` as root, `fusermount -u` otherwise (an
 * unprivileged user may unmount only fuse mounts of their own). `lazy` detaches a busy mount.
 */
export async function userUnmount(mp: string, lazy: boolean, timeoutMs = 10_000): Promise<void> {
  if (isRoot()) {
    const r = await exec('umount', lazy ? ['-l', mp] : [mp], timeoutMs);
    if (r.code === 0 || /not mounted|no mount point/i.test(r.stderr)) return;
    if (r.timedOut) return forceUnmount(mp);
    throw new MountError('unmount_failed', `umount ${mp}: ${r.stderr.trim()}`);
  }
  const r = await exec('fusermount', lazy ? ['-u', '-z', '--', mp] : ['-u', '--', mp], timeoutMs);
  if (r.code === 0 || /not found in \/etc\/mtab|not mounted|entry for .* not found/i.test(r.stderr)) return;
  throw new MountError('unmount_failed', `fusermount -u ${mp}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

/** Lazily detach every stale mount (dead server) stacked at `p`, as this user can. */
export async function cleanStaleAsUser(p: string): Promise<boolean> {
  if (isRoot()) return cleanStaleMount(p);
  let cleaned = false;
  for (let i = 0; i < 8 && (await isStaleMount(p)); i++) {
    await userUnmount((await findMount(p))!.mountpoint, true);
    cleaned = true;
  }
  return cleaned;
}

function sanitize(s: string): string {
  // A comma would start a new libfuse option, whitespace breaks /proc/mounts readers.
  return s.replace(/[,\s\\]/g, '_');
}

function seconds(n: number): string {
  return String(Math.max(0, n));
}

export async function mountFuseNative(vfs: Vfs, mountpoint: string, opts: NativeMountOptions = {}): Promise<NativeFuseMount> {
  const mp = await canonicalPath(mountpoint);
  if (await isMountPoint(mp)) {
    if (opts.cleanStale !== false && (await isStaleMount(mp))) await cleanStaleAsUser(mp);
    if (await isMountPoint(mp)) {
      throw new MountError('already_mounted', `path ${mountpoint} is already a mount point; run \`artifacts unmount ${mountpoint}\` first`);
    }
  }
  const st = await fsp.stat(mp).catch(() => undefined);
  if (!st?.isDirectory()) throw new MountError('not_a_directory', `mount point ${mountpoint} is not a directory`);

  const { Fuse, binding } = loadFuseNative();
  if (!devFuseAccessible()) {
    const uid = process.geteuid?.() ?? -1;
    throw new MountError(
      'mount_failed',
      `mount ${mountpoint}: /dev/fuse is not readable and writable by uid ${uid} (fusermount opens it as the caller); ` +
        'grant access, e.g. `chmod 0666 /dev/fuse` (the usual default) or `setfacl -m u:<user>:rw /dev/fuse`',
    );
  }

  const allowOther = opts.allowOther ?? (isRoot() || userAllowOther());
  if (allowOther && !isRoot() && !userAllowOther()) {
    throw new MountError('mount_failed', `mount ${mountpoint}: allow_other needs user_allow_other in /etc/fuse.conf`);
  }
  const readOnly = opts.readOnly ?? vfs.readOnly;
  const extra = [
    // Writes in 128 KiB requests (the most libfuse 2.9 can negotiate) instead of 4 KiB.
    'big_writes',
    'max_write=131072',
    // The Vfs's inode numbers in stat and readdir, not libfuse's own.
    'use_ino',
    // open(O_TRUNC) is one OPEN (the Vfs truncates in open), not OPEN + SETATTR.
    'atomic_o_trunc',
    // Keep the page cache across opens unless mtime or size changed (close-to-open consistency).
    'auto_cache',
    `entry_timeout=${seconds(vfs.entryTtl)}`,
    `attr_timeout=${seconds(vfs.attrTtl)}`,
    'negative_timeout=0',
  ];
  if (readOnly) extra.push('ro');
  const fsname = `${sanitize(opts.fsname ?? 'artifacts')},${extra.join(',')}`;
  const subtype = sanitize(opts.subtype ?? 'artifacts');

  const adapter = new NativeAdapter(vfs, opts);
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const fuse: FuseNativeInstance = new Fuse(mp, adapter.ops(), {
    fsname,
    subtype,
    allowOther,
    // The kernel checks permissions for every caller: the adapter cannot tell callers apart.
    defaultPermissions: true,
    // No per-operation timeout: a slow flush to the object store must not turn into ETIMEDOUT
    // while the write goes on (the kernel transport has none either).
    timeout: false,
  });
  // fuse-native calls `this._op_<name>`: ours for the xattr reads honour the caller's buffer size.
  Object.assign(fuse, adapter.xattrHandlers());
  const options = [allowOther ? 'allow_other' : '', 'default_permissions', `fsname=${fsname}`, `subtype=${subtype}`].filter(Boolean).join(',');

  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new MountError('init_failed', `mount ${mountpoint}: libfuse INIT timed out`)), opts.initTimeoutMs ?? 30_000);
    fuse.mount((err) => {
      clearTimeout(t);
      if (!err) return resolve();
      // libfuse and fusermount print the reason on stderr themselves.
      reject(new MountError('mount_failed', `mount ${mountpoint} through fuse-native failed: ${err.message} (fusermount's reason is on stderr)`));
    });
  }).catch(async (e: unknown) => {
    if (await isMountPoint(mp)) await userUnmount(mp, true).catch(() => undefined);
    throw e;
  });

  const identity = await findMount(mp);
  let ended = false;
  let endedResolve!: () => void;
  const endedP = new Promise<void>((r) => (endedResolve = r));
  const markEnded = () => {
    if (ended) return;
    ended = true;
    clearInterval(poll);
    endedResolve();
  };
  const stillMounted = async (): Promise<boolean> => {
    const m = await findMount(mp);
    return m !== undefined && (!identity || (m.major === identity.major && m.minor === identity.minor));
  };
  const poll = setInterval(() => {
    stillMounted().then(
      (up) => (up ? undefined : markEnded()),
      () => undefined,
    );
  }, opts.pollMs ?? 500);
  poll.unref();

  const unmounted = (async () => {
    await endedP;
    // Releases the kernel sent while unmounting may still be on their way through libfuse.
    await adapter.idle();
    try {
      await vfs.shutdown();
    } catch (e) {
      log(`vfs shutdown failed: ${(e as Error).message}`);
    }
    // fuse-native keeps a referenced uv handle until its own unmount runs; we unmounted ourselves.
    if (fuse._thread) binding.fuse_native_unmount(mp, fuse._thread);
  })();

  const unmount = async (u: UnmountOptions = {}): Promise<void> => {
    if (!ended) {
      const timeoutMs = opts.unmountTimeoutMs ?? 10_000;
      try {
        await userUnmount(mp, false, timeoutMs);
      } catch (e) {
        if (!(u.lazy && /busy/i.test((e as Error).message))) throw e;
        await userUnmount(mp, true, timeoutMs);
      }
      if (!(await stillMounted())) markEnded();
    }
    await unmounted;
  };

  return { transport: 'fuse-native', mountpoint: mp, adapter, options, unmounted, unmount };
}
