/**
 * The benchmark harness's pure parts: rows from samples (median, ratio to juicefs, per metric),
 * tables, the `.stats` parser for both systems' formats, the chart, the CPU-profile summary.
 * (The harness itself runs real servers and mounts: `artifacts bench --quick`.)
 */
import { describe, expect, it } from 'vitest';
import { renderChart } from '../../bench/chart.js';
import { summarise } from '../../bench/cpuprofile.js';
import { jsonRows, median, tableLines, toRows, type TaggedSample } from '../../bench/results.js';
import { cpuSeconds, diffStats, formatDeltas, parseStats } from '../../bench/stats.js';

const s = (system: 'artifacts' | 'juicefs', profile: string, workload: string, value: number, metric = 'rate', unit = 'files/s'): TaggedSample => ({
  system,
  profile,
  workload,
  metric,
  unit,
  value,
  load1: 2,
});

describe('results', () => {
  it('median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('rows take the median over rounds and the ratio to juicefs of the same profile and metric', () => {
    const rows = toRows([
      s('artifacts', 'interactive', 'small-create', 100),
      s('artifacts', 'interactive', 'small-create', 300),
      s('artifacts', 'interactive', 'small-create', 200),
      s('juicefs', 'interactive', 'small-create', 400),
      s('juicefs', 'benchmark', 'small-create', 50),
      s('artifacts', 'benchmark', 'small-create', 25),
      s('artifacts', 'interactive', 'small-create', 8, 'daemon-cpu', 'CPU ms/file'),
      s('juicefs', 'interactive', 'small-create', 2, 'daemon-cpu', 'CPU ms/file'),
      s('artifacts', 'engine', 'mdtest-lookup', 1000, 'rate', 'ops/s'),
    ]);
    const find = (sys: string, prof: string, metric = 'rate') => rows.find((r) => r.system === sys && r.profile === prof && r.metric === metric && r.workload === 'small-create');
    expect(find('artifacts', 'interactive')!.value).toBe(200);
    expect(find('artifacts', 'interactive')!.samples).toEqual([100, 300, 200]);
    expect(find('artifacts', 'interactive')!.ratio_vs_juicefs).toBe(0.5);
    expect(find('artifacts', 'benchmark')!.ratio_vs_juicefs).toBe(0.5);
    expect(find('juicefs', 'interactive')!.ratio_vs_juicefs).toBe(1);
    expect(find('artifacts', 'interactive', 'daemon-cpu')!.ratio_vs_juicefs).toBe(4);
    expect(rows.find((r) => r.workload === 'mdtest-lookup')!.ratio_vs_juicefs).toBeNull();
    // Rates first, CPU rows last.
    expect(rows.at(-1)!.metric).toBe('daemon-cpu');
    const json = jsonRows(rows)[0] as Record<string, unknown>;
    for (const k of ['system', 'profile', 'workload', 'metric', 'value', 'unit', 'ratio_vs_juicefs']) expect(json).toHaveProperty(k);
  });

  it('tables put both profiles side by side with ratios', () => {
    const rows = toRows([s('artifacts', 'interactive', 'small-read', 150), s('juicefs', 'interactive', 'small-read', 100)]);
    const md = tableLines(rows, true);
    expect(md[0]).toBe('| workload | unit | artifacts interactive | juicefs interactive | ratio |');
    expect(md[2]).toBe('| small files: read | files/s | 150 | 100 | 1.50× |');
    const text = tableLines(rows, false);
    expect(text[2]).toMatch(/^small files: read\s+files\/s\s+150\s+100\s+1\.50×$/);
  });
});

describe('.stats', () => {
  it('parses artifacts histograms and diffs count and seconds per label', () => {
    const a = parseStats(
      [
        '# TYPE juicefs_fuse_ops_durations_histogram_seconds histogram',
        'juicefs_fuse_ops_durations_histogram_seconds_bucket{method="create",le="0.001"} 1',
        'juicefs_fuse_ops_durations_histogram_seconds_sum{method="create"} 0.5',
        'juicefs_fuse_ops_durations_histogram_seconds_count{method="create"} 10',
        'juicefs_cpu_usage 3.5',
        'juicefs_uptime 12',
      ].join('\n'),
    );
    const b = parseStats(
      [
        'juicefs_fuse_ops_durations_histogram_seconds_sum{method="create"} 2.5',
        'juicefs_fuse_ops_durations_histogram_seconds_count{method="create"} 110',
        'juicefs_cpu_usage 5',
        'juicefs_uptime 20',
      ].join('\n'),
    );
    const d = diffStats(a, b);
    expect(d[0]).toEqual({ key: 'fuse_ops{method="create"}', count: 100, seconds: 2 });
    expect(d.some((x) => x.key.startsWith('uptime'))).toBe(false);
    expect(cpuSeconds(a, b)).toBe(1.5);
    expect(formatDeltas(d)[0]).toBe('fuse_ops{method="create"} 100 × 20.00 ms = 2.00 s');
  });

  it('reads juicefs 1.4 flat metrics', () => {
    const a = parseStats('juicefs_cpu_usage 1\njuicefs_fuse_ops_total 10\n');
    const b = parseStats('juicefs_cpu_usage 1.25\njuicefs_fuse_ops_total 40\n');
    expect(cpuSeconds(a, b)).toBe(0.25);
    expect(diffStats(a, b).find((x) => x.key === 'fuse_ops_total')!.seconds).toBe(30);
  });
});

describe('chart', () => {
  it('draws one bar per profile and workload, left of 1× when slower', () => {
    const rows = toRows([
      s('artifacts', 'interactive', 'small-read', 50),
      s('juicefs', 'interactive', 'small-read', 100),
      s('artifacts', 'benchmark', 'small-read', 200),
      s('juicefs', 'benchmark', 'small-read', 100),
    ]);
    const svg = renderChart(rows, 'test & <run>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('test &amp; &lt;run&gt;');
    expect(svg).toContain('0.50×');
    expect(svg).toContain('2.00×');
    const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="13" fill="(#[0-9a-f]+)"/g)];
    expect(bars).toHaveLength(2);
    const one = Number(/<line x1="([\d.]+)"[^>]*stroke="#222"/.exec(svg)![1]);
    const slow = bars.find((b) => b[3] === '#2b6cb0')!;
    const fast = bars.find((b) => b[3] === '#dd6b20')!;
    expect(Number(slow[1]) + Number(slow[2])).toBeCloseTo(one, 5); // ends at 1×
    expect(Number(fast[1])).toBeCloseTo(one, 5); // starts at 1×
  });
});

describe('cpuprofile summary', () => {
  it('counts self and inclusive samples per function, idle apart', () => {
    const frame = (functionName: string, url = 'file:///x/dist/fs/vfs.js', lineNumber = 0) => ({ functionName, url, lineNumber, columnNumber: 0 });
    const p = {
      startTime: 0,
      endTime: 1_000_000,
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 3] },
        { id: 2, callFrame: frame('outer'), children: [4] },
        { id: 3, callFrame: frame('(idle)', '') },
        { id: 4, callFrame: frame('inner', 'file:///x/dist/chunkstore/cache/disk.js', 9) },
      ],
      samples: [4, 4, 4, 2, 3, 3],
      timeDeltas: [1, 1, 1, 1, 1, 1],
    };
    const sum = summarise([p]);
    expect(sum.samples).toBe(6);
    expect(sum.idle).toBe(2);
    const inner = sum.frames.find((f) => f.frame.startsWith('inner'))!;
    const outer = sum.frames.find((f) => f.frame.startsWith('outer'))!;
    expect(inner).toMatchObject({ self: 3, total: 3, frame: 'inner chunkstore/cache/disk.js:10' });
    expect(outer).toMatchObject({ self: 1, total: 4 });
  });
});
