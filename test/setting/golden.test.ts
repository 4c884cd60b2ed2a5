/**
 * Golden tests of the `setting` value against the real juicefs 1.4.2:
 *  - for volumes juicefs formats with many flag combinations, decode → encode gives back the
 *    stored bytes exactly, and our formatVolume with the same flags stores the same bytes apart
 *    from the inherently random UUID and secret ciphertexts;
 *  - we decrypt the secrets juicefs encrypted, and juicefs decrypts ours (it must, to reach the
 *    authenticated S3 bucket in `juicefs fsck`; a negative control proves the check would fail).
 */
import { Redis } from 'ioredis';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { formatVolume } from '../../cli/volume.js';
import type { NewFormatParams } from '../../metadata/format.js';
import { decodeSetting, decryptSecrets, encodeSetting, encryptSecret } from '../../metadata/setting.js';
import { fsck, runJuicefs } from '../helpers/juicefs.js';
import { startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../helpers/servers.js';

let redis: RedisHandle;
let s3: S3Handle;
let client: Redis;
let dir: string;
let nextDb = 1;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  client = new Redis({ host: redis.host, port: redis.port, lazyConnect: false });
  dir = await tmpDir('golden');
}, 120_000);

afterAll(async () => {
  client?.disconnect();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

async function settingOf(db: number): Promise<Buffer> {
  const r = new Redis({ host: redis.host, port: redis.port, db });
  try {
    const v = await r.getBuffer('setting');
    if (!v) throw new Error(`no setting in db ${db}`);
    return v;
  } finally {
    r.disconnect();
  }
}

interface Case {
  title: string;
  /** juicefs format flags */
  args: string[];
  env?: Record<string, string>;
  /** the same volume through our formatVolume (bucket filled in per run) */
  ours: Omit<NewFormatParams, 'name' | 'bucket'>;
  bucket: (run: string) => string;
  /** object storage checks off (JFS_NO_CHECK_OBJECT_STORAGE) */
  noCheck?: boolean;
}

const cases: Case[] = [
  { title: 'file, defaults', args: ['--storage', 'file'], ours: { storage: 'file' }, bucket: (r) => path.join(dir, r) },
  {
    title: 'file, lz4, trash-days 0, capacity, inodes, hash-prefix, odd block size',
    args: ['--storage', 'file', '--compress', 'lz4', '--trash-days', '0', '--capacity', '10', '--inodes', '1000', '--hash-prefix', '--block-size', '3000'],
    ours: { storage: 'file', compression: 'lz4', trashDays: 0, capacity: 10 * 2 ** 30, inodes: 1000, hashPrefix: true, blockSizeKiB: 3000 },
    bucket: (r) => path.join(dir, r) + '/./sub/../',
  },
  {
    title: 'file, zstd, huge block size clamped, storage class',
    args: ['--storage', 'file', '--compress', 'zstd', '--block-size', '65536', '--storage-class', 'COLD'],
    ours: { storage: 'file', compression: 'zstd', blockSizeKiB: 65536, storageClass: 'COLD' },
    bucket: (r) => path.join(dir, r),
  },
  {
    title: 's3 with access and secret key (real SeaweedFS)',
    args: ['--storage', 's3'],
    env: {}, // keys filled in at run time
    ours: { storage: 's3' },
    bucket: (r) => s3.bucketUrl(`golden-${r}`),
  },
  {
    title: 's3 bucket URL needing HTML escaping, session token',
    args: ['--storage', 's3', '--session-token', 'ST<&>'],
    ours: { storage: 's3', sessionToken: 'ST<&>' },
    bucket: () => 'http://127.0.0.1:1/bk?a=b&c<>\u2028',
    noCheck: true,
  },
];

describe('setting golden tests vs juicefs 1.4.2', () => {
  for (const [i, c] of cases.entries()) {
    test(c.title, async () => {
      const run = `r${i}`;
      const theirsDb = nextDb++;
      const oursDb = nextDb++;
      const bucket = c.bucket(run);
      const isS3 = c.args.includes('s3');
      const env: Record<string, string> = {
        ...(isS3 ? { ACCESS_KEY: s3.accessKey, SECRET_KEY: s3.secretKey } : {}),
        ...(c.noCheck ? { JFS_NO_CHECK_OBJECT_STORAGE: '1' } : {}),
      };
      const r = await runJuicefs(['format', ...c.args, '--bucket', bucket, `${redis.url}/${theirsDb}`, 'theirs'], { env });
      expect(r.code, r.output).toBe(0);
      const theirs = await settingOf(theirsDb);

      // 1. decode -> encode is the identity on their bytes
      const decoded = decodeSetting(theirs);
      expect(Buffer.from(encodeSetting(decoded), 'utf8').equals(theirs)).toBe(true);

      // 2. we can read their secrets
      if (isS3) {
        const plain = decryptSecrets(decoded);
        expect(plain.SecretKey).toBe(s3.secretKey);
        expect(plain.AccessKey).toBe(s3.accessKey);
        if (c.ours.sessionToken) expect(plain.SessionToken).toBe(c.ours.sessionToken);
      }

      // 3. our format of the same volume stores the same bytes, except UUID and secret ciphertexts
      const res = await formatVolume(
        `${redis.url}/${oursDb}`,
        {
          name: 'theirs',
          bucket: isS3 && !c.noCheck ? s3.bucketUrl(`golden-ours-${run}`) : c.bucket(`${run}-ours`),
          ...(isS3 ? { accessKey: s3.accessKey, secretKey: s3.secretKey } : {}),
          ...c.ours,
        },
        { checkObjectStorage: !c.noCheck, env: {} },
      );
      expect(res.created).toBe(true);
      const ours = decodeSetting(await settingOf(oursDb));
      const normalize = (f: typeof ours) =>
        encodeSetting({
          ...f,
          UUID: 'U',
          Bucket: f.Bucket.replace(`${run}-ours`, run).replace(`golden-ours-${run}`, `golden-${run}`),
          SecretKey: f.SecretKey && 'S',
          SessionToken: f.SessionToken && 'T',
        });
      expect(normalize(ours)).toBe(normalize(decoded));
      if (isS3) {
        expect(decryptSecrets(ours).SecretKey).toBe(s3.secretKey);
        expect(ours.SecretKey).not.toBe(decoded.SecretKey);
      }
    }, 120_000);
  }

  test('juicefs decrypts the secret key we encrypted (and fails on a wrong one)', async () => {
    const db = nextDb++;
    const url = `${redis.url}/${db}`;
    const res = await formatVolume(url, { name: 'oursec', storage: 's3', bucket: s3.bucketUrl('golden-oursec'), accessKey: s3.accessKey, secretKey: s3.secretKey }, { env: {} });
    expect(res.format.KeyEncrypted).toBe(true);
    // juicefs fsck opens the bucket with the decrypted secret; SeaweedFS checks the signature.
    const ok = await fsck(url);
    expect(ok.ok, ok.output).toBe(true);
    // `juicefs format` on the existing volume decrypts our secret and runs its PUT/GET/DELETE test.
    const again = await runJuicefs(['format', url, 'oursec']);
    expect(again.code, again.output).toBe(0);

    // Negative control: a secret encrypted under another UUID must make juicefs fail.
    const stored = decodeSetting(await settingOf(db));
    await client.select(db);
    await client.set('setting', encodeSetting({ ...stored, SecretKey: encryptSecret(s3.secretKey, '00000000-0000-4000-8000-000000000000') }));
    const bad = await fsck(url);
    expect(bad.ok).toBe(false);
    expect(bad.output).toMatch(/decrypt|cipher|authentication/i);
    // And a correct secret encrypted by us under the right UUID works again.
    await client.set('setting', encodeSetting({ ...stored, SecretKey: encryptSecret(s3.secretKey, stored.UUID) }));
    expect((await fsck(url)).ok).toBe(true);
  }, 120_000);
});
