/**
 * The JuiceFS-compatible metadata engine on Redis. Each operation follows the transaction of
 * juicefs-format.md section 4 (same keys WATCHed, same writes inside MULTI) so that upstream
 * `juicefs` clients and this engine can share one volume safely.
 *
 * One engine serves every prefix form: "" (standalone, a DB number), "{N}" (Redis Cluster) and
 * "{u_X_w_Y}:" (artifacts workspaces). The one Lua script (a one-round-trip lookup, scripts.ts) is
 * optional: Cluster and ACL users without scripting take the plain-command path.
 */
import { Limiter } from '../limiter.js';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { hostname } from 'node:os';
import { checkAccess, checkSticky, MODE_R, MODE_W, MODE_X, toName, validName } from '../access.js';
import {
  align4K,
  decodeAttr,
  decodeDelSlices,
  decodeDentry,
  decodePlocks,
  decodeSlices,
  encodeAttr,
  encodeDelSlices,
  encodeDentry,
  encodePlocks,
  encodeSlice,
  newAttr,
  nowTime,
  PLOCK_MAX_END,
  type PlockRecord,
} from '../codec.js';
import type { Compactor, LookupResult, Meta, MetaOptions } from '../interface.js';
import { Keys, lockOwnerField, sliceRefField } from '../keys.js';
import { decodeSetting, withDefaultTiers } from '../setting.js';
import { buildSlices } from '../slices.js';
import {
  type Attr,
  CHUNK_SIZE,
  type Ctx,
  type Entry,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  FALLOC_COLLAPSE_RANGE,
  FALLOC_INSERT_RANGE,
  FALLOC_KEEP_SIZE,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  FileType,
  FLAG_APPEND,
  FLAG_IMMUTABLE,
  FLAG_SKIP_TRASH,
  type Format,
  type Ino,
  MAX_SYMLINK_LEN,
  MAX_XATTR_NAME,
  MAX_XATTR_VALUE,
  metaErr,
  type PosixLock,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  ROOT_INODE,
  type SetAttrRequest,
  type Slice,
  type StatFs,
  TRASH_INODE,
  XATTR_CREATE,
  XATTR_REPLACE,
} from '../types.js';
import { checkFormat, CLIENT_VERSION } from '../version.js';
import { LookupScript } from './scripts.js';
import { closeConn, type Conn, ConnPool, mapRedisError, runTxn, type TxnStep } from './txn.js';

/** Files whose data is deleted concurrently in the background. */
const MAX_DELETES = 10;
const INODE_BATCH = 1024;
const SLICE_BATCH = 4096;
const SKIP_DIR_MTIME_NS = 100_000_000n;
const MAX_FILE_SIZE = CHUNK_SIZE * 2 ** 31;

export interface RedisMetaOptions extends MetaOptions {
  /** Dedicated connections for WATCH/MULTI transactions (default 8). */
  txnConnections?: number;
  /** Look names up with one Lua call where scripting is allowed (default true; scripts.ts). */
  luaLookup?: boolean;
}

interface DirStatDelta {
  length: number;
  space: number;
  inodes: number;
}

function sec2ns(sec: number, nsec: number): bigint {
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

/** `to` is `from` with one or both set-id bits cleared and nothing else changed. */
function onlyDropsSetId(from: number, to: number): boolean {
  const SETID = 0o6000;
  return (to & ~SETID) === (from & 0o7777 & ~SETID) && (to & SETID & ~from) === 0 && (to & SETID) !== (from & SETID);
}

function isTrash(ino: Ino): boolean {
  return ino >= TRASH_INODE;
}

function rootAttr(ino: Ino): Attr {
  const a = newAttr(FileType.Dir, ino === ROOT_INODE ? 0o777 : 0o555, { sec: 0, nsec: 0 });
  a.parent = ROOT_INODE;
  return a;
}

function touch(a: Attr, now: { sec: number; nsec: number }): void {
  a.mtime = now.sec;
  a.mtimensec = now.nsec;
  a.ctime = now.sec;
  a.ctimensec = now.nsec;
}

export class RedisMeta implements Meta {
  readonly keys: Keys;
  private fmt: Format | undefined;
  private sessionId = 0;
  private readonly pool: ConnPool;
  private inoNext = 0n;
  private inoMax = -1n;
  private inoAlloc: Promise<void> | undefined;
  private sliceNext = 0;
  private sliceMax = -1;
  private sliceAlloc: Promise<void> | undefined;
  /** Open counts of this session's files (sustained inodes on unlink). */
  private readonly openFiles = new Map<Ino, number>();
  /** Inodes this session sustained (unlinked while open): only these need work on last close. */
  private readonly sustained = new Set<Ino>();
  /** Chunks with a compaction in flight (one at a time per chunk). */
  private readonly compacting = new Set<string>();
  /** Background file-data deletions (upstream --max-deletes, default 10). */
  private readonly deletes = new Limiter(MAX_DELETES);
  private readonly dirStats = new Map<Ino, DirStatDelta>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private dirStatTimer: NodeJS.Timeout | undefined;
  private readonly background = new Set<Promise<unknown>>();
  private compactor: Compactor | undefined;
  private readonly trashDirs = new Map<string, Ino>();
  private closed = false;
  private readonly lookupScript = new LookupScript();

  constructor(
    readonly redis: Conn,
    readonly prefix: string,
    readonly opts: RedisMetaOptions = {},
    /** Builds an extra connection for the transaction pool. */
    makeConn?: () => Conn,
  ) {
    this.keys = new Keys(prefix);
    const make = makeConn ?? (() => (redis as Redis).duplicate({ enableAutoPipelining: false }));
    this.pool = new ConnPool(make, opts.txnConnections ?? 8);
  }

  get format(): Format {
    if (!this.fmt) throw new Error('volume not loaded: call load() first');
    return this.fmt;
  }

  get sid(): number {
    return this.sessionId;
  }

  get readOnly(): boolean {
    return this.opts.readOnly === true;
  }

  setCompactor(c: Compactor): void {
    this.compactor = c;
  }

  // ---------------------------------------------------------------- volume & session

  async load(): Promise<Format> {
    const raw = await this.redis.get(this.keys.setting);
    if (raw === null) throw new Error(`no volume found at this Redis URL (key ${this.keys.setting} is missing): run 'artifacts format' first`);
    const fmt = withDefaultTiers(decodeSetting(raw));
    checkFormat(fmt);
    this.fmt = fmt;
    if (this.opts.luaLookup !== false) await this.lookupScript.init(this.redis, this.redis.isCluster);
    return fmt;
  }

  private sessionInfo(): string {
    return JSON.stringify({
      Version: CLIENT_VERSION,
      HostName: hostname(),
      MountPoint: this.opts.mountPoint ?? '',
      MountTime: new Date().toISOString(),
      ProcessID: process.pid,
    });
  }

  private heartbeatSec(): number {
    return this.opts.heartbeat ?? 12;
  }

  async newSession(): Promise<void> {
    if (this.readOnly) return;
    const sid = await this.redis.incr(this.keys.nextSession);
    this.sessionId = sid;
    const expire = Math.floor(Date.now() / 1000) + 5 * this.heartbeatSec();
    await this.redis.multi().zadd(this.keys.allSessions, expire, String(sid)).hset(this.keys.sessionInfos, String(sid), this.sessionInfo()).exec();
    const period = this.heartbeatSec() * 1000;
    this.heartbeatTimer = setInterval(() => this.track(this.heartbeat()), period * (0.9 + Math.random() * 0.2));
    this.heartbeatTimer.unref();
    this.dirStatTimer = setInterval(() => this.track(this.flushDirStats()), 1000);
    this.dirStatTimer.unref();
    if (this.opts.backgroundJobs !== false) this.track(this.cleanStaleSessions());
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => {
      if (!this.closed) process.emitWarning(`artifacts metadata background job failed: ${e instanceof Error ? e.message : String(e)}`);
    });
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  private async heartbeat(): Promise<void> {
    if (!this.sessionId) return;
    const expire = Math.floor(Date.now() / 1000) + 5 * this.heartbeatSec();
    await this.redis.multi().hsetnx(this.keys.sessionInfos, String(this.sessionId), this.sessionInfo()).zadd(this.keys.allSessions, expire, String(this.sessionId)).exec();
    const raw = await this.redis.get(this.keys.setting);
    if (raw !== null) {
      const fmt = withDefaultTiers(decodeSetting(raw));
      if (this.fmt && fmt.UUID !== this.fmt.UUID) throw new Error('volume UUID changed under this mount');
      this.fmt = fmt;
    }
    if (this.opts.backgroundJobs !== false && (await this.setIfSmall(this.keys.lastCleanupSessions, 0.9 * this.heartbeatSec()))) {
      await this.cleanStaleSessions();
    }
    if (this.opts.backgroundJobs !== false) await this.runHourlyJobs();
  }

  /** Leader election for background jobs: true if this client won the slot. */
  private async setIfSmall(key: string, diffSec: number): Promise<boolean> {
    const now = Math.floor(Date.now() / 1000);
    return runTxn(this.pool, [key], async (c) => {
      const old = Number((await c.get(key)) ?? 0);
      if (old > now - diffSec) return { result: false };
      return { result: true, write: (m) => m.set(key, String(now)) };
    });
  }

  private async cleanStaleSessions(): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const sids = await this.redis.zrangebyscore(this.keys.allSessions, '-inf', String(now), 'LIMIT', 0, 1000);
    for (const s of sids) {
      const sid = Number(s);
      if (sid === this.sessionId) continue;
      await this.cleanSession(sid);
    }
  }

  /** Remove a session's locks and sustained inodes, then the session itself (4.11). */
  async cleanSession(sid: number): Promise<void> {
    const lockedKey = this.keys.locked(sid);
    const lockKeys = await this.redis.smembers(lockedKey);
    const ownerPrefix = sid + '_';
    for (const k of lockKeys) {
      const fields = await this.redis.hkeys(k);
      const mine = fields.filter((f) => f.startsWith(ownerPrefix));
      if (mine.length) await this.redis.hdel(k, ...mine);
      await this.redis.srem(lockedKey, k);
    }
    const sustained = await this.redis.smembers(this.keys.session(sid));
    for (const s of sustained) await this.deleteSustained(sid, BigInt(s));
    await this.redis.multi().hdel(this.keys.sessionInfos, String(sid)).zrem(this.keys.allSessions, String(sid)).del(lockedKey).exec();
  }

  async closeSession(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.dirStatTimer) clearInterval(this.dirStatTimer);
    this.heartbeatTimer = this.dirStatTimer = undefined;
    if (this.redis.status !== 'ready') {
      // Redis is down: nothing can be recorded now. Another client's stale-session cleaner
      // releases our locks and sustained inodes once our session expires.
      this.sessionId = 0;
      throw metaErr('EIO', 'metadata server unavailable: session left for the stale-session cleaner');
    }
    await this.flushDirStats();
    await this.settleBackground(10_000);
    if (this.sessionId) {
      // Our own open files are closed now: their sustained inodes go away with the session.
      await this.cleanSession(this.sessionId);
      this.sessionId = 0;
    }
  }

  /** Wait (bounded) for background jobs to finish. */
  private async settleBackground(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.background.size && Date.now() < deadline) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...this.background]), new Promise((r) => (t = setTimeout(r, Math.max(1, deadline - Date.now()))))]);
      clearTimeout(t);
    }
  }

  /** Wait for background work (file data deletion, dir stats) to settle. */
  async drain(): Promise<void> {
    await this.flushDirStats();
    while (this.background.size) await Promise.all([...this.background]);
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    if (this.sessionId) await this.closeSession().catch(() => undefined);
    await this.pool.close();
    await closeConn(this.redis);
  }

  // ---------------------------------------------------------------- id allocation

  private async nextInode(): Promise<Ino> {
    for (;;) {
      if (this.inoNext <= this.inoMax) {
        const v = this.inoNext++;
        if (v > 1n) return v;
        continue;
      }
      if (!this.inoAlloc) {
        this.inoAlloc = (async () => {
          const v = BigInt(await this.redis.incrby(this.keys.nextInode, INODE_BATCH));
          this.inoNext = v - BigInt(INODE_BATCH) + 1n;
          this.inoMax = v;
        })().finally(() => (this.inoAlloc = undefined));
      }
      await this.inoAlloc;
    }
  }

  async newSliceId(): Promise<number> {
    for (;;) {
      if (this.sliceNext <= this.sliceMax) {
        const v = this.sliceNext++;
        if (v > 0) return v;
        continue;
      }
      if (!this.sliceAlloc) {
        this.sliceAlloc = (async () => {
          const v = await this.redis.incrby(this.keys.nextChunk, SLICE_BATCH);
          this.sliceNext = v - SLICE_BATCH + 1;
          this.sliceMax = v;
        })().finally(() => (this.sliceAlloc = undefined));
      }
      await this.sliceAlloc;
    }
  }

  // ---------------------------------------------------------------- helpers

  private checkWritable(): void {
    if (this.readOnly) throw metaErr('EROFS');
  }

  private parseAttr(buf: Buffer | null, ino: Ino): Attr {
    if (buf === null) {
      if (ino === ROOT_INODE || ino === TRASH_INODE) return rootAttr(ino);
      throw metaErr('ENOENT');
    }
    return decodeAttr(buf);
  }

  private async txn<T>(keys: string[], body: (c: Conn) => Promise<TxnStep<T>>): Promise<T> {
    return runTxn(this.pool, keys, body);
  }

  private async mgetAttrs(c: Conn, inos: Ino[]): Promise<(Buffer | null)[]> {
    return c.mgetBuffer(...inos.map((i) => this.keys.inode(i)));
  }

  /** Sets parent mtime/ctime = now unless it was touched within 100 ms (upstream's --skip-dir-mtime). */
  private shouldTouchDir(dir: Attr, now: { sec: number; nsec: number }): boolean {
    return sec2ns(now.sec, now.nsec) - sec2ns(dir.mtime, dir.mtimensec) >= SKIP_DIR_MTIME_NS;
  }

  private updateDirStat(ino: Ino, length: number, space: number, inodes: number): void {
    // `.trash` itself carries no stat fields upstream (its hourly sub-directories do).
    if (!this.fmt?.DirStats || ino === TRASH_INODE) return;
    if (length === 0 && space === 0 && inodes === 0) return;
    const d = this.dirStats.get(ino);
    if (d) {
      d.length += length;
      d.space += space;
      d.inodes += inodes;
    } else this.dirStats.set(ino, { length, space, inodes });
  }

  /**
   * Dir-stat deltas are applied in batches and only to existing fields (1.3.9): a missing field
   * means "unknown", and the next reader recomputes it from a listing.
   */
  async flushDirStats(): Promise<void> {
    if (this.dirStats.size === 0) return;
    const batch = [...this.dirStats];
    this.dirStats.clear();
    const k = this.keys;
    const fields = batch.map(([ino]) => String(ino));
    const [len, space, inodes] = await Promise.all([
      this.redis.hmget(k.dirDataLength, ...fields),
      this.redis.hmget(k.dirUsedSpace, ...fields),
      this.redis.hmget(k.dirUsedInodes, ...fields),
    ]);
    const p = this.redis.pipeline();
    const missing: Ino[] = [];
    batch.forEach(([ino, d], i) => {
      // Like upstream, "space missing" means the stat is unknown: recompute it from a listing.
      if (space[i] === null) {
        missing.push(ino);
        return;
      }
      if (len[i] !== null && d.length) p.hincrby(k.dirDataLength, fields[i], d.length);
      if (d.space) p.hincrby(k.dirUsedSpace, fields[i], d.space);
      if (inodes[i] !== null && d.inodes) p.hincrby(k.dirUsedInodes, fields[i], d.inodes);
    });
    if (p.length) await p.exec();
    for (const ino of missing) {
      await this.syncDirStat(ino).catch(() => undefined);
      // The listing already includes every change made so far: pending deltas would count twice.
      this.dirStats.delete(ino);
    }
  }

  /** Recompute a directory's stats from its entries and store all three fields (doSyncDirStat). */
  async syncDirStat(ino: Ino): Promise<void> {
    const entries = await this.readdir({ uid: 0, gid: 0, gids: [0], pid: 0, checkPermission: false }, ino, true);
    let length = 0;
    let space = 0;
    for (const e of entries) {
      if (e.type === FileType.File) {
        const l = e.attr?.length ?? 0;
        length += l;
        space += align4K(l);
      } else space += 4096;
    }
    const f = String(ino);
    const k = this.keys;
    await this.redis.multi().hset(k.dirDataLength, f, String(length)).hset(k.dirUsedSpace, f, String(space)).hset(k.dirUsedInodes, f, String(entries.length)).exec();
  }

  /** Parents of an inode for dir-stat deltas: attr.parent, or every p{ino} entry with a positive count. */
  private async statParents(ino: Ino, attr: Attr): Promise<[Ino, number][]> {
    if (attr.parent !== 0n) return [[attr.parent, 1]];
    const all = await this.redis.hgetall(this.keys.parents(ino));
    return Object.entries(all)
      .map(([p, n]) => [BigInt(p), Number(n)] as [Ino, number])
      .filter(([, n]) => n > 0);
  }

  private async trashDir(): Promise<Ino> {
    const d = new Date();
    const name = `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}-${String(d.getUTCHours()).padStart(2, '0')}`;
    const cached = this.trashDirs.get(name);
    if (cached) return cached;
    const raw = await this.redis.hgetBuffer(this.keys.entry(TRASH_INODE), name);
    let ino: Ino;
    if (raw) ino = decodeDentry(raw).ino;
    else {
      try {
        ino = (await this.mknodInternal({ uid: 0, gid: 0, gids: [0], pid: 0, checkPermission: false }, TRASH_INODE, Buffer.from(name), FileType.Dir, 0o555, 0, undefined)).ino;
      } catch (e) {
        if ((e as { code?: string }).code !== 'EEXIST') throw e;
        const again = await this.redis.hgetBuffer(this.keys.entry(TRASH_INODE), name);
        if (!again) throw e;
        ino = decodeDentry(again).ino;
      }
    }
    this.trashDirs.clear();
    this.trashDirs.set(name, ino);
    return ino;
  }

  private trashName(parent: Ino, ino: Ino, name: Buffer): Buffer {
    const b = Buffer.concat([Buffer.from(`${parent}-${ino}-`), name]);
    return b.length > 255 ? b.subarray(0, 255) : b;
  }

  // ---------------------------------------------------------------- read-only ops

  async getAttr(ino: Ino): Promise<Attr> {
    const buf = await this.redis.getBuffer(this.keys.inode(ino));
    return this.parseAttr(buf, ino);
  }

  async access(ctx: Ctx, ino: Ino, mask: number, attr?: Attr): Promise<void> {
    if (ctx.uid === 0 || ctx.checkPermission === false) return;
    checkAccess(ctx, attr ?? (await this.getAttr(ino)), mask);
  }

  async lookup(ctx: Ctx, parent: Ino, nameIn: Buffer | string): Promise<LookupResult> {
    const name = toName(nameIn);
    if (name.length > 255) throw metaErr('ENAMETOOLONG');
    if (name.length === 1 && name[0] === 0x2e) return { ino: parent, attr: await this.getAttr(parent) };
    if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) {
      if (parent === ROOT_INODE) return { ino: ROOT_INODE, attr: await this.getAttr(ROOT_INODE) };
      const pa = await this.getAttr(parent);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      const gp = pa.parent === 0n ? ROOT_INODE : pa.parent;
      return { ino: gp, attr: await this.getAttr(gp) };
    }
    if (parent === ROOT_INODE && name.equals(Buffer.from('.trash'))) {
      return { ino: TRASH_INODE, attr: await this.getAttr(TRASH_INODE) };
    }
    const needParent = ctx.checkPermission !== false && ctx.uid !== 0;
    let entry: Buffer | null;
    if (needParent) {
      const p = this.redis.pipeline();
      p.getBuffer(this.keys.inode(parent));
      p.hgetBuffer(this.keys.entry(parent), name);
      const res = (await p.exec()) ?? [];
      if (res[0][0]) throw mapRedisError(res[0][0]);
      const pa = this.parseAttr(res[0][1] as Buffer | null, parent);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      checkAccess(ctx, pa, MODE_X);
      entry = res[1][1] as Buffer | null;
    } else {
      const r = await this.lookupScript.run(this.redis, this.keys.entry(parent), name, this.keys.inode(0n).slice(0, -1));
      if (r === null) throw metaErr('ENOENT');
      if (r !== undefined) {
        const { type, ino } = decodeDentry(r[0]);
        return { ino, attr: r[1] === null ? newAttr(type, 0, { sec: 0, nsec: 0 }) : decodeAttr(r[1]) };
      }
      entry = await this.redis.hgetBuffer(this.keys.entry(parent), name);
    }
    if (!entry) throw metaErr('ENOENT');
    const { type, ino } = decodeDentry(entry);
    const buf = await this.redis.getBuffer(this.keys.inode(ino));
    if (buf === null) {
      const a = newAttr(type, 0, { sec: 0, nsec: 0 });
      return { ino, attr: a };
    }
    return { ino, attr: decodeAttr(buf) };
  }

  async readlink(_ctx: Ctx, ino: Ino): Promise<Buffer> {
    const b = await this.redis.getBuffer(this.keys.symlink(ino));
    if (b === null) throw metaErr('ENOENT');
    return b;
  }

  async readdir(ctx: Ctx, ino: Ino, plus: boolean): Promise<Entry[]> {
    const attr = await this.getAttr(ino);
    if (attr.type !== FileType.Dir) throw metaErr('ENOTDIR');
    checkAccess(ctx, attr, MODE_R);
    const out: Entry[] = [];
    const key = this.keys.entry(ino);
    let cursor = '0';
    do {
      const [next, items] = await this.redis.hscanBuffer(key, cursor, 'COUNT', 10000);
      cursor = next.toString();
      for (let i = 0; i + 1 < items.length; i += 2) {
        const name = items[i];
        if (name.length === 0) continue;
        const d = decodeDentry(items[i + 1]);
        out.push({ name, ino: d.ino, type: d.type });
      }
    } while (cursor !== '0');
    if (plus && out.length) {
      for (let i = 0; i < out.length; i += 4096) {
        const part = out.slice(i, i + 4096);
        const bufs = await this.mgetAttrs(this.redis, part.map((e) => e.ino));
        part.forEach((e, j) => {
          const b = bufs[j];
          e.attr = b ? decodeAttr(b) : newAttr(e.type, 0, { sec: 0, nsec: 0 });
        });
      }
    }
    return out;
  }

  async statfs(_ctx: Ctx, _ino: Ino): Promise<StatFs> {
    const [used, inodes] = await this.redis.mget(this.keys.usedSpace, this.keys.totalInodes);
    const usedSpace = Math.max(0, Number(used ?? 0));
    const usedInodes = Math.max(0, Number(inodes ?? 0));
    const fmt = this.format;
    let total = fmt.Capacity ?? 0;
    if (!total) {
      total = 1 << 30;
      total *= 1 << 20; // 1 PiB
      while (total * 0.9 < usedSpace) total *= 2;
    }
    let totalInodes = fmt.Inodes ?? 0;
    if (!totalInodes) {
      totalInodes = 10 << 20;
      while (totalInodes * 0.9 < usedInodes) totalInodes *= 2;
    }
    return {
      totalSpace: total,
      availSpace: Math.max(0, total - usedSpace),
      usedInodes,
      availInodes: Math.max(0, totalInodes - usedInodes),
    };
  }

  // ---------------------------------------------------------------- namespace ops

  async mknod(
    ctx: Ctx,
    parent: Ino,
    name: Buffer | string,
    type: FileType,
    mode: number,
    rdev = 0,
    target?: Buffer | string,
  ): Promise<LookupResult> {
    this.checkWritable();
    const n = toName(name);
    validName(n);
    if (parent === ROOT_INODE && n.equals(Buffer.from('.trash'))) throw metaErr('EPERM');
    if (isTrash(parent)) throw metaErr('EPERM');
    return this.mknodInternal(ctx, parent, n, type, mode, rdev, target === undefined ? undefined : toName(target));
  }

  private async mknodInternal(
    ctx: Ctx,
    parent: Ino,
    name: Buffer,
    type: FileType,
    mode: number,
    rdev: number,
    target: Buffer | undefined,
    exclusive = true,
  ): Promise<LookupResult & { created: boolean }> {
    if (type === FileType.Symlink) {
      if (!target || target.length === 0) throw metaErr('ENOENT');
      if (target.length > MAX_SYMLINK_LEN) throw metaErr('ENAMETOOLONG');
    }
    const k = this.keys;
    let ino: Ino = parent === TRASH_INODE ? 0n : await this.nextInode();
    const umask = ctx.umask ?? 0;
    const pk = k.inode(parent);
    const dk = k.entry(parent);
    const res = await this.txn<LookupResult & { created: boolean }>([pk, dk], async (c) => {
      const p = c.pipeline();
      p.getBuffer(pk);
      p.hgetBuffer(dk, name);
      const r = (await p.exec()) ?? [];
      if (r[0][0]) throw r[0][0];
      const pa = this.parseAttr(r[0][1] as Buffer | null, parent);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      if (pa.parent > TRASH_INODE) throw metaErr('ENOENT');
      checkAccess(ctx, pa, MODE_W | MODE_X);
      if (pa.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
      const existing = r[1][1] as Buffer | null;
      if (existing) {
        const d = decodeDentry(existing);
        if (!exclusive && (type === FileType.File || type === FileType.Dir)) {
          const ab = await c.getBuffer(k.inode(d.ino));
          return { result: { ino: d.ino, attr: ab ? decodeAttr(ab) : newAttr(d.type, 0, { sec: 0, nsec: 0 }), created: false } };
        }
        throw metaErr('EEXIST');
      }
      if (parent === TRASH_INODE && ino === 0n) ino = TRASH_INODE + BigInt(await this.redis.incr(k.nextTrash));
      const now = nowTime();
      const a = newAttr(type, mode & ~umask, now);
      a.uid = ctx.uid;
      a.gid = ctx.gid;
      if (pa.mode & 0o2000) {
        // setgid directory: inherit the group, and directories inherit the bit itself.
        a.gid = pa.gid;
        if (type === FileType.Dir) a.mode |= 0o2000;
        else if ((a.mode & 0o2010) === 0o2010 && ctx.uid !== 0 && !ctx.gids.includes(pa.gid) && ctx.gid !== pa.gid) a.mode &= ~0o2000;
      }
      a.rdev = rdev;
      a.parent = parent;
      a.tier = pa.tier;
      a.flags = pa.flags & FLAG_SKIP_TRASH;
      if (type === FileType.Symlink) a.length = target!.length;
      const touchParent = parent !== TRASH_INODE && (type === FileType.Dir || this.shouldTouchDir(pa, now));
      if (touchParent) {
        touch(pa, now);
        if (type === FileType.Dir) pa.nlink++;
      }
      const inoStr = String(ino);
      return {
        result: { ino, attr: a, created: true },
        write: (m) => {
          m.set(k.inode(ino), encodeAttr(a));
          if (touchParent) m.set(pk, encodeAttr(pa));
          if (type === FileType.Symlink) m.set(k.symlink(ino), target!);
          m.hset(dk, name, encodeDentry(type, ino));
          if (type === FileType.Dir) {
            m.hset(k.dirUsedInodes, inoStr, '0');
            m.hset(k.dirDataLength, inoStr, '0');
            m.hset(k.dirUsedSpace, inoStr, '0');
          }
          m.incrby(k.usedSpace, align4K(0));
          m.incr(k.totalInodes);
        },
      };
    });
    if (res.created) this.updateDirStat(parent, 0, align4K(0), 1);
    return res;
  }

  async create(ctx: Ctx, parent: Ino, name: Buffer | string, mode: number, exclusive: boolean): Promise<LookupResult & { created: boolean }> {
    this.checkWritable();
    const n = toName(name);
    validName(n);
    if (parent === ROOT_INODE && n.equals(Buffer.from('.trash'))) throw metaErr('EPERM');
    if (isTrash(parent)) throw metaErr('EPERM');
    const r = await this.mknodInternal(ctx, parent, n, FileType.File, mode, 0, undefined, exclusive);
    if (!r.created && r.attr.type === FileType.Dir) throw metaErr('EISDIR');
    return r;
  }

  async mkdir(ctx: Ctx, parent: Ino, name: Buffer | string, mode: number): Promise<LookupResult> {
    return this.mknod(ctx, parent, name, FileType.Dir, mode, 0);
  }

  async symlink(ctx: Ctx, parent: Ino, name: Buffer | string, target: Buffer | string): Promise<LookupResult> {
    return this.mknod(ctx, parent, name, FileType.Symlink, 0o777, 0, target);
  }

  async link(ctx: Ctx, ino: Ino, parent: Ino, nameIn: Buffer | string): Promise<Attr> {
    this.checkWritable();
    const name = toName(nameIn);
    validName(name);
    if (isTrash(parent)) throw metaErr('EPERM');
    if (parent === ROOT_INODE && name.equals(Buffer.from('.trash'))) throw metaErr('EPERM');
    const k = this.keys;
    const pk = k.inode(parent);
    const dk = k.entry(parent);
    const ik = k.inode(ino);
    const res = await this.txn<{ attr: Attr; parents: [Ino, number][] }>([pk, dk, ik], async (c) => {
      const p = c.pipeline();
      p.mgetBuffer(pk, ik);
      p.hexists(dk, name);
      const r = (await p.exec()) ?? [];
      if (r[0][0]) throw r[0][0];
      const [pb, ib] = r[0][1] as (Buffer | null)[];
      const pa = this.parseAttr(pb, parent);
      if (ib === null) throw metaErr('ENOENT');
      const a = decodeAttr(ib);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      if (pa.parent > TRASH_INODE) throw metaErr('ENOENT');
      if (a.type === FileType.Dir) throw metaErr('EPERM');
      if (a.flags & (FLAG_IMMUTABLE | FLAG_APPEND) || pa.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
      checkAccess(ctx, pa, MODE_W | MODE_X);
      if (r[1][1]) throw metaErr('EEXIST');
      const now = nowTime();
      const oldParent = a.parent;
      a.parent = 0n;
      a.nlink++;
      a.ctime = now.sec;
      a.ctimensec = now.nsec;
      const touchParent = this.shouldTouchDir(pa, now);
      if (touchParent) touch(pa, now);
      return {
        result: { attr: a, parents: [[parent, 1]] },
        write: (m) => {
          m.hset(dk, name, encodeDentry(a.type, ino));
          if (touchParent) m.set(pk, encodeAttr(pa));
          m.set(ik, encodeAttr(a));
          if (oldParent !== 0n) m.hincrby(k.parents(ino), String(oldParent), 1);
          m.hincrby(k.parents(ino), String(parent), 1);
        },
      };
    });
    const a = res.attr;
    this.updateDirStat(parent, a.type === FileType.File ? a.length : 0, a.type === FileType.File ? align4K(a.length) : 4096, 1);
    return a;
  }

  async unlink(ctx: Ctx, parent: Ino, nameIn: Buffer | string): Promise<void> {
    this.checkWritable();
    const name = toName(nameIn);
    if (name.length > 255) throw metaErr('ENAMETOOLONG');
    if (parent === ROOT_INODE && name.equals(Buffer.from('.trash'))) throw metaErr('EPERM');
    if (isTrash(parent) && ctx.uid !== 0 && ctx.checkPermission !== false) throw metaErr('EPERM');
    const k = this.keys;
    const useTrash = (this.fmt?.TrashDays ?? 0) > 0 && !isTrash(parent);
    const trash = useTrash ? await this.trashDir() : 0n;
    const pk = k.inode(parent);
    const dk = k.entry(parent);
    const res = await this.txn<{ ino: Ino; attr: Attr; deleted: boolean; sustained: boolean; trashed?: boolean }>([pk, dk], async (c) => {
      const eb = await c.hgetBuffer(dk, name);
      if (!eb) throw metaErr('ENOENT');
      const { type, ino } = decodeDentry(eb);
      if (type === FileType.Dir) throw metaErr('EISDIR');
      const ik = k.inode(ino);
      void c.watch(ik).catch(() => undefined);
      const [pb, ib] = await this.mgetAttrs(c, [parent, ino]);
      const pa = this.parseAttr(pb, parent);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      checkAccess(ctx, pa, MODE_W | MODE_X);
      if (pa.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      const now = nowTime();
      let a: Attr;
      if (ib === null) {
        // Dentry without an inode (a broken entry): just drop the name.
        a = newAttr(type, 0, now);
        a.nlink = 0;
        return { result: { ino, attr: a, deleted: false, sustained: false }, write: (m) => m.hdel(dk, name) };
      }
      a = decodeAttr(ib);
      checkSticky(ctx, pa, a);
      if (a.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      let toTrash = useTrash && !(a.flags & FLAG_SKIP_TRASH);
      const tname = toTrash ? this.trashName(parent, ino, name) : Buffer.alloc(0);
      if (toTrash && a.nlink > 1 && (await c.hexists(k.entry(trash), tname))) toTrash = false;
      const oldParent = a.parent;
      const touchParent = !isTrash(parent) && this.shouldTouchDir(pa, now);
      if (touchParent) touch(pa, now);
      a.ctime = now.sec;
      a.ctimensec = now.nsec;
      let deleted = false;
      let sustained = false;
      if (!toTrash) {
        a.nlink = Math.max(0, a.nlink - 1);
        if (a.nlink === 0) {
          if (type === FileType.File && (this.openFiles.get(ino) ?? 0) > 0 && this.sessionId) sustained = true;
          else deleted = true;
        }
      }
      return {
        result: { ino, attr: a, deleted, sustained, trashed: toTrash },
        write: (m) => {
          m.hdel(dk, name);
          if (touchParent) m.set(pk, encodeAttr(pa));
          if (toTrash) {
            if (oldParent !== 0n) a.parent = trash;
            m.set(k.inode(ino), encodeAttr(a));
            m.hset(k.entry(trash), tname, eb);
            if (oldParent === 0n) {
              m.hincrby(k.parents(ino), String(trash), 1);
              m.hincrby(k.parents(ino), String(parent), -1);
            }
          } else if (a.nlink > 0) {
            m.set(k.inode(ino), encodeAttr(a));
            if (oldParent === 0n) m.hincrby(k.parents(ino), String(parent), -1);
          } else {
            if (sustained) {
              m.set(k.inode(ino), encodeAttr(a));
              m.sadd(k.session(this.sessionId), String(ino));
            } else {
              if (type === FileType.File) {
                m.zadd(k.delfiles, Math.floor(Date.now() / 1000), `${ino}:${a.length}`);
                m.incrby(k.usedSpace, -align4K(a.length));
              } else {
                if (type === FileType.Symlink) m.del(k.symlink(ino));
                m.incrby(k.usedSpace, -align4K(0));
              }
              m.del(k.inode(ino));
              m.decr(k.totalInodes);
            }
            m.del(k.xattr(ino));
            if (oldParent === 0n) m.del(k.parents(ino));
          }
        },
      };
    });
    const a = res.attr;
    const len = a.type === FileType.File ? a.length : 0;
    const space = a.type === FileType.File ? align4K(a.length) : 4096;
    this.updateDirStat(parent, -len, -space, -1);
    if (res.trashed) this.updateDirStat(trash, len, space, 1);
    if (res.sustained) this.sustained.add(res.ino);
    if (res.deleted && a.type === FileType.File) this.track(this.deleteFileData(res.ino, a.length));
  }

  async rmdir(ctx: Ctx, parent: Ino, nameIn: Buffer | string): Promise<void> {
    this.checkWritable();
    const name = toName(nameIn);
    if (name.length === 1 && name[0] === 0x2e) throw metaErr('EINVAL');
    if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) throw metaErr('ENOTEMPTY');
    if (name.length > 255) throw metaErr('ENAMETOOLONG');
    if (parent === ROOT_INODE && name.equals(Buffer.from('.trash'))) throw metaErr('EPERM');
    if (isTrash(parent) && ctx.uid !== 0 && ctx.checkPermission !== false) throw metaErr('EPERM');
    const k = this.keys;
    const useTrash = (this.fmt?.TrashDays ?? 0) > 0 && !isTrash(parent);
    const trash = useTrash ? await this.trashDir() : 0n;
    const pk = k.inode(parent);
    const dk = k.entry(parent);
    const trashed = await this.txn<boolean>([pk, dk], async (c) => {
      const eb = await c.hgetBuffer(dk, name);
      if (!eb) throw metaErr('ENOENT');
      const { type, ino } = decodeDentry(eb);
      if (type !== FileType.Dir) throw metaErr('ENOTDIR');
      void c.watch(k.inode(ino), k.entry(ino)).catch(() => undefined);
      const p = c.pipeline();
      p.mgetBuffer(pk, k.inode(ino));
      p.hlen(k.entry(ino));
      const r = (await p.exec()) ?? [];
      if (r[0][0]) throw r[0][0];
      const [pb, ib] = r[0][1] as (Buffer | null)[];
      const pa = this.parseAttr(pb, parent);
      if (pa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      checkAccess(ctx, pa, MODE_W | MODE_X);
      if (pa.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      if ((r[1][1] as number) > 0) throw metaErr('ENOTEMPTY');
      const now = nowTime();
      const a = ib ? decodeAttr(ib) : null;
      if (a) {
        checkSticky(ctx, pa, a);
        if (a.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      }
      const toTrash = useTrash && a !== null && !(a.flags & FLAG_SKIP_TRASH);
      const touchParent = !isTrash(parent);
      if (touchParent) {
        pa.nlink = Math.max(2, pa.nlink - 1);
        touch(pa, now);
      }
      const inoStr = String(ino);
      return {
        result: toTrash,
        write: (m) => {
          m.hdel(dk, name);
          if (touchParent) m.set(pk, encodeAttr(pa));
          if (toTrash && a) {
            a.ctime = now.sec;
            a.ctimensec = now.nsec;
            a.parent = trash;
            m.set(k.inode(ino), encodeAttr(a));
            m.hset(k.entry(trash), this.trashName(parent, ino, name), eb);
          } else {
            m.del(k.inode(ino));
            m.del(k.xattr(ino));
            m.incrby(k.usedSpace, -align4K(0));
            m.decr(k.totalInodes);
          }
          m.hdel(k.dirDataLength, inoStr);
          m.hdel(k.dirUsedSpace, inoStr);
          m.hdel(k.dirUsedInodes, inoStr);
          m.hdel(k.dirQuota, inoStr);
          m.hdel(k.dirQuotaUsedSpace, inoStr);
          m.hdel(k.dirQuotaUsedInodes, inoStr);
        },
      };
    });
    this.updateDirStat(parent, 0, -4096, -1);
    if (trashed) this.updateDirStat(trash, 0, 4096, 1);
  }

  async rename(
    ctx: Ctx,
    srcParent: Ino,
    srcNameIn: Buffer | string,
    dstParent: Ino,
    dstNameIn: Buffer | string,
    flags: number,
  ): Promise<LookupResult> {
    this.checkWritable();
    const srcName = toName(srcNameIn);
    const dstName = toName(dstNameIn);
    if (flags & RENAME_WHITEOUT || flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw metaErr('ENOTSUP');
    if (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE) throw metaErr('EINVAL');
    validName(dstName);
    if (srcName.length > 255) throw metaErr('ENAMETOOLONG');
    const dotTrash = Buffer.from('.trash');
    if ((srcParent === ROOT_INODE && srcName.equals(dotTrash)) || (dstParent === ROOT_INODE && dstName.equals(dotTrash))) throw metaErr('EPERM');
    if (isTrash(dstParent)) throw metaErr('EPERM');
    if (isTrash(srcParent) && ctx.uid !== 0 && ctx.checkPermission !== false) throw metaErr('EPERM');
    const exchange = (flags & RENAME_EXCHANGE) !== 0;
    const k = this.keys;
    const useTrash = (this.fmt?.TrashDays ?? 0) > 0;
    let trash = 0n;
    const spk = k.inode(srcParent);
    const sdk = k.entry(srcParent);
    const dpk = k.inode(dstParent);
    const ddk = k.entry(dstParent);
    interface RenameOut {
      ino: Ino;
      attr: Attr;
      dst?: { ino: Ino; attr: Attr; deleted: boolean; sustained?: boolean; trashed?: boolean };
      noop?: boolean;
    }
    // Trash for a replaced target must exist before the transaction (it may create an inode).
    const dstExistsHint = await this.redis.hexists(ddk, dstName);
    if (useTrash && dstExistsHint && !exchange) trash = await this.trashDir();
    const res = await this.txn<RenameOut>([spk, sdk, dpk, ddk], async (c) => {
      const p = c.pipeline();
      p.hgetBuffer(sdk, srcName);
      p.hgetBuffer(ddk, dstName);
      const r = (await p.exec()) ?? [];
      if (r[0][0]) throw r[0][0];
      const seb = r[0][1] as Buffer | null;
      if (!seb) throw metaErr('ENOENT');
      const src = decodeDentry(seb);
      if (srcParent === dstParent && srcName.equals(dstName)) {
        return { result: { ino: src.ino, attr: await this.getAttr(src.ino), noop: true } };
      }
      const deb = r[1][1] as Buffer | null;
      const dst = deb ? decodeDentry(deb) : undefined;
      if (dst && flags & RENAME_NOREPLACE) throw metaErr('EEXIST');
      if (!dst && exchange) throw metaErr('ENOENT');
      const watch = [k.inode(src.ino)];
      if (dst) {
        if (dst.ino === src.ino && !exchange) {
          // Both names are links of one inode: POSIX says do nothing.
          return { result: { ino: src.ino, attr: await this.getAttr(src.ino), noop: true } };
        }
        watch.push(k.inode(dst.ino));
        if (dst.type === FileType.Dir) watch.push(k.entry(dst.ino));
      }
      void c.watch(...watch).catch(() => undefined);
      const inos = [srcParent, dstParent, src.ino];
      if (dst) inos.push(dst.ino);
      const bufs = await this.mgetAttrs(c, inos);
      const spa = this.parseAttr(bufs[0], srcParent);
      const dpa = srcParent === dstParent ? spa : this.parseAttr(bufs[1], dstParent);
      if (spa.type !== FileType.Dir || dpa.type !== FileType.Dir) throw metaErr('ENOTDIR');
      if (dpa.parent > TRASH_INODE) throw metaErr('ENOENT');
      checkAccess(ctx, spa, MODE_W | MODE_X);
      if (dpa !== spa) checkAccess(ctx, dpa, MODE_W | MODE_X);
      if (bufs[2] === null) throw metaErr('ENOENT');
      const sa = decodeAttr(bufs[2]);
      checkSticky(ctx, spa, sa);
      if (sa.flags & (FLAG_IMMUTABLE | FLAG_APPEND) || spa.flags & (FLAG_IMMUTABLE | FLAG_APPEND) || dpa.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
      if (src.type === FileType.Dir && srcParent !== dstParent) {
        // A directory may not move into itself or below itself.
        if (src.ino === dstParent) throw metaErr('EINVAL');
        let up = dpa.parent;
        for (let depth = 0; up !== ROOT_INODE && up !== 0n && depth < 1000; depth++) {
          if (up === src.ino) throw metaErr('EINVAL');
          up = (await this.getAttr(up)).parent;
        }
        // Moving a directory to another parent rewrites its ".." → needs write access on it.
        if (ctx.uid !== 0) checkAccess(ctx, sa, MODE_W);
      }
      let da: Attr | undefined;
      if (dst) {
        if (bufs[3] === null) throw metaErr('ENOENT');
        da = decodeAttr(bufs[3]);
        checkSticky(ctx, dpa, da);
        if (da.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
        if (exchange) {
          if (dst.type === FileType.Dir && srcParent !== dstParent) {
            if (dst.ino === srcParent) throw metaErr('EINVAL');
            let up = spa.parent;
            for (let depth = 0; up !== ROOT_INODE && up !== 0n && depth < 1000; depth++) {
              if (up === dst.ino) throw metaErr('EINVAL');
              up = (await this.getAttr(up)).parent;
            }
          }
        } else {
          if (src.type === FileType.Dir && dst.type !== FileType.Dir) throw metaErr('ENOTDIR');
          if (src.type !== FileType.Dir && dst.type === FileType.Dir) throw metaErr('EISDIR');
          if (dst.type === FileType.Dir && (await c.hlen(k.entry(dst.ino))) > 0) throw metaErr('ENOTEMPTY');
        }
      }
      const now = nowTime();
      const sameParent = srcParent === dstParent;
      const out: RenameOut = { ino: src.ino, attr: sa };
      const writes: ((m: ChainableCommander) => void)[] = [];
      sa.ctime = now.sec;
      sa.ctimensec = now.nsec;
      if (exchange && dst && da) {
        const dstEb = deb!;
        da.ctime = now.sec;
        da.ctimensec = now.nsec;
        if (!sameParent) {
          if (src.type === FileType.Dir && dst.type !== FileType.Dir) {
            spa.nlink--;
            dpa.nlink++;
          } else if (src.type !== FileType.Dir && dst.type === FileType.Dir) {
            spa.nlink++;
            dpa.nlink--;
          }
        }
        const sOldParent = sa.parent;
        const dOldParent = da.parent;
        if (!sameParent) {
          if (sOldParent !== 0n) sa.parent = dstParent;
          if (dOldParent !== 0n) da.parent = srcParent;
        }
        writes.push((m) => {
          m.hset(sdk, srcName, dstEb);
          m.hset(ddk, dstName, seb);
          m.set(k.inode(src.ino), encodeAttr(sa));
          m.set(k.inode(dst.ino), encodeAttr(da));
          if (!sameParent) {
            if (sOldParent === 0n) {
              m.hincrby(k.parents(src.ino), String(dstParent), 1);
              m.hincrby(k.parents(src.ino), String(srcParent), -1);
            }
            if (dOldParent === 0n) {
              m.hincrby(k.parents(dst.ino), String(srcParent), 1);
              m.hincrby(k.parents(dst.ino), String(dstParent), -1);
            }
          }
        });
        out.dst = { ino: dst.ino, attr: da, deleted: false };
      } else {
        writes.push((m) => m.hdel(sdk, srcName));
        if (dst && da) {
          const dIno = dst.ino;
          const dAttr = da;
          const toTrash = useTrash && trash !== 0n && !(da.flags & FLAG_SKIP_TRASH) && !isTrash(dstParent);
          let deleted = false;
          let dSustained = false;
          const dOldParent = dAttr.parent;
          dAttr.ctime = now.sec;
          dAttr.ctimensec = now.nsec;
          if (dst.type === FileType.Dir) dpa.nlink--;
          if (toTrash) {
            const tname = this.trashName(dstParent, dIno, dstName);
            if (dOldParent !== 0n) dAttr.parent = trash;
            writes.push((m) => {
              m.set(k.inode(dIno), encodeAttr(dAttr));
              m.hset(k.entry(trash), tname, deb!);
              if (dOldParent === 0n) {
                m.hincrby(k.parents(dIno), String(trash), 1);
                m.hincrby(k.parents(dIno), String(dstParent), -1);
              }
            });
          } else if (dst.type !== FileType.Dir && dAttr.nlink > 1) {
            dAttr.nlink--;
            writes.push((m) => {
              m.set(k.inode(dIno), encodeAttr(dAttr));
              if (dOldParent === 0n) m.hincrby(k.parents(dIno), String(dstParent), -1);
            });
          } else {
            dAttr.nlink = 0;
            const sustained = dst.type === FileType.File && (this.openFiles.get(dIno) ?? 0) > 0 && this.sessionId !== 0;
            dSustained = sustained;
            deleted = !sustained && dst.type === FileType.File;
            writes.push((m) => {
              if (sustained) {
                m.set(k.inode(dIno), encodeAttr(dAttr));
                m.sadd(k.session(this.sessionId), String(dIno));
              } else {
                if (dst.type === FileType.File) {
                  m.zadd(k.delfiles, Math.floor(Date.now() / 1000), `${dIno}:${dAttr.length}`);
                  m.incrby(k.usedSpace, -align4K(dAttr.length));
                } else {
                  if (dst.type === FileType.Symlink) m.del(k.symlink(dIno));
                  m.incrby(k.usedSpace, -align4K(0));
                }
                m.del(k.inode(dIno));
                m.decr(k.totalInodes);
              }
              m.del(k.xattr(dIno));
              if (dOldParent === 0n) m.del(k.parents(dIno));
              if (dst.type === FileType.Dir) {
                const f = String(dIno);
                m.hdel(k.dirDataLength, f);
                m.hdel(k.dirUsedSpace, f);
                m.hdel(k.dirUsedInodes, f);
                m.hdel(k.dirQuota, f);
                m.hdel(k.dirQuotaUsedSpace, f);
                m.hdel(k.dirQuotaUsedInodes, f);
              }
            });
          }
          out.dst = { ino: dIno, attr: dAttr, deleted, sustained: dSustained, trashed: toTrash };
        }
        if (!sameParent) {
          if (src.type === FileType.Dir) {
            spa.nlink--;
            dpa.nlink++;
          }
          const sOldParent = sa.parent;
          if (sOldParent === 0n) {
            writes.push((m) => {
              m.hincrby(k.parents(src.ino), String(dstParent), 1);
              m.hincrby(k.parents(src.ino), String(srcParent), -1);
            });
          } else sa.parent = dstParent;
        }
        writes.push((m) => {
          m.set(k.inode(src.ino), encodeAttr(sa));
          m.hset(ddk, dstName, seb);
        });
      }
      touch(spa, now);
      if (!sameParent) touch(dpa, now);
      writes.push((m) => {
        if (!isTrash(srcParent)) m.set(spk, encodeAttr(spa));
        if (!sameParent) m.set(dpk, encodeAttr(dpa));
      });
      return { result: out, write: (m) => writes.forEach((w) => w(m)) };
    });
    if (!res.noop) {
      const sa = res.attr;
      const len = sa.type === FileType.File ? sa.length : 0;
      const space = sa.type === FileType.File ? align4K(sa.length) : 4096;
      if (srcParent !== dstParent) {
        this.updateDirStat(srcParent, -len, -space, -1);
        this.updateDirStat(dstParent, len, space, 1);
      }
      if (res.dst) {
        const da = res.dst.attr;
        const dl = da.type === FileType.File ? da.length : 0;
        const ds = da.type === FileType.File ? align4K(da.length) : 4096;
        if (exchange) {
          if (srcParent !== dstParent) {
            this.updateDirStat(dstParent, -dl, -ds, -1);
            this.updateDirStat(srcParent, dl, ds, 1);
          }
        } else {
          this.updateDirStat(dstParent, -dl, -ds, -1);
          if (res.dst.trashed) this.updateDirStat(trash, dl, ds, 1);
        }
        if (res.dst.sustained) this.sustained.add(res.dst.ino);
        if (res.dst.deleted) this.track(this.deleteFileData(res.dst.ino, da.length));
      }
    }
    return { ino: res.ino, attr: res.attr };
  }

  // ---------------------------------------------------------------- attributes

  async setAttr(ctx: Ctx, ino: Ino, req: SetAttrRequest): Promise<Attr> {
    this.checkWritable();
    const ik = this.keys.inode(ino);
    return this.txn<Attr>([ik], async (c) => {
      const a = this.parseAttr(await c.getBuffer(ik), ino);
      if (a.parent > TRASH_INODE) throw metaErr('EPERM');
      const check = ctx.checkPermission !== false;
      const isOwner = ctx.uid === 0 || ctx.uid === a.uid || !check;
      const now = nowTime();
      let changed = false;
      if (req.flags !== undefined) {
        if (ctx.uid !== 0 && check) throw metaErr('EPERM');
        a.flags = req.flags;
        changed = true;
      } else if (a.flags & FLAG_IMMUTABLE && (req.mode !== undefined || req.uid !== undefined || req.gid !== undefined)) {
        throw metaErr('EPERM');
      }
      if (req.uid !== undefined || req.gid !== undefined) {
        const newUid = req.uid ?? a.uid;
        const newGid = req.gid ?? a.gid;
        if (check && ctx.uid !== 0) {
          if (newUid !== a.uid) throw metaErr('EPERM');
          if (ctx.uid !== a.uid) throw metaErr('EPERM');
          if (newGid !== a.gid && ctx.gid !== newGid && !ctx.gids.includes(newGid)) throw metaErr('EPERM');
        }
        // chown clears set-id bits on non-directories (setgid only when group-executable).
        if (a.type !== FileType.Dir && (newUid !== a.uid || newGid !== a.gid || ctx.uid !== 0)) {
          if (a.mode & 0o010) a.mode &= ~0o6000;
          else a.mode &= ~0o4000;
        }
        a.uid = newUid;
        a.gid = newGid;
        changed = true;
      }
      if (req.mode !== undefined) {
        let mode = req.mode & 0o7777;
        if (!isOwner) {
          // Without FUSE_HANDLE_KILLPRIV the kernel clears suid/sgid after a write or truncate by
          // another user with a SETATTR in that user's name. Allow exactly that (set-id bits
          // dropped, nothing else changed) to a caller who may write the file, as upstream does;
          // anything else is chmod by a non-owner.
          if (!onlyDropsSetId(a.mode, mode)) throw metaErr('EPERM');
          checkAccess(ctx, a, MODE_W);
        }
        if (check && ctx.uid !== 0) {
          if (a.type !== FileType.Dir && mode & 0o1000) mode &= ~0o1000;
          if (mode & 0o2000 && ctx.gid !== a.gid && !ctx.gids.includes(a.gid)) mode &= ~0o2000;
        }
        a.mode = mode;
        changed = true;
      }
      if (req.atime || req.mtime || req.atimeNow || req.mtimeNow) {
        if (a.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
        // Linux (utimensat(2)): write permission suffices only to set BOTH times to now; any
        // explicit time, or one time left out (UTIME_OMIT), needs ownership.
        const explicit = !(req.atimeNow && req.mtimeNow);
        if (check && ctx.uid !== 0 && ctx.uid !== a.uid) {
          if (explicit) throw metaErr('EPERM');
          checkAccess(ctx, a, MODE_W);
        }
        if (req.atimeNow) {
          a.atime = now.sec;
          a.atimensec = now.nsec;
        } else if (req.atime) {
          a.atime = req.atime.sec;
          a.atimensec = req.atime.nsec;
        }
        if (req.mtimeNow) {
          a.mtime = now.sec;
          a.mtimensec = now.nsec;
        } else if (req.mtime) {
          a.mtime = req.mtime.sec;
          a.mtimensec = req.mtime.nsec;
        }
        changed = true;
      }
      if (!changed) return { result: a };
      a.ctime = now.sec;
      a.ctimensec = now.nsec;
      return { result: a, write: (m) => m.set(ik, encodeAttr(a)) };
    });
  }

  // ---------------------------------------------------------------- open files

  async open(ctx: Ctx, ino: Ino, flags: number): Promise<Attr> {
    const a = await this.getAttr(ino);
    const acc = flags & 3;
    if (ctx.checkPermission !== false) {
      let mask = 0;
      if (acc === 0 || acc === 2) mask |= MODE_R;
      if (acc === 1 || acc === 2) mask |= MODE_W;
      if (flags & 0o1000 /* O_TRUNC */) mask |= MODE_W;
      checkAccess(ctx, a, mask);
    }
    if (acc !== 0 || flags & 0o1000) {
      if (this.readOnly) throw metaErr('EROFS');
      if (a.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
      if (a.flags & FLAG_APPEND && !(flags & 0o2000) /* O_APPEND */) throw metaErr('EPERM');
      if (a.parent > TRASH_INODE) throw metaErr('EPERM');
    }
    if (a.type === FileType.File) this.markOpen(ino);
    return a;
  }

  markOpen(ino: Ino): void {
    this.openFiles.set(ino, (this.openFiles.get(ino) ?? 0) + 1);
  }

  async close(ino: Ino): Promise<void> {
    const n = this.openFiles.get(ino);
    if (n === undefined) return;
    if (n > 1) {
      this.openFiles.set(ino, n - 1);
      return;
    }
    this.openFiles.delete(ino);
    if (this.sessionId && !this.readOnly && this.sustained.delete(ino)) await this.deleteSustained(this.sessionId, ino);
  }

  /** Last close of an unlinked file (4.9): queue its data and drop the inode. */
  private async deleteSustained(sid: number, ino: Ino): Promise<void> {
    const k = this.keys;
    const ik = k.inode(ino);
    const length = await this.txn<number | undefined>([ik], async (c) => {
      const b = await c.getBuffer(ik);
      if (!b) return { result: undefined, write: (m) => m.srem(k.session(sid), String(ino)) };
      const a = decodeAttr(b);
      if (a.nlink > 0) return { result: undefined, write: (m) => m.srem(k.session(sid), String(ino)) };
      return {
        result: a.length,
        write: (m) => {
          m.zadd(k.delfiles, Math.floor(Date.now() / 1000), `${ino}:${a.length}`);
          m.del(ik);
          m.incrby(k.usedSpace, -align4K(a.length));
          m.decr(k.totalInodes);
          m.srem(k.session(sid), String(ino));
        },
      };
    });
    if (length !== undefined) await this.deleteFileData(ino, length);
  }

  // ---------------------------------------------------------------- data

  async readChunk(ino: Ino, indx: number): Promise<Slice[]> {
    const items = await this.redis.lrangeBuffer(this.keys.chunk(ino, indx), 0, -1);
    const segs = buildSlices(decodeSlices(items));
    if (!this.readOnly && this.compactor && items.length >= 5) this.scheduleCompaction(ino, indx);
    return segs;
  }

  async writeSlice(ino: Ino, indx: number, pos: number, slice: Slice, mtime: { sec: number; nsec: number }): Promise<void> {
    this.checkWritable();
    const k = this.keys;
    const ik = k.inode(ino);
    let listLen = 0;
    const res = await this.txn<{ attr: Attr; delta: number; dl: number }>([ik], async (c) => {
      const b = await c.getBuffer(ik);
      if (!b) throw metaErr('ENOENT');
      const a = decodeAttr(b);
      if (a.type !== FileType.File) throw metaErr('EPERM');
      const end = indx * CHUNK_SIZE + pos + slice.len;
      const oldLen = a.length;
      const newLen = Math.max(oldLen, end);
      const delta = align4K(newLen) - align4K(oldLen);
      if (newLen > oldLen) a.length = newLen;
      const now = nowTime();
      a.mtime = mtime.sec;
      a.mtimensec = mtime.nsec;
      a.ctime = now.sec;
      a.ctimensec = now.nsec;
      const rec = encodeSlice({ pos, id: slice.id, size: slice.size, off: slice.off, len: slice.len });
      return {
        result: { attr: a, delta, dl: newLen - oldLen },
        write: (m) => {
          m.rpush(k.chunk(ino, indx), rec);
          m.set(ik, encodeAttr(a));
          if (delta > 0) m.incrby(k.usedSpace, delta);
        },
        onExec: (r) => (listLen = Number(r[0])),
      };
    });
    if (res.dl > 0) await this.statDelta(ino, res.attr, res.dl, res.delta);
    if (this.compactor && (listLen >= 2500 || listLen > 350 || listLen % 100 === 99)) {
      if (listLen >= 2500) await this.compactChunk(ino, indx).catch(() => undefined);
      else this.scheduleCompaction(ino, indx);
    }
  }

  private async statDelta(ino: Ino, attr: Attr, length: number, space: number): Promise<void> {
    if (!this.fmt?.DirStats || (length === 0 && space === 0)) return;
    for (const [p, n] of await this.statParents(ino, attr)) this.updateDirStat(p, length * n, space * n, 0);
  }

  async truncate(ctx: Ctx, ino: Ino, length: number, flags = 0): Promise<Attr> {
    this.checkWritable();
    if (length < 0) throw metaErr('EINVAL');
    if (length > MAX_FILE_SIZE) throw metaErr('EFBIG');
    const k = this.keys;
    const ik = k.inode(ino);
    const res = await this.txn<{ attr: Attr; dl: number; ds: number }>([ik], async (c) => {
      const b = await c.getBuffer(ik);
      if (!b) throw metaErr('ENOENT');
      const a = decodeAttr(b);
      if (a.type === FileType.Dir) throw metaErr('EISDIR');
      if (a.type !== FileType.File) throw metaErr('EPERM');
      if (a.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      if (flags === 0) {
        if (a.parent > TRASH_INODE) throw metaErr('EPERM');
        checkAccess(ctx, a, MODE_W);
      }
      if (a.length === length) return { result: { attr: a, dl: 0, ds: 0 } };
      const old = a.length;
      const left = Math.min(old, length);
      const right = Math.max(old, length);
      const delta = align4K(length) - align4K(old);
      const now = nowTime();
      a.length = length;
      touch(a, now);
      const firstIndx = Math.floor(left / CHUNK_SIZE);
      const firstPos = left % CHUNK_SIZE;
      const lastIndx = Math.floor(right / CHUNK_SIZE);
      return {
        result: { attr: a, dl: length - old, ds: delta },
        write: (m) => {
          m.set(ik, encodeAttr(a));
          m.rpush(k.chunk(ino, firstIndx), encodeSlice({ pos: firstPos, id: 0, size: 0, off: 0, len: Math.min(right - left, CHUNK_SIZE - firstPos) }));
          for (let i = firstIndx + 1; i < lastIndx; i++) {
            m.rpushx(k.chunk(ino, i), encodeSlice({ pos: 0, id: 0, size: 0, off: 0, len: CHUNK_SIZE }));
          }
          if (lastIndx > firstIndx && right % CHUNK_SIZE !== 0) {
            m.rpush(k.chunk(ino, lastIndx), encodeSlice({ pos: 0, id: 0, size: 0, off: 0, len: right % CHUNK_SIZE }));
          }
          m.incrby(k.usedSpace, delta);
        },
      };
    });
    if (res.dl !== 0) await this.statDelta(ino, res.attr, res.dl, res.ds);
    return res.attr;
  }

  async fallocate(ctx: Ctx, ino: Ino, mode: number, off: number, size: number): Promise<Attr> {
    this.checkWritable();
    if (mode & (FALLOC_COLLAPSE_RANGE | FALLOC_INSERT_RANGE)) throw metaErr('ENOTSUP');
    if (mode & FALLOC_PUNCH_HOLE && !(mode & FALLOC_KEEP_SIZE)) throw metaErr('EINVAL');
    if (off < 0 || size <= 0) throw metaErr('EINVAL');
    if (off + size > MAX_FILE_SIZE) throw metaErr('EFBIG');
    const k = this.keys;
    const ik = k.inode(ino);
    const res = await this.txn<{ attr: Attr; dl: number; ds: number }>([ik], async (c) => {
      const b = await c.getBuffer(ik);
      if (!b) throw metaErr('ENOENT');
      const a = decodeAttr(b);
      if (a.type === FileType.Dir) throw metaErr('EISDIR');
      if (a.type !== FileType.File) throw metaErr('EPERM');
      if (a.flags & FLAG_IMMUTABLE) throw metaErr('EPERM');
      if (a.flags & FLAG_APPEND && mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE)) throw metaErr('EPERM');
      const old = a.length;
      let length = old;
      if (!(mode & FALLOC_KEEP_SIZE) && off + size > old) length = off + size;
      const now = nowTime();
      a.length = length;
      touch(a, now);
      const delta = align4K(length) - align4K(old);
      const holes: [string, Buffer][] = [];
      if (mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE)) {
        let o = off;
        const end = Math.min(off + size, old);
        while (o < end) {
          const indx = Math.floor(o / CHUNK_SIZE);
          const pos = o % CHUNK_SIZE;
          const len = Math.min(end - o, CHUNK_SIZE - pos);
          holes.push([k.chunk(ino, indx), encodeSlice({ pos, id: 0, size: 0, off: 0, len })]);
          o += len;
        }
      }
      return {
        result: { attr: a, dl: length - old, ds: delta },
        write: (m) => {
          m.set(ik, encodeAttr(a));
          for (const [key, rec] of holes) m.rpush(key, rec);
          if (delta !== 0) m.incrby(k.usedSpace, delta);
        },
      };
    });
    if (res.dl !== 0) await this.statDelta(ino, res.attr, res.dl, res.ds);
    return res.attr;
  }

  async copyFileRange(ctx: Ctx, fin: Ino, offIn: number, fout: Ino, offOut: number, size: number, flags: number): Promise<number> {
    this.checkWritable();
    if (flags !== 0) throw metaErr('EINVAL');
    if (size === 0) return 0;
    const k = this.keys;
    const ik = k.inode(fin);
    const ok = k.inode(fout);
    const res = await this.txn<{ copied: number; attr?: Attr; dl: number; ds: number }>([ok, ik], async (c) => {
      const [ob, ib] = await this.mgetAttrs(c, [fout, fin]);
      if (!ob || !ib) throw metaErr('ENOENT');
      const ai = decodeAttr(ib);
      const ao = decodeAttr(ob);
      if (ai.type === FileType.Dir || ao.type === FileType.Dir) throw metaErr('EISDIR');
      if (ai.type !== FileType.File || ao.type !== FileType.File) throw metaErr('EINVAL');
      if (ao.flags & (FLAG_IMMUTABLE | FLAG_APPEND)) throw metaErr('EPERM');
      if (offIn >= ai.length) return { result: { copied: 0, dl: 0, ds: 0 } };
      if (offIn + size > ai.length) size = ai.length - offIn;
      if (fin === fout && offIn < offOut + size && offOut < offIn + size) throw metaErr('EINVAL');
      if (offOut + size > MAX_FILE_SIZE) throw metaErr('EFBIG');
      const old = ao.length;
      const length = Math.max(old, offOut + size);
      // Every segment of the source range, holes included, re-emitted at the destination.
      const pushes: [string, Buffer][] = [];
      const refs: string[] = [];
      const firstIndx = Math.floor(offIn / CHUNK_SIZE);
      const lastIndx = Math.floor((offIn + size - 1) / CHUNK_SIZE);
      const p = c.pipeline();
      for (let i = firstIndx; i <= lastIndx; i++) p.lrangeBuffer(k.chunk(fin, i), 0, -1);
      const lists = (await p.exec()) ?? [];
      for (let i = firstIndx; i <= lastIndx; i++) {
        const [err, items] = lists[i - firstIndx];
        if (err) throw err;
        const recs = decodeSlices(items as Buffer[]);
        const segs = buildSlices([{ pos: 0, id: 0, size: 0, off: 0, len: CHUNK_SIZE }, ...recs]);
        const chunkStart = i * CHUNK_SIZE;
        for (const s of segs) {
          const sStart = chunkStart + s.pos;
          const a = Math.max(sStart, offIn);
          const b = Math.min(sStart + s.len, offIn + size);
          if (a >= b) continue;
          let dpos = offOut + (a - offIn);
          let soff = s.off + (a - sStart);
          let left = b - a;
          while (left > 0) {
            const dIndx = Math.floor(dpos / CHUNK_SIZE);
            const dp = dpos % CHUNK_SIZE;
            const n = Math.min(left, CHUNK_SIZE - dp);
            pushes.push([k.chunk(fout, dIndx), encodeSlice({ pos: dp, id: s.id, size: s.size, off: soff, len: n })]);
            if (s.id > 0) refs.push(sliceRefField(s.id, s.size));
            dpos += n;
            soff += n;
            left -= n;
          }
        }
      }
      const now = nowTime();
      ao.length = length;
      touch(ao, now);
      const delta = align4K(length) - align4K(old);
      return {
        result: { copied: size, attr: ao, dl: length - old, ds: delta },
        write: (m) => {
          for (const [key, rec] of pushes) m.rpush(key, rec);
          for (const r of refs) m.hincrby(k.sliceRef, r, 1);
          m.set(ok, encodeAttr(ao));
          if (delta !== 0) m.incrby(k.usedSpace, delta);
        },
      };
    });
    if (res.attr && res.dl !== 0) await this.statDelta(fout, res.attr, res.dl, res.ds);
    return res.copied;
  }

  /**
   * Delete a file's chunks and dereference their slices (4.8). Runs in the background after an
   * unlink, at most MAX_DELETES files at once (upstream --max-deletes) so that `rm -r` of a large
   * tree does not bury the foreground operations under thousands of deletions.
   * Round trips for a one-chunk file: the chunk's transaction (2), then the object deletes, then
   * one pipeline that drops the slices' sliceRef fields and the delfiles entry.
   */
  async deleteFileData(ino: Ino, length: number): Promise<void> {
    await this.deletes.run(async () => {
      const k = this.keys;
      const chunks = Math.ceil(length / CHUNK_SIZE);
      const freed: Slice[] = [];
      for (let i = 0; i < chunks; i++) freed.push(...(await this.deleteChunk(ino, i)));
      const p = this.redis.pipeline();
      for (const s of freed) {
        await this.deleteSliceData(s.id, s.size);
        p.hdel(k.sliceRef, sliceRefField(s.id, s.size));
      }
      p.zrem(k.delfiles, `${ino}:${length}`);
      await p.exec();
    });
  }

  /** Drop a chunk's record list; returns the slices whose last reference it held. */
  private async deleteChunk(ino: Ino, indx: number): Promise<Slice[]> {
    const k = this.keys;
    const ck = k.chunk(ino, indx);
    let recs: Slice[] = [];
    let counts: number[] = [];
    await this.txn<void>([ck], async (c) => {
      const items = await c.lrangeBuffer(ck, 0, -1);
      recs = decodeSlices(items).filter((s) => s.id > 0);
      if (items.length === 0) return { result: undefined }; // sparse: nothing was written here
      return {
        result: undefined,
        write: (m) => {
          m.del(ck);
          for (const s of recs) m.hincrby(k.sliceRef, sliceRefField(s.id, s.size), -1);
        },
        onExec: (r) => (counts = r.slice(1).map(Number)),
      };
    });
    return recs.filter((_, i) => counts[i] < 0);
  }

  /** The objects of a slice nobody references any more (the sliceRef field is dropped by the caller). */
  private async deleteSliceData(id: number, size: number): Promise<void> {
    if (this.opts.onDeleteSlice) await this.opts.onDeleteSlice(id, size);
  }

  private async deleteSlice(id: number, size: number): Promise<void> {
    await this.deleteSliceData(id, size);
    await this.redis.hdel(this.keys.sliceRef, sliceRefField(id, size));
  }

  /** Background compaction, at most one in flight per chunk. */
  private scheduleCompaction(ino: Ino, indx: number): void {
    const key = `${ino}_${indx}`;
    if (this.compacting.has(key)) return;
    this.compacting.add(key);
    this.track(this.compactChunk(ino, indx).catch(() => undefined).finally(() => this.compacting.delete(key)));
  }

  /** Merge the records of a chunk into one new slice (4.16). */
  async compactChunk(ino: Ino, indx: number, force = false): Promise<void> {
    if (!this.compactor || this.readOnly) return;
    const k = this.keys;
    const ck = k.chunk(ino, indx);
    const items = await this.redis.lrangeBuffer(ck, 0, 999);
    if (items.length < 2 && !force) return;
    const recs = decodeSlices(items);
    // Skip leading records that are large and still fully visible (cheap to keep).
    let skip = 0;
    const total = buildSlices(recs);
    const compactedSize = total.length ? total[total.length - 1].pos + total[total.length - 1].len : 0;
    while (skip < recs.length - 1) {
      const r = recs[skip];
      if (r.id === 0 || r.len < 1 << 20 || r.len < compactedSize / 5) break;
      const seg = buildSlices(recs).find((s) => s.pos === r.pos && s.id === r.id && s.off === r.off && s.len === r.len);
      if (!seg) break;
      skip++;
    }
    const rest = recs.slice(skip);
    if (rest.length < 2) return;
    let segs = buildSlices(rest);
    while (segs.length && segs[0].id === 0) segs = segs.slice(1);
    while (segs.length && segs[segs.length - 1].id === 0) segs = segs.slice(0, -1);
    if (!segs.length) {
      // Only holes: keep one record that paints them is not needed if nothing lies below.
      return;
    }
    const pos = segs[0].pos;
    const size = segs[segs.length - 1].pos + segs[segs.length - 1].len - pos;
    const newId = await this.newSliceId();
    await this.compactor(segs, newId, size);
    const trash = (this.fmt?.TrashDays ?? 0) > 0;
    const deref = rest.filter((s) => s.id > 0);
    let counts: number[] = [];
    try {
      await this.txn<void>([ck], async (c) => {
        const cur = await c.lrangeBuffer(ck, 0, items.length - 1);
        if (cur.length !== items.length || cur.some((b, i) => !b.equals(items[i]))) throw metaErr('EINVAL', 'chunk changed during compaction');
        return {
          result: undefined,
          write: (m) => {
            m.ltrim(ck, items.length, -1);
            m.lpush(ck, encodeSlice({ pos, id: newId, size, off: 0, len: size }));
            for (let i = skip - 1; i >= 0; i--) m.lpush(ck, items[i]);
            m.hset(k.sliceRef, sliceRefField(newId, size), '0');
            if (trash) m.hset(k.delSlices, `${newId}_${Math.floor(Date.now() / 1000)}`, encodeDelSlices(deref));
            else for (const s of deref) m.hincrby(k.sliceRef, sliceRefField(s.id, s.size), -1);
          },
          // Replies: LTRIM, LPUSH new, skip × LPUSH, HSET marker, then one HINCRBY per dereferenced slice.
          onExec: (r) => (counts = r.slice(3 + skip).map(Number)),
        };
      });
    } catch (e) {
      if (this.opts.onDeleteSlice) await this.opts.onDeleteSlice(newId, size).catch(() => undefined);
      throw e;
    }
    await this.redis.hdel(k.sliceRef, sliceRefField(newId, size));
    if (!trash) {
      for (let i = 0; i < deref.length; i++) if (counts[i] < 0) await this.deleteSlice(deref[i].id, deref[i].size);
    }
  }

  /** Expired `delSlices` entries (trash on): dereference now. */
  async cleanupDelayedSlices(olderThanSec: number): Promise<void> {
    const k = this.keys;
    const all = await this.redis.hgetallBuffer(k.delSlices);
    const now = Math.floor(Date.now() / 1000);
    for (const [field, val] of Object.entries(all)) {
      const ts = Number(field.split('_')[1]);
      if (!(ts < now - olderThanSec)) continue;
      const ss = decodeDelSlices(val);
      const p = this.redis.multi();
      for (const s of ss) p.hincrby(k.sliceRef, sliceRefField(s.id, s.size), -1);
      p.hdel(k.delSlices, field);
      const r = (await p.exec()) ?? [];
      for (let i = 0; i < ss.length; i++) if (Number(r[i][1]) < 0) await this.deleteSlice(ss[i].id, ss[i].size);
    }
  }

  // ---------------------------------------------------------------- hourly background jobs (4.13)

  /** Run the hourly jobs this client wins the election for. Returns what ran. */
  async runHourlyJobs(force = false): Promise<string[]> {
    const ran: string[] = [];
    if (this.readOnly) return ran;
    if (force || (await this.setIfSmall(this.keys.lastCleanupFiles, 3600))) {
      await this.cleanupDelFiles(force ? 0 : 3600);
      ran.push('delfiles');
    }
    if (force || (await this.setIfSmall(this.keys.nextCleanupSlices, 3600))) {
      await this.cleanupSliceRefs();
      ran.push('slices');
    }
    if (force || (await this.setIfSmall(this.keys.lastCleanupTrash, 3600))) {
      const days = this.fmt?.TrashDays ?? 0;
      await this.cleanupTrash(days);
      await this.cleanupDelayedSlices(days * 86400);
      ran.push('trash');
    }
    return ran;
  }

  /** Files queued in `delfiles` longer than `olderThanSec` ago whose deletion never finished. */
  async cleanupDelFiles(olderThanSec: number): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const members = await this.redis.zrangebyscore(this.keys.delfiles, '-inf', String(now - olderThanSec), 'LIMIT', 0, 10000);
    for (const m of members) {
      const parts = m.split(':');
      if (parts.length !== 2) {
        await this.redis.zrem(this.keys.delfiles, m);
        continue;
      }
      await this.deleteFileData(BigInt(parts[0]), Number(parts[1]));
    }
  }

  /** `sliceRef` entries: negative ⇒ delete the slice; "0" markers left by a crashed compaction ⇒ drop. */
  async cleanupSliceRefs(): Promise<void> {
    const k = this.keys;
    let cursor = '0';
    do {
      const [next, items] = await this.redis.hscan(k.sliceRef, cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 0; i + 1 < items.length; i += 2) {
        const field = items[i];
        const v = Number(items[i + 1]);
        const m = /^k(\d+)_(\d+)$/.exec(field);
        if (!m) continue;
        if (v < 0) await this.deleteSlice(Number(m[1]), Number(m[2]));
        else if (v === 0) {
          await this.txn<void>([k.sliceRef], async (c) => {
            const cur = await c.hget(k.sliceRef, field);
            return cur === '0' ? { result: undefined, write: (w) => w.hdel(k.sliceRef, field) } : { result: undefined };
          });
        }
      }
    } while (cursor !== '0');
  }

  /** Empty and remove hourly trash directories older than 24×days + 2 hours (4.15). */
  async cleanupTrash(days: number): Promise<void> {
    const limit = Date.now() - (24 * days + 2) * 3600_000;
    const ctx: Ctx = { uid: 0, gid: 0, gids: [0], pid: 0, checkPermission: false };
    const hours = await this.readdir(ctx, TRASH_INODE, false).catch(() => [] as Entry[]);
    for (const h of hours) {
      const m = /^(\d{4})-(\d\d)-(\d\d)-(\d\d)$/.exec(h.name.toString());
      if (!m) continue;
      const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]));
      if (t >= limit && days > 0) continue;
      await this.removeTree(ctx, TRASH_INODE, h.name);
    }
    this.trashDirs.clear();
  }

  /** Remove `name` under `parent` recursively (used for trash expiry; entries inside the trash are deleted for real). */
  async removeTree(ctx: Ctx, parent: Ino, name: Buffer): Promise<void> {
    const { ino, attr } = await this.lookup(ctx, parent, name);
    if (attr.type === FileType.Dir) {
      for (const e of await this.readdir(ctx, ino, false)) await this.removeTree(ctx, ino, e.name);
      await this.rmdir(ctx, parent, name);
    } else await this.unlink(ctx, parent, name);
  }

  // ---------------------------------------------------------------- xattrs

  /**
   * The permission check the kernel leaves to a FUSE server without default_permissions: reading
   * an xattr needs read and changing one needs write permission on the inode. The kernel itself
   * enforces the namespace rules (trusted.* for CAP_SYS_ADMIN, user.* only on files and
   * directories, sticky directories); security.* and system.* are left to the security modules.
   */
  private async checkXattrAccess(ctx: Ctx, ino: Ino, name: string, mask: number): Promise<void> {
    if (ctx.uid === 0 || ctx.checkPermission === false) return;
    if (name.startsWith('security.') || name.startsWith('system.') || name.startsWith('trusted.')) return;
    checkAccess(ctx, await this.getAttr(ino), mask);
  }

  async getXattr(ctx: Ctx, ino: Ino, name: string): Promise<Buffer> {
    if (name.length > MAX_XATTR_NAME) throw metaErr('ERANGE');
    await this.checkXattrAccess(ctx, ino, name, MODE_R);
    const v = await this.redis.hgetBuffer(this.keys.xattr(ino), name);
    if (v === null) throw metaErr('ENODATA');
    return v;
  }

  async listXattr(ctx: Ctx, ino: Ino): Promise<string[]> {
    const names = await this.redis.hkeys(this.keys.xattr(ino));
    // trusted.* is invisible to unprivileged callers (as on local file systems).
    if (ctx.uid === 0 || ctx.checkPermission === false) return names;
    return names.filter((n) => !n.startsWith('trusted.'));
  }

  async setXattr(ctx: Ctx, ino: Ino, name: string, value: Buffer, flags: number): Promise<void> {
    this.checkWritable();
    if (name.length === 0) throw metaErr('EINVAL');
    if (Buffer.byteLength(name) > MAX_XATTR_NAME) throw metaErr('ERANGE');
    if (value.length > MAX_XATTR_VALUE) throw metaErr('E2BIG');
    await this.checkXattrAccess(ctx, ino, name, MODE_W);
    const xk = this.keys.xattr(ino);
    await this.txn<void>([xk], async (c) => {
      if (flags & (XATTR_CREATE | XATTR_REPLACE)) {
        const exists = await c.hexists(xk, name);
        if (flags & XATTR_CREATE && exists) throw metaErr('EEXIST');
        if (flags & XATTR_REPLACE && !exists) throw metaErr('ENODATA');
      }
      return { result: undefined, write: (m) => m.hset(xk, name, value) };
    });
  }

  async removeXattr(ctx: Ctx, ino: Ino, name: string): Promise<void> {
    this.checkWritable();
    await this.checkXattrAccess(ctx, ino, name, MODE_W);
    const n = await this.redis.hdel(this.keys.xattr(ino), name);
    if (n === 0) throw metaErr('ENODATA');
  }

  // ---------------------------------------------------------------- locks

  async flock(_ctx: Ctx, ino: Ino, owner: bigint, type: number, block: boolean): Promise<void> {
    const k = this.keys;
    const lk = k.flock(ino);
    const field = lockOwnerField(this.sessionId, owner);
    if (type === F_UNLCK) {
      await this.txn<void>([lk], async (c) => {
        const all = await c.hgetall(lk);
        if (!(field in all)) return { result: undefined };
        const last = !Object.keys(all).some((f) => f !== field && f.startsWith(this.sessionId + '_'));
        return {
          result: undefined,
          write: (m) => {
            m.hdel(lk, field);
            if (last) m.srem(k.locked(this.sessionId), lk);
          },
        };
      });
      return;
    }
    const want = type === F_RDLCK ? 'R' : 'W';
    for (let i = 0; ; i++) {
      const granted = await this.txn<boolean>([lk], async (c) => {
        const all = await c.hgetall(lk);
        for (const [f, v] of Object.entries(all)) {
          if (f === field) continue;
          if (want === 'W' || v === 'W') return { result: false };
        }
        return {
          result: true,
          write: (m) => {
            m.hset(lk, field, want);
            m.sadd(k.locked(this.sessionId), lk);
          },
        };
      });
      if (granted) return;
      if (!block) throw metaErr('EAGAIN');
      await new Promise((r) => setTimeout(r, want === 'W' ? 1 + Math.min(i, 50) : 10 + Math.min(i, 50)));
    }
  }

  async getlk(_ctx: Ctx, ino: Ino, owner: bigint, lock: PosixLock): Promise<PosixLock> {
    if (lock.type === F_UNLCK) return { ...lock, type: F_UNLCK };
    const field = lockOwnerField(this.sessionId, owner);
    const all = await this.redis.hgetallBuffer(this.keys.plock(ino));
    const start = BigInt(lock.start);
    for (const [f, v] of Object.entries(all)) {
      if (f === field) continue;
      for (const r of decodePlocks(v)) {
        if (r.end < start || r.start > lock.end) continue;
        if (r.type === F_WRLCK || lock.type === F_WRLCK) {
          const sameSession = f.startsWith(this.sessionId + '_');
          return { type: r.type, pid: sameSession ? r.pid : 0, start: Number(r.start), end: r.end };
        }
      }
    }
    return { type: F_UNLCK, pid: 0, start: lock.start, end: lock.end };
  }

  async setlk(_ctx: Ctx, ino: Ino, owner: bigint, block: boolean, lock: PosixLock): Promise<void> {
    const k = this.keys;
    const lk = k.plock(ino);
    const field = lockOwnerField(this.sessionId, owner);
    const req: PlockRecord = { type: lock.type, pid: lock.pid, start: BigInt(lock.start), end: lock.end > PLOCK_MAX_END ? PLOCK_MAX_END : lock.end };
    for (let i = 0; ; i++) {
      const granted = await this.txn<boolean>([lk], async (c) => {
        const all = await c.hgetallBuffer(lk);
        if (req.type !== F_UNLCK) {
          for (const [f, v] of Object.entries(all)) {
            if (f === field) continue;
            for (const r of decodePlocks(v)) {
              if (r.end < req.start || r.start > req.end) continue;
              if (r.type === F_WRLCK || req.type === F_WRLCK) return { result: false };
            }
          }
        }
        const mine = all[field] ? decodePlocks(all[field]) : [];
        const merged = updatePlocks(mine, req);
        if (merged.length === 0 && mine.length === 0) return { result: true };
        const others = Object.keys(all).some((f) => f !== field && f.startsWith(this.sessionId + '_'));
        return {
          result: true,
          write: (m) => {
            if (merged.length) {
              m.hset(lk, field, encodePlocks(merged));
              m.sadd(k.locked(this.sessionId), lk);
            } else {
              m.hdel(lk, field);
              if (!others) m.srem(k.locked(this.sessionId), lk);
            }
          },
        };
      });
      if (granted) return;
      if (!block) throw metaErr('EAGAIN');
      await new Promise((r) => setTimeout(r, 1 + Math.min(i, 50)));
    }
  }
}

/** Apply `req` (a lock or unlock range) to one owner's sorted, non-overlapping records. */
export function updatePlocks(ls: PlockRecord[], req: PlockRecord): PlockRecord[] {
  const out: PlockRecord[] = [];
  for (const l of ls) {
    if (l.end < req.start || l.start > req.end) {
      out.push(l);
      continue;
    }
    if (l.start < req.start) out.push({ ...l, end: req.start - 1n });
    if (l.end > req.end) out.push({ ...l, start: req.end + 1n });
  }
  if (req.type !== F_UNLCK) out.push({ ...req });
  out.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  // Merge touching records of the same type and pid.
  const merged: PlockRecord[] = [];
  for (const l of out) {
    const last = merged[merged.length - 1];
    if (last && last.type === l.type && last.pid === l.pid && last.end + 1n >= l.start) {
      if (l.end > last.end) last.end = l.end;
    } else merged.push({ ...l });
  }
  return merged;
}

export type { Cluster, Redis };
