/**
 * The whole job of `juicefs format`, natively (juicefs-format.md 2.3): object-store connectivity test,
 * refusal of a non-empty bucket for a new volume, the `juicefs_uuid` object, then the Redis part
 * (metadata/format.ts). Used by `artifacts format` and by the workspace create flow.
 *
 * For an existing volume, like upstream, only the settings the caller gave explicitly are changed;
 * immutable ones (name, block size, compression, hash prefix...) are refused unless `force`.
 */
import { randomBytes } from 'node:crypto';
import { createObjectStore, type CreateObjectStoreOptions } from '../chunkstore/object/index.js';
import type { ObjectStore } from '../chunkstore/types.js';
import {
  ConcurrentFormatError,
  fixBlockSizeKiB,
  FormatError,
  formatMeta,
  newFormat,
  type NewFormatParams,
  normalizeBucket,
  readFormat,
  validateVolumeName,
} from '../metadata/format.js';
import { connectMeta, type MetaConnection } from '../metadata/redis/connect.js';
import { decryptSecrets, SecretError } from '../metadata/setting.js';
import type { Format } from '../metadata/types.js';
import { MAX_META_VERSION, SUPPORTED_COMPRESSION } from '../metadata/version.js';

export interface VolumeLog {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

const silent: VolumeLog = { info() {}, warn() {}, debug() {} };

/** Settings `format` may change on an existing volume (mirrors upstream's flag list). */
export type UpdatableField =
  | 'capacity'
  | 'inodes'
  | 'bucket'
  | 'accessKey'
  | 'secretKey'
  | 'sessionToken'
  | 'trashDays'
  | 'blockSizeKiB'
  | 'compression'
  | 'hashPrefix'
  | 'storage';

export interface FormatVolumeOptions {
  /** Key prefix (overrides `?prefix=` of the meta URL and the `{N}` cluster default). */
  prefix?: string;
  force?: boolean;
  /** Leave an existing volume untouched (upstream `--no-update`). */
  noUpdate?: boolean;
  /**
   * Fields the user set explicitly. For an existing volume only these are applied; default: every
   * field of the spec that is not undefined.
   */
  explicit?: UpdatableField[];
  /** Test the object store and write juicefs_uuid (default: unless env JFS_NO_CHECK_OBJECT_STORAGE). */
  checkObjectStorage?: boolean;
  objectStore?: CreateObjectStoreOptions;
  /** Injected store (tests, fault injection); default createObjectStore(format). */
  openStore?: (fmt: Format) => ObjectStore;
  log?: VolumeLog;
  env?: NodeJS.ProcessEnv;
  /** Base delay between the 3 storage test attempts (upstream: 1 s, growing). */
  storageTestRetryDelayMs?: number;
}

export interface FormatVolumeResult {
  created: boolean;
  /** True if an existing volume's setting was rewritten. */
  updated: boolean;
  /** As stored in Redis (secrets encrypted). */
  format: Format;
  prefix: string;
  /** Description of the object store (no secrets). */
  storage: string;
  warnings: string[];
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function randSeq(n: number): string {
  const b = randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += LETTERS[b[i] % LETTERS.length];
  return s;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function testOnce(store: ObjectStore, key: string, data: Buffer): Promise<void> {
  try {
    await store.put(key, data);
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (msg.toLowerCase().includes('denied')) throw new Error(`failed to put: ${msg}`);
    // Upstream creates a missing bucket on the first failed PUT.
    try {
      await store.create?.();
    } catch (err2) {
      throw new Error(`failed to create bucket ${store.describe()}: ${(err2 as Error).message}; previous error: ${msg}`);
    }
    try {
      await store.put(key, data);
    } catch (err3) {
      throw new Error(`failed to put: ${(err3 as Error).message}`);
    }
  }
  let got: Buffer;
  try {
    got = await store.get(key);
  } catch (err) {
    throw new Error(`failed to get: ${(err as Error).message}`);
  }
  if (!got.equals(data)) throw new Error(`read wrong data: expected ${data.toString('hex')}, got ${got.toString('hex')}`);
  await store.delete(key);
}

/** PUT/GET/DELETE `testing/<random>` (100 random bytes), 3 tries; then DELETE `testing/`. */
export async function testObjectStore(store: ObjectStore, log: VolumeLog = silent, retryDelayMs = 1000): Promise<void> {
  const key = 'testing/' + randSeq(10);
  const data = randomBytes(100);
  let last: Error | undefined;
  for (let i = 0; i < 3; i++) {
    try {
      await testOnce(store, key, data);
      await store.delete('testing/').catch(() => {});
      return;
    } catch (err) {
      last = err as Error;
      log.warn(`test storage ${store.describe()} failed: ${last.message}, tries: #${i + 1}`);
      if (i < 2) await sleep(retryDelayMs * (i * 3 + 1));
    }
  }
  throw new FormatError(`storage ${store.describe()} is not configured correctly: ${last?.message}`);
}

/** Upstream refuses a new volume on a bucket prefix holding any non-empty object outside testing/. */
async function assertEmpty(store: ObjectStore): Promise<void> {
  for await (const o of store.list('')) {
    if (o.size === 0 || o.key.endsWith('/')) continue;
    if (o.key === 'testing' || o.key.startsWith('testing/')) continue;
    throw new FormatError(`storage ${store.describe()} is not empty (found ${o.key}); please clean it up or pick another volume name`);
  }
}

function applyUpdates(old: Format, spec: NewFormatParams, fields: UpdatableField[], warnings: string[]): { fmt: Format; reencrypt: boolean } {
  let fmt: Format = { ...old, Name: spec.name };
  let reencrypt = false;
  const decryptForUpdate = () => {
    if (!fmt.KeyEncrypted) return;
    reencrypt = true;
    try {
      fmt = decryptSecrets(fmt);
    } catch (e) {
      if (e instanceof SecretError && e.message.includes('removed')) {
        warnings.push(`decrypt secrets: ${e.message}`);
        fmt = { ...fmt, KeyEncrypted: false };
      } else throw e;
    }
  };
  for (const f of fields) {
    switch (f) {
      case 'capacity':
        fmt.Capacity = spec.capacity || undefined;
        break;
      case 'inodes':
        fmt.Inodes = spec.inodes || undefined;
        break;
      case 'bucket':
        fmt.Bucket = spec.bucket;
        break;
      case 'accessKey':
        fmt.AccessKey = spec.accessKey || undefined;
        break;
      case 'secretKey':
        decryptForUpdate();
        fmt.SecretKey = spec.secretKey || undefined;
        break;
      case 'sessionToken':
        decryptForUpdate();
        fmt.SessionToken = spec.sessionToken || undefined;
        break;
      case 'trashDays':
        if (spec.trashDays === undefined || !Number.isInteger(spec.trashDays) || spec.trashDays < 0)
          throw new FormatError(`invalid trash days: ${spec.trashDays}`);
        fmt.TrashDays = spec.trashDays;
        break;
      case 'blockSizeKiB': {
        const bs = fixBlockSizeKiB(spec.blockSizeKiB ?? 4096);
        if (bs.warning) warnings.push(bs.warning);
        fmt.BlockSize = bs.kib;
        break;
      }
      case 'compression': {
        const c = (spec.compression ?? 'none').toLowerCase();
        if (!(SUPPORTED_COMPRESSION as readonly string[]).includes(c))
          throw new FormatError(`unsupported compression algorithm ${JSON.stringify(spec.compression)} (none, lz4, zstd)`);
        fmt.Compression = c;
        break;
      }
      case 'hashPrefix':
        fmt.HashPrefix = spec.hashPrefix || undefined;
        break;
      case 'storage':
        fmt.Storage = spec.storage ?? 'file';
        break;
    }
  }
  return { fmt, reencrypt };
}

function definedFields(spec: NewFormatParams): UpdatableField[] {
  const all: UpdatableField[] = ['capacity', 'inodes', 'bucket', 'accessKey', 'secretKey', 'sessionToken', 'trashDays', 'blockSizeKiB', 'compression', 'hashPrefix', 'storage'];
  return all.filter((f) => spec[f] !== undefined);
}

/**
 * Format (or update) a volume. `target` is a meta URL or an open connection (then it is not closed).
 * Secrets in `spec` are plaintext.
 */
export async function formatVolume(target: string | MetaConnection, spec: NewFormatParams, opts: FormatVolumeOptions = {}): Promise<FormatVolumeResult> {
  const log = opts.log ?? silent;
  const env = opts.env ?? process.env;
  validateVolumeName(spec.name);
  const conn = typeof target === 'string' ? await connectMeta(target, { prefix: opts.prefix, env }) : target;
  const prefix = typeof target === 'string' ? conn.prefix : (opts.prefix ?? conn.prefix);
  let store: ObjectStore | undefined;
  try {
    log.debug(`meta: ${conn.url.redacted} (${conn.cluster ? 'cluster' : conn.url.mode}, key prefix ${JSON.stringify(prefix)})`);
    const warnings: string[] = [];
    const old = await readFormat(conn.redis, prefix);
    let fmt: Format;
    let reencrypt = false;
    const create = old === null;
    if (old && opts.noUpdate) return { created: false, updated: false, format: old, prefix, storage: '', warnings };
    if (old) {
      if ((old.MetaVersion ?? 0) > MAX_META_VERSION)
        throw new FormatError(`existing volume has metadata version ${old.MetaVersion}; this client only understands <= ${MAX_META_VERSION}`);
      ({ fmt, reencrypt } = applyUpdates(old, spec, opts.explicit ?? definedFields(spec), warnings));
    } else {
      // Upstream takes credentials from ACCESS_KEY / SECRET_KEY / SESSION_TOKEN when no flag is given.
      const withEnv: NewFormatParams = {
        ...spec,
        accessKey: spec.accessKey || env.ACCESS_KEY || undefined,
        secretKey: spec.secretKey || env.SECRET_KEY || undefined,
        sessionToken: spec.sessionToken || env.SESSION_TOKEN || undefined,
      };
      const n = newFormat(withEnv);
      fmt = n.format;
      warnings.push(...n.warnings);
    }
    fmt.Bucket = normalizeBucket(fmt.Storage, fmt.Bucket);
    for (const w of warnings) log.warn(w);

    const plain = decryptSecrets(fmt);
    store = opts.openStore ? opts.openStore(plain) : createObjectStore(plain, opts.objectStore);
    const storage = store.describe();
    log.info(`Data use ${storage}`);
    const check = opts.checkObjectStorage ?? !env.JFS_NO_CHECK_OBJECT_STORAGE;
    let wroteUuid = false;
    if (check) {
      await testObjectStore(store, log, opts.storageTestRetryDelayMs);
      if (create) {
        await assertEmpty(store);
        try {
          await store.put('juicefs_uuid', Buffer.from(fmt.UUID));
          wroteUuid = true;
        } catch (e) {
          log.warn(`put uuid object: ${(e as Error).message}`);
        }
      }
    }
    try {
      const res = await formatMeta(conn.redis, prefix, fmt, { force: opts.force, encrypt: reencrypt });
      return { created: res.created, updated: !res.created, format: res.format, prefix, storage, warnings };
    } catch (e) {
      // Upstream deletes the UUID object when the metadata init fails. After losing a race the object
      // may hold the winner's UUID or ours; leave it (readers never require juicefs_uuid).
      if (wroteUuid && !(e instanceof ConcurrentFormatError)) await store.delete('juicefs_uuid').catch(() => {});
      throw e;
    }
  } finally {
    store?.close?.();
    if (typeof target === 'string') await conn.close();
  }
}
