/**
 * From samples (one per target, workload and round) to rows (the median over rounds, with the
 * ratio to juicefs under the same profile), and rows to tables.
 */
import type { Sample } from './workloads.js';
import { WORKLOADS } from './workloads.js';

/** `profile` is a cache profile, or `engine` for the metadata benchmark (no FUSE, no cache). */
export interface Row {
  system: 'artifacts' | 'juicefs';
  profile: string;
  workload: string;
  metric: string;
  value: number;
  unit: string;
  /**
   * value / juicefs's value for the same profile, workload and metric; 1 for juicefs rows; null
   * if juicefs has no such number. Above 1 is better for rates (MiB/s, IOPS, files/s, ops/s) and
   * worse for the `daemon-cpu` metric (CPU per unit of work).
   */
  ratio_vs_juicefs: number | null;
  /** Every round's value, in run order (the value is their median). */
  samples: number[];
  /** Median 1-minute load average while the samples were taken (the machine is shared). */
  load1: number;
}

export interface TaggedSample extends Sample {
  system: Row['system'];
  profile: string;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const order = new Map(WORKLOADS.map(([w], i) => [w, i]));

export function toRows(samples: TaggedSample[]): Row[] {
  const groups = new Map<string, TaggedSample[]>();
  for (const s of samples) {
    const k = `${s.system}\0${s.profile}\0${s.workload}\0${s.metric}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(s);
  }
  const rows: Row[] = [];
  for (const g of groups.values()) {
    const s = g[0]!;
    rows.push({
      system: s.system,
      profile: s.profile,
      workload: s.workload,
      metric: s.metric,
      value: median(g.map((x) => x.value)),
      unit: s.unit,
      ratio_vs_juicefs: null,
      samples: g.map((x) => x.value),
      load1: median(g.map((x) => x.load1)),
    });
  }
  for (const r of rows) {
    if (r.system === 'juicefs') {
      r.ratio_vs_juicefs = 1;
      continue;
    }
    const j = rows.find((x) => x.system === 'juicefs' && x.profile === r.profile && x.workload === r.workload && x.metric === r.metric);
    r.ratio_vs_juicefs = j && j.value > 0 ? r.value / j.value : null;
  }
  const profileRank = (p: string) => (p === 'interactive' ? 0 : p === 'benchmark' ? 1 : 2);
  rows.sort((a, b) => Number(a.metric === 'daemon-cpu') - Number(b.metric === 'daemon-cpu') || (order.get(a.workload) ?? 99) - (order.get(b.workload) ?? 99) || profileRank(a.profile) - profileRank(b.profile) || a.system.localeCompare(b.system));
  return rows;
}

function fmtValue(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

function fmtRatio(r: number | null | undefined): string {
  return r === null || r === undefined || !Number.isFinite(r) ? '–' : `${r.toFixed(2)}×`;
}

/** One line per workload: both profiles side by side, with ratios. */
export function tableLines(rows: Row[], markdown: boolean): string[] {
  const profiles = [...new Set(rows.map((r) => r.profile))].sort((a, b) => (a === 'interactive' ? -1 : b === 'interactive' ? 1 : a === 'benchmark' ? -1 : 1));
  const workloads = [...new Set(rows.map((r) => r.workload))];
  const label = new Map(WORKLOADS);
  const head = ['workload', 'unit'];
  for (const p of profiles) head.push(`artifacts ${p}`, `juicefs ${p}`, 'ratio');
  const body: string[][] = [];
  for (const w of workloads) {
    const any = rows.find((r) => r.workload === w)!;
    const line = [label.get(w) ?? w, any.unit];
    for (const p of profiles) {
      const a = rows.find((r) => r.workload === w && r.profile === p && r.system === 'artifacts');
      const j = rows.find((r) => r.workload === w && r.profile === p && r.system === 'juicefs');
      line.push(fmtValue(a?.value), fmtValue(j?.value), a ? fmtRatio(a.ratio_vs_juicefs) : '–');
    }
    // Rows that exist in one profile only (mdtest → engine) leave the others blank.
    if (line.slice(2).some((c) => c !== '–')) body.push(line);
  }
  if (markdown) {
    const esc = (c: string) => c.replace(/\|/g, '\\|');
    return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...body.map((l) => `| ${l.map(esc).join(' | ')} |`)];
  }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)];
}

/** The JSON rows of `--json`: the contract's seven fields plus samples and load. */
export function jsonRows(rows: Row[]): object[] {
  return rows.map((r) => ({
    system: r.system,
    profile: r.profile,
    workload: r.workload,
    metric: r.metric,
    value: Number(r.value.toPrecision(6)),
    unit: r.unit,
    ratio_vs_juicefs: r.ratio_vs_juicefs === null ? null : Number(r.ratio_vs_juicefs.toFixed(4)),
    samples: r.samples.map((v) => Number(v.toPrecision(6))),
    load1: Number(r.load1.toFixed(2)),
  }));
}
