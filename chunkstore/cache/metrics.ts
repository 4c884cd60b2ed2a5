/**
 * Block cache counters as Prometheus text exposition lines, for the `.stats` virtual file and the
 * status command (product.md 6: block cache hits/misses/bytes/evictions). One series per tier,
 * labelled `tier="memory"|"disk"`, plus `tier="all"` for the composite as seen by the block store.
 */
import type { CacheStats } from '../types.js';
import type { StagingStats } from './staging.js';

interface Metric {
  field: keyof Omit<CacheStats, 'tiers'>;
  name: string;
  type: 'counter' | 'gauge';
  help: string;
}

const METRICS: Metric[] = [
  { field: 'hits', name: 'hits_total', type: 'counter', help: 'Block reads answered by the cache.' },
  { field: 'misses', name: 'misses_total', type: 'counter', help: 'Block reads the cache could not answer.' },
  { field: 'hitBytes', name: 'hit_bytes_total', type: 'counter', help: 'Bytes answered by the cache.' },
  { field: 'inserts', name: 'inserts_total', type: 'counter', help: 'Blocks stored.' },
  { field: 'insertBytes', name: 'insert_bytes_total', type: 'counter', help: 'Bytes of blocks stored.' },
  { field: 'skipped', name: 'skipped_total', type: 'counter', help: 'Blocks offered but not stored (full, duplicate, bypassing).' },
  { field: 'evictions', name: 'evictions_total', type: 'counter', help: 'Blocks evicted to stay within limits.' },
  { field: 'corrupt', name: 'corrupt_total', type: 'counter', help: 'Cache files dropped after a checksum or length mismatch.' },
  { field: 'errors', name: 'errors_total', type: 'counter', help: 'Cache I/O errors.' },
  { field: 'usedBytes', name: 'used_bytes', type: 'gauge', help: 'Bytes charged against the cache limit.' },
  { field: 'capacityBytes', name: 'capacity_bytes', type: 'gauge', help: 'Current cache limit in bytes.' },
  { field: 'entries', name: 'entries', type: 'gauge', help: 'Blocks in the cache.' },
  { field: 'bypassing', name: 'bypassing', type: 'gauge', help: '1 while the disk cache refuses inserts after a write error.' },
];

export function cacheStatsToPrometheus(stats: CacheStats, prefix = 'artifacts_blockcache'): string {
  const series: Array<[string, CacheStats]> = [['all', stats], ...Object.entries(stats.tiers ?? {})];
  const lines: string[] = [];
  for (const m of METRICS) {
    const name = `${prefix}_${m.name}`;
    lines.push(`# HELP ${name} ${m.help}`, `# TYPE ${name} ${m.type}`);
    for (const [tier, s] of series) lines.push(`${name}{tier="${tier}"} ${s[m.field]}`);
  }
  return lines.join('\n') + '\n';
}

const STAGING_METRICS: ReadonlyArray<{ field: keyof StagingStats; name: string; type: 'counter' | 'gauge'; help: string }> = [
  { field: 'staged', name: 'staged_total', type: 'counter', help: 'Blocks written to rawstaging/ (writeback).' },
  { field: 'stagedBytes', name: 'staged_bytes_total', type: 'counter', help: 'Bytes written to rawstaging/.' },
  { field: 'uploaded', name: 'uploaded_total', type: 'counter', help: 'Staged blocks uploaded and unstaged.' },
  { field: 'uploadedBytes', name: 'uploaded_bytes_total', type: 'counter', help: 'Bytes of staged blocks uploaded.' },
  { field: 'uploadFailures', name: 'upload_failures_total', type: 'counter', help: 'Failed upload attempts of staged blocks (retried).' },
  { field: 'refused', name: 'refused_total', type: 'counter', help: 'Blocks that could not be staged and were uploaded synchronously.' },
  { field: 'recovered', name: 'recovered_total', type: 'counter', help: 'Staged blocks found at startup.' },
  { field: 'corrupt', name: 'corrupt_total', type: 'counter', help: 'Staged files failing verification (kept, never uploaded).' },
  { field: 'pending', name: 'pending_blocks', type: 'gauge', help: 'Blocks staged and not yet uploaded.' },
  { field: 'pendingBytes', name: 'pending_bytes', type: 'gauge', help: 'Bytes staged and not yet uploaded.' },
];

/** Writeback staging counters as Prometheus text (for `.stats`). */
export function stagingStatsToPrometheus(stats: StagingStats, prefix = 'artifacts_staging'): string {
  const lines: string[] = [];
  for (const m of STAGING_METRICS) {
    const name = `${prefix}_${m.name}`;
    lines.push(`# HELP ${name} ${m.help}`, `# TYPE ${name} ${m.type}`, `${name} ${stats[m.field]}`);
  }
  return lines.join('\n') + '\n';
}
