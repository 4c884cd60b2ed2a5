/**
 * The path-level operations a compatibility tree is built with. Three implementations run the same
 * script: the in-memory model (what we expect), the real `juicefs` mount (node fs + python for
 * xattrs/ns times/fifos), and our engine (through the VFS, or directly on Meta + BlockStore).
 * Paths are relative to the volume root, '/'-separated, never starting with '/'.
 */

/** One step of writing a file: a positioned write, an O_APPEND write, or an fsync. */
export type Write = { off: number; data: Buffer } | { append: Buffer } | 'fsync';

export interface WriteFileOptions {
  /** Permission bits when the file is created (applied exactly: no umask). Default 0o644. */
  mode?: number;
  /** Open with O_APPEND. */
  append?: boolean;
}

export interface FsDriver {
  readonly name: string;
  mkdir(p: string, mode: number): Promise<void>;
  /** Open `p` for writing (creating it with `mode` if absent), apply `writes` in order, close. */
  writeFile(p: string, writes: Write[], opts?: WriteFileOptions): Promise<void>;
  truncate(p: string, len: number): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  link(existing: string, p: string): Promise<void>;
  setxattr(p: string, name: string, value: Buffer): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  chown(p: string, uid: number, gid: number): Promise<void>;
  /** Nanosecond-precision times. */
  utimes(p: string, atimeNs: bigint, mtimeNs: bigint): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(p: string): Promise<void>;
  rmdir(p: string): Promise<void>;
  mkfifo(p: string, mode: number): Promise<void>;
  /** A character device (Linux dev_t encoding of major/minor as FUSE passes it). */
  mkchr(p: string, mode: number, major: number, minor: number): Promise<void>;
}

/** Linux new_encode_dev / glibc makedev for small numbers: what st_rdev and the 32-bit attr rdev hold. */
export function makedev(major: number, minor: number): number {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12);
}

export function splitPath(p: string): { dir: string; base: string } {
  const i = p.lastIndexOf('/');
  return i < 0 ? { dir: '', base: p } : { dir: p.slice(0, i), base: p.slice(i + 1) };
}

export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Wraps a driver to log every operation slower than `ms` (COMPAT_TRACE=1 in the test files). */
export function traced(d: FsDriver, ms = 100, log: (s: string) => void = (s) => console.log(s)): FsDriver {
  return new Proxy(d, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv) as unknown;
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          const dt = performance.now() - t0;
          if (dt >= ms) log(`[${d.name}] ${String(prop)}(${typeof args[0] === 'string' ? args[0].slice(0, 40) : ''}) ${dt.toFixed(0)} ms`);
        }
      };
    },
  });
}
