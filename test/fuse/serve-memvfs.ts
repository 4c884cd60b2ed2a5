/**
 * Test/bench helper process: mounts a MemVfs at argv[2] through the FUSE transport and talks a
 * line protocol so a test (another process, as a real client would be) can drive it:
 *   stdout: `READY {negotiated}` once mounted, `STATS {json}` / `OK` / `ERR msg` in answer to stdin:
 *   stdin:  `stats`, `extwrite <name> <text>` (change a root file behind the kernel and invalidate
 *           its inode), `extunlink <name>` (remove a root entry and invalidate the entry),
 *           `unmount` (unmount, then the process ends by itself).
 * SIGTERM also unmounts. Options come as JSON in MEMVFS_OPTS (MemVfsOptions & MountOptions).
 * Run with UV_THREADPOOL_SIZE set (see fs/fuse/threadpool.ts).
 */
import readline from 'node:readline';
import { ROOT_INODE } from '../../metadata/types.js';
import { mountFuse } from '../../fs/fuse/mount.js';
import { MemVfs } from './memvfs.js';

const mp = process.argv[2];
if (!mp) throw new Error('usage: serve-memvfs <mountpoint>');
const opts = JSON.parse(process.env.MEMVFS_OPTS ?? '{}') as Record<string, unknown>;
const vfs = new MemVfs(opts);
const m = await mountFuse(vfs, mp, { fsname: 'artifacts:memvfs', ...opts, log: (s) => process.stderr.write(`${s}\n`) });
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
rl.on('line', (line) => {
  const [cmd, name, ...rest] = line.split(' ');
  try {
    if (cmd === 'stats') {
      process.stdout.write(`STATS ${JSON.stringify({ vfs: vfs.stats, server: m.server.stats })}\n`);
    } else if (cmd === 'extwrite') {
      const ino = vfs.externalWrite(ROOT_INODE, name!, Buffer.from(rest.join(' ')));
      vfs.invalidator?.inode(ino);
      process.stdout.write('OK\n');
    } else if (cmd === 'extunlink') {
      vfs.externalUnlink(ROOT_INODE, name!);
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
rl.close();
process.stdout.write(`UNMOUNTED shutdown=${vfs.shutdownCalled}\n`);
