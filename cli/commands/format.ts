/**
 * `artifacts format <meta-url> <name>`: what `juicefs format` does, natively (cli/volume.ts).
 * Same flags, same defaults, same rule for existing volumes: only the flags given are applied.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { VOLUME_NAME_RE } from '../../metadata/format.js';
import { MetaUrlError, parseMetaUrl, validatePrefix } from '../../metadata/redis/connect.js';
import { formatForDisplay } from '../../metadata/setting.js';
import { type Output, outputOf, UsageError } from '../output.js';
import type { UpdatableField } from '../volume.js';

const SHIFT: Record<string, number> = { b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 };

/** Upstream's size syntax: a number with an optional unit letter (B, K, M, G, T, P, E); bare numbers use `unit`. */
export function parseBytes(flag: string, value: string, unit: 'B' | 'K' | 'M' | 'G'): number {
  let s = value.trim();
  let u = unit.toLowerCase();
  const last = s[s.length - 1];
  if (last && !/[0-9]/.test(last)) {
    u = last.toLowerCase();
    s = s.slice(0, -1);
  }
  const shift = SHIFT[u];
  if (!/^[0-9]*\.?[0-9]+$/.test(s) || shift === undefined)
    throw new UsageError(`invalid value ${JSON.stringify(value)} for --${flag} (a number with an optional unit K, M, G, T)`);
  return Math.floor(Number(s) * 2 ** shift);
}

function parseNonNegInt(flag: string, v: string): number {
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UsageError(`--${flag} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Default `file` bucket: beside the local stack's objects (upstream: ~/.juicefs/local or /var/jfs). */
export function defaultBucket(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'artifacts', 'objects');
}

interface FormatFlags {
  storage: string;
  bucket?: string;
  accessKey?: string;
  secretKey?: string;
  sessionToken?: string;
  storageClass?: string;
  blockSize: string;
  compress: string;
  trashDays: string;
  keyPrefix?: string;
  hashPrefix?: boolean;
  capacity?: string;
  inodes?: string;
  force?: boolean;
  update: boolean;
  checkStorage: boolean;
}

const FLAG_TO_FIELD: Record<string, UpdatableField> = {
  capacity: 'capacity',
  inodes: 'inodes',
  bucket: 'bucket',
  accessKey: 'accessKey',
  secretKey: 'secretKey',
  sessionToken: 'sessionToken',
  trashDays: 'trashDays',
  blockSize: 'blockSizeKiB',
  compress: 'compression',
  hashPrefix: 'hashPrefix',
  storage: 'storage',
};

async function run(metaUrl: string, name: string, flags: FormatFlags, cmd: Command, out: Output): Promise<void> {
  if (!VOLUME_NAME_RE.test(name))
    throw new UsageError(
      `invalid volume name ${JSON.stringify(name)}: only lower-case letters, digits and '-' are allowed, and the length should be 3 to 63 characters`,
    );
  try {
    parseMetaUrl(metaUrl);
    if (flags.keyPrefix !== undefined) validatePrefix(flags.keyPrefix, false);
  } catch (e) {
    if (e instanceof MetaUrlError) throw new UsageError(e.message);
    throw e;
  }
  const compress = flags.compress.toLowerCase();
  if (!['none', 'lz4', 'zstd'].includes(compress)) throw new UsageError(`unsupported compress algorithm ${JSON.stringify(flags.compress)} (none, lz4, zstd)`);
  const trashDays = parseNonNegInt('trash-days', flags.trashDays);
  // Only flags given on the command line are applied to an existing volume, as upstream does with
  // LocalFlagNames(); ACCESS_KEY/SECRET_KEY/SESSION_TOKEN from the environment only seed new volumes.
  const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  const explicit = Object.keys(FLAG_TO_FIELD).filter(given).map((k) => FLAG_TO_FIELD[k]);

  // Loaded on use: the object-store SDKs are heavy and `artifacts --help` should not wait for them.
  const { formatVolume } = await import('../volume.js');
  const res = await formatVolume(
    metaUrl,
    {
      name,
      storage: flags.storage,
      bucket: flags.bucket ?? defaultBucket(),
      accessKey: flags.accessKey,
      secretKey: flags.secretKey,
      sessionToken: flags.sessionToken,
      storageClass: flags.storageClass,
      blockSizeKiB: parseBytes('block-size', flags.blockSize, 'K') / 1024,
      compression: compress,
      trashDays,
      hashPrefix: !!flags.hashPrefix,
      capacity: flags.capacity ? parseBytes('capacity', flags.capacity, 'G') : undefined,
      inodes: flags.inodes ? parseNonNegInt('inodes', flags.inodes) : undefined,
    },
    {
      prefix: flags.keyPrefix,
      force: !!flags.force,
      explicit,
      noUpdate: !flags.update,
      checkObjectStorage: flags.checkStorage === false ? false : undefined,
      log: { info: (m) => out.info(m), warn: (m) => out.warn(m), debug: (m) => out.debug(m) },
    },
  );
  if (out.json) {
    out.result({ created: res.created, updated: res.updated, prefix: res.prefix, storage: res.storage, format: JSON.parse(formatForDisplay(res.format)) });
    return;
  }
  out.info(res.created ? `Volume ${name} is formatted as:` : res.updated ? `Volume ${name} is updated:` : `Volume ${name} exists (not updated):`);
  out.print(formatForDisplay(res.format));
}

export function register(program: Command): void {
  program
    .command('format')
    .description('format a volume (JuiceFS format) on a Redis meta URL and an object store, like `juicefs format`')
    .argument('<meta-url>', 'redis://[user:pass@]host[:port][/db], rediss://..., unix:///socket?db=N, cluster h1:p1,h2:p2, sentinel MASTER,s1,s2; ?prefix=P for a custom key prefix')
    .argument('<name>', 'volume name (3-63 characters: a-z, 0-9, -)')
    .addOption(new Option('--storage <type>', 'object storage type (file, s3, minio)').default('file'))
    .option('--bucket <url-or-dir>', `bucket URL (s3/minio) or directory (file) (default: ${defaultBucket()})`)
    .addOption(new Option('--access-key <key>', 'access key for object storage').env('ACCESS_KEY'))
    .addOption(new Option('--secret-key <key>', 'secret key for object storage').env('SECRET_KEY'))
    .addOption(new Option('--session-token <token>', 'session token for object storage').env('SESSION_TOKEN'))
    .option('--storage-class <class>', 'the default storage class')
    .option('--block-size <size>', 'block size in KiB (or with a unit: 4M)', '4M')
    .option('--compress <algo>', 'compression algorithm (none, lz4, zstd)', 'none')
    .option('--trash-days <n>', 'days after which removed files are permanently deleted (0 disables the trash)', '1')
    .option('--key-prefix <prefix>', 'Redis key prefix of the volume, e.g. {u_1_w_2}: (default "" standalone, {db} cluster)')
    .option('--hash-prefix', 'spread block objects over 256 hashed key prefixes')
    .option('--capacity <GiB>', 'volume space quota in GiB (or with a unit: 500M)')
    .option('--inodes <n>', 'volume inode quota')
    .option('--force', 'overwrite an existing volume even if immutable settings change')
    .option('--no-update', 'do nothing if the volume already exists')
    .option('--no-check-storage', 'skip the object store test and the juicefs_uuid object (like JFS_NO_CHECK_OBJECT_STORAGE)')
    .action(async (metaUrl: string, name: string, flags: FormatFlags, cmd: Command) => {
      await run(metaUrl, name, flags, cmd, outputOf(cmd));
    });
}
