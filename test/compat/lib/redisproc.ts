/**
 * A redis-server that can be killed and restarted on the same port with the same data: AOF with
 * fsync on every write, so everything a client saw committed (EXEC returned) survives a SIGKILL.
 * The helpers in servers.ts start throwaway servers (no persistence, dir removed on stop), which
 * cannot show what a crash leaves behind.
 */
import path from 'node:path';
import { freePort, type ManagedProcess, redisCommand, redisServerBin, spawnManaged, tmpDir, waitUntil } from '../../helpers/servers.js';

export interface RestartableRedis {
  port: number;
  url: string;
  dir: string;
  running(): boolean;
  /** SIGKILL (a crash: no shutdown save beyond the AOF). */
  kill(): Promise<void>;
  /** Start again on the same port and dir. */
  start(): Promise<void>;
  /** Stop for good. */
  stop(): Promise<void>;
}

export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = await tmpDir(`redis-crash-${port}`);
  const logFile = path.join(dir, 'redis.log');
  let proc: ManagedProcess | undefined;
  const start = async () => {
    if (proc && !proc.hasExited()) return;
    proc = spawnManaged(
      `redis-server:${port}`,
      redisServerBin(),
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--logfile', ''],
      { cwd: dir, logFile },
    );
    const p = proc;
    await waitUntil(`redis-server on ${port}`, p, async () => (await redisCommand(port, ['PING'])) === 'PONG', 15_000, 50);
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    running: () => !!proc && !proc.hasExited(),
    kill: async () => {
      await proc?.stop(0);
    },
    start,
    stop: async () => {
      await proc?.stop(0);
    },
  };
}
