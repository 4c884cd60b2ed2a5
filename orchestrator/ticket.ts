/**
 * Mount tickets: compact JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037), published
 * as a JWKS. Signing happens in the orchestrator; `verifyTicket` is what the mount side runs
 * before it trusts anything in a ticket.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export type TicketMode = 'ro' | 'rw';

export interface TicketRedis {
  /** No credentials in it: they are the two fields below. */
  url: string;
  username: string;
  password: string;
  key_prefix: string;
}

export interface TicketStorage {
  backend: 'byo' | 'file';
  endpoint: string;
  bucket: string;
  prefix: string;
  region: string;
}

export interface TicketPayload {
  v: 1;
  iss: string;
  iat: number;
  exp: number;
  /** `handle/name` */
  workspace: string;
  volume: string;
  mode: TicketMode;
  session_id: string;
  /** Null for the owner's own mounts. */
  tenant: string | null;
  runtime: string | null;
  redis: TicketRedis;
  storage: TicketStorage;
}

export interface Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface Jwks {
  keys: Jwk[];
}

export type TicketErrorReason =
  | 'malformed'
  | 'unsupported_algorithm'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_workspace';

export class TicketError extends Error {
  constructor(
    readonly reason: TicketErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'TicketError';
  }
}

const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** RFC 7638 thumbprint of an Ed25519 public key: a stable `kid`. */
function thumbprint(x: string): string {
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest('base64url');
}

export class SigningKey {
  readonly kid: string;
  readonly jwk: Jwk;
  private constructor(private readonly privateKey: KeyObject) {
    const pub = createPublicKey(privateKey).export({ format: 'jwk' }) as { x?: string; crv?: string };
    if (pub.crv !== 'Ed25519' || !pub.x) throw new Error('signing key is not an Ed25519 key');
    this.kid = thumbprint(pub.x);
    this.jwk = { kty: 'OKP', crv: 'Ed25519', x: pub.x, kid: this.kid, alg: 'EdDSA', use: 'sig' };
  }

  static generate(): SigningKey {
    return new SigningKey(generateKeyPairSync('ed25519').privateKey);
  }

  static fromPem(pem: string): SigningKey {
    return new SigningKey(createPrivateKey(pem));
  }

  toPem(): string {
    return this.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  }

  sign(payload: TicketPayload): string {
    const header = b64u(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: this.kid }));
    const body = b64u(JSON.stringify(payload));
    const input = `${header}.${body}`;
    return `${input}.${b64u(sign(null, Buffer.from(input), this.privateKey))}`;
  }
}

export function jwksOf(keys: SigningKey[]): Jwks {
  return { keys: keys.map((k) => k.jwk) };
}

export interface VerifyOptions {
  /** The workspace the caller means to mount (`handle/name`); a ticket for another is refused. */
  workspace?: string;
  /** Unix seconds; default now. */
  now?: number;
  /** Tolerated clock difference in seconds for exp/iat. Default 30. */
  skewSeconds?: number;
}

function parseJson(part: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new TicketError('malformed', `mount ticket is malformed: its ${what} is not base64url JSON`);
  }
}

/**
 * Verify a compact JWS mount ticket against `jwks` and return its payload. The signature is
 * checked before anything in the payload is believed; then expiry, then the workspace.
 */
export function verifyTicket(jws: string, jwks: Jwks, opts: VerifyOptions = {}): TicketPayload {
  const parts = jws.trim().split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) {
    throw new TicketError('malformed', 'mount ticket is malformed: expected a compact JWS (three base64url parts)');
  }
  const [h, p, s] = parts as [string, string, string];
  const header = parseJson(h, 'header');
  if (header.alg !== 'EdDSA') {
    throw new TicketError('unsupported_algorithm', `mount ticket uses algorithm ${JSON.stringify(header.alg)}; only EdDSA is accepted`);
  }
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) {
    throw new TicketError(
      'unknown_key',
      `mount ticket was signed by key ${JSON.stringify(header.kid)}, which the orchestrator does not publish (wrong orchestrator, or a rotated key)`,
    );
  }
  let ok = false;
  try {
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
    ok = verify(null, Buffer.from(`${h}.${p}`), pub, Buffer.from(s, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new TicketError('bad_signature', 'mount ticket signature is invalid: the ticket was altered after it was issued');
  }
  const payload = parseJson(p, 'payload') as unknown as TicketPayload;
  if (payload.v !== 1 || typeof payload.exp !== 'number' || typeof payload.workspace !== 'string' || !payload.redis) {
    throw new TicketError('malformed', 'mount ticket payload is not a version-1 artifacts ticket');
  }
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const skew = opts.skewSeconds ?? 30;
  if (now >= payload.exp + skew) {
    throw new TicketError('expired', `mount ticket expired at ${new Date(payload.exp * 1000).toISOString()}`);
  }
  if (typeof payload.iat === 'number' && payload.iat > now + skew) {
    throw new TicketError('not_yet_valid', `mount ticket is issued in the future (${new Date(payload.iat * 1000).toISOString()}): check the clock`);
  }
  if (opts.workspace !== undefined && normalizeWorkspace(opts.workspace) !== payload.workspace) {
    throw new TicketError(
      'wrong_workspace',
      `mount ticket is for workspace ${payload.workspace}, not ${normalizeWorkspace(opts.workspace)}`,
    );
  }
  return payload;
}

/** `artifacts://h/n` → `h/n` (bare names cannot be checked without a handle and pass unchanged). */
function normalizeWorkspace(w: string): string {
  return w.replace(/^artifacts:\/\//, '');
}
