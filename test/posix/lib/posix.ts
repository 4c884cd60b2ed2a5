/**
 * A POSIX caller in its own process with its own identity: tests send one system call at a time
 * (test/posix/lib/posixop.py executes it) and get the result or the errno name back. Real
 * processes matter here: the FUSE server sees the caller's uid/gid/pid in each request, lock owners
 * are processes, and the server must never share a thread with its clients.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerCleanup } from '../../helpers/servers.js';

const HELPER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'posixop.py');

/** The system python: a pyenv shim would cost a bash start per process. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export interface Identity {
  uid: number;
  gid: number;
  /** Supplementary groups (default: none). */
  groups?: number[];
}

export const ROOT: Identity = { uid: 0, gid: 0, groups: [0] };
export const NOBODY: Identity = { uid: 65534, gid: 65534, groups: [] };

/** `{ r }` on success, `{ e: 'EACCES' }` on an OSError. */
export interface OpResult {
  r?: unknown;
  e?: string;
}

export interface Stat {
  mode: number;
  /** S_IFMT >> 12: 1 fifo, 2 chr, 4 dir, 6 blk, 8 reg, 10 lnk, 12 sock. */
  type: number;
  perm: number;
  ino: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  /** Nanoseconds since the epoch, as decimal strings (beyond 2^53). */
  atime_ns: string;
  mtime_ns: string;
  ctime_ns: string;
  rdev: number;
}

export const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s) : s).toString('base64');
export const unb64 = (s: unknown): Buffer => Buffer.from(s as string, 'base64');

export class PosixProc {
  private queue: ((line: string) => void)[] = [];
  private buf = '';
  private stderr = '';
  private exited = false;
  private unregister: () => void = () => {};

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly who: string,
  ) {}

  /** Start a caller as `id` (default root) with umask `umask` (default 022). */
  static async start(id: Identity = ROOT, opts: { umask?: number; cwd?: string } = {}): Promise<PosixProc> {
    const args = [HELPER, '--groups', (id.groups ?? []).join(','), '--gid', String(id.gid), '--uid', String(id.uid)];
    args.push('--umask', (opts.umask ?? 0o022).toString(8));
    const child = spawn(PYTHON, ['-u', ...args], { cwd: opts.cwd ?? '/', stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new PosixProc(child, `uid=${id.uid} gid=${id.gid}`);
    child.stdout.on('data', (d: Buffer) => p.onData(d));
    child.stderr.on('data', (d: Buffer) => (p.stderr += d.toString()));
    child.on('exit', () => {
      p.exited = true;
      for (const w of p.queue.splice(0)) w(JSON.stringify({ x: `helper exited: ${p.stderr}` }));
    });
    p.unregister = registerCleanup(() => {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone
      }
    });
    const ready = JSON.parse(await p.next()) as { ready?: number; x?: string };
    if (!ready.ready) throw new Error(`posix helper did not start (${p.who}): ${ready.x ?? p.stderr}`);
    return p;
  }

  get pid(): number {
    return this.child.pid!;
  }

  private onData(d: Buffer): void {
    this.buf += d.toString();
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      this.queue.shift()?.(line);
    }
  }

  private next(): Promise<string> {
    return new Promise((resolve) => {
      if (this.exited) resolve(JSON.stringify({ x: `helper exited: ${this.stderr}` }));
      else this.queue.push(resolve);
    });
  }

  /** Run one call; resolves with `{r}` or `{e}`; rejects only on a malformed request. */
  async call(op: string, ...a: unknown[]): Promise<OpResult> {
    const answer = this.next();
    this.child.stdin.write(`${JSON.stringify({ op, a })}\n`);
    const res = JSON.parse(await answer) as OpResult & { x?: string };
    if (res.x) throw new Error(`posix helper (${this.who}) ${op}(${JSON.stringify(a)}): ${res.x}`);
    return res;
  }

  /** Run one call that must succeed; returns its value. */
  async ok<T = unknown>(op: string, ...a: unknown[]): Promise<T> {
    const res = await this.call(op, ...a);
    if (res.e) throw new Error(`${op}(${a.map((x) => JSON.stringify(x)).join(', ')}) as ${this.who} failed: ${res.e}`);
    return res.r as T;
  }

  /** The errno name of a call, or 'OK'. */
  async errno(op: string, ...a: unknown[]): Promise<string> {
    const res = await this.call(op, ...a);
    return res.e ?? 'OK';
  }

  stat(p: string): Promise<Stat> {
    return this.ok<Stat>('stat', p);
  }

  lstat(p: string): Promise<Stat> {
    return this.ok<Stat>('lstat', p);
  }

  async readFile(p: string): Promise<Buffer> {
    return unb64(await this.ok('readfile', p));
  }

  async writeFile(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
    await this.ok('writefile', p, b64(data), mode);
  }

  async close(): Promise<void> {
    this.unregister();
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  }

  /** Kill the process (its descriptors close, its locks go away with them). */
  async kill(): Promise<void> {
    this.unregister();
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await gone;
  }
}
