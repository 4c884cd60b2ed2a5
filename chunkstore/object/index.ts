/**
 * Opens a volume's object namespace from its Format (`setting`): the bucket named by
 * `Storage`/`Bucket`, wrapped so keys are relative to `Name/` (juicefs-format.md 2.1, 5.2).
 * Bucket URLs are interpreted the way upstream `juicefs` does for the same storage type, so a
 * volume formatted by `juicefs format --storage s3|minio|file --bucket ...` resolves to the very
 * same objects here.
 */
import { FileObjectStore } from './file.js';
import { PrefixObjectStore } from './prefix.js';
import { S3ObjectStore, type S3StoreOptions } from './s3.js';
import type { ObjectStore } from '../types.js';

export { FileObjectStore } from './file.js';
export { PrefixObjectStore } from './prefix.js';
export { S3ObjectStore, type S3StoreOptions } from './s3.js';
export { FaultObjectStore, InjectedFault, type ObjectOp } from './fault.js';

/** The Format fields that locate a volume's objects. Secrets must already be decrypted. */
export interface StorageFormat {
  Storage: string;
  Bucket: string;
  AccessKey?: string;
  SecretKey?: string;
  SessionToken?: string;
  Name: string;
  Shards?: number;
}

export interface CreateObjectStoreOptions {
  /** Tuning for S3-like stores (timeouts, retries, sockets). */
  s3?: Partial<Omit<S3StoreOptions, 'bucket' | 'endpoint' | 'region' | 'forcePathStyle'>>;
  /** Environment used for region / path-style defaults (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Where an S3-like Bucket URL points. */
export interface S3Location {
  /** undefined = AWS endpoint derived from the region. */
  endpoint?: string;
  bucket: string;
  region: string;
  forcePathStyle: boolean;
  disable100Continue: boolean;
}

const AWS_DEFAULT_REGION = 'us-east-1';

/** Region from an AWS host such as `s3.eu-west-1.amazonaws.com` or `s3-eu-west-1.amazonaws.com`. */
function awsRegionOf(host: string): string {
  let h = host;
  if (h.startsWith('s3-') || h.startsWith('s3.')) h = h.slice(3);
  if (h.startsWith('dualstack.')) h = h.slice('dualstack.'.length);
  if (h === 'amazonaws.com') return AWS_DEFAULT_REGION;
  const region = h.split('.')[0]!;
  return region === 'external-1' ? AWS_DEFAULT_REGION : region;
}

function pathStyleDefault(env: NodeJS.ProcessEnv): boolean {
  const v = env.JFS_S3_VHOST_STYLE;
  return v === undefined || v === '' || v === '0' || v === 'false';
}

/**
 * Interprets `Bucket` for `Storage` `s3` or `minio` like upstream:
 *  - s3 `http(s)://host:port/bucket` (S3-compatible, path-style), `https://bucket.s3.region.amazonaws.com`,
 *    `https://s3.region.amazonaws.com/bucket`, `http(s)://bucket.host` (compatible, bucket = first label);
 *    without a scheme: https for AWS hosts and dot-less names, http otherwise;
 *  - minio `http(s)://host:port/bucket` (scheme defaults to http; `?region=` honoured).
 */
export function parseS3Bucket(storage: string, bucketUrl: string, env: NodeJS.ProcessEnv = process.env): S3Location {
  const kind = storage.toLowerCase();
  let raw = bucketUrl;
  if (!raw.includes('://')) {
    const dotted = raw.split('.').length > 1;
    raw = kind === 'minio' || (dotted && !raw.replace(/\/.*$/, '').endsWith('.amazonaws.com')) ? `http://${raw}` : `https://${raw}`;
  }
  if (kind === 's3') raw = raw.replace(/^\/+|\/+$/g, '');
  const url = new URL(raw);
  const scheme = url.protocol.replace(/:$/, '');
  const host = url.host; // includes the port
  const pathPart = url.pathname === '/' ? '' : url.pathname;
  const disable100Continue = (url.searchParams.get('disable-100-continue') ?? '').toLowerCase() === 'true';
  const envRegion = () => env.AWS_REGION || env.AWS_DEFAULT_REGION || AWS_DEFAULT_REGION;

  if (kind === 'minio') {
    let bucket = pathPart.replace(/^\//, '');
    if (bucket.length === 0) throw new Error(`no bucket name provided in ${bucketUrl}`);
    if (bucket.includes('/') && bucket.startsWith('minio/')) bucket = bucket.slice('minio/'.length);
    bucket = bucket.split('/')[0]!;
    const region = url.searchParams.get('region') || env.MINIO_REGION || AWS_DEFAULT_REGION;
    return { endpoint: `${scheme}://${host}`, bucket, region, forcePathStyle: pathStyleDefault(env), disable100Continue };
  }
  if (kind !== 's3') throw new Error(`not an S3-like storage: ${storage}`);

  if (pathPart !== '') {
    const bucket = pathPart.split('/')[1]!;
    if (host.includes('.amazonaws.com')) {
      // s3.REGION.amazonaws.com/BUCKET: AWS proper, endpoint from the region.
      return { endpoint: undefined, bucket, region: awsRegionOf(url.hostname), forcePathStyle: false, disable100Continue };
    }
    return { endpoint: `${scheme}://${host}`, bucket, region: envRegion(), forcePathStyle: pathStyleDefault(env), disable100Continue };
  }
  const dot = host.indexOf('.');
  if (dot < 0) {
    // A bare bucket name: upstream asks AWS for the bucket's region; we take it from the environment.
    return { endpoint: undefined, bucket: host, region: envRegion(), forcePathStyle: false, disable100Continue };
  }
  if (host.includes('.amazonaws.com')) {
    const vpce = /^.*\.(.*)\.vpce\.amazonaws\.com/.exec(url.hostname);
    if (vpce) {
      return {
        endpoint: `${scheme}://${host.slice(dot + 1)}`,
        bucket: host.slice(0, dot),
        region: vpce[1] || envRegion(),
        forcePathStyle: pathStyleDefault(env),
        disable100Continue,
      };
    }
    const i = url.hostname.indexOf('.s3');
    if (i < 0) throw new Error(`cannot find the bucket in ${bucketUrl}`);
    return {
      endpoint: undefined,
      bucket: url.hostname.slice(0, i),
      region: awsRegionOf('s3' + url.hostname.slice(i + 3)),
      forcePathStyle: false,
      disable100Continue,
    };
  }
  // BUCKET.ENDPOINT of an S3-compatible service.
  return {
    endpoint: `${scheme}://${host.slice(dot + 1)}`,
    bucket: host.slice(0, dot),
    region: envRegion(),
    forcePathStyle: pathStyleDefault(env),
    disable100Continue,
  };
}

/** The bucket itself, without the volume prefix. */
export function createBucketStore(fmt: StorageFormat, opts: CreateObjectStoreOptions = {}): ObjectStore {
  if ((fmt.Shards ?? 0) > 1) throw new Error('sharded buckets (Shards > 1) are not supported');
  const storage = (fmt.Storage || 'file').toLowerCase();
  switch (storage) {
    case 'file':
      return new FileObjectStore(fmt.Bucket);
    case 's3':
    case 'minio': {
      const loc = parseS3Bucket(storage, fmt.Bucket, opts.env ?? process.env);
      return new S3ObjectStore({
        ...opts.s3,
        endpoint: loc.endpoint,
        bucket: loc.bucket,
        region: loc.region,
        forcePathStyle: loc.forcePathStyle,
        disable100Continue: opts.s3?.disable100Continue ?? loc.disable100Continue,
        accessKey: fmt.AccessKey,
        secretKey: fmt.SecretKey,
        sessionToken: fmt.SessionToken,
      });
    }
    default:
      throw new Error(`unsupported storage type: ${fmt.Storage}`);
  }
}

/** The volume's object namespace: the bucket prefixed with `Name/`. */
export function createObjectStore(fmt: StorageFormat, opts: CreateObjectStoreOptions = {}): ObjectStore {
  if (!fmt.Name) throw new Error('volume name is required');
  return new PrefixObjectStore(createBucketStore(fmt, opts), `${fmt.Name}/`);
}
