/**
 * The part of fuse-native (2.2.6, libfuse 2.9 high-level API) the fallback uses, typed, and its
 * loader. fuse-native ships no type declarations, so the shapes below are read from its index.js:
 * callbacks take a negative errno (or 0) first; `read`/`write` take the byte count (or a negative
 * errno) as their only argument.
 */
import { createRequire } from 'node:module';
import path from 'node:path';

export type Cb = (err: number) => void;
export type ValueCb<T> = (err: number, value?: T) => void;

/** What getStatArray reads (times as milliseconds since the epoch). */
export interface NativeStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  dev: number;
  nlink: number;
  ino: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
}

/** What getStatfsArray reads; every field is a uint32. */
export interface NativeStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

export interface NativeOps {
  init(cb: Cb): void;
  getattr(p: string, cb: ValueCb<NativeStat>): void;
  readdir(p: string, cb: (err: number, names?: string[], stats?: Partial<NativeStat>[]) => void): void;
  open(p: string, flags: number, cb: ValueCb<number>): void;
  create(p: string, mode: number, cb: ValueCb<number>): void;
  read(p: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void;
  write(p: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void;
  flush(p: string, fd: number, cb: Cb): void;
  fsync(p: string, datasync: number, fd: number, cb: Cb): void;
  fsyncdir(p: string, datasync: number, fd: number, cb: Cb): void;
  release(p: string, fd: number, cb: Cb): void;
  truncate(p: string, size: number, cb: Cb): void;
  ftruncate(p: string, fd: number, size: number, cb: Cb): void;
  mkdir(p: string, mode: number, cb: Cb): void;
  rmdir(p: string, cb: Cb): void;
  unlink(p: string, cb: Cb): void;
  rename(src: string, dest: string, cb: Cb): void;
  link(src: string, dest: string, cb: Cb): void;
  /** libfuse's symlink(target, linkpath). */
  symlink(target: string, linkPath: string, cb: Cb): void;
  readlink(p: string, cb: ValueCb<string>): void;
  chmod(p: string, mode: number, cb: Cb): void;
  chown(p: string, uid: number, gid: number, cb: Cb): void;
  /** fuse-native passes the access time twice (see FUSE.md): `mtime` is not the mtime asked for. */
  utimens(p: string, atimeMs: number, mtimeMs: number, cb: Cb): void;
  statfs(p: string, cb: ValueCb<NativeStatfs>): void;
  setxattr(p: string, name: string, value: Buffer, position: number, flags: number, cb: Cb): void;
  getxattr(p: string, name: string, position: number, cb: ValueCb<Buffer>): void;
  listxattr(p: string, cb: ValueCb<string[]>): void;
  removexattr(p: string, name: string, cb: Cb): void;
  mknod(p: string, mode: number, dev: number, cb: Cb): void;
  access(p: string, mode: number, cb: Cb): void;
}

export interface FuseNativeOptions {
  fsname?: string;
  subtype?: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  /** Per-operation timeout (ms) or false for none. */
  timeout?: number | false;
  debug?: boolean;
}

export interface FuseNativeInstance {
  readonly mnt: string;
  /** Internal: the native thread state, needed to release the loop handle after an unmount. */
  readonly _thread: Buffer | null;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

export interface FuseNativeClass {
  new (mnt: string, ops: Partial<NativeOps>, opts?: FuseNativeOptions): FuseNativeInstance;
}

interface NativeBinding {
  fuse_native_unmount(mnt: string, thread: Buffer): void;
}

let loaded: { Fuse: FuseNativeClass; binding: NativeBinding } | undefined;

/**
 * Load fuse-native and its compiled binding. Throws (with the loader's message) when the addon or
 * the system libfuse.so.2 it links against is missing: the fallback must fail loudly, never
 * silently degrade.
 */
export function loadFuseNative(): { Fuse: FuseNativeClass; binding: NativeBinding } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  try {
    const Fuse = require('fuse-native') as FuseNativeClass;
    // The same .node file fuse-native loaded (Node caches addons by path): its unmount entry point
    // is the only way to release the uv handle that keeps the process alive after an unmount
    // fuse-native itself did not perform.
    const dir = path.dirname(require.resolve('fuse-native/package.json'));
    const gypBuild = require(require.resolve('node-gyp-build', { paths: [dir] })) as (d: string) => NativeBinding;
    loaded = { Fuse, binding: gypBuild(dir) };
    return loaded;
  } catch (e) {
    throw new Error(`fuse-native cannot be loaded (needs libfuse2 / libfuse.so.2): ${(e as Error).message}`);
  }
}
