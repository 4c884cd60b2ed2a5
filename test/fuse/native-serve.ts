/**
 * Test helper process for the fuse-native fallback: mounts argv[2] through `mountSelected`
 * (fs/fuse/select.ts, so ARTIFACTS_FUSE_TRANSPORT decides the transport) serving MemVfs, or with
 * SERVE_META_URL the real VFS of that volume. Line protocol as serve.ts: `READY {json}` once
 * mounted; stdin `stats` → `STATS {json}`, `unmount` → unmounts, then `UNMOUNTED` and exit.
 * SIGTERM/SIGINT and the end of stdin also unmount (lazily).
 */
import readline from 'node:readline';
import { findMount } from '../../fs/fuse/mount.js';
import { mountSelected } from '../../fs/fuse/select.js';
import { serveVfs } from './serve-vfs.js';

const mp = process.argv[2];
if (!mp) throw new Error('usage: native-serve <mountpoint>');
const opts = JSON.parse(process.env.SERVE_OPTS ?? '{}') as Record<string, unknown>;

const { vfs, mem, metaUrl, shutdownCalled, close } = await serveVfs(mp, opts);

const m = await mountSelected(vfs, mp, {
  fsname: metaUrl ? 'artifacts:volume' : 'artifacts:memvfs',
  ...opts,
  log: (s) => process.stderr.write(`${s}\n`),
});
const info = await findMount(m.mountpoint);
process.stdout.write(`READY ${JSON.stringify({ transport: m.transport, fstype: info?.fstype, source: info?.source, uid: process.geteuid?.() })}\n`);

let unmounting = false;
const unmount = (lazy: boolean): void => {
  if (unmounting) return;
  unmounting = true;
  m.unmount({ lazy }).catch((e: Error) => {
    unmounting = false;
    process.stdout.write(`ERROR ${e.message}\n`);
  });
};
process.on('SIGTERM', () => unmount(true));
process.on('SIGINT', () => unmount(true));

const rl = readline.createInterface({ input: process.stdin });
rl.on('close', () => unmount(true));
rl.on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'stats') {
    const adapter = 'adapter' in m ? (m as { adapter: { openHandles: number; cache: { size: number } } }).adapter : undefined;
    process.stdout.write(`STATS ${JSON.stringify({ vfs: mem?.stats, handles: adapter?.openHandles, cached: adapter?.cache.size })}\n`);
  } else if (cmd === 'unmount') {
    unmount(false);
  } else {
    process.stdout.write(`ERROR unknown command ${cmd}\n`);
  }
});

await m.unmounted;
await close();
rl.close();
process.stdout.write(`UNMOUNTED ${JSON.stringify({ shutdownCalled: shutdownCalled() })}\n`);
