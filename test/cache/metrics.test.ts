import { describe, expect, it } from 'vitest';
import { cacheStatsToPrometheus } from '../../chunkstore/cache/metrics.js';
import { MemoryBlockCache } from '../../chunkstore/cache/memory.js';
import { TieredBlockCache } from '../../chunkstore/cache/tiered.js';

describe('block cache metrics', () => {
  it('renders composite and per-tier series in Prometheus text format', async () => {
    const t = new TieredBlockCache(new MemoryBlockCache({ maxBytes: 1 << 20 }), undefined);
    t.put('chunks/0/0/1_0_3', Buffer.from('abc'));
    await t.get('chunks/0/0/1_0_3');
    await t.get('chunks/0/0/2_0_3');
    const text = cacheStatsToPrometheus(t.stats());
    expect(text).toContain('# TYPE artifacts_blockcache_hits_total counter\n');
    expect(text).toContain('artifacts_blockcache_hits_total{tier="all"} 1\n');
    expect(text).toContain('artifacts_blockcache_hits_total{tier="memory"} 1\n');
    expect(text).toContain('artifacts_blockcache_misses_total{tier="all"} 1\n');
    expect(text).toContain('artifacts_blockcache_hit_bytes_total{tier="all"} 3\n');
    expect(text).toContain('artifacts_blockcache_used_bytes{tier="memory"} 3\n');
    expect(text).not.toContain('tier="disk"');
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \S+ .+|\w+\{tier="\w+"\} \d+)$/);
  });
});
