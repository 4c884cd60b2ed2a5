/**
 * A snapshot of a volume's tree as one client sees it, and the comparisons the compatibility tests
 * assert on. Comparisons return a list of human-readable problems (empty = identical) so a failing
 * test names every incompatibility at once instead of stopping at the first.
 */
import { describeDiff } from './content.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chr' | 'blk' | 'sock';

/** What a client observed for one path ('' = the root). */
export interface SnapEntry {
  type: NodeType;
  ino: bigint;
  /** Permission bits including suid/sgid/sticky. */
  perm: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** Device number (character/block devices), else 0. */
  rdev: number;
  /** Regular files: the whole content. */
  data?: Buffer;
  /** Symlinks: the raw target. */
  target?: Buffer;
  /** Extended attributes (not collected for symlinks). */
  xattrs?: Map<string, Buffer>;
  /** Directories: entry names, sorted. */
  children?: string[];
}

export type Snapshot = Map<string, SnapEntry>;

/** What the model expects for one path. Fields left undefined are not checked against the model. */
export interface Expect {
  type: NodeType;
  perm: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  data?: Buffer;
  target?: Buffer;
  xattrs?: Map<string, Buffer>;
  children?: string[];
  atimeNs?: bigint;
  mtimeNs?: bigint;
  rdev?: number;
}

export type Expectation = Map<string, Expect>;

const show = (p: string) => JSON.stringify(p === '' ? '/' : p);

function xattrProblems(where: string, exp: Map<string, Buffer>, act: Map<string, Buffer> | undefined): string[] {
  const out: string[] = [];
  if (!act) return [`${where}: xattrs not collected`];
  const names = new Set([...exp.keys(), ...act.keys()]);
  for (const n of [...names].sort()) {
    const e = exp.get(n);
    const a = act.get(n);
    if (e === undefined) out.push(`${where}: unexpected xattr ${n}=${a!.toString('hex')}`);
    else if (a === undefined) out.push(`${where}: missing xattr ${n} (expected ${e.toString('hex')})`);
    else if (!e.equals(a)) out.push(`${where}: xattr ${n} is ${a.toString('hex')}, expected ${e.toString('hex')}`);
  }
  return out;
}

/** Every difference between what the model expects and what a client saw. */
export function compareToModel(label: string, exp: Expectation, act: Snapshot): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...exp.keys(), ...act.keys()])].sort()) {
    const e = exp.get(p);
    const a = act.get(p);
    const where = `${label} ${show(p)}`;
    if (!e) {
      out.push(`${where}: unexpected entry (${a!.type})`);
      continue;
    }
    if (!a) {
      out.push(`${where}: missing (expected ${e.type})`);
      continue;
    }
    if (e.type !== a.type) {
      out.push(`${where}: type ${a.type}, expected ${e.type}`);
      continue;
    }
    if (e.perm !== a.perm) out.push(`${where}: mode 0${a.perm.toString(8)}, expected 0${e.perm.toString(8)}`);
    if (e.uid !== a.uid || e.gid !== a.gid) out.push(`${where}: owner ${a.uid}:${a.gid}, expected ${e.uid}:${e.gid}`);
    if (e.nlink !== a.nlink) out.push(`${where}: nlink ${a.nlink}, expected ${e.nlink}`);
    if (e.type !== 'dir' && e.size !== a.size) out.push(`${where}: size ${a.size}, expected ${e.size}`);
    if (e.data) {
      if (!a.data) out.push(`${where}: content not read`);
      else {
        const d = describeDiff(where, e.data, a.data);
        if (d) out.push(d);
      }
    }
    if (e.target && (!a.target || !e.target.equals(a.target)))
      out.push(`${where}: symlink target ${JSON.stringify(a.target?.toString())}, expected ${JSON.stringify(e.target.toString())}`);
    if (e.xattrs) out.push(...xattrProblems(where, e.xattrs, a.xattrs));
    if (e.children && JSON.stringify(e.children) !== JSON.stringify(a.children))
      out.push(`${where}: entries ${JSON.stringify(a.children)}, expected ${JSON.stringify(e.children)}`);
    if (e.atimeNs !== undefined && e.atimeNs !== a.atimeNs) out.push(`${where}: atime ${a.atimeNs} ns, expected ${e.atimeNs}`);
    if (e.rdev !== undefined && e.rdev !== a.rdev) out.push(`${where}: rdev ${a.rdev}, expected ${e.rdev}`);
    if (e.mtimeNs !== undefined && e.mtimeNs !== a.mtimeNs) out.push(`${where}: mtime ${a.mtimeNs} ns, expected ${e.mtimeNs}`);
  }
  return out;
}

export type AttrField = 'ino' | 'perm' | 'uid' | 'gid' | 'nlink' | 'size' | 'atimeNs' | 'mtimeNs' | 'ctimeNs' | 'type' | 'rdev';
export const ALL_ATTRS: AttrField[] = ['type', 'ino', 'perm', 'uid', 'gid', 'nlink', 'size', 'atimeNs', 'mtimeNs', 'ctimeNs', 'rdev'];

/**
 * Attributes two clients must agree on for the same volume state (inode numbers, owners, the
 * exact nanosecond times, sizes, link counts): `a` is the writer's view, `b` the reader's.
 */
export function compareAttrs(labelA: string, a: Snapshot, labelB: string, b: Snapshot, fields: AttrField[] = ALL_ATTRS): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(p);
    const y = b.get(p);
    if (!x || !y) {
      out.push(`${show(p)}: present for ${x ? labelA : labelB} only`);
      continue;
    }
    for (const f of fields) {
      if (x[f] !== y[f]) {
        const fmt = (v: unknown) => (f === 'perm' ? `0${(v as number).toString(8)}` : String(v));
        out.push(`${show(p)}: ${f} ${labelA}=${fmt(x[f])} ${labelB}=${fmt(y[f])}`);
      }
    }
  }
  return out;
}

/** A compact one-line summary of a snapshot (for logs). */
export function summarize(s: Snapshot): string {
  let files = 0;
  let bytes = 0;
  let dirs = 0;
  let links = 0;
  for (const e of s.values()) {
    if (e.type === 'file') {
      files++;
      bytes += e.size;
    } else if (e.type === 'dir') dirs++;
    else if (e.type === 'symlink') links++;
  }
  return `${files} files (${bytes} bytes), ${dirs} dirs, ${links} symlinks`;
}
