/**
 * Which FUSE transport serves a mount.
 *
 * - `dev-fuse`: our own kernel-protocol server (server.ts, mount.ts). Needs CAP_SYS_ADMIN: it
 *   opens /dev/fuse and calls mount(8) itself. The fast path, with every feature.
 * - `fuse-native`: the fallback through libfuse 2.9 and the setuid fusermount (native/), for users
 *   who cannot mount. Slower and with fewer features (docs/FUSE.md, "Non-root users").
 *
 * `auto` (the default) picks dev-fuse when the effective uid is 0 and falls back to fuse-native if
 * that mount is refused for lack of privilege (root in a container without CAP_SYS_ADMIN);
 * anyone else gets fuse-native. ARTIFACTS_FUSE_TRANSPORT=fuse-native (or `native`) forces the
 * fallback, so root CI can exercise it; `dev-fuse` (or `kernel`) forces the kernel transport.
 */
import type { Vfs } from '../types.js';
import { mountFuse, type MountOptions, type UnmountOptions } from './mount.js';
import { mountFuseNative, type NativeMountOptions } from './native/mount.js';

export type Transport = 'dev-fuse' | 'fuse-native';
export type TransportChoice = Transport | 'auto';

export const TRANSPORT_ENV = 'ARTIFACTS_FUSE_TRANSPORT';

/** What the environment asks for; throws on a value it does not know (a typo must not pass). */
export function transportFromEnv(env: NodeJS.ProcessEnv = process.env): TransportChoice {
  const v = (env[TRANSPORT_ENV] ?? '').trim().toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'fuse-native' || v === 'native' || v === 'libfuse') return 'fuse-native';
  if (v === 'dev-fuse' || v === 'kernel') return 'dev-fuse';
  throw new Error(`${TRANSPORT_ENV}=${v}: expected auto, dev-fuse or fuse-native`);
}

/** The first transport to try. */
export function chooseTransport(choice: TransportChoice, euid = process.geteuid?.() ?? 0): Transport {
  if (choice !== 'auto') return choice;
  return euid === 0 ? 'dev-fuse' : 'fuse-native';
}

/** A refusal that means "no privilege to mount", not a broken mount point. */
export function isPrivilegeError(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  if (err?.code === 'EPERM' || err?.code === 'EACCES') return true;
  return typeof err?.message === 'string' && /permission denied|not permitted|must be superuser|only root/i.test(err.message);
}

export interface ServedMount {
  readonly transport: Transport;
  readonly mountpoint: string;
  /** Resolves when the mount is gone and the Vfs is shut down. */
  readonly unmounted: Promise<void>;
  unmount(opts?: UnmountOptions): Promise<void>;
}

export type SelectMountOptions = MountOptions & NativeMountOptions & { transport?: TransportChoice };

/** Mount `vfs` at `mountpoint` with the transport this process can use. */
export async function mountSelected(vfs: Vfs, mountpoint: string, opts: SelectMountOptions = {}): Promise<ServedMount> {
  const choice = opts.transport ?? transportFromEnv();
  const first = chooseTransport(choice);
  const native = async (): Promise<ServedMount> => mountFuseNative(vfs, mountpoint, opts);
  if (first === 'fuse-native') return native();
  try {
    const m = await mountFuse(vfs, mountpoint, opts);
    return { transport: 'dev-fuse', mountpoint: m.mountpoint, unmounted: m.unmounted, unmount: (u) => m.unmount(u) };
  } catch (e) {
    if (choice !== 'auto' || !isPrivilegeError(e)) throw e;
    (opts.log ?? console.error)(`mounting /dev/fuse was refused (${(e as Error).message}); falling back to fuse-native`);
    return native();
  }
}

export { cleanStaleAsUser, userUnmount } from './native/mount.js';
