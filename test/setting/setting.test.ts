/**
 * Unit tests of the setting codec, secret encryption, the version gate and the new-volume defaults.
 * Byte-identity with the real juicefs is proven in golden.test.ts; the fixtures here are strings
 * juicefs 1.4.2 actually wrote (captured from `redis-cli GET setting`).
 */
import { describe, expect, test } from 'vitest';
import { fixBlockSizeKiB, newFormat, normalizeBucket, VOLUME_NAME_RE } from '../../metadata/format.js';
import {
  CorruptSettingError,
  decodeSetting,
  decryptSecret,
  decryptSecrets,
  encodeSetting,
  encryptSecret,
  encryptSecrets,
  formatForDisplay,
  goQuote,
  removeSecrets,
  SecretError,
  withDefaultTiers,
} from '../../metadata/setting.js';
import type { Format } from '../../metadata/types.js';
import { checkFormat, compareVersionStrings, IncompatibleVolumeError, parseVersion } from '../../metadata/version.js';

/** Written by juicefs 1.4.2: `format --storage s3 --bucket 'http://127.0.0.1:1/bk?a=b&c<>' ... --compress lz4 --trash-days 0 --capacity 10 --inodes 1000 --hash-prefix --block-size 3000`. */
const JUICEFS_S3 =
  '{\n"Name": "vol2",\n"UUID": "b717b240-59f3-430d-8c46-109a60e6ed43",\n"Storage": "s3",\n"Tiers": {\n"0": {\n"ID": 0,\n"StorageClass": "",\n"Tag": ""\n}\n},\n' +
  '"Bucket": "http://127.0.0.1:1/bk?a=b\\u0026c\\u003c\\u003e",\n"AccessKey": "AK",\n"SecretKey": "ftnzBaYrWGqeeCoXtqA4LTtn36sjQSOUeLZhFGzA",\n' +
  '"SessionToken": "bKYGR8ntVDy9uuzbmpzHfNfuGm3wUe4ZOQF08AeX",\n"BlockSize": 2048,\n"Compression": "lz4",\n"HashPrefix": true,\n"Capacity": 10737418240,\n' +
  '"Inodes": 1000,\n"EncryptAlgo": "aes256gcm-rsa",\n"KeyEncrypted": true,\n"TrashDays": 0,\n"MetaVersion": 1,\n"MinClientVersion": "1.1.0-A",\n"DirStats": true,\n"EnableACL": false\n}';

/** Written by juicefs 1.4.2 for `--bucket $'/tmp/fmteng/we\bir\fd\x01\x7f<>&\u2028\u2029é"\\\t'`. */
const JUICEFS_WEIRD_BUCKET =
  '{\n"Name": "vol3",\n"UUID": "a5f13cfa-df59-4106-9b7c-f456610f3f04",\n"Storage": "file",\n"Tiers": {\n"0": {\n"ID": 0,\n"StorageClass": "",\n"Tag": ""\n}\n},\n' +
  '"Bucket": "/tmp/fmteng/we\\bir\\fd\\u0001\x7f\\u003c\\u003e\\u0026\\u2028\\u2029é\\"\\\\\\t/",\n"BlockSize": 4096,\n"Compression": "none",\n' +
  '"EncryptAlgo": "aes256gcm-rsa",\n"TrashDays": 1,\n"MetaVersion": 1,\n"MinClientVersion": "1.1.0-A",\n"DirStats": true,\n"EnableACL": false\n}';

describe('encodeSetting / decodeSetting', () => {
  test('round-trips juicefs-written settings byte for byte', () => {
    for (const raw of [JUICEFS_S3, JUICEFS_WEIRD_BUCKET]) {
      const f = decodeSetting(raw);
      expect(encodeSetting(f)).toBe(raw);
      expect(encodeSetting(decodeSetting(Buffer.from(raw, 'utf8')))).toBe(raw);
    }
    const f = decodeSetting(JUICEFS_S3);
    expect(f.Bucket).toBe('http://127.0.0.1:1/bk?a=b&c<>');
    expect(f.Capacity).toBe(10 * 2 ** 30);
    expect(f.HashPrefix).toBe(true);
    expect(decodeSetting(JUICEFS_WEIRD_BUCKET).Bucket).toBe('/tmp/fmteng/we\bir\fd\x01\x7f<>&\u2028\u2029é"\\\t/');
  });

  test('Go string escaping', () => {
    expect(goQuote('a<b>&c')).toBe('"a\\u003cb\\u003e\\u0026c"');
    expect(goQuote('\u2028\u2029')).toBe('"\\u2028\\u2029"');
    expect(goQuote('\b\f\n\r\t\x00\x1f\x7f')).toBe('"\\b\\f\\n\\r\\t\\u0000\\u001f\x7f"');
    expect(goQuote('"\\/')).toBe('"\\"\\\\/"');
    expect(goQuote('é😀')).toBe('"é😀"');
    expect(goQuote('x\ud800y')).toBe('"x\\ufffdy"'); // lone surrogate: Go writes invalid UTF-8 as U+FFFD
  });

  test('field order, omitempty and non-omitempty zero values', () => {
    const f: Format = { Name: 'n', UUID: 'u', Storage: 'file', Bucket: '/b/', BlockSize: 4096, TrashDays: 0, EnableACL: false, Shards: 0, Capacity: 0 };
    // Tiers absent encodes as null (a nil Go map); Shards/Capacity 0 are omitted; TrashDays/EnableACL are not.
    expect(encodeSetting(f)).toBe(
      '{\n"Name": "n",\n"UUID": "u",\n"Storage": "file",\n"Tiers": null,\n"Bucket": "/b/",\n"BlockSize": 4096,\n"TrashDays": 0,\n"EnableACL": false\n}',
    );
    const all: Format = {
      ...f,
      StorageClass: 'STANDARD_IA',
      Tiers: { '10': { ID: 10, StorageClass: 'X', Tag: 'k=v' }, '2': { ID: 2, StorageClass: '', Tag: '' }, '0': { ID: 0, StorageClass: '', Tag: '' } },
      AccessKey: 'a',
      SecretKey: 's',
      SessionToken: 't',
      Compression: 'zstd',
      Shards: 3,
      HashPrefix: true,
      Capacity: 1,
      Inodes: 2,
      EncryptKey: 'k',
      EncryptAlgo: 'aes256gcm-rsa',
      KeyEncrypted: true,
      UploadLimit: -1,
      DownloadLimit: 5,
      MetaVersion: 1,
      MinClientVersion: '1.1.0-A',
      MaxClientVersion: '2.0.0',
      DirStats: true,
      UserGroupQuota: true,
      EnableACL: true,
      RangerRestUrl: 'r',
      RangerService: 'rs',
      ChangeLog: true,
      ChangeLogMaxAge: 7200,
      ChangeLogMaxLines: 9,
      KerbConf: 'kc',
    };
    const text = encodeSetting(all);
    const keys = [...text.matchAll(/^"([A-Za-z]+)": /gm)].map((m) => m[1]);
    expect(keys).toEqual([
      'Name', 'UUID', 'Storage', 'StorageClass', 'Tiers', '0', 'ID', 'StorageClass', 'Tag', '10', 'ID', 'StorageClass', 'Tag', '2', 'ID', 'StorageClass', 'Tag',
      'Bucket', 'AccessKey', 'SecretKey', 'SessionToken', 'BlockSize', 'Compression', 'Shards', 'HashPrefix', 'Capacity', 'Inodes', 'EncryptKey',
      'EncryptAlgo', 'KeyEncrypted', 'UploadLimit', 'DownloadLimit', 'TrashDays', 'MetaVersion', 'MinClientVersion', 'MaxClientVersion', 'DirStats',
      'UserGroupQuota', 'EnableACL', 'RangerRestUrl', 'RangerService', 'ChangeLog', 'ChangeLogMaxAge', 'ChangeLogMaxLines', 'KerbConf',
    ].filter((k) => !/^[0-9]+$/.test(k)));
    expect(text).toContain('"Tiers": {\n"0": {\n"ID": 0,');
    expect(text.indexOf('"10": {')).toBeLessThan(text.indexOf('"2": {')); // string order, as Go sorts map keys
    expect(decodeSetting(text)).toEqual(all);
    expect(JSON.parse(text)).toBeTruthy();
  });

  test('display form is Go MarshalIndent with two spaces and secrets removed', () => {
    const shown = formatForDisplay(decodeSetting(JUICEFS_S3));
    expect(shown).toContain('\n  "SecretKey": "removed",\n');
    expect(shown).toContain('\n  "SessionToken": "removed",\n');
    expect(shown).toContain('\n  "Tiers": {\n    "0": {\n      "ID": 0,\n');
    expect(shown.endsWith('\n}')).toBe(true);
  });

  test('tolerant like Go: unknown fields, case-insensitive names, duplicates, null', () => {
    const f = decodeSetting(
      '{"name":"x","UUID":"u","sToRaGe":"s3","Bucket":"b","BlockSize":1024,"TrashDays":2,"EnableACL":false,' +
        '"FutureField":{"a":[1,2,{"b":null}]},"blocksize":2048,"Compression":null,"ſtorageClass":"SC","\u212aerbConf":"k"}',
    );
    expect(f.Name).toBe('x');
    expect(f.Storage).toBe('s3');
    expect(f.BlockSize).toBe(2048); // last duplicate wins
    expect(f.Compression).toBeUndefined(); // null leaves the zero value
    expect(f.StorageClass).toBe('SC'); // ſ folds to s
    expect(f.KerbConf).toBe('k'); // Kelvin sign folds to k
    expect(f.Tiers).toBeNull();
    expect(withDefaultTiers(f).Tiers).toEqual({ '0': { ID: 0, StorageClass: 'SC', Tag: '' } });
    // absent non-omitempty fields are zero values
    expect(decodeSetting('{}')).toEqual({ Name: '', UUID: '', Storage: '', Tiers: null, Bucket: '', BlockSize: 0, TrashDays: 0, EnableACL: false });
    expect(decodeSetting('null').Name).toBe('');
    // escapes and surrogates
    expect(decodeSetting('{"Name":"\\u00e9\\ud83d\\ude00\\ud800x"}').Name).toBe('é😀\ufffdx');
    // Tiers keys are uint8 decimal; "007" becomes "7" as Go re-formats integer keys
    expect(decodeSetting('{"Tiers":{"007":{"id":7,"storageclass":"A"}}}').Tiers).toEqual({ '7': { ID: 7, StorageClass: 'A', Tag: '' } });
  });

  test('type errors are "corrupt setting" errors naming the field', () => {
    const bad: [string, RegExp][] = [
      ['{"BlockSize":"4096"}', /corrupt setting: field BlockSize: expected a number, got string/],
      ['{"BlockSize":4096.5}', /field BlockSize: expected an integer, got 4096.5/],
      ['{"BlockSize":1e3}', /field BlockSize: expected an integer/],
      ['{"Capacity":-1}', /field Capacity: -1 is out of range for uint64/],
      ['{"Capacity":18446744073709551616}', /out of range for uint64/],
      ['{"Capacity":18446744073709551615}', /too large for this client/],
      ['{"TrashDays":9223372036854775808}', /out of range for int64/],
      ['{"Name":1}', /field Name: expected a string, got number/],
      ['{"HashPrefix":"true"}', /field HashPrefix: expected a bool, got string/],
      ['{"Tiers":[]}', /field Tiers: expected an object, got array/],
      ['{"Tiers":{"256":{}}}', /field Tiers: key "256" is not a tier id/],
      ['{"Tiers":{"x":{}}}', /key "x" is not a tier id/],
      ['{"Tiers":{"0":{"ID":300}}}', /Tiers\[0\]\.ID: 300 is out of range for uint8/],
      ['[]', /expected a JSON object, got array/],
      ['{"Name":"a",}', /invalid JSON at offset 12/],
      ['{"Name":"a"} x', /after top-level value/],
      ['{"Name":"a\u0001"}', /control character in string/],
      ['\ufeff{}', /invalid JSON/],
      ['', /invalid JSON at offset 0: unexpected end of input/],
      ['{"Name":"\\x"}', /invalid escape/],
    ];
    for (const [text, re] of bad) {
      let err: unknown;
      try {
        decodeSetting(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(CorruptSettingError);
      expect((err as Error).message, text).toMatch(re);
      expect((err as Error).message).toMatch(/^corrupt setting: /);
    }
  });
});

describe('secrets', () => {
  const uuid = 'b717b240-59f3-430d-8c46-109a60e6ed43';

  test('decrypts what juicefs encrypted (SecretKey "SK", SessionToken "ST")', () => {
    const f = decryptSecrets(decodeSetting(JUICEFS_S3));
    expect(f.SecretKey).toBe('SK');
    expect(f.SessionToken).toBe('ST');
    expect(f.KeyEncrypted).toBe(false);
  });

  test('encrypt: fresh nonce each time, layout nonce||ct||tag, round trip', () => {
    const a = encryptSecret('s3cr3t', uuid);
    const b = encryptSecret('s3cr3t', uuid);
    expect(a).not.toBe(b);
    expect(Buffer.from(a, 'base64').length).toBe(12 + 6 + 16);
    expect(decryptSecret(a, uuid)).toBe('s3cr3t');
    expect(() => decryptSecret(a, 'another-uuid')).toThrow(/authentication failed/);
    const tampered = Buffer.from(a, 'base64');
    tampered[14] ^= 1;
    expect(() => decryptSecret(tampered.toString('base64'), uuid)).toThrow(SecretError);
    expect(() => decryptSecret('removed', uuid, 'SecretKey')).toThrow(/SecretKey was removed/);
    expect(() => decryptSecret('%%%', uuid)).toThrow(/not valid base64/);
    expect(() => decryptSecret('AAAA', uuid)).toThrow(/too short/);
  });

  test('encryptSecrets / decryptSecrets / removeSecrets follow upstream rules', () => {
    const plain: Format = { Name: 'v', UUID: uuid, Storage: 's3', Bucket: 'b', BlockSize: 4096, TrashDays: 1, EnableACL: false, AccessKey: 'AK', SecretKey: 'SK' };
    expect(encryptSecrets({ ...plain, SecretKey: undefined })).toEqual({ ...plain, SecretKey: undefined }); // nothing to encrypt
    const enc = encryptSecrets(plain);
    expect(enc.KeyEncrypted).toBe(true);
    expect(enc.AccessKey).toBe('AK'); // access key stays plain
    expect(enc.SecretKey).not.toBe('SK');
    expect(encryptSecrets(enc)).toEqual(enc); // already encrypted: no-op
    expect(decryptSecrets(enc)).toEqual({ ...plain, KeyEncrypted: false });
    expect(decryptSecrets(plain)).toEqual(plain); // not encrypted: no-op
    expect(removeSecrets(enc).SecretKey).toBe('removed');
    expect(removeSecrets(plain).SessionToken).toBeUndefined();
    expect(() => encryptSecrets({ ...plain, EncryptAlgo: 'sm4gcm' })).toThrow(/sm4gcm/);
  });
});

describe('versions', () => {
  test('parse', () => {
    expect(parseVersion('1.4.2+2026-10-26.pypi')).toEqual({ major: 1, minor: 4, patch: 2, pre: '' });
    expect(parseVersion('1.1.0-A')).toEqual({ major: 1, minor: 1, patch: 0, pre: 'A' });
    expect(parseVersion('1.2')).toEqual({ major: 1, minor: 2, patch: 0, pre: '' });
    expect(parseVersion('1.2.3.4')).toBeNull();
    expect(parseVersion('v1.2')).toBeNull();
    expect(parseVersion('')).toBeNull();
  });
  test('compare: numeric triple, then pre-release as strings, empty pre-release last', () => {
    const ordered = ['0.9.9', '1.1.0-A', '1.1.0-B', '1.1.0-beta', '1.1.0', '1.1.1-dev', '1.1.1', '1.2.0-A', '1.10.0'];
    for (let i = 0; i < ordered.length; i++)
      for (let j = 0; j < ordered.length; j++) expect(compareVersionStrings(ordered[i], ordered[j]), `${ordered[i]} vs ${ordered[j]}`).toBe(Math.sign(i - j));
    expect(compareVersionStrings('1.4.2+a', '1.4.2+b')).toBe(0); // build ignored
  });
  test('checkFormat gates', () => {
    const ok: Format = newFormat({ name: 'vol', bucket: '/tmp/x' }).format;
    expect(() => checkFormat(ok)).not.toThrow();
    const cases: [Partial<Format>, RegExp][] = [
      [{ MetaVersion: 2 }, /incompatible metadata version 2/],
      [{ Compression: 'brotli' }, /unsupported compression "brotli"/],
      [{ EncryptKey: '-----BEGIN' }, /data encryption \(EncryptKey is set\)/],
      [{ Shards: 4 }, /sharded over 4 buckets/],
      [{ MinClientVersion: '1.5.0-A' }, /requires client version >= 1.5.0-A/],
      [{ MinClientVersion: 'garbage.x' }, /invalid MinClientVersion/],
      [{ MaxClientVersion: '1.4.1' }, /allows client versions <= 1.4.1/],
      [{ EnableACL: true }, /POSIX ACLs/],
      [{ ChangeLog: true }, /change log/],
      [{ UserGroupQuota: true }, /user\/group quotas/],
    ];
    for (const [patch, re] of cases) {
      expect(() => checkFormat({ ...ok, ...patch }), JSON.stringify(patch)).toThrow(IncompatibleVolumeError);
      expect(() => checkFormat({ ...ok, ...patch })).toThrow(re);
    }
    // every gate juicefs 1.4.x writes passes: 1.1.0-A (new), 1.2.0-A (ACL), 1.3.0-A (Ranger), 1.4.0-A (Kerberos)
    for (const v of ['1.1.0-A', '1.2.0-A', '1.3.0-A', '1.4.0-A', '1.4.2']) expect(() => checkFormat({ ...ok, MinClientVersion: v })).not.toThrow();
    expect(() => checkFormat({ ...ok, EnableACL: true }, { acl: true })).not.toThrow();
    expect(() => checkFormat({ ...ok, Compression: 'LZ4' })).not.toThrow(); // upstream lower-cases
  });
});

describe('new volume defaults', () => {
  test('newFormat writes upstream defaults', () => {
    const { format } = newFormat({ name: 'myjfs', storage: 's3', bucket: 'https://b.s3.amazonaws.com', accessKey: 'AK', secretKey: 'SK', uuid: '4a1c0000-0000-4000-8000-000000000000' });
    expect(encodeSetting(encryptSecrets(format)).replace(/"SecretKey": "[^"]+"/, '"SecretKey": "X"')).toBe(
      '{\n"Name": "myjfs",\n"UUID": "4a1c0000-0000-4000-8000-000000000000",\n"Storage": "s3",\n"Tiers": {\n"0": {\n"ID": 0,\n"StorageClass": "",\n"Tag": ""\n}\n},\n' +
        '"Bucket": "https://b.s3.amazonaws.com",\n"AccessKey": "AK",\n"SecretKey": "X",\n"BlockSize": 4096,\n"Compression": "none",\n' +
        '"EncryptAlgo": "aes256gcm-rsa",\n"KeyEncrypted": true,\n"TrashDays": 1,\n"MetaVersion": 1,\n"MinClientVersion": "1.1.0-A",\n"DirStats": true,\n"EnableACL": false\n}',
    );
    expect(newFormat({ name: 'abc', bucket: 'x' }).format.UUID).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(() => newFormat({ name: 'abc', bucket: 'x', compression: 'gzip' })).toThrow(/unsupported compression/);
    expect(() => newFormat({ name: 'abc', bucket: 'x', trashDays: -1 })).toThrow(/invalid trash days/);
  });
  test('block size: round down to a power of two, clamp to [64 KiB, 16 MiB]', () => {
    expect(fixBlockSizeKiB(4096)).toEqual({ kib: 4096 });
    expect(fixBlockSizeKiB(3000).kib).toBe(2048);
    expect(fixBlockSizeKiB(1).kib).toBe(64);
    expect(fixBlockSizeKiB(0).kib).toBe(64);
    expect(fixBlockSizeKiB(1).warning).toMatch(/too small/);
    expect(fixBlockSizeKiB(65536).kib).toBe(16384);
    expect(fixBlockSizeKiB(65536).warning).toMatch(/too large/);
    expect(fixBlockSizeKiB(100.5).kib).toBe(64);
    expect(fixBlockSizeKiB(1024 + 0.5).kib).toBe(1024);
  });
  test('volume names and file buckets', () => {
    for (const n of ['abc', 'a-b', 'x'.repeat(63), '0ab', 'my-vol-1']) expect(VOLUME_NAME_RE.test(n), n).toBe(true);
    for (const n of ['ab', 'x'.repeat(64), '-ab', 'ab-', 'Abc', 'a_b', 'a.b', 'ab c', '']) expect(VOLUME_NAME_RE.test(n), n).toBe(false);
    expect(() => newFormat({ name: 'Bad', bucket: 'x' })).toThrow(/invalid volume name "Bad"/);
    expect(normalizeBucket('file', '/tmp/a/')).toBe('/tmp/a/');
    expect(normalizeBucket('file', '/tmp/a//b/../c')).toBe('/tmp/a/c/');
    expect(normalizeBucket('file', 'rel')).toBe(process.cwd() + '/rel/');
    expect(normalizeBucket('s3', 'http://h/b/')).toBe('http://h/b/');
  });
});
