/**
 * The in-memory model of a volume: running the tree script against it yields the expected content,
 * modes, owners, link counts, symlink targets, xattrs and explicitly set times of every path.
 * It follows POSIX semantics only as far as the scripts need (no permission checks).
 */
import { type FsDriver, joinPath, makedev, splitPath, type Write, type WriteFileOptions } from './driver.js';
import type { Expect, Expectation, NodeType } from './snapshot.js';

class Bytes {
  buf = Buffer.alloc(0);
  len = 0;
  write(off: number, data: Buffer): void {
    this.reserve(off + data.length);
    if (off > this.len) this.buf.fill(0, this.len, off);
    data.copy(this.buf, off);
    this.len = Math.max(this.len, off + data.length);
  }
  truncate(n: number): void {
    if (n > this.len) {
      this.reserve(n);
      this.buf.fill(0, this.len, n);
    }
    this.len = n;
  }
  private reserve(n: number): void {
    if (n <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(n, this.buf.length * 2));
    this.buf.copy(grown, 0, 0, this.len);
    this.buf = grown;
  }
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

interface MNode {
  type: NodeType;
  perm: number;
  uid: number;
  gid: number;
  data?: Bytes;
  target?: Buffer;
  xattrs: Map<string, Buffer>;
  atimeNs?: bigint;
  mtimeNs?: bigint;
  rdev?: number;
}

export class Model implements FsDriver {
  readonly name = 'model';
  private readonly paths = new Map<string, MNode>();

  constructor(rootPerm = 0o777) {
    this.paths.set('', { type: 'dir', perm: rootPerm, uid: 0, gid: 0, xattrs: new Map() });
  }

  private get(p: string): MNode {
    const n = this.paths.get(p);
    if (!n) throw new Error(`model: ${p} does not exist`);
    return n;
  }

  private add(p: string, n: MNode): void {
    const { dir } = splitPath(p);
    if (this.get(dir).type !== 'dir') throw new Error(`model: parent of ${p} is not a directory`);
    if (this.paths.has(p)) throw new Error(`model: ${p} exists`);
    this.paths.set(p, n);
  }

  async mkdir(p: string, mode: number): Promise<void> {
    this.add(p, { type: 'dir', perm: mode, uid: 0, gid: 0, xattrs: new Map() });
  }

  async writeFile(p: string, writes: Write[], opts: WriteFileOptions = {}): Promise<void> {
    let n = this.paths.get(p);
    if (!n) {
      n = { type: 'file', perm: opts.mode ?? 0o644, uid: 0, gid: 0, data: new Bytes(), xattrs: new Map() };
      this.add(p, n);
    }
    for (const w of writes) {
      if (w === 'fsync') continue;
      if ('append' in w) n.data!.write(n.data!.len, w.append);
      else n.data!.write(w.off, w.data);
    }
    if (writes.some((w) => w !== 'fsync')) n.mtimeNs = n.atimeNs = undefined;
  }

  async truncate(p: string, len: number): Promise<void> {
    const n = this.get(p);
    n.data!.truncate(len);
    n.mtimeNs = undefined;
  }

  async symlink(target: string, p: string): Promise<void> {
    this.add(p, { type: 'symlink', perm: 0o777, uid: 0, gid: 0, target: Buffer.from(target), xattrs: new Map() });
  }

  async link(existing: string, p: string): Promise<void> {
    const n = this.get(existing);
    if (n.type === 'dir') throw new Error('model: link to a directory');
    this.add(p, n);
  }

  async setxattr(p: string, name: string, value: Buffer): Promise<void> {
    this.get(p).xattrs.set(name, Buffer.from(value));
  }

  async chmod(p: string, mode: number): Promise<void> {
    this.get(p).perm = mode;
  }

  async chown(p: string, uid: number, gid: number): Promise<void> {
    const n = this.get(p);
    n.uid = uid;
    n.gid = gid;
    // Linux clears set-user-ID / set-group-ID (for group-executable files) on chown of a non-dir.
    if (n.type !== 'dir') n.perm &= n.perm & 0o010 ? ~0o6000 : ~0o4000;
  }

  async utimes(p: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    const n = this.get(p);
    n.atimeNs = atimeNs;
    n.mtimeNs = mtimeNs;
  }

  async rename(from: string, to: string): Promise<void> {
    const n = this.get(from);
    const old = this.paths.get(to);
    if (old?.type === 'dir') throw new Error('model: rename over a directory is not modelled');
    this.paths.delete(to);
    if (n.type === 'dir') {
      for (const [q, m] of [...this.paths]) {
        if (q === from || q.startsWith(from + '/')) {
          this.paths.delete(q);
          this.paths.set(to + q.slice(from.length), m);
        }
      }
    } else {
      this.paths.delete(from);
      this.paths.set(to, n);
    }
  }

  async unlink(p: string): Promise<void> {
    if (this.get(p).type === 'dir') throw new Error('model: unlink of a directory');
    this.paths.delete(p);
  }

  async rmdir(p: string): Promise<void> {
    for (const q of this.paths.keys()) if (q.startsWith(p + '/')) throw new Error(`model: ${p} is not empty`);
    this.paths.delete(p);
  }

  async mkfifo(p: string, mode: number): Promise<void> {
    this.add(p, { type: 'fifo', perm: mode, uid: 0, gid: 0, xattrs: new Map() });
  }

  async mkchr(p: string, mode: number, major: number, minor: number): Promise<void> {
    this.add(p, { type: 'chr', perm: mode, uid: 0, gid: 0, xattrs: new Map(), rdev: makedev(major, minor) });
  }

  /** Paths of the model (for tests that pick entries). */
  list(): string[] {
    return [...this.paths.keys()].sort();
  }

  /** The expectation for every path. */
  expect(): Expectation {
    const out: Expectation = new Map();
    const links = new Map<MNode, number>();
    for (const n of this.paths.values()) links.set(n, (links.get(n) ?? 0) + 1);
    for (const [p, n] of this.paths) {
      const children: string[] = [];
      let subdirs = 0;
      if (n.type === 'dir') {
        for (const [q, m] of this.paths) {
          if (q === p || splitPath(q).dir !== p || (p === '' && q === '')) continue;
          children.push(splitPath(q).base);
          if (m.type === 'dir') subdirs++;
        }
        children.sort();
      }
      const e: Expect = {
        type: n.type,
        perm: n.perm,
        uid: n.uid,
        gid: n.gid,
        nlink: n.type === 'dir' ? 2 + subdirs : links.get(n)!,
        size: n.type === 'file' ? n.data!.len : n.type === 'symlink' ? n.target!.length : 0,
      };
      if (n.type === 'file') e.data = Buffer.from(n.data!.view());
      if (n.type === 'symlink') e.target = n.target;
      else e.xattrs = new Map(n.xattrs);
      if (n.type === 'dir') e.children = children;
      if (n.atimeNs !== undefined) e.atimeNs = n.atimeNs;
      if (n.mtimeNs !== undefined) e.mtimeNs = n.mtimeNs;
      e.rdev = n.rdev ?? 0;
      out.set(p, e);
    }
    return out;
  }
}

export { joinPath };
