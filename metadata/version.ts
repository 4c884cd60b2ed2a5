/**
 * Client version and the volume compatibility gate (juicefs-format.md 2.1).
 *
 * Version strings follow upstream's loose semver: `major[.minor[.patch]][-pre][+build]`; build is
 * ignored, the numeric triple compares first, then the pre-release compares as plain strings, and an
 * empty pre-release sorts AFTER any non-empty one (so `1.1.0-A` < `1.1.0`).
 *
 * Which version do we claim? Volumes carry `MinClientVersion`/`MaxClientVersion` gates. juicefs 1.4.x
 * writes `1.1.0-A` on new volumes and raises it to `1.2.0-A` (ACL), `1.3.0-A` (Ranger) and `1.4.0-A`
 * (Kerberos, tiers). We read and write the v1.4 on-disk format (that is what our golden tests compare
 * against: juicefs 1.4.2), so we claim the upstream level `1.4.2`. Claiming a lower level would make us
 * refuse ordinary 1.4 volumes; claiming a higher one would let us past gates that an administrator set
 * for features we have never been tested against. Whether we implement a feature that a gate protects
 * (ACL, change log, user/group quota...) is a separate question answered by `checkFormat`, which refuses
 * such volumes explicitly instead of relying on the version number.
 */
import type { Format } from './types.js';

export interface Semver {
  major: number;
  minor: number;
  patch: number;
  pre: string;
}

/** Upstream-compatibility level (see above); `+artifacts` is build metadata and ignored in comparisons. */
export const CLIENT_VERSION = '1.4.2+artifacts';

/** Highest `MetaVersion` this client understands (upstream `MaxVersion`). */
export const MAX_META_VERSION = 1;

const UINT = /^[0-9]+$/;

/** Parse like upstream: returns null where upstream's Parse returns nil (which makes a gate fail). */
export function parseVersion(vs: string): Semver | null {
  const plus = vs.indexOf('+');
  if (plus > 0) vs = vs.slice(0, plus);
  let pre = '';
  const dash = vs.indexOf('-');
  if (dash > 0) {
    pre = vs.slice(dash + 1);
    vs = vs.slice(0, dash);
  }
  const parts = vs.split('.');
  if (parts.length > 3) return null;
  const nums = [0, 0, 0];
  for (let i = 0; i < parts.length; i++) {
    if (!UINT.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (!Number.isSafeInteger(n)) return null;
    nums[i] = n;
  }
  return { major: nums[0], minor: nums[1], patch: nums[2], pre };
}

/** -1, 0 or 1. */
export function compareVersions(a: Semver, b: Semver): number {
  if (a.major !== b.major) return a.major < b.major ? -1 : 1;
  if (a.minor !== b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch !== b.patch) return a.patch < b.patch ? -1 : 1;
  if (a.pre === b.pre) return 0;
  if (a.pre === '') return 1;
  if (b.pre === '') return -1;
  return a.pre < b.pre ? -1 : 1;
}

/** Compare two version strings; throws on an unparsable one. */
export function compareVersionStrings(a: string, b: string): number {
  const va = parseVersion(a);
  const vb = parseVersion(b);
  if (!va) throw new Error(`invalid version: ${JSON.stringify(a)}`);
  if (!vb) throw new Error(`invalid version: ${JSON.stringify(b)}`);
  return compareVersions(va, vb);
}

/** Upstream's `maxVersion` used when raising MinClientVersion: an empty string is the smallest. */
export function maxVersionString(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  const va = parseVersion(a);
  const vb = parseVersion(b);
  if (!va || !vb) return a;
  return compareVersions(va, vb) >= 0 ? a : b;
}

export class IncompatibleVolumeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IncompatibleVolumeError';
  }
}

/** Features that a volume may enable and that a caller (engine) may or may not implement. */
export interface FeatureSupport {
  /** POSIX ACLs (`EnableACL`). */
  acl?: boolean;
  /** Change log (`ChangeLog`): every transaction must append to txnLog. */
  changeLog?: boolean;
  /** User/group quotas (`UserGroupQuota`): usage hashes must be maintained. */
  userGroupQuota?: boolean;
}

export const SUPPORTED_COMPRESSION = ['none', 'lz4', 'zstd'] as const;

/** Upstream gate: MinClientVersion <= version <= MaxClientVersion; unparsable bounds refuse. */
export function checkClientVersion(fmt: Format, version = CLIENT_VERSION): void {
  const ver = parseVersion(version);
  if (!ver) throw new IncompatibleVolumeError(`invalid client version ${JSON.stringify(version)}`);
  if (fmt.MinClientVersion) {
    const min = parseVersion(fmt.MinClientVersion);
    if (!min) throw new IncompatibleVolumeError(`volume has an invalid MinClientVersion ${JSON.stringify(fmt.MinClientVersion)}`);
    if (compareVersions(ver, min) < 0)
      throw new IncompatibleVolumeError(
        `volume requires client version >= ${fmt.MinClientVersion}; this client implements JuiceFS ${version}`,
      );
  }
  if (fmt.MaxClientVersion) {
    const max = parseVersion(fmt.MaxClientVersion);
    if (!max) throw new IncompatibleVolumeError(`volume has an invalid MaxClientVersion ${JSON.stringify(fmt.MaxClientVersion)}`);
    if (compareVersions(ver, max) > 0)
      throw new IncompatibleVolumeError(
        `volume allows client versions <= ${fmt.MaxClientVersion}; this client implements JuiceFS ${version}`,
      );
  }
}

/**
 * Refuse volumes this client cannot serve correctly. Called on every load (mount, fsck, format of an
 * existing volume). Throws IncompatibleVolumeError with a message naming the field.
 */
export function checkFormat(fmt: Format, features: FeatureSupport = {}, version = CLIENT_VERSION): void {
  const mv = fmt.MetaVersion ?? 0;
  if (mv > MAX_META_VERSION)
    throw new IncompatibleVolumeError(
      `incompatible metadata version ${mv} (this client understands <= ${MAX_META_VERSION}); please upgrade the client`,
    );
  checkClientVersion(fmt, version);
  const comp = (fmt.Compression ?? '').toLowerCase();
  if (comp !== '' && !(SUPPORTED_COMPRESSION as readonly string[]).includes(comp))
    throw new IncompatibleVolumeError(`unsupported compression ${JSON.stringify(fmt.Compression)} (supported: none, lz4, zstd)`);
  if (fmt.EncryptKey)
    throw new IncompatibleVolumeError('volume uses data encryption (EncryptKey is set), which this client does not support yet');
  if ((fmt.Shards ?? 0) > 1)
    throw new IncompatibleVolumeError(`volume is sharded over ${fmt.Shards} buckets, which this client does not support yet`);
  if (fmt.EnableACL && !features.acl)
    throw new IncompatibleVolumeError('volume has POSIX ACLs enabled (EnableACL), which this client does not support yet');
  if (fmt.ChangeLog && !features.changeLog)
    throw new IncompatibleVolumeError('volume has the change log enabled (ChangeLog), which this client does not support yet');
  if (fmt.UserGroupQuota && !features.userGroupQuota)
    throw new IncompatibleVolumeError('volume has user/group quotas enabled (UserGroupQuota), which this client does not support yet');
  if (!Number.isInteger(fmt.BlockSize) || fmt.BlockSize <= 0)
    throw new IncompatibleVolumeError(`invalid BlockSize ${fmt.BlockSize}`);
}
