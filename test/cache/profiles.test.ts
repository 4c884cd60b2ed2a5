import { describe, expect, it } from 'vitest';
import {
  CacheConfigError,
  defaultCacheDir,
  parseDuration,
  parseRatio,
  parseSize,
  profileDefaults,
  resolveCacheConfig,
} from '../../chunkstore/cache/profiles.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const home = '/home/agent';

describe('cache profile value parsing', () => {
  it('parses sizes with binary units, bare numbers as MiB (juicefs convention)', () => {
    expect(parseSize('10G')).toBe(10 * GiB);
    expect(parseSize('10GiB')).toBe(10 * GiB);
    expect(parseSize('10GB')).toBe(10 * GiB);
    expect(parseSize('10g')).toBe(10 * GiB);
    expect(parseSize('512K')).toBe(512 * 1024);
    expect(parseSize('1.5M')).toBe(1.5 * MiB);
    expect(parseSize('4096B')).toBe(4096);
    expect(parseSize('2T')).toBe(2 * 1024 * GiB);
    expect(parseSize('100')).toBe(100 * MiB);
    expect(parseSize(100)).toBe(100 * MiB);
    expect(parseSize('0')).toBe(0);
    for (const bad of ['', 'ten', '10X', '-1G', '1 0G', 'G']) expect(() => parseSize(bad, 'cache-size')).toThrow(/--cache-size: cannot parse size/);
    expect(() => parseSize(true, 'cache-size')).toThrow(CacheConfigError);
  });

  it('parses durations and ratios', () => {
    expect(parseDuration('1')).toBe(1);
    expect(parseDuration(0.5)).toBe(0.5);
    expect(parseDuration('500ms')).toBe(0.5);
    expect(parseDuration('2m')).toBe(120);
    expect(() => parseDuration('-1')).toThrow(/cannot parse duration/);
    expect(() => parseDuration('soon')).toThrow(CacheConfigError);
    expect(parseRatio('0.1')).toBe(0.1);
    expect(parseRatio('25%')).toBe(0.25);
    expect(parseRatio(0)).toBe(0);
    expect(() => parseRatio('1')).toThrow(/below 1/);
    expect(() => parseRatio('150%')).toThrow(/below 1/);
  });
});

describe('cache profiles (product.md 7)', () => {
  it('interactive is the default: memory LRU + 10 GiB disk keeping 10 % free, 1 s TTLs, 32 MiB read-ahead', () => {
    const c = resolveCacheConfig({ home, env: {} });
    expect(c).toEqual({
      profile: 'interactive',
      memoryCacheBytes: 128 * MiB,
      disk: { dir: '/home/agent/.cache/artifacts', sizeBytes: 10 * GiB, freeRatio: 0.1, eviction: 'lru' },
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
    });
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache' }, home)).toBe('/x/cache/artifacts');
  });

  it('benchmark has no block cache and no kernel caches', () => {
    const c = resolveCacheConfig({ profile: 'benchmark', home });
    expect(c).toMatchObject({
      profile: 'benchmark',
      memoryCacheBytes: 0,
      disk: null,
      attrTtlSeconds: 0,
      entryTtlSeconds: 0,
      dirEntryTtlSeconds: 0,
      prefetch: 0,
      directIo: true,
      writeback: false,
    });
  });

  it('interactive accepts --cache-dir and --cache-size (commander camelCase), ignoring unrelated flags', () => {
    const c = resolveCacheConfig({
      home,
      cwd: '/work',
      flags: { cacheDir: 'cache', cacheSize: '20G', foreground: true, readOnly: undefined },
    });
    expect(c.disk).toEqual({ dir: '/work/cache', sizeBytes: 20 * GiB, freeRatio: 0.1, eviction: 'lru' });
    expect(resolveCacheConfig({ home, flags: { 'cache-dir': '~/c' } }).disk!.dir).toBe('/home/agent/c');
    expect(resolveCacheConfig({ home, flags: { cacheSize: '0' } }).disk).toBeNull();
  });

  it('custom takes every knob from a config file, and flags override the file', () => {
    const c = resolveCacheConfig({
      home,
      profile: 'interactive', // the workspace's; the file names custom
      file: {
        profile: 'custom',
        'cache-size': '2G',
        freeSpaceRatio: '20%',
        'cache-eviction': '2-random',
        'memory-cache-size': '1G',
        'attr-cache': '5s',
        'entry-cache': 5,
        'dir-entry-cache': '500ms',
        'max-readahead': '64M',
        prefetch: 3,
        'fetch-small-files': false,
        'buffer-size': '1G',
        'max-uploads': 32,
        writeback: true,
        'direct-io': 'no',
      },
      flags: { maxUploads: '4', prefetch: undefined },
    });
    expect(c).toEqual({
      profile: 'custom',
      memoryCacheBytes: GiB,
      disk: { dir: '/home/agent/.cache/artifacts', sizeBytes: 2 * GiB, freeRatio: 0.2, eviction: '2-random' },
      attrTtlSeconds: 5,
      entryTtlSeconds: 5,
      dirEntryTtlSeconds: 0.5,
      readaheadMaxBytes: 64 * MiB,
      prefetch: 3,
      fetchSmallFilesOnOpen: false,
      bufferSizeBytes: GiB,
      uploadConcurrency: 4,
      writeback: true,
      directIo: false,
    });
  });

  it('--cache-profile on the command line beats the file and the workspace', () => {
    expect(resolveCacheConfig({ profile: 'custom', file: { profile: 'custom' }, flags: { cacheProfile: 'benchmark' } }).profile).toBe('benchmark');
    expect(resolveCacheConfig({ profile: 'benchmark' }).profile).toBe('benchmark');
  });

  it('custom with nothing set equals interactive apart from its name', () => {
    expect({ ...resolveCacheConfig({ profile: 'custom', home, env: {} }), profile: 'interactive' }).toEqual(resolveCacheConfig({ home, env: {} }));
    expect(profileDefaults('custom', '/c').disk!.dir).toBe('/c');
  });

  it('clamps read-ahead to 80 % of the buffer', () => {
    const c = resolveCacheConfig({ profile: 'custom', flags: { bufferSize: '32M', maxReadahead: '64M' } });
    expect(c.readaheadMaxBytes).toBe(Math.floor(32 * MiB * 0.8));
  });

  const bad: Array<[string, Parameters<typeof resolveCacheConfig>[0], RegExp]> = [
    ['an unknown profile', { flags: { cacheProfile: 'fast' } }, /unknown cache profile "fast" \(expected interactive, benchmark, custom\)/],
    ['an unknown stored profile', { profile: 'turbo' }, /workspace cache profile: unknown cache profile "turbo"/],
    ['a knob that needs custom', { flags: { prefetch: 2 } }, /--prefetch needs --cache-profile custom \(the interactive profile fixes it/],
    ['a disk knob with benchmark', { profile: 'benchmark', flags: { cacheSize: '1G' } }, /--cache-size: the benchmark profile has no disk cache/],
    ['an unknown key in the file', { profile: 'custom', file: { cahce_size: '1G' } }, /config file: unknown cache option "cahce_size"/],
    ['a bad size', { flags: { cacheSize: '10 gigs' } }, /--cache-size: cannot parse size "10 gigs"/],
    ['a tiny disk cache', { flags: { cacheSize: '100K' } }, /--cache-size: 102400 bytes is too small/],
    ['a bad ratio', { profile: 'custom', flags: { freeSpaceRatio: '1.5' } }, /--free-space-ratio: must be at least 0 and below 1/],
    ['a bad eviction', { profile: 'custom', flags: { cacheEviction: 'fifo' } }, /--cache-eviction: expected lru or 2-random/],
    ['a bad upload count', { profile: 'custom', flags: { maxUploads: 0 } }, /--max-uploads: expected an integer from 1 to 1000, got 0/],
    ['a bad boolean', { profile: 'custom', flags: { writeback: 'maybe' } }, /--writeback: expected true or false/],
    ['writeback without a disk cache', { profile: 'custom', flags: { writeback: true, cacheSize: 0 } }, /--writeback stages blocks in the disk cache/],
    ['an empty cache dir', { flags: { cacheDir: ' ' } }, /--cache-dir: expected a directory path/],
    ['a file that is not an object', { file: [] as unknown as Record<string, unknown> }, /must hold a JSON object/],
  ];
  for (const [what, src, message] of bad) {
    it(`rejects ${what} with a clear error`, () => {
      let err: unknown;
      try {
        resolveCacheConfig(src);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CacheConfigError);
      expect((err as Error).message).toMatch(message);
    });
  }
});
