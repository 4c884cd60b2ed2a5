/**
 * `artifacts fsck`: an offline consistency check of a volume's metadata and blocks.
 *
 * One SCAN of the volume's keys, pipelined reads, one listing of `chunks/` in the object store; then:
 *  - every slice's blocks exist with the right plaintext-size suffix (and, without compression, the
 *    right object size) — what `juicefs fsck` checks;
 *  - `sliceRef` agrees with the number of records referencing each slice (chunk lists + delSlices);
 *  - `usedSpace` / `totalInodes` agree with a recount over the `i*` keys;
 *  - dentries point at existing inodes of the same type; parents are directories;
 *  - nlink agrees with the dentries (dirs: 2 + sub-directories), `Parent`/`p{ino}` agree with them;
 *  - symlinks have targets; chunk lists belong to regular files (or files queued in `delfiles`).
 * It reads only. Run it on a quiet volume: writes during the walk can show up as transient mismatches.
 */
import type { Cluster, Redis } from 'ioredis';
import { blockCount, blockKey, blockSize as blockLen, parseBlockKey } from '../chunkstore/keys.js';
import type { ObjectStore } from '../chunkstore/types.js';
import { align4K, decodeAttr, decodeDentry, decodeDelSlices, decodeSlice, SLICE_BYTES } from '../metadata/codec.js';
import { readFormat } from '../metadata/format.js';
import type { MetaConnection, MetaRedis } from '../metadata/redis/connect.js';
import { type Attr, CHUNK_SIZE, FileType, type Format, type Ino, ROOT_INODE, TRASH_INODE } from '../metadata/types.js';
import { checkFormat, MAX_META_VERSION } from '../metadata/version.js';

export type Severity = 'error' | 'warning';

export interface Finding {
  severity: Severity;
  kind: string;
  message: string;
}

export interface FsckStats {
  inodes: number;
  directories: number;
  files: number;
  symlinks: number;
  dentries: number;
  chunks: number;
  sliceRecords: number;
  slices: number;
  blocks: number;
  objects: number;
  leakedObjects: number;
}

export interface FsckReport {
  ok: boolean;
  errors: number;
  warnings: number;
  findings: Finding[];
  /** Findings not listed because of `maxFindingsPerKind`. */
  suppressed: number;
  stats: FsckStats;
  counters: {
    usedSpace: { stored: number; actual: number };
    totalInodes: { stored: number; actual: number };
  };
}

export interface FsckOptions {
  /** Object store of the volume (prefixed with `Name/`); null skips the block checks. */
  store: ObjectStore | null;
  /** Findings kept per kind (the rest are counted). Default 50. */
  maxFindingsPerKind?: number;
  /** Progress callback. */
  progress?: (msg: string) => void;
}

const BATCH = 500;

class Findings {
  readonly list: Finding[] = [];
  errors = 0;
  warnings = 0;
  suppressed = 0;
  private perKind = new Map<string, number>();
  constructor(private readonly max: number) {}
  add(severity: Severity, kind: string, message: string): void {
    if (severity === 'error') this.errors++;
    else this.warnings++;
    const n = (this.perKind.get(kind) ?? 0) + 1;
    this.perKind.set(kind, n);
    if (n <= this.max) this.list.push({ severity, kind, message });
    else this.suppressed++;
  }
}

/** All keys matching `pattern` (a glob): on a cluster every master is scanned. */
async function scanKeys(redis: MetaRedis, cluster: boolean, pattern: string): Promise<string[]> {
  const nodes: Redis[] = cluster ? (redis as Cluster).nodes('master') : [redis as Redis];
  const out: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) out.push(k);
    } while (cursor !== '0');
  }
  return [...new Set(out)];
}

type Cmd = [string, ...(string | number)[]];

/** Run read commands in pipelined batches; replies as Buffers (or arrays/objects of Buffers). */
async function batched<T>(redis: MetaRedis, cmds: Cmd[], build: (p: ReturnType<MetaRedis['pipeline']>, c: Cmd) => void): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < cmds.length; i += BATCH) {
    const p = redis.pipeline();
    for (const c of cmds.slice(i, i + BATCH)) build(p, c);
    const res = (await p.exec()) ?? [];
    for (const [err, v] of res) {
      if (err) throw err;
      out.push(v as T);
    }
  }
  return out;
}

const sliceName = (id: number, size: number) => `k${id}_${size}`;

export async function fsckVolume(conn: MetaConnection, opts: FsckOptions): Promise<FsckReport> {
  const { redis, prefix, cluster } = conn;
  const f = new Findings(opts.maxFindingsPerKind ?? 50);
  const progress = opts.progress ?? (() => {});
  const stats: FsckStats = {
    inodes: 0,
    directories: 0,
    files: 0,
    symlinks: 0,
    dentries: 0,
    chunks: 0,
    sliceRecords: 0,
    slices: 0,
    blocks: 0,
    objects: 0,
    leakedObjects: 0,
  };
  const report = (): FsckReport => ({
    ok: f.errors === 0,
    errors: f.errors,
    warnings: f.warnings,
    findings: f.list,
    suppressed: f.suppressed,
    stats,
    counters,
  });
  const counters = { usedSpace: { stored: 0, actual: 0 }, totalInodes: { stored: 0, actual: 0 } };

  // --- setting
  let fmt: Format | null;
  try {
    fmt = await readFormat(redis, prefix);
  } catch (e) {
    f.add('error', 'setting', (e as Error).message);
    return report();
  }
  if (!fmt) {
    f.add('error', 'setting', `volume is not formatted: key ${prefix}setting is missing`);
    return report();
  }
  if ((fmt.MetaVersion ?? 0) > MAX_META_VERSION) {
    // A newer layout: every check below could be wrong.
    f.add('error', 'setting', `incompatible metadata version ${fmt.MetaVersion} (this client understands <= ${MAX_META_VERSION}); nothing checked`);
    return report();
  }
  try {
    checkFormat(fmt, { acl: true, changeLog: true, userGroupQuota: true });
  } catch (e) {
    f.add('warning', 'setting', `${(e as Error).message} (checks continue)`);
  }
  const bs = fmt.BlockSize * 1024;
  const rawObjects = (fmt.Compression ?? 'none').toLowerCase() === 'none' && !fmt.EncryptKey;

  // --- keys
  progress('scanning keys');
  const keys = await scanKeys(redis, cluster, prefix + '*');
  const inodeKeys: Ino[] = [];
  const dentryKeys: Ino[] = [];
  const parentKeys: Ino[] = [];
  const chunkKeys: { ino: Ino; indx: number }[] = [];
  const symlinkKeys = new Set<Ino>();
  const sessionKeys: string[] = [];
  for (const full of keys) {
    const k = full.slice(prefix.length);
    let m: RegExpExecArray | null;
    if ((m = /^i([0-9]+)$/.exec(k))) inodeKeys.push(BigInt(m[1]));
    else if ((m = /^d([0-9]+)$/.exec(k))) dentryKeys.push(BigInt(m[1]));
    else if ((m = /^p([0-9]+)$/.exec(k))) parentKeys.push(BigInt(m[1]));
    else if ((m = /^c([0-9]+)_([0-9]+)$/.exec(k))) chunkKeys.push({ ino: BigInt(m[1]), indx: Number(m[2]) });
    else if ((m = /^s([0-9]+)$/.exec(k))) symlinkKeys.add(BigInt(m[1]));
    else if (/^session[0-9]+$/.test(k)) sessionKeys.push(full);
  }

  // --- inodes
  progress(`reading ${inodeKeys.length} inodes`);
  const attrs = new Map<Ino, Attr>();
  const rawAttrs = await batched<Buffer | null>(redis, inodeKeys.map((i) => ['get', prefix + 'i' + i]), (p, c) => p.getBuffer(c[1] as string));
  inodeKeys.forEach((ino, i) => {
    const b = rawAttrs[i];
    if (!b) return;
    try {
      attrs.set(ino, decodeAttr(b));
    } catch (e) {
      f.add('error', 'attr', `inode ${ino}: ${(e as Error).message}`);
    }
  });
  if (!attrs.has(ROOT_INODE)) f.add('error', 'root', 'root inode (i1) is missing');
  else if (attrs.get(ROOT_INODE)!.type !== FileType.Dir) f.add('error', 'root', 'root inode (i1) is not a directory');

  // --- sustained inodes and queued deletions
  const sustained = new Set<Ino>();
  const sets = await batched<Buffer[]>(redis, sessionKeys.map((k) => ['smembers', k]), (p, c) => p.smembersBuffer(c[1] as string));
  for (const members of sets) for (const m of members) if (/^[0-9]+$/.test(m.toString())) sustained.add(BigInt(m.toString()));
  const delfiles = new Set<Ino>();
  for (const m of await redis.zrange(prefix + 'delfiles', '0', '-1')) {
    const parts = m.split(':');
    if (parts.length === 2 && /^[0-9]+$/.test(parts[0])) delfiles.add(BigInt(parts[0]));
  }

  // --- dentries
  progress(`reading ${dentryKeys.length} directories`);
  const linkParents = new Map<Ino, Ino[]>(); // ino -> parents of its dentries (with repetition)
  const subdirs = new Map<Ino, number>();
  // Raw HGETALL replies: entry names are bytes, and two non-UTF-8 names could collide as object keys.
  const entries = await batched<Buffer[]>(redis, dentryKeys.map((d) => ['hgetall', prefix + 'd' + d]), (p, c) =>
    p.callBuffer('HGETALL', c[1] as string),
  );
  dentryKeys.forEach((parent, i) => {
    const pa = attrs.get(parent);
    if (!pa) f.add('error', 'dentry', `directory entries d${parent} exist but inode ${parent} does not`);
    else if (pa.type !== FileType.Dir) f.add('error', 'dentry', `d${parent} exists but inode ${parent} is not a directory`);
    const flat = entries[i] ?? [];
    for (let j = 0; j + 1 < flat.length; j += 2) {
      const name = flat[j].toString();
      const v = flat[j + 1];
      stats.dentries++;
      let d: { type: FileType; ino: Ino };
      try {
        d = decodeDentry(v);
      } catch (e) {
        f.add('error', 'dentry', `entry ${JSON.stringify(name)} in d${parent}: ${(e as Error).message}`);
        continue;
      }
      const a = attrs.get(d.ino);
      if (!a) {
        f.add('error', 'dentry', `entry ${JSON.stringify(name)} in directory ${parent} points to missing inode ${d.ino}`);
        continue;
      }
      if (a.type !== d.type)
        f.add('error', 'type', `entry ${JSON.stringify(name)} in directory ${parent}: dentry type ${d.type} but inode ${d.ino} has type ${a.type}`);
      const ps = linkParents.get(d.ino);
      if (ps) ps.push(parent);
      else linkParents.set(d.ino, [parent]);
      if (a.type === FileType.Dir) subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
  });

  // --- hard-link parents
  const pHashes = new Map<Ino, Map<Ino, number>>();
  const pvals = await batched<Record<string, Buffer>>(redis, parentKeys.map((i) => ['hgetall', prefix + 'p' + i]), (p, c) => p.hgetallBuffer(c[1] as string));
  parentKeys.forEach((ino, i) => {
    const m = new Map<Ino, number>();
    for (const [k, v] of Object.entries(pvals[i] ?? {})) {
      const n = Number(v.toString());
      if (/^[0-9]+$/.test(k) && n > 0) m.set(BigInt(k), n);
    }
    pHashes.set(ino, m);
  });

  // --- symlink targets
  const symInos = [...attrs].filter(([, a]) => a.type === FileType.Symlink).map(([i]) => i);
  const targets = await batched<number>(redis, symInos.map((i) => ['strlen', prefix + 's' + i]), (p, c) => p.strlen(c[1] as string));

  // --- per-inode checks and the recount
  let usedSpace = 0;
  let totalInodes = 0;
  for (const [ino, a] of attrs) {
    stats.inodes++;
    if (a.type === FileType.Dir) stats.directories++;
    else if (a.type === FileType.File) stats.files++;
    else if (a.type === FileType.Symlink) stats.symlinks++;
    const special = ino === ROOT_INODE || ino === TRASH_INODE;
    if (!special) {
      usedSpace += align4K(a.length);
      totalInodes++;
    }
    const parents = linkParents.get(ino) ?? [];
    if (a.type === FileType.Dir) {
      const expected = special ? 0 : 1;
      if (parents.length !== expected)
        f.add('error', 'nlink', `directory ${ino} is referenced by ${parents.length} entries (expected ${expected})`);
      // The trash and its hourly sub-directories do not count their children in nlink upstream.
      if (ino < TRASH_INODE && a.nlink !== 2 + (subdirs.get(ino) ?? 0))
        f.add('error', 'nlink', `directory ${ino} has nlink ${a.nlink}, expected ${2 + (subdirs.get(ino) ?? 0)} (2 + sub-directories)`);
    } else if (a.nlink === 0) {
      if (parents.length > 0) f.add('error', 'nlink', `inode ${ino} has nlink 0 but ${parents.length} entries`);
      else if (!sustained.has(ino)) f.add('warning', 'orphan', `inode ${ino} has nlink 0 and is not held open by any session (leaked)`);
    } else if (parents.length !== a.nlink) {
      if (parents.length === 0) f.add('error', 'orphan', `inode ${ino} (nlink ${a.nlink}) is not referenced by any directory entry`);
      else f.add('error', 'nlink', `inode ${ino} has nlink ${a.nlink} but ${parents.length} directory entries`);
    }
    if (ino === ROOT_INODE) {
      if (a.parent !== ROOT_INODE) f.add('warning', 'parent', `root inode has parent ${a.parent} (expected 1)`);
    } else if (ino !== TRASH_INODE && a.parent !== 0n) {
      if (parents.length > 0 && !parents.includes(a.parent))
        f.add('error', 'parent', `inode ${ino} records parent ${a.parent}, but its entries are in ${[...new Set(parents)].join(', ')}`);
      if (a.type !== FileType.Dir && (pHashes.get(ino)?.size ?? 0) > 0)
        f.add('warning', 'pkey', `inode ${ino} has parent ${a.parent} but also a p${ino} hash (stale)`);
    } else if (ino !== TRASH_INODE && a.parent === 0n && parents.length > 0) {
      const ph = pHashes.get(ino);
      if (!ph) f.add('error', 'pkey', `hard-linked inode ${ino} (parent 0) has no p${ino} hash`);
      else {
        const counted = new Map<Ino, number>();
        for (const p of parents) counted.set(p, (counted.get(p) ?? 0) + 1);
        for (const [p, n] of counted)
          if ((ph.get(p) ?? 0) !== n) f.add('error', 'pkey', `p${ino}[${p}] = ${ph.get(p) ?? 0} but directory ${p} has ${n} entries for it`);
        for (const [p, n] of ph) if (!counted.has(p)) f.add('error', 'pkey', `p${ino}[${p}] = ${n} but directory ${p} has no entry for it`);
      }
    }
  }
  symInos.forEach((ino, i) => {
    const a = attrs.get(ino)!;
    if (!symlinkKeys.has(ino)) f.add('error', 'symlink', `symlink ${ino} has no target (s${ino} missing)`);
    else if (targets[i] !== a.length) f.add('error', 'symlink', `symlink ${ino}: target is ${targets[i]} bytes, attr length ${a.length}`);
  });

  // --- chunks and slices
  progress(`reading ${chunkKeys.length} chunks`);
  const refs = new Map<string, { id: number; size: number; n: number }>();
  const ref = (id: number, size: number) => {
    const k = sliceName(id, size);
    const r = refs.get(k);
    if (r) r.n++;
    else refs.set(k, { id, size, n: 1 });
  };
  const lists = await batched<Buffer[]>(redis, chunkKeys.map((c) => ['lrange', prefix + 'c' + c.ino + '_' + c.indx]), (p, c) =>
    p.lrangeBuffer(c[1] as string, 0, -1),
  );
  chunkKeys.forEach(({ ino, indx }, i) => {
    stats.chunks++;
    const a = attrs.get(ino);
    if (!a) {
      if (!delfiles.has(ino)) f.add('warning', 'chunk', `chunk c${ino}_${indx} belongs to no inode (leaked; \`juicefs gc\` removes it)`);
    } else if (a.type !== FileType.File) f.add('error', 'chunk', `chunk c${ino}_${indx} belongs to inode ${ino}, which is not a regular file`);
    for (const rec of lists[i] ?? []) {
      stats.sliceRecords++;
      if (rec.length !== SLICE_BYTES) {
        f.add('error', 'slice', `chunk c${ino}_${indx}: slice record of ${rec.length} bytes (expected ${SLICE_BYTES})`);
        continue;
      }
      const s = decodeSlice(rec);
      if (s.pos + s.len > CHUNK_SIZE) f.add('error', 'slice', `chunk c${ino}_${indx}: record pos ${s.pos} + len ${s.len} exceeds the chunk`);
      if (s.id === 0) continue;
      if (s.off + s.len > s.size || s.size > CHUNK_SIZE)
        f.add('error', 'slice', `chunk c${ino}_${indx}: record off ${s.off} + len ${s.len} outside slice ${s.id} of ${s.size} bytes`);
      ref(s.id, s.size);
    }
  });
  // Slices superseded by compaction while trash is on keep their reference until they expire.
  const delSlices = await redis.hgetallBuffer(prefix + 'delSlices');
  for (const v of Object.values(delSlices)) for (const s of decodeDelSlices(v)) ref(s.id, s.size);
  stats.slices = refs.size;

  const sliceRef = await redis.hgetallBuffer(prefix + 'sliceRef');
  const pendingDelete = new Set<string>();
  for (const [k, v] of Object.entries(sliceRef)) {
    const stored = Number(v.toString());
    const r = refs.get(k);
    if (!r) {
      if (stored < 0) pendingDelete.add(k);
      else if (stored > 0) f.add('warning', 'sliceref', `sliceRef ${k} = ${stored} but no chunk references the slice (leaked reference)`);
    }
  }
  for (const [k, r] of refs) {
    const v = sliceRef[k];
    const stored = v === undefined ? 0 : Number(v.toString());
    if (stored !== r.n - 1)
      f.add('error', 'sliceref', `slice ${r.id} (${r.size} bytes) is referenced ${r.n} times but sliceRef ${k} = ${v === undefined ? '(absent)' : stored} (expected ${r.n - 1})`);
  }

  // --- counters
  const [us, ti] = await Promise.all([redis.get(prefix + 'usedSpace'), redis.get(prefix + 'totalInodes')]);
  counters.usedSpace = { stored: Number(us ?? 0), actual: usedSpace };
  counters.totalInodes = { stored: Number(ti ?? 0), actual: totalInodes };
  if (counters.usedSpace.stored !== usedSpace) f.add('error', 'counter', `usedSpace is ${counters.usedSpace.stored}, recount gives ${usedSpace}`);
  if (counters.totalInodes.stored !== totalInodes) f.add('error', 'counter', `totalInodes is ${counters.totalInodes.stored}, recount gives ${totalInodes}`);

  // --- blocks
  if (opts.store) {
    progress('listing objects');
    const objects = new Map<string, number>();
    for await (const o of opts.store.list('chunks/')) objects.set(o.key, o.size);
    stats.objects = objects.size;
    const expected = new Set<string>();
    for (const r of refs.values()) {
      const n = blockCount(r.size, bs);
      for (let i = 0; i < n; i++) {
        const len = blockLen(r.size, i, bs);
        const key = blockKey(r.id, i, len, !!fmt.HashPrefix);
        expected.add(key);
        stats.blocks++;
        const size = objects.get(key);
        if (size === undefined) f.add('error', 'block', `missing block ${key} of slice ${r.id} (${r.size} bytes)`);
        else if (rawObjects && size !== len) f.add('error', 'block', `block ${key} has ${size} bytes, expected ${len}`);
        else if (!rawObjects && size === 0) f.add('error', 'block', `block ${key} is empty`);
      }
    }
    const pending = new Set([...pendingDelete].map((k) => Number(k.slice(1, k.indexOf('_')))));
    for (const key of objects.keys()) {
      if (expected.has(key)) continue;
      const pk = parseBlockKey(key, !!fmt.HashPrefix);
      if (pk && pending.has(pk.id)) continue;
      stats.leakedObjects++;
      f.add('warning', 'leaked', `object ${key} is not referenced by any slice (leaked, or an upload not yet committed)`);
    }
  }
  return report();
}
