/**
 * Runs serve.ts in a child process (the FUSE server must not share a process with its
 * clients: a client's synchronous call would block the thread that has to answer it) and gives
 * tests a handle on it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fuseServerEnv } from '../../fs/fuse/threadpool.js';
import type { Negotiated, ServerStats } from '../../fs/fuse/server.js';
import type { MemVfsStats } from './memvfs.js';
import { tmpDir } from '../helpers/servers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '../..');

export interface MemServer {
  proc: ChildProcess;
  mountpoint: string;
  negotiated: Negotiated;
  stderr(): string;
  /** `vfs` is undefined when serving a real volume. */
  stats(): Promise<{ vfs: MemVfsStats; server: ServerStats; cpu: { user: number; system: number } }>;
  command(line: string): Promise<string>;
  /** Clean unmount through the server (SIGTERM path); resolves when the process has exited. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

/** A temp dir removed (mounts below it detached first) when the test worker ends, however it ends. */
export async function scratchDir(tag: string): Promise<string> {
  return tmpDir(`fuse-${tag}`);
}

export async function startMemServer(mountpoint: string, opts: Record<string, unknown> = {}): Promise<MemServer> {
  return startServer(mountpoint, { opts });
}

/** Serve the real VFS of the volume at `metaUrl` (formatted already). */
export async function startVolumeServer(mountpoint: string, metaUrl: string, cacheDir: string, opts: Record<string, unknown> = {}): Promise<MemServer> {
  return startServer(mountpoint, { opts, metaUrl, cacheDir });
}

async function startServer(
  mountpoint: string,
  o: { opts: Record<string, unknown>; metaUrl?: string; cacheDir?: string },
): Promise<MemServer> {
  const env: NodeJS.ProcessEnv = { ...fuseServerEnv(process.env, 16), SERVE_OPTS: JSON.stringify(o.opts) };
  if (o.metaUrl) env.SERVE_META_URL = o.metaUrl;
  if (o.cacheDir) env.SERVE_CACHE_DIR = o.cacheDir;
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'serve.ts'), mountpoint], {
    cwd: REPO_ROOT,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const waiters: ((line: string) => void)[] = [];
  const lines: string[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const nextLine = (timeoutMs = 30_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const t = setTimeout(() => reject(new Error(`server did not answer; stderr: ${err}`)), timeoutMs);
      waiters.push((line) => {
        clearTimeout(t);
        resolve(line);
      });
      exited.then(() => {
        clearTimeout(t);
        reject(new Error(`server exited; stderr: ${err}`));
      });
    });
  const ready = await nextLine();
  if (!ready.startsWith('READY ')) throw new Error(`server failed to mount: ${ready} ${err}`);
  const command = async (line: string): Promise<string> => {
    proc.stdin!.write(`${line}\n`);
    return nextLine();
  };
  return {
    proc,
    mountpoint,
    negotiated: JSON.parse(ready.slice(6)) as Negotiated,
    stderr: () => err,
    exited,
    command,
    async stats() {
      const l = await command('stats');
      if (!l.startsWith('STATS ')) throw new Error(`bad stats line ${l}`);
      return JSON.parse(l.slice(6));
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Run a command, collect output; rejects on non-zero exit unless `allowFail`. */
export function sh(
  cmd: string,
  args: string[],
  o: { allowFail?: boolean; timeoutMs?: number; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code !== 0 && !o.allowFail) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}
