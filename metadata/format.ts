/**
 * The Redis half of `juicefs format` (juicefs-format.md 2.3) and the defaults of a new volume.
 *
 * A new volume gets: `i{TrashInode}` (only if TrashDays > 0), `setting`, `i1` (root). Nothing else —
 * no counters (absent = 0 to every reader), no `d1` (an empty directory has no hash). Re-formatting an
 * existing volume rewrites `setting` (mutable fields only unless `force`) and re-creates the trash
 * inode with SETNX; the root is left alone.
 */
import { randomUUID } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { encodeAttr, newAttr } from './codec.js';
import { Keys } from './keys.js';
import type { MetaRedis } from './redis/connect.js';
import { decodeSetting, decryptSecrets, encodeSetting, encryptSecrets, withDefaultTiers } from './setting.js';
import { FileType, type Format, ROOT_INODE, TRASH_INODE } from './types.js';
import { checkFormat, type FeatureSupport, MAX_META_VERSION, SUPPORTED_COMPRESSION } from './version.js';

export const VOLUME_NAME_RE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
export const DEFAULT_BLOCK_SIZE_KIB = 4096;
export const MIN_BLOCK_SIZE_KIB = 64;
export const MAX_BLOCK_SIZE_KIB = 16 * 1024;
export const DEFAULT_ENCRYPT_ALGO = 'aes256gcm-rsa';
export const NEW_VOLUME_MIN_CLIENT_VERSION = '1.1.0-A';

export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
}

export class ConcurrentFormatError extends FormatError {
  constructor() {
    super('the volume was formatted by another client at the same time; run format again to update it');
    this.name = 'ConcurrentFormatError';
  }
}

export class NotFormattedError extends Error {
  constructor(prefix: string) {
    super(`database is not formatted (no ${prefix}setting key): run \`artifacts format\` first`);
    this.name = 'NotFormattedError';
  }
}

export function validateVolumeName(name: string): void {
  if (!VOLUME_NAME_RE.test(name))
    throw new FormatError(
      `invalid volume name ${JSON.stringify(name)}: only lower-case letters, digits and '-' are allowed, ` +
        `it must start and end with a letter or digit, and be 3 to 63 characters long`,
    );
}

/**
 * Upstream's block size rule: round the requested size down to a power of two, then clamp to
 * [64 KiB, 16 MiB]. Returns KiB and a warning when clamped.
 */
export function fixBlockSizeKiB(kib: number): { kib: number; warning?: string } {
  if (!Number.isFinite(kib) || kib < 0) throw new FormatError(`invalid block size ${kib}`);
  let bytes = Math.floor(kib * 1024);
  let p = 1;
  while (p * 2 <= bytes) p *= 2;
  bytes = bytes >= 1 ? p : 0;
  if (bytes < MIN_BLOCK_SIZE_KIB * 1024)
    return { kib: MIN_BLOCK_SIZE_KIB, warning: `block size is too small: ${bytes >> 10} KiB, using ${MIN_BLOCK_SIZE_KIB} KiB instead` };
  if (bytes > MAX_BLOCK_SIZE_KIB * 1024)
    return { kib: MAX_BLOCK_SIZE_KIB, warning: `block size is too large: ${bytes >> 10} KiB, using ${MAX_BLOCK_SIZE_KIB} KiB instead` };
  return { kib: bytes / 1024 };
}

/** `file` buckets are absolute directories ending in '/', exactly as upstream stores them. */
export function normalizeBucket(storage: string, bucket: string): string {
  // Go's filepath.Abs (which also drops a trailing '/') followed by `+= "/"`.
  if (storage === 'file') return resolvePath(bucket) + '/';
  return bucket;
}

export interface NewFormatParams {
  name: string;
  /** `file` (default), `s3`, `minio`. */
  storage?: string;
  /** Directory (file) or bucket URL. */
  bucket: string;
  blockSizeKiB?: number;
  compression?: string;
  trashDays?: number;
  accessKey?: string;
  secretKey?: string;
  sessionToken?: string;
  storageClass?: string;
  hashPrefix?: boolean;
  /** Volume quota in BYTES (the CLI takes GiB). 0 = unlimited. */
  capacity?: number;
  /** Inode quota. 0 = unlimited. */
  inodes?: number;
  /** For tests; default: random UUID v4. */
  uuid?: string;
}

/** A new volume's Format with upstream's defaults. Secrets are plaintext (formatMeta encrypts them). */
export function newFormat(p: NewFormatParams): { format: Format; warnings: string[] } {
  validateVolumeName(p.name);
  const warnings: string[] = [];
  const storage = p.storage ?? 'file';
  const compression = (p.compression ?? 'none').toLowerCase();
  if (!(SUPPORTED_COMPRESSION as readonly string[]).includes(compression))
    throw new FormatError(`unsupported compression algorithm ${JSON.stringify(p.compression)} (none, lz4, zstd)`);
  const trashDays = p.trashDays ?? 1;
  if (!Number.isInteger(trashDays) || trashDays < 0) throw new FormatError(`invalid trash days: ${p.trashDays}`);
  const bs = fixBlockSizeKiB(p.blockSizeKiB ?? DEFAULT_BLOCK_SIZE_KIB);
  if (bs.warning) warnings.push(bs.warning);
  for (const [k, v] of [['capacity', p.capacity], ['inodes', p.inodes]] as const)
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new FormatError(`invalid ${k}: ${v}`);
  const format: Format = {
    Name: p.name,
    UUID: p.uuid ?? randomUUID(),
    Storage: storage,
    StorageClass: p.storageClass || undefined,
    Tiers: { '0': { ID: 0, StorageClass: p.storageClass ?? '', Tag: '' } },
    Bucket: normalizeBucket(storage, p.bucket),
    AccessKey: p.accessKey || undefined,
    SecretKey: p.secretKey || undefined,
    SessionToken: p.sessionToken || undefined,
    BlockSize: bs.kib,
    Compression: compression,
    HashPrefix: p.hashPrefix || undefined,
    Capacity: p.capacity || undefined,
    Inodes: p.inodes || undefined,
    // Upstream writes its CLI default on every new volume, encrypted or not.
    EncryptAlgo: DEFAULT_ENCRYPT_ALGO,
    TrashDays: trashDays,
    MetaVersion: MAX_META_VERSION,
    MinClientVersion: NEW_VOLUME_MIN_CLIENT_VERSION,
    DirStats: true,
    EnableACL: false,
  };
  return { format, warnings };
}

/** Read `setting`: null when the volume is not formatted. No compatibility check. */
export async function readFormat(redis: MetaRedis, prefix: string): Promise<Format | null> {
  const raw = await redis.getBuffer(prefix + 'setting');
  if (raw === null) return null;
  return decodeSetting(raw);
}

/**
 * What a client does on mount: read `setting`, refuse what it cannot serve (checkFormat), and fill in
 * tier 0 when an old volume has no Tiers (as upstream's Load does).
 */
export async function loadFormat(redis: MetaRedis, prefix: string, features?: FeatureSupport): Promise<Format> {
  const fmt = await readFormat(redis, prefix);
  if (!fmt) throw new NotFormattedError(prefix);
  checkFormat(fmt, features);
  return withDefaultTiers(fmt);
}

/** Immutable fields, in upstream's order of checking. */
function immutableChange(next: Format, old: Format): string | null {
  const norm = (c?: string) => ((c ?? '') === '' ? 'none' : c!.toLowerCase());
  if (next.Name !== old.Name) return `name from ${old.Name} to ${next.Name}`;
  if (next.BlockSize !== old.BlockSize) return `block size from ${old.BlockSize} to ${next.BlockSize}`;
  if (norm(next.Compression) !== norm(old.Compression)) return `compression from ${old.Compression ?? ''} to ${next.Compression ?? ''}`;
  if ((next.Shards ?? 0) !== (old.Shards ?? 0)) return `shards from ${old.Shards ?? 0} to ${next.Shards ?? 0}`;
  if (!!next.HashPrefix !== !!old.HashPrefix) return `hash prefix from ${!!old.HashPrefix} to ${!!next.HashPrefix}`;
  if ((next.MetaVersion ?? 0) !== (old.MetaVersion ?? 0)) return `meta version from ${old.MetaVersion ?? 0} to ${next.MetaVersion ?? 0}`;
  return null;
}

export interface FormatMetaOptions {
  /** Overwrite an existing volume even if immutable fields change. */
  force?: boolean;
  /** Encrypt plaintext secrets also when updating an existing volume (always done for a new one). */
  encrypt?: boolean;
  /** Clock (unix seconds) for the root/trash inodes; tests. */
  now?: number;
}

export interface FormatMetaResult {
  /** True if this call created the volume. */
  created: boolean;
  /** The Format as stored (secrets encrypted). */
  format: Format;
  /** The previous Format when the volume existed. */
  previous?: Format;
}

function dirAttr(mode: number, now: number): Buffer {
  const a = newAttr(FileType.Dir, mode, { sec: now, nsec: 0 });
  a.parent = ROOT_INODE;
  return encodeAttr(a);
}

/**
 * Write the Redis part of a volume. `fmt` may carry plaintext or encrypted (KeyEncrypted) secrets.
 * A new volume is claimed atomically (SET setting NX inside MULTI/EXEC), so two concurrent formats
 * cannot both believe they created it. (Upstream SETs the root unconditionally; we use NX so that a
 * lost race cannot reset the winner's root. On a fresh database both are the same.)
 */
export async function formatMeta(redis: MetaRedis, prefix: string, fmt: Format, opts: FormatMetaOptions = {}): Promise<FormatMetaResult> {
  const keys = new Keys(prefix);
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const oldRaw = await redis.getBuffer(keys.setting);
  if (oldRaw === null) {
    const stored = encryptSecrets(fmt);
    const m = redis.multi();
    if (stored.TrashDays > 0) m.setnx(keys.inode(TRASH_INODE), dirAttr(0o555, now));
    m.set(keys.setting, encodeSetting(stored), 'NX');
    // NX: if we lose a race, the winner's root (maybe with sub-directories by now) must survive.
    m.set(keys.inode(ROOT_INODE), dirAttr(0o777, now), 'NX');
    const res = await m.exec();
    if (!res) throw new FormatError('format transaction aborted');
    for (const [err] of res) if (err) throw err;
    const setRes = res[stored.TrashDays > 0 ? 1 : 0][1];
    if (setRes === 'OK') return { created: true, format: stored };
    // Someone formatted the volume between our GET and EXEC; nothing of ours was applied.
    throw new ConcurrentFormatError();
  }

  let old: Format;
  try {
    old = decodeSetting(oldRaw);
  } catch (e) {
    throw new FormatError(`existing format is broken: ${(e as Error).message}`);
  }
  let next: Format = { ...fmt };
  if (!opts.force) {
    const change = immutableChange(next, old);
    if (change) throw new FormatError(`cannot update volume ${change} (use --force to overwrite)`);
    if (next.UUID !== old.UUID) {
      // The UUID cannot change alone; secrets are keyed by it, so re-encrypt under the old one.
      const wasEncrypted = !!next.KeyEncrypted;
      next = { ...decryptSecrets(next), UUID: old.UUID };
      if (wasEncrypted) next = encryptSecrets(next);
    }
  }
  if (opts.encrypt) next = encryptSecrets(next);
  if (!old.DirStats && next.DirStats) {
    // Per-directory stats were not maintained while disabled: drop them so they are rebuilt.
    await redis.multi().del(keys.dirUsedInodes, keys.dirUsedSpace).exec();
  }
  if (!old.UserGroupQuota && next.UserGroupQuota) {
    await redis
      .multi()
      .del(
        ...['userQuota', 'userQuotaUsedSpace', 'userQuotaUsedInodes', 'groupQuota', 'groupQuotaUsedSpace', 'groupQuotaUsedInodes'].map(
          (k) => prefix + k,
        ),
      )
      .exec();
  }
  if (next.TrashDays > 0) await redis.setnx(keys.inode(TRASH_INODE), dirAttr(0o555, now));
  await redis.set(keys.setting, encodeSetting(next));
  return { created: false, format: next, previous: old };
}
