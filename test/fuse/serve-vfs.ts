/**
 * What the serve scripts (serve.ts, native-serve.ts) serve: MemVfs, or with SERVE_META_URL the
 * real VFS of that volume (openVolume; SERVE_CACHE_DIR for its disk cache). `shutdownCalled` tells
 * whether the transport shut the Vfs down at unmount; `close` releases the volume afterwards.
 */
import type { Vfs } from '../../fs/types.js';
import { MemVfs } from './memvfs.js';

export interface Served {
  vfs: Vfs;
  mem?: MemVfs;
  metaUrl?: string;
  shutdownCalled: () => boolean;
  close: () => Promise<void>;
}

export async function serveVfs(mp: string, opts: Record<string, unknown>): Promise<Served> {
  const metaUrl = process.env.SERVE_META_URL;
  let vfs: Vfs;
  let mem: MemVfs | undefined;
  let close = async (): Promise<void> => undefined;
  if (metaUrl) {
    const { openVolume } = await import('../../fs/volume.js');
    const { resolveCacheConfig } = await import('../../chunkstore/cache/profiles.js');
    const cacheDir = process.env.SERVE_CACHE_DIR;
    const vol = await openVolume({
      metaUrl,
      mountPoint: mp,
      cache: resolveCacheConfig(cacheDir ? { flags: { 'cache-dir': cacheDir } } : {}),
    });
    vfs = vol.vfs;
    close = () => vol.close();
  } else {
    mem = new MemVfs(opts);
    vfs = mem;
  }
  let called = false;
  const realShutdown = vfs.shutdown.bind(vfs);
  vfs.shutdown = async () => {
    called = true;
    await realShutdown();
  };
  return { vfs, mem, metaUrl, shutdownCalled: () => called, close };
}
