/**
 * S3 object store (AWS S3, SeaweedFS, MinIO, ...) on @aws-sdk/client-s3.
 *
 * Hot-path choices: one client per store (signing keys and the connection pool are reused), a
 * keep-alive agent with enough sockets for the block store's parallelism, no flexible checksums
 * (upstream JuiceFS sends none; the SDK's CRC32 in JS would cost more than the upload), bodies read
 * straight into one preallocated Buffer. Failures are retried by the SDK's standard strategy
 * (exponential backoff with jitter, transient errors only) a bounded number of times, and every
 * attempt has connect and whole-request deadlines, so a dead endpoint yields an error in bounded time.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { NotFoundError, type ObjectInfo, type ObjectStore } from '../types.js';

export interface S3StoreOptions {
  /** Base URL of the service, e.g. `http://127.0.0.1:8333`; omit for AWS (derived from region). */
  endpoint?: string;
  region: string;
  bucket: string;
  /** `https://host/bucket/key` instead of `https://bucket.host/key`. */
  forcePathStyle?: boolean;
  accessKey?: string;
  secretKey?: string;
  sessionToken?: string;
  /** Total attempts per request including the first (default 4). */
  maxAttempts?: number;
  /** Connect deadline per attempt, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Deadline for a whole request/response per attempt, ms (default 60000, as upstream's put/get timeouts). */
  requestTimeoutMs?: number;
  /** Sockets per host in the keep-alive pool (default 64). */
  maxSockets?: number;
  /** Keys per ListObjectsV2 page (default and S3 maximum 1000). */
  listPageSize?: number;
  /** Skip the `Expect: 100-continue` handshake on large PUTs (one round trip less per block). */
  disable100Continue?: boolean;
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as S3ErrorShape | null)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const e = err as S3ErrorShape | null;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.Code === 'NoSuchKey' || statusOf(err) === 404;
}

/** Reads a response body into one Buffer, preallocated when the length is known. */
async function readBody(body: unknown, length: number | undefined): Promise<Buffer> {
  const stream = body as Readable;
  if (length !== undefined && length >= 0) {
    const out = Buffer.allocUnsafe(length);
    let pos = 0;
    for await (const chunk of stream) {
      const c = chunk as Buffer;
      if (pos + c.length > length) throw new Error(`response body longer than Content-Length ${length}`);
      c.copy(out, pos);
      pos += c.length;
    }
    if (pos !== length) throw new Error(`response body truncated: ${pos} of ${length} bytes`);
    return out;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly agent: http.Agent | https.Agent;
  private readonly pageSize: number;
  private readonly endpointDesc: string;

  constructor(readonly options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.pageSize = options.listPageSize ?? 1000;
    const maxSockets = options.maxSockets ?? 64;
    const agentOpts = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
    const secure = !options.endpoint || options.endpoint.startsWith('https:');
    this.agent = secure ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
    this.endpointDesc = options.endpoint ? options.endpoint.replace(/^https?:\/\//, '') : `s3.${options.region}.amazonaws.com`;
    const credentials =
      options.accessKey !== undefined && options.accessKey !== ''
        ? { accessKeyId: options.accessKey, secretAccessKey: options.secretKey ?? '', sessionToken: options.sessionToken || undefined }
        : undefined; // SDK default chain (env, profile, instance role)
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle ?? false,
      credentials,
      maxAttempts: options.maxAttempts ?? 4,
      retryMode: 'standard',
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        httpAgent: secure ? undefined : (this.agent as http.Agent),
        httpsAgent: secure ? (this.agent as https.Agent) : undefined,
        connectionTimeout: options.connectTimeoutMs ?? 5000,
        requestTimeout: options.requestTimeoutMs ?? 60_000,
        throwOnRequestTimeout: true,
      }),
    });
    if (options.disable100Continue) this.client.middlewareStack.remove('addExpectContinueMiddleware');
    // Like upstream juicefs, sign requests with UNSIGNED-PAYLOAD: otherwise SigV4 hashes every
    // 4 MiB block body with SHA-256 before sending it (the body is still protected by TLS on https).
    this.client.middlewareStack.add(
      (next) => async (args) => {
        const req = args.request as { headers?: Record<string, string> };
        if (req.headers) req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'artifactsUnsignedPayload' },
    );
  }

  describe(): string {
    return `s3://${this.endpointDesc}/${this.bucket}/`;
  }

  async create(): Promise<void> {
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const name = (err as S3ErrorShape).name;
      if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return;
      throw err;
    }
  }

  async get(key: string, offset = 0, length = -1): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const range = offset > 0 || length > 0 ? `bytes=${offset}-${length > 0 ? offset + length - 1 : ''}` : undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }));
      return await readBody(res.Body, res.ContentLength);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(key);
      if (statusOf(err) === 416) return Buffer.alloc(0); // offset at or past the end
      throw err;
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length }));
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: res.ContentLength ?? 0, mtime: res.LastModified?.getTime() ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix || undefined, ContinuationToken: token, MaxKeys: this.pageSize }),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, mtime: o.LastModified?.getTime() ?? 0 };
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  /** Closes pooled sockets (tests, CLI exit). */
  close(): void {
    this.client.destroy();
    this.agent.destroy();
  }
}
