/**
 * Test/bench helper process: mounts a filesystem at argv[2] through the FUSE transport — MemVfs, or
 * with SERVE_META_URL set the real VFS of that volume (openVolume: Redis engine + block store) —
 * and talks a line protocol so a test (another process, as a real client would be) can drive it:
 *   stdout: `READY {negotiated}` once mounted, then one answer line per stdin command;
 *   stdin:  `stats`, `extwrite <name> <text>` (memvfs: change a root file behind the kernel and
 *           invalidate its inode), `extunlink <name>` (memvfs: remove a root entry and invalidate
 *           it), `unmount` (unmount; the process then ends by itself with `UNMOUNTED ...`).
 * SIGTERM/SIGINT and the end of stdin (the test process died) also unmount. Options come as JSON
 * in SERVE_OPTS (MemVfsOptions & MountOptions). Run with UV_THREADPOOL_SIZE set
 * (fs/fuse/threadpool.ts).
 */
import readline from 'node:readline';
import { ROOT_INODE } from '../../metadata/types.js';
import { mountFuse } from '../../fs/fuse/mount.js';
import { serveVfs } from './serve-vfs.js';

const mp = process.argv[2];
if (!mp) throw new Error('usage: serve <mountpoint>');
const opts = JSON.parse(process.env.SERVE_OPTS ?? '{}') as Record<string, unknown>;

const { vfs, mem, metaUrl, shutdownCalled, close } = await serveVfs(mp, opts);

const m = await mountFuse(vfs, mp, {
  fsname: metaUrl ? 'artifacts:volume' : 'artifacts:memvfs',
  ...opts,
  log: (s) => process.stderr.write(`${s}\n`),
});
process.stdout.write(`READY ${JSON.stringify(m.server.negotiated)}\n`);

let unmounting = false;
const unmount = (): void => {
  if (unmounting) return;
  unmounting = true;
  m.unmount({ lazy: true }).catch((e: Error) => process.stderr.write(`unmount: ${e.message}\n`));
};
process.on('SIGTERM', unmount);
process.on('SIGINT', unmount);

const rl = readline.createInterface({ input: process.stdin });
rl.on('close', unmount);
rl.on('line', (line) => {
  const [cmd, name, ...rest] = line.split(' ');
  try {
    if (cmd === 'stats') {
      process.stdout.write(`STATS ${JSON.stringify({ vfs: mem?.stats, server: m.server.stats, cpu: process.cpuUsage() })}\n`);
    } else if (cmd === 'extwrite' && mem) {
      const ino = mem.externalWrite(ROOT_INODE, name!, Buffer.from(rest.join(' ')));
      vfs.invalidator?.inode(ino);
      process.stdout.write('OK\n');
    } else if (cmd === 'extunlink' && mem) {
      mem.externalUnlink(ROOT_INODE, name!);
      vfs.invalidator?.entry(ROOT_INODE, Buffer.from(name!));
      process.stdout.write('OK\n');
    } else if (cmd === 'unmount') {
      unmount();
    } else {
      process.stdout.write(`ERR unknown command ${cmd}\n`);
    }
  } catch (e) {
    process.stdout.write(`ERR ${(e as Error).message}\n`);
  }
});

await m.unmounted;
await close();
rl.close();
process.stdout.write(`UNMOUNTED shutdown=${shutdownCalled()}\n`);
