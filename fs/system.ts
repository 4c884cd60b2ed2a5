/**
 * Virtual files in the mount root (juicefs-format.md 3 and 6.5, product.md 6):
 *   .accesslog  MIN_INTERNAL_INODE+1  0400  one line per operation while open (streaming)
 *   .stats      MIN_INTERNAL_INODE+3  0444  Prometheus text of the metrics registry (snapshot at open)
 *   .config     MIN_INTERNAL_INODE+4  0400  JSON of the mount configuration, secrets replaced by "removed"
 * They never exist in Redis. `.control` (+2) is reserved but not served (see docs/SEMANTICS.md).
 * `.trash` is the real TrashInode directory; the engine resolves its lookup, the VFS lists it.
 */
import { type Attr, type Ctx, type Entry, FileType, type Format, type Ino, MIN_INTERNAL_INODE, TRASH_INODE } from '../metadata/types.js';
import { type MetricsRegistry } from './metrics.js';

export const ACCESSLOG_INODE: Ino = MIN_INTERNAL_INODE + 1n;
export const CONTROL_INODE: Ino = MIN_INTERNAL_INODE + 2n;
export const STATS_INODE: Ino = MIN_INTERNAL_INODE + 3n;
export const CONFIG_INODE: Ino = MIN_INTERNAL_INODE + 4n;

export function isVirtual(ino: Ino): boolean {
  return ino >= MIN_INTERNAL_INODE && ino < TRASH_INODE;
}

interface VirtualSpec {
  ino: Ino;
  name: string;
  mode: number;
}

const SPECS: VirtualSpec[] = [
  { ino: ACCESSLOG_INODE, name: '.accesslog', mode: 0o400 },
  { ino: STATS_INODE, name: '.stats', mode: 0o444 },
  { ino: CONFIG_INODE, name: '.config', mode: 0o400 },
];

/** Format fields that hold secrets (upstream Format.RemoveSecret). */
const FORMAT_SECRETS = ['SecretKey', 'SessionToken', 'EncryptKey'] as const;

/** A copy of the format with secrets replaced by the upstream tombstone "removed". */
export function formatWithoutSecrets(f: Format): Format {
  const out = { ...f };
  for (const k of FORMAT_SECRETS) if (out[k]) out[k] = 'removed';
  return out;
}

const SECRET_KEY_RE = /(secret|password|passwd|token|credential|private|encryptkey)/i;

/** Deep copy of a configuration object with secret-looking fields and URL passwords removed. */
export function redactConfig(v: unknown, key = ''): unknown {
  if (typeof v === 'string') {
    if (key && SECRET_KEY_RE.test(key) && v !== '') return 'removed';
    // user:password@ in URLs (redis://u:p@h, s3 endpoints...)
    return v.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:)[^@/\s]+@/gi, '$1removed@');
  }
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map((x) => redactConfig(x));
  if (v && typeof v === 'object') {
    if (Buffer.isBuffer(v)) return undefined;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === 'function') continue;
      out[k] = redactConfig(x, k);
    }
    return out;
  }
  return v;
}

/** A reader of `.accesslog`: a bounded queue of lines. */
class LogReader {
  chunks: Buffer[] = [];
  bytes = 0;
  waiter?: () => void;
  constructor(private readonly maxBytes: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.bytes += b.length;
    // A reader that does not keep up loses the oldest lines, never blocks the filesystem.
    while (this.bytes > this.maxBytes && this.chunks.length > 1) this.bytes -= this.chunks.shift()!.length;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
  take(max: number): Buffer {
    const out: Buffer[] = [];
    let n = 0;
    while (this.chunks.length > 0 && n + this.chunks[0]!.length <= max) {
      const c = this.chunks.shift()!;
      out.push(c);
      n += c.length;
    }
    if (n === 0 && this.chunks.length > 0) {
      // A line longer than the request: split it.
      const c = this.chunks[0]!;
      out.push(c.subarray(0, max));
      this.chunks[0] = c.subarray(max);
      n = max;
    }
    this.bytes -= n;
    return Buffer.concat(out, n);
  }
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

/** Streams one line per VFS operation to every open `.accesslog` reader. */
export class AccessLog {
  private readonly readers = new Set<LogReader>();
  /** Cheap check for the hot path: format nothing when nobody listens. */
  get active(): boolean {
    return this.readers.size > 0;
  }

  /** `YYYY.MM.DD HH:MM:SS.uuuuuu [uid:U,gid:G,pid:P] op (args): result <seconds>` */
  log(ctx: Ctx | undefined, op: string, args: string, result: string, seconds: number): void {
    if (this.readers.size === 0) return;
    const d = new Date();
    const us = d.getMilliseconds() * 1000 + Number(process.hrtime.bigint() % 1000n);
    const line =
      `${d.getFullYear()}.${pad(d.getMonth() + 1, 2)}.${pad(d.getDate(), 2)} ` +
      `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(us, 6)} ` +
      `[uid:${ctx?.uid ?? 0},gid:${ctx?.gid ?? 0},pid:${ctx?.pid ?? 0}] ${op} (${args}): ${result} <${seconds.toFixed(6)}>\n`;
    const b = Buffer.from(line);
    for (const r of this.readers) r.push(b);
  }

  open(maxBytes = 4 << 20): LogReader {
    const r = new LogReader(maxBytes);
    this.readers.add(r);
    return r;
  }

  close(r: LogReader): void {
    this.readers.delete(r);
    r.waiter?.();
  }

  /**
   * Up to `size` bytes of pending lines. With none pending it waits up to `waitMs` and then returns
   * "#\n" so `cat .accesslog` keeps streaming instead of seeing EOF.
   */
  async read(r: LogReader, size: number, waitMs = 1000): Promise<Buffer> {
    if (r.bytes === 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          r.waiter = undefined;
          resolve();
        }, waitMs);
        r.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    if (r.bytes === 0) return Buffer.from('#\n');
    return r.take(size);
  }
}

/** An open handle of a virtual file. */
export interface VirtualHandle {
  read(off: number, size: number): Promise<Buffer>;
  release(): void;
}

export interface SystemFilesOptions {
  registry: MetricsRegistry;
  /** The mount configuration shown in `.config` (redacted before use). */
  config: () => Record<string, unknown>;
  format: () => Format;
  /** Owner of the virtual files (the mount process' uid/gid). */
  uid: number;
  gid: number;
}

export class SystemFiles {
  readonly accessLog = new AccessLog();
  private readonly born = Math.floor(Date.now() / 1000);

  constructor(private readonly opts: SystemFilesOptions) {}

  /** Virtual entry of the root named `name`, if any. */
  lookup(name: Buffer): Ino | undefined {
    if (name.length < 6 || name[0] !== 0x2e) return undefined;
    const s = name.toString();
    for (const v of SPECS) if (v.name === s) return v.ino;
    return undefined;
  }

  attr(ino: Ino): Attr {
    const spec = SPECS.find((s) => s.ino === ino) ?? { ino, name: '.control', mode: 0o666 };
    const t = this.born;
    return {
      flags: 0,
      type: FileType.File,
      mode: spec.mode,
      uid: this.opts.uid,
      gid: this.opts.gid,
      atime: t,
      atimensec: 0,
      mtime: t,
      mtimensec: 0,
      ctime: t,
      ctimensec: 0,
      nlink: 1,
      // Contents are produced at open; handles are direct-io, so the kernel reads until EOF.
      length: 0,
      rdev: 0,
      parent: 1n,
      accessACL: 0,
      defaultACL: 0,
      tier: 0,
    };
  }

  /** Entries the root listing shows (after the real ones). */
  entries(plus: boolean): Entry[] {
    return SPECS.map((s) => ({
      name: Buffer.from(s.name),
      ino: s.ino,
      type: FileType.File,
      ...(plus ? { attr: this.attr(s.ino) } : {}),
    }));
  }

  /** Render `.config`: the mount configuration with the Format's secrets removed. */
  configJson(): string {
    const cfg = redactConfig(this.opts.config()) as Record<string, unknown>;
    let format: Format | undefined;
    try {
      format = formatWithoutSecrets(this.opts.format());
    } catch {
      format = undefined; // meta not loaded (tests)
    }
    return JSON.stringify({ ...cfg, Format: format }, null, 2) + '\n';
  }

  open(ino: Ino): VirtualHandle {
    if (ino === ACCESSLOG_INODE) {
      const r = this.accessLog.open();
      return {
        read: (_off, size) => this.accessLog.read(r, size),
        release: () => this.accessLog.close(r),
      };
    }
    let content: Buffer;
    if (ino === STATS_INODE) content = Buffer.from(this.opts.registry.render());
    else if (ino === CONFIG_INODE) content = Buffer.from(this.configJson());
    else content = Buffer.alloc(0);
    return {
      read: async (off, size) => content.subarray(Math.min(off, content.length), Math.min(off + size, content.length)),
      release: () => {},
    };
  }
}
