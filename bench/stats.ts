/**
 * Where a workload's wall time goes, from the mount's own `.stats` file (Prometheus text; artifacts
 * uses juicefs's metric names, so one parser reads both systems): the harness reads it before and
 * after a step and keeps the difference, as `juicefs bench` does. For each histogram and label
 * (FUSE op, Meta op, object request method, cache read/write) we get count and summed seconds.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export interface StatPoint {
  count: number;
  sum: number;
}

/** `name{labels}` → count/sum (histograms) or value in `sum` (counters and gauges). */
export type StatsSnapshot = Map<string, StatPoint>;

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/;

export function parseStats(text: string): StatsSnapshot {
  const out: StatsSnapshot = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, name, labels = '', v] = m;
    const value = Number(v);
    if (!Number.isFinite(value)) continue;
    if (name!.endsWith('_bucket')) continue;
    if (name!.endsWith('_count') || name!.endsWith('_sum')) {
      const base = name!.replace(/_(count|sum)$/, '') + labels;
      const p = out.get(base) ?? { count: 0, sum: 0 };
      if (name!.endsWith('_count')) p.count = value;
      else p.sum = value;
      out.set(base, p);
    } else {
      out.set(name! + labels, { count: 0, sum: value });
    }
  }
  return out;
}

export async function readStats(mountpoint: string): Promise<StatsSnapshot | undefined> {
  try {
    return parseStats(await readFile(path.join(mountpoint, '.stats'), 'utf8'));
  } catch {
    return undefined;
  }
}

export interface StatDelta {
  key: string;
  count: number;
  seconds: number;
}

/** Gauges and build info: their difference explains nothing. */
const BORING = /^juicefs_(uptime|memory|used_|go_|process_|build|heap)|^(go|process)_/;

/** after − before of every metric that moved: op latencies, object requests, cache, CPU... */
export function diffStats(before: StatsSnapshot, after: StatsSnapshot): StatDelta[] {
  const out: StatDelta[] = [];
  for (const [key, a] of after) {
    if (BORING.test(key)) continue;
    const b = before.get(key) ?? { count: 0, sum: 0 };
    const count = a.count - b.count;
    const seconds = a.sum - b.sum;
    if (count === 0 && Math.abs(seconds) < 1e-9) continue;
    out.push({ key: key.replace(/^juicefs_/, '').replace(/_durations_histogram_seconds|_hist_seconds/, ''), count, seconds });
  }
  // Latency histograms (count > 0) first, by time spent; then the counters.
  return out.sort((x, y) => Number(y.count > 0) - Number(x.count > 0) || y.seconds - x.seconds);
}

/** Seconds of CPU the mount process used between two snapshots (both systems export it). */
export function cpuSeconds(before: StatsSnapshot, after: StatsSnapshot): number | undefined {
  const a = after.get('juicefs_cpu_usage');
  const b = before.get('juicefs_cpu_usage');
  return a && b ? a.sum - b.sum : undefined;
}

/** One compact line per delta: `fuse_ops{method="create"} 300 × 12.3 ms = 3.7 s`. */
export function formatDeltas(d: StatDelta[], limit = 12): string[] {
  return d.slice(0, limit).map((x) => {
    // Size histograms (`..._bytes`) sum bytes, not seconds.
    if (x.count > 0 && /_bytes\b/.test(x.key)) return `${x.key} ${x.count} × ${Math.round(x.seconds / x.count)} B`;
    if (x.count > 0) return `${x.key} ${x.count} × ${((1000 * x.seconds) / x.count).toFixed(2)} ms = ${x.seconds.toFixed(2)} s`;
    return `${x.key} +${Number.isInteger(x.seconds) ? x.seconds : x.seconds.toFixed(2)}`;
  });
}
