/**
 * The `setting` value: the volume Format as JSON (juicefs-format.md 2.1, 2.2).
 *
 * Writing: byte-identical to Go's `json.MarshalIndent(format, "", "")` — struct field order, the
 * `omitempty` rules of upstream's Format, Go's string escaping (HTML-safe `<`, `>`, `&`, U+2028/9,
 * `\b`/`\f` short forms), map keys sorted as strings. Upstream rewrites `setting` wholesale, and tools
 * diff it, so our bytes must be theirs.
 *
 * Reading: as tolerant as Go's `json.Unmarshal` into the Format struct — unknown fields ignored,
 * field names matched case-insensitively (exact match preferred), duplicates last-wins, `null` leaves
 * a field at its zero value — but every type mismatch is an error ("corrupt setting: ..."), as it is
 * for upstream. We parse the JSON ourselves so integers keep their literal text: a uint64 capacity
 * beyond 2^53 is reported instead of being silently rounded.
 *
 * Secrets (2.2): AES-128-GCM, key = MD5(UUID), 12-byte random nonce, base64(nonce || ct || tag).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Format, TierInfo } from './types.js';

export class CorruptSettingError extends Error {
  constructor(message: string) {
    super(`corrupt setting: ${message}`);
    this.name = 'CorruptSettingError';
  }
}

export class SecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretError';
  }
}

/** Tombstone written by `juicefs dump` (and shown by `format`) in place of a secret. */
export const REMOVED_SECRET = 'removed';

type Kind = 'string' | 'int' | 'uint' | 'bool' | 'tiers';

/** Upstream's Format struct, in declaration (= serialisation) order. */
const FIELDS: readonly { name: keyof Format; kind: Kind; omitempty: boolean }[] = [
  { name: 'Name', kind: 'string', omitempty: false },
  { name: 'UUID', kind: 'string', omitempty: false },
  { name: 'Storage', kind: 'string', omitempty: false },
  { name: 'StorageClass', kind: 'string', omitempty: true },
  { name: 'Tiers', kind: 'tiers', omitempty: false },
  { name: 'Bucket', kind: 'string', omitempty: false },
  { name: 'AccessKey', kind: 'string', omitempty: true },
  { name: 'SecretKey', kind: 'string', omitempty: true },
  { name: 'SessionToken', kind: 'string', omitempty: true },
  { name: 'BlockSize', kind: 'int', omitempty: false },
  { name: 'Compression', kind: 'string', omitempty: true },
  { name: 'Shards', kind: 'int', omitempty: true },
  { name: 'HashPrefix', kind: 'bool', omitempty: true },
  { name: 'Capacity', kind: 'uint', omitempty: true },
  { name: 'Inodes', kind: 'uint', omitempty: true },
  { name: 'EncryptKey', kind: 'string', omitempty: true },
  { name: 'EncryptAlgo', kind: 'string', omitempty: true },
  { name: 'KeyEncrypted', kind: 'bool', omitempty: true },
  { name: 'UploadLimit', kind: 'int', omitempty: true },
  { name: 'DownloadLimit', kind: 'int', omitempty: true },
  { name: 'TrashDays', kind: 'int', omitempty: false },
  { name: 'MetaVersion', kind: 'int', omitempty: true },
  { name: 'MinClientVersion', kind: 'string', omitempty: true },
  { name: 'MaxClientVersion', kind: 'string', omitempty: true },
  { name: 'DirStats', kind: 'bool', omitempty: true },
  { name: 'UserGroupQuota', kind: 'bool', omitempty: true },
  { name: 'EnableACL', kind: 'bool', omitempty: false },
  { name: 'RangerRestUrl', kind: 'string', omitempty: true },
  { name: 'RangerService', kind: 'string', omitempty: true },
  { name: 'ChangeLog', kind: 'bool', omitempty: true },
  { name: 'ChangeLogMaxAge', kind: 'int', omitempty: true },
  { name: 'ChangeLogMaxLines', kind: 'int', omitempty: true },
  { name: 'KerbConf', kind: 'string', omitempty: true },
];

const TIER_FIELDS: readonly { name: keyof TierInfo; kind: 'string' | 'uint8' }[] = [
  { name: 'ID', kind: 'uint8' },
  { name: 'StorageClass', kind: 'string' },
  { name: 'Tag', kind: 'string' },
];

// ------------------------------------------------------------------------------------------------
// Encoding

const HEX = '0123456789abcdef';

/** A JSON string literal exactly as Go's encoder (with HTML escaping) writes it. */
export function goQuote(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | null = null;
    if (c < 0x20) {
      switch (c) {
        case 0x08: esc = '\\b'; break;
        case 0x0c: esc = '\\f'; break;
        case 0x0a: esc = '\\n'; break;
        case 0x0d: esc = '\\r'; break;
        case 0x09: esc = '\\t'; break;
        default: esc = '\\u00' + HEX[c >> 4] + HEX[c & 0xf];
      }
    } else if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = '\\\\';
    else if (c === 0x3c || c === 0x3e || c === 0x26) esc = '\\u00' + HEX[c >> 4] + HEX[c & 0xf];
    else if (c === 0x2028 || c === 0x2029) esc = '\\u202' + HEX[c & 0xf];
    else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate cannot be UTF-8; Go writes invalid UTF-8 as an escaped U+FFFD.
      const pair = c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
      if (pair) {
        i++;
        continue;
      }
      esc = '\\ufffd';
    }
    if (esc !== null) {
      out += s.slice(start, i) + esc;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

function intText(n: number, field: string): string {
  if (!Number.isSafeInteger(n)) throw new Error(`setting field ${field} must be an integer, got ${n}`);
  return n === 0 ? '0' : String(n);
}

/**
 * Go's MarshalIndent(format, "", indent). `indent` "" is the stored form; "  " is what upstream
 * prints (Format.String()).
 */
export function marshalFormat(fmt: Format, indent: string): string {
  const nl = (depth: number) => '\n' + indent.repeat(depth);
  const parts: string[] = [];
  for (const f of FIELDS) {
    const v = fmt[f.name] as unknown;
    let text: string;
    switch (f.kind) {
      case 'string': {
        const s = (v as string | undefined) ?? '';
        if (f.omitempty && s === '') continue;
        text = goQuote(s);
        break;
      }
      case 'int':
      case 'uint': {
        const n = (v as number | undefined) ?? 0;
        if (f.omitempty && n === 0) continue;
        if (f.kind === 'uint' && n < 0) throw new Error(`setting field ${f.name} must not be negative`);
        text = intText(n, f.name);
        break;
      }
      case 'bool': {
        const b = (v as boolean | undefined) ?? false;
        if (f.omitempty && !b) continue;
        text = b ? 'true' : 'false';
        break;
      }
      case 'tiers': {
        const t = v as Record<string, TierInfo> | null | undefined;
        if (t == null) {
          text = 'null';
          break;
        }
        const keys = Object.keys(t).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        if (keys.length === 0) {
          text = '{}';
          break;
        }
        const items = keys.map((k) => {
          const tier = t[k];
          const inner = [
            `"ID": ${intText(tier.ID ?? 0, 'Tiers.ID')}`,
            `"StorageClass": ${goQuote(tier.StorageClass ?? '')}`,
            `"Tag": ${goQuote(tier.Tag ?? '')}`,
          ];
          return `${goQuote(k)}: {${nl(3)}${inner.join(',' + nl(3))}${nl(2)}}`;
        });
        text = `{${nl(2)}${items.join(',' + nl(2))}${nl(1)}}`;
        break;
      }
    }
    parts.push(`"${f.name}": ${text}`);
  }
  return `{${nl(1)}${parts.join(',' + nl(1))}${nl(0)}}`;
}

/** The stored `setting` bytes (as a string): Go's MarshalIndent(format, "", ""). */
export function encodeSetting(fmt: Format): string {
  return marshalFormat(fmt, '');
}

/** What upstream prints for a volume (`Format.String()`): secrets replaced by "removed", 2-space indent. */
export function formatForDisplay(fmt: Format): string {
  return marshalFormat(removeSecrets(fmt), '  ');
}

// ------------------------------------------------------------------------------------------------
// Decoding

type JVal =
  | { t: 'str'; v: string }
  | { t: 'num'; raw: string }
  | { t: 'bool'; v: boolean }
  | { t: 'null' }
  | { t: 'obj'; entries: [string, JVal][] }
  | { t: 'arr'; items: JVal[] };

/** A strict RFC 8259 parser (what Go accepts) that keeps number literals as text. */
class JsonParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parseDocument(): JVal {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail(`unexpected ${this.describe()} after top-level value`);
    return v;
  }

  private fail(msg: string): never {
    throw new CorruptSettingError(`invalid JSON at offset ${this.i}: ${msg}`);
  }

  private describe(): string {
    return this.i < this.s.length ? JSON.stringify(this.s[this.i]) : 'end of input';
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  private value(depth: number): JVal {
    if (depth > 1000) this.fail('nesting too deep');
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return { t: 'str', v: this.string() };
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (this.s.startsWith('true', this.i)) return (this.i += 4), { t: 'bool', v: true };
    if (this.s.startsWith('false', this.i)) return (this.i += 5), { t: 'bool', v: false };
    if (this.s.startsWith('null', this.i)) return (this.i += 4), { t: 'null' };
    this.fail(`unexpected ${this.describe()}`);
  }

  private object(depth: number): JVal {
    this.i++;
    const entries: [string, JVal][] = [];
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return { t: 'obj', entries };
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail(`expected an object key, got ${this.describe()}`);
      const k = this.string();
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ':', got ${this.describe()}`);
      this.i++;
      this.ws();
      entries.push([k, this.value(depth + 1)]);
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === '}') return { t: 'obj', entries };
      if (c !== ',') (this.i--, this.fail(`expected ',' or '}', got ${this.describe()}`));
    }
  }

  private array(depth: number): JVal {
    this.i++;
    const items: JVal[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return { t: 'arr', items };
    }
    for (;;) {
      this.ws();
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i];
      this.i++;
      if (c === ']') return { t: 'arr', items };
      if (c !== ',') (this.i--, this.fail(`expected ',' or ']', got ${this.describe()}`));
    }
  }

  private number(): JVal {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) this.fail('invalid number');
    this.i += m[0].length;
    return { t: 'num', raw: m[0] };
  }

  private string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c === 0x5c) {
        out += s.slice(start, this.i);
        const e = s[this.i + 1];
        this.i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const cu = this.hex4();
            if (cu >= 0xd800 && cu <= 0xdbff && s[this.i] === '\\' && s[this.i + 1] === 'u') {
              const save = this.i;
              this.i += 2;
              const lo = this.hex4();
              if (lo >= 0xdc00 && lo <= 0xdfff) out += String.fromCharCode(cu, lo);
              else {
                out += '\ufffd';
                this.i = save;
              }
            } else if (cu >= 0xd800 && cu <= 0xdfff) out += '\ufffd'; // Go: lone surrogate -> U+FFFD
            else out += String.fromCharCode(cu);
            break;
          }
          default:
            this.i -= 1;
            this.fail(`invalid escape \\${e ?? ''}`);
        }
        start = this.i;
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // A lone surrogate in the input text (only possible from a JS string): Go would see U+FFFD.
        const pair = c <= 0xdbff && (s.charCodeAt(this.i + 1) & 0xfc00) === 0xdc00;
        if (!pair) {
          out += s.slice(start, this.i) + '\ufffd';
          this.i++;
          start = this.i;
          continue;
        }
        this.i += 2;
        continue;
      }
      this.i++;
    }
  }

  private hex4(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('invalid \\u escape');
    this.i += 4;
    return parseInt(h, 16);
  }
}

/** Go's case-insensitive field match (simple folding; ſ and the Kelvin sign fold to s and k). */
function fold(s: string): string {
  return s.toLowerCase().replace(/\u017f/g, 's').replace(/\u212a/g, 'k');
}

const FIELD_BY_NAME = new Map(FIELDS.map((f) => [f.name as string, f]));
const FIELD_BY_FOLD = new Map(FIELDS.map((f) => [fold(f.name), f]));
const TIER_BY_NAME = new Map(TIER_FIELDS.map((f) => [f.name as string, f]));
const TIER_BY_FOLD = new Map(TIER_FIELDS.map((f) => [fold(f.name), f]));

const JSON_TYPE: Record<JVal['t'], string> = { str: 'string', num: 'number', bool: 'bool', null: 'null', obj: 'object', arr: 'array' };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function decodeInteger(v: JVal, where: string, kind: 'int' | 'uint' | 'uint8'): number {
  if (v.t !== 'num') throw new CorruptSettingError(`${where}: expected a number, got ${JSON_TYPE[v.t]}`);
  if (!/^-?[0-9]+$/.test(v.raw)) throw new CorruptSettingError(`${where}: expected an integer, got ${v.raw}`);
  const n = BigInt(v.raw);
  const [lo, hi] = kind === 'int' ? [INT64_MIN, INT64_MAX] : kind === 'uint' ? [0n, UINT64_MAX] : [0n, 255n];
  if (n < lo || n > hi || v.raw === '-0' && kind !== 'int')
    throw new CorruptSettingError(`${where}: ${v.raw} is out of range for ${kind === 'int' ? 'int64' : kind === 'uint' ? 'uint64' : 'uint8'}`);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER))
    throw new CorruptSettingError(`${where}: ${v.raw} is too large for this client (max 2^53-1)`);
  return Number(n);
}

function decodeTiers(v: JVal, into: Record<string, TierInfo> | null | undefined): Record<string, TierInfo> | null {
  if (v.t === 'null') return null;
  if (v.t !== 'obj') throw new CorruptSettingError(`field Tiers: expected an object, got ${JSON_TYPE[v.t]}`);
  // Go decodes into the existing map when the field repeats.
  const out: Record<string, TierInfo> = into ?? {};
  for (const [k, tv] of v.entries) {
    if (!/^[0-9]+$/.test(k) || Number(k) > 255)
      throw new CorruptSettingError(`field Tiers: key ${JSON.stringify(k)} is not a tier id (0..255)`);
    // Go re-formats integer map keys on output: "007" becomes "7".
    const key = String(Number(k));
    if (tv.t === 'null') {
      out[key] = { ID: 0, StorageClass: '', Tag: '' }; // Go stores a zero Tier for null
      continue;
    }
    if (tv.t !== 'obj') throw new CorruptSettingError(`field Tiers[${k}]: expected an object, got ${JSON_TYPE[tv.t]}`);
    const tier: TierInfo = { ID: 0, StorageClass: '', Tag: '' };
    for (const [fk, fv] of tv.entries) {
      const f = TIER_BY_NAME.get(fk) ?? TIER_BY_FOLD.get(fold(fk));
      if (!f || fv.t === 'null') continue;
      if (f.kind === 'uint8') tier.ID = decodeInteger(fv, `field Tiers[${k}].ID`, 'uint8');
      else if (fv.t !== 'str') throw new CorruptSettingError(`field Tiers[${k}].${f.name}: expected a string, got ${JSON_TYPE[fv.t]}`);
      else (tier as unknown as Record<string, string>)[f.name] = fv.v;
    }
    out[key] = tier;
  }
  return out;
}

/**
 * Parse a `setting` value. Returns every non-omitempty field (zero value when absent, `Tiers` null
 * when absent — see `withDefaultTiers`) plus the omitempty fields that were present.
 */
export function decodeSetting(json: string | Buffer): Format {
  const text = typeof json === 'string' ? json : json.toString('utf8');
  const doc = new JsonParser(text).parseDocument();
  const fmt: Format = { Name: '', UUID: '', Storage: '', Tiers: null, Bucket: '', BlockSize: 0, TrashDays: 0, EnableACL: false };
  if (doc.t === 'null') return fmt;
  if (doc.t !== 'obj') throw new CorruptSettingError(`expected a JSON object, got ${JSON_TYPE[doc.t]}`);
  const rec = fmt as unknown as Record<string, unknown>;
  for (const [k, v] of doc.entries) {
    const f = FIELD_BY_NAME.get(k) ?? FIELD_BY_FOLD.get(fold(k));
    if (!f) continue;
    const where = `field ${f.name}`;
    if (f.kind === 'tiers') {
      fmt.Tiers = decodeTiers(v, fmt.Tiers);
      continue;
    }
    if (v.t === 'null') continue;
    switch (f.kind) {
      case 'string':
        if (v.t !== 'str') throw new CorruptSettingError(`${where}: expected a string, got ${JSON_TYPE[v.t]}`);
        rec[f.name] = v.v;
        break;
      case 'bool':
        if (v.t !== 'bool') throw new CorruptSettingError(`${where}: expected a bool, got ${JSON_TYPE[v.t]}`);
        rec[f.name] = v.v;
        break;
      case 'int':
      case 'uint':
        rec[f.name] = decodeInteger(v, where, f.kind);
        break;
    }
  }
  return fmt;
}

/** Upstream's Load: a setting without Tiers gets tier 0 with the default storage class. */
export function withDefaultTiers(fmt: Format): Format {
  if (fmt.Tiers != null) return fmt;
  return { ...fmt, Tiers: { '0': { ID: 0, StorageClass: fmt.StorageClass ?? '', Tag: '' } } };
}

// ------------------------------------------------------------------------------------------------
// Secrets

const NONCE = 12;
const TAG = 16;
const SECRET_FIELDS = ['SecretKey', 'SessionToken', 'EncryptKey'] as const;

function secretKey(fmt: Format): Buffer {
  if ((fmt.EncryptAlgo ?? '') === 'sm4gcm')
    throw new SecretError('secrets encrypted with sm4gcm (SM4-GCM) are not supported by this client yet');
  return createHash('md5').update(fmt.UUID, 'utf8').digest();
}

/** base64(nonce || AES-128-GCM(plaintext) || tag) with key MD5(UUID). */
export function encryptSecret(plain: string, uuid: string): string {
  const nonce = randomBytes(NONCE);
  const c = createCipheriv('aes-128-gcm', createHash('md5').update(uuid, 'utf8').digest(), nonce);
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64');
}

export function decryptSecret(value: string, uuid: string, field = 'secret'): string {
  if (value === REMOVED_SECRET)
    throw new SecretError(`${field} was removed (the setting came from a dump without secrets); set it again with \`format --secret-key\``);
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value))
    throw new SecretError(`${field}: not valid base64`);
  const buf = Buffer.from(value, 'base64');
  if (buf.length < NONCE + TAG) throw new SecretError(`${field}: encrypted value too short (${buf.length} bytes)`);
  const d = createDecipheriv('aes-128-gcm', createHash('md5').update(uuid, 'utf8').digest(), buf.subarray(0, NONCE));
  d.setAuthTag(buf.subarray(buf.length - TAG));
  try {
    return Buffer.concat([d.update(buf.subarray(NONCE, buf.length - TAG)), d.final()]).toString('utf8');
  } catch {
    throw new SecretError(`${field}: cannot decrypt (authentication failed; wrong UUID or corrupted value)`);
  }
}

/** Upstream Format.Encrypt: no-op if already encrypted or no secret is set; returns a copy. */
export function encryptSecrets(fmt: Format): Format {
  if (fmt.KeyEncrypted || SECRET_FIELDS.every((f) => !fmt[f])) return { ...fmt };
  secretKey(fmt); // validates the algorithm
  const out: Format = { ...fmt, KeyEncrypted: true };
  for (const f of SECRET_FIELDS) if (out[f]) out[f] = encryptSecret(out[f]!, fmt.UUID);
  return out;
}

/** Upstream Format.Decrypt: no-op unless KeyEncrypted; returns a plaintext copy or throws SecretError. */
export function decryptSecrets(fmt: Format): Format {
  if (!fmt.KeyEncrypted) return { ...fmt };
  secretKey(fmt);
  const out: Format = { ...fmt, KeyEncrypted: false };
  for (const f of SECRET_FIELDS) if (out[f]) out[f] = decryptSecret(out[f]!, fmt.UUID, f);
  return out;
}

/** Upstream Format.RemoveSecret: every non-empty secret becomes "removed"; returns a copy. */
export function removeSecrets(fmt: Format): Format {
  const out: Format = { ...fmt };
  for (const f of SECRET_FIELDS) if (out[f]) out[f] = REMOVED_SECRET;
  return out;
}
