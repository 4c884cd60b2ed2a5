/**
 * Cache profiles (product.md 7): a named set of defaults for the block cache, kernel caches, read-
 * ahead and upload settings of a mount. The profile is stored on the workspace and can be
 * overridden per mount.
 *
 * - `interactive` (default): memory LRU + 10 GiB disk cache keeping 10 % of the disk free, 1 s
 *   attr/entry TTLs, prefetch, small files fetched whole on open, read-ahead up to 32 MiB.
 * - `benchmark`: no block cache at all and kernel caches off (direct_io, TTL 0), so every read
 *   reaches the object store and every stat reaches Redis.
 * - `custom`: interactive's defaults, with every knob settable from flags or a config file.
 *
 * Knob names are the mount flags (`cache-size`, or commander's `cacheSize`). Only `cache-dir` and
 * `cache-size` may be given with `interactive`; anything else needs `custom`, so that a profile
 * name always means the same behaviour. Units:
 * - sizes: bytes with a unit (`10G`, `10GiB`, `10GB`, `512K`, `4096B`; units are powers of 1024)
 *   or a bare number of MiB, as in `juicefs mount --cache-size 102400`; `0` turns a cache off;
 * - durations: seconds (`1`, `0.5`) or with a unit (`500ms`, `2s`, `1m`);
 * - ratios: `0.1` or `10%`;
 * - booleans: true/false, 1/0, yes/no, on/off.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { EvictionPolicy } from './disk.js';

export const CACHE_PROFILES = ['interactive', 'benchmark', 'custom'] as const;
export type CacheProfileName = (typeof CACHE_PROFILES)[number];
export const DEFAULT_CACHE_PROFILE: CacheProfileName = 'interactive';

export interface DiskCacheConfig {
  /** Cache root; the volume's blocks go to `<dir>/<volume uuid>/raw/`. */
  dir: string;
  sizeBytes: number;
  /** Fraction of the filesystem's space and inodes kept free. */
  freeRatio: number;
  eviction: EvictionPolicy;
}

export interface CacheConfig {
  profile: CacheProfileName;
  /** Memory block cache (whole blocks, LRU); 0 = none. */
  memoryCacheBytes: number;
  /** null = no disk cache. */
  disk: DiskCacheConfig | null;
  /** Kernel attribute / entry / directory-entry cache TTLs (FUSE attr_valid, entry_valid). */
  attrTtlSeconds: number;
  entryTtlSeconds: number;
  dirEntryTtlSeconds: number;
  /** Upper bound of sequential read-ahead; never more than 80 % of bufferSizeBytes (clamped). */
  readaheadMaxBytes: number;
  /** Background workers fetching the whole block after a partial read; 0 = off. */
  prefetch: number;
  /** Fetch files smaller than one block with a single GET on open. */
  fetchSmallFilesOnOpen: boolean;
  /** Memory for read-ahead and write buffers. */
  bufferSizeBytes: number;
  /** Parallel block uploads per mount. */
  uploadConcurrency: number;
  /** Commit metadata before upload, staging blocks in the disk cache (needs a disk cache). */
  writeback: boolean;
  /** FUSE direct_io: bypass the kernel page cache. */
  directIo: boolean;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** `$XDG_CACHE_HOME/artifacts` or `~/.cache/artifacts` (product.md 1). */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const xdg = env.XDG_CACHE_HOME;
  return xdg && isAbsolute(xdg) ? join(xdg, 'artifacts') : join(home, '.cache', 'artifacts');
}

/** The defaults of a profile, before any override. */
export function profileDefaults(profile: CacheProfileName, cacheDir: string = defaultCacheDir()): CacheConfig {
  const interactive: CacheConfig = {
    profile,
    memoryCacheBytes: 128 * MiB,
    disk: { dir: cacheDir, sizeBytes: 10 * GiB, freeRatio: 0.1, eviction: 'lru' },
    attrTtlSeconds: 1,
    entryTtlSeconds: 1,
    dirEntryTtlSeconds: 1,
    readaheadMaxBytes: 32 * MiB,
    prefetch: 1,
    fetchSmallFilesOnOpen: true,
    bufferSizeBytes: 300 * MiB,
    uploadConcurrency: 8,
    writeback: false,
    directIo: false,
  };
  switch (profile) {
    case 'interactive':
    case 'custom':
      return interactive;
    case 'benchmark':
      return {
        ...interactive,
        memoryCacheBytes: 0,
        disk: null,
        attrTtlSeconds: 0,
        entryTtlSeconds: 0,
        dirEntryTtlSeconds: 0,
        prefetch: 0,
        fetchSmallFilesOnOpen: false,
        directIo: true,
      };
  }
}

export class CacheConfigError extends Error {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
    this.name = 'CacheConfigError';
  }
}

// ------------------------------------------------------------------------------ value parsers

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(?:([KMGTP])(?:i?B)?|(B))?$/i;
const UNIT: Record<string, number> = { K: KiB, M: MiB, G: GiB, T: 1024 * GiB, P: 1024 * 1024 * GiB };

/** Bytes from `10G`, `10GiB`, `512K`, `4096B`, or a bare number of MiB. */
export function parseSize(value: unknown, option = 'size'): number {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value * MiB;
  } else if (typeof value === 'string') {
    const m = SIZE_RE.exec(value.trim());
    if (m === null) {
      throw new CacheConfigError(option, `--${option}: cannot parse size ${JSON.stringify(value)} (examples: 10G, 512M, 4096B, or a number of MiB)`);
    }
    const n = Number(m[1]);
    bytes = m[3] !== undefined ? n : n * (m[2] !== undefined ? UNIT[m[2].toUpperCase()]! : MiB);
  } else {
    throw new CacheConfigError(option, `--${option}: expected a size, got ${typeof value}`);
  }
  bytes = Math.floor(bytes);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new CacheConfigError(option, `--${option}: size ${JSON.stringify(value)} is out of range`);
  }
  return bytes;
}

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i;
const DURATION_UNIT: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** Seconds from `1`, `0.5`, `500ms`, `2s`, `1m`. */
export function parseDuration(value: unknown, option = 'duration'): number {
  let seconds: number;
  if (typeof value === 'number') seconds = value;
  else if (typeof value === 'string') {
    const m = DURATION_RE.exec(value.trim());
    if (m === null) {
      throw new CacheConfigError(option, `--${option}: cannot parse duration ${JSON.stringify(value)} (examples: 1, 0.5, 500ms, 2s)`);
    }
    seconds = Number(m[1]) * DURATION_UNIT[(m[2] ?? 's').toLowerCase()]!;
  } else throw new CacheConfigError(option, `--${option}: expected a duration, got ${typeof value}`);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new CacheConfigError(option, `--${option}: duration must be ≥ 0, got ${JSON.stringify(value)}`);
  }
  return seconds;
}

/** A fraction in [0, 1) from `0.1` or `10%`. */
export function parseRatio(value: unknown, option = 'ratio'): number {
  let r: number;
  if (typeof value === 'number') r = value;
  else if (typeof value === 'string' && /^\d+(?:\.\d+)?%$/.test(value.trim())) r = Number(value.trim().slice(0, -1)) / 100;
  else if (typeof value === 'string' && /^\d*\.?\d+$/.test(value.trim())) r = Number(value.trim());
  else throw new CacheConfigError(option, `--${option}: cannot parse ratio ${JSON.stringify(value)} (examples: 0.1, 10%)`);
  if (!(r >= 0 && r < 1)) throw new CacheConfigError(option, `--${option}: must be at least 0 and below 1, got ${JSON.stringify(value)}`);
  return r;
}

export function parseBool(value: unknown, option = 'flag'): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' && (value === 0 || value === 1)) return value === 1;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off'].includes(v)) return false;
  }
  throw new CacheConfigError(option, `--${option}: expected true or false, got ${JSON.stringify(value)}`);
}

function parseInt(value: unknown, option: string, min: number, max: number): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new CacheConfigError(option, `--${option}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

// ------------------------------------------------------------------------------ knobs

type Knob =
  | 'cache-dir'
  | 'cache-size'
  | 'free-space-ratio'
  | 'cache-eviction'
  | 'memory-cache-size'
  | 'attr-cache'
  | 'entry-cache'
  | 'dir-entry-cache'
  | 'max-readahead'
  | 'prefetch'
  | 'fetch-small-files'
  | 'buffer-size'
  | 'max-uploads'
  | 'writeback'
  | 'direct-io';

interface Overrides {
  cacheDir?: string;
  cacheSize?: number;
  freeRatio?: number;
  eviction?: EvictionPolicy;
  rest: Partial<Omit<CacheConfig, 'profile' | 'disk'>>;
}

/** Applies one knob to `o`; `v` is never undefined. */
const KNOBS: Record<Knob, (o: Overrides, v: unknown, cwd: string, home: string) => void> = {
  'cache-dir': (o, v, cwd, home) => {
    if (typeof v !== 'string' || v.trim() === '') throw new CacheConfigError('cache-dir', '--cache-dir: expected a directory path');
    const dir = v === '~' ? home : v.startsWith('~/') ? join(home, v.slice(2)) : resolve(cwd, v);
    o.cacheDir = dir;
  },
  'cache-size': (o, v) => {
    o.cacheSize = parseSize(v, 'cache-size');
  },
  'free-space-ratio': (o, v) => {
    o.freeRatio = parseRatio(v, 'free-space-ratio');
  },
  'cache-eviction': (o, v) => {
    if (v !== 'lru' && v !== '2-random') {
      throw new CacheConfigError('cache-eviction', `--cache-eviction: expected lru or 2-random, got ${JSON.stringify(v)}`);
    }
    o.eviction = v;
  },
  'memory-cache-size': (o, v) => {
    o.rest.memoryCacheBytes = parseSize(v, 'memory-cache-size');
  },
  'attr-cache': (o, v) => {
    o.rest.attrTtlSeconds = parseDuration(v, 'attr-cache');
  },
  'entry-cache': (o, v) => {
    o.rest.entryTtlSeconds = parseDuration(v, 'entry-cache');
  },
  'dir-entry-cache': (o, v) => {
    o.rest.dirEntryTtlSeconds = parseDuration(v, 'dir-entry-cache');
  },
  'max-readahead': (o, v) => {
    o.rest.readaheadMaxBytes = parseSize(v, 'max-readahead');
  },
  prefetch: (o, v) => {
    o.rest.prefetch = parseInt(v, 'prefetch', 0, 100);
  },
  'fetch-small-files': (o, v) => {
    o.rest.fetchSmallFilesOnOpen = parseBool(v, 'fetch-small-files');
  },
  'buffer-size': (o, v) => {
    o.rest.bufferSizeBytes = parseSize(v, 'buffer-size');
  },
  'max-uploads': (o, v) => {
    o.rest.uploadConcurrency = parseInt(v, 'max-uploads', 1, 1000);
  },
  writeback: (o, v) => {
    o.rest.writeback = parseBool(v, 'writeback');
  },
  'direct-io': (o, v) => {
    o.rest.directIo = parseBool(v, 'direct-io');
  },
};

export const CACHE_KNOBS = Object.keys(KNOBS) as Knob[];
/** The knobs a non-custom profile accepts (where the cache lives and how big it is). */
const PLACEMENT_KNOBS: ReadonlySet<string> = new Set(['cache-dir', 'cache-size']);

/** `cacheSize` → `cache-size`; kebab-case stays as is. */
function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export interface CacheConfigSources {
  /** The workspace's stored profile (used when neither flags nor file name one). */
  profile?: string;
  /** A parsed config file (JSON object): knob names, optionally `profile`. Unknown keys are errors. */
  file?: Record<string, unknown>;
  /**
   * Mount flags (commander's options object is fine: keys it does not know are ignored, undefined
   * values are unset). `cacheProfile` / `cache-profile` overrides the profile.
   */
  flags?: Record<string, unknown>;
  /** For relative `cache-dir` values (default process.cwd()). */
  cwd?: string;
  /** For `~` and the default cache dir (default os.homedir()). */
  home?: string;
  env?: NodeJS.ProcessEnv;
}

function parseProfile(value: unknown, where: string): CacheProfileName {
  if (typeof value === 'string' && (CACHE_PROFILES as readonly string[]).includes(value)) return value as CacheProfileName;
  throw new CacheConfigError('cache-profile', `${where}: unknown cache profile ${JSON.stringify(value)} (expected ${CACHE_PROFILES.join(', ')})`);
}

/**
 * The effective cache configuration of a mount: profile defaults, then the config file, then flags.
 * Throws CacheConfigError (with the offending option) on anything invalid.
 */
export function resolveCacheConfig(src: CacheConfigSources = {}): CacheConfig {
  const home = src.home ?? homedir();
  const cwd = src.cwd ?? process.cwd();
  const flags = src.flags ?? {};
  const file = src.file ?? {};
  if (typeof file !== 'object' || file === null || Array.isArray(file)) {
    throw new CacheConfigError('config', 'cache config file must hold a JSON object');
  }

  const flagProfile = flags['cacheProfile'] ?? flags['cache-profile'];
  const profile =
    flagProfile !== undefined
      ? parseProfile(flagProfile, '--cache-profile')
      : file['profile'] !== undefined
        ? parseProfile(file['profile'], 'config file "profile"')
        : src.profile !== undefined
          ? parseProfile(src.profile, 'workspace cache profile')
          : DEFAULT_CACHE_PROFILE;

  const o: Overrides = { rest: {} };
  const apply = (name: string, value: unknown, origin: 'flag' | 'file') => {
    const knob = kebab(name) as Knob;
    if (!(knob in KNOBS)) {
      if (origin === 'flag') return;
      throw new CacheConfigError(name, `config file: unknown cache option ${JSON.stringify(name)} (known: profile, ${CACHE_KNOBS.join(', ')})`);
    }
    if (value === undefined || value === null) return;
    if (profile !== 'custom' && !PLACEMENT_KNOBS.has(knob)) {
      throw new CacheConfigError(
        knob,
        `--${knob} needs --cache-profile custom (the ${profile} profile fixes it; only --cache-dir and --cache-size can be changed)`,
      );
    }
    if (profile === 'benchmark') {
      throw new CacheConfigError(knob, `--${knob}: the benchmark profile has no disk cache; use --cache-profile custom`);
    }
    KNOBS[knob](o, value, cwd, home);
  };
  for (const [k, v] of Object.entries(file)) if (k !== 'profile') apply(k, v, 'file');
  for (const [k, v] of Object.entries(flags)) if (kebab(k) !== 'cache-profile') apply(k, v, 'flag');

  const base = profileDefaults(profile, defaultCacheDir(src.env, home));
  const cfg: CacheConfig = { ...base, ...o.rest };
  if (base.disk !== null) {
    const sizeBytes = o.cacheSize ?? base.disk.sizeBytes;
    cfg.disk =
      sizeBytes === 0
        ? null
        : {
            dir: o.cacheDir ?? base.disk.dir,
            sizeBytes,
            freeRatio: o.freeRatio ?? base.disk.freeRatio,
            eviction: o.eviction ?? base.disk.eviction,
          };
  }
  validate(cfg);
  return cfg;
}

function validate(cfg: CacheConfig): void {
  if (cfg.disk !== null && cfg.disk.sizeBytes < MiB) {
    throw new CacheConfigError('cache-size', `--cache-size: ${cfg.disk.sizeBytes} bytes is too small; use 0 to turn the disk cache off or at least 1M`);
  }
  if (cfg.bufferSizeBytes < MiB) {
    throw new CacheConfigError('buffer-size', `--buffer-size: must be at least 1M, got ${cfg.bufferSizeBytes} bytes`);
  }
  if (cfg.writeback && cfg.disk === null) {
    throw new CacheConfigError('writeback', '--writeback stages blocks in the disk cache; it needs --cache-size > 0');
  }
  // Upstream lets read-ahead use at most 80 % of the buffer; keep the two consistent.
  cfg.readaheadMaxBytes = Math.min(cfg.readaheadMaxBytes, Math.floor(cfg.bufferSizeBytes * 0.8));
}
