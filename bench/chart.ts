/**
 * The benchmark chart: one SVG, no dependencies. For each workload, one bar per profile showing
 * artifacts' rate divided by juicefs's under the same profile, on a log scale centred on 1×
 * (bars grow right when artifacts is faster, left when slower), labelled with both absolute values.
 */
import type { Row } from './results.js';
import { WORKLOADS } from './workloads.js';

const COLORS: Record<string, string> = { interactive: '#2b6cb0', benchmark: '#dd6b20', engine: '#2f855a' };
const PROFILE_LABEL: Record<string, string> = {
  interactive: 'interactive profile vs default juicefs mount',
  benchmark: 'benchmark profile vs juicefs --cache-size 0, TTLs 0',
  engine: 'metadata engine (mdtest) vs juicefs mdtest',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

export function renderChart(rows: Row[], subtitle: string): string {
  const label = new Map(WORKLOADS);
  const profiles = ['interactive', 'benchmark', 'engine'].filter((p) => rows.some((r) => r.profile === p && r.system === 'artifacts' && r.ratio_vs_juicefs !== null));
  const workloads = WORKLOADS.map(([w]) => w).filter((w) => rows.some((r) => r.workload === w && r.system === 'artifacts' && r.ratio_vs_juicefs !== null));
  const ratios = rows.filter((r) => r.system === 'artifacts' && r.ratio_vs_juicefs !== null).map((r) => r.ratio_vs_juicefs!);
  // Log2 domain in whole powers of two, at least 1/8× .. 8×.
  const lo = Math.min(-3, Math.floor(Math.log2(Math.max(1 / 256, Math.min(...ratios, 1)))));
  const hi = Math.max(3, Math.ceil(Math.log2(Math.min(256, Math.max(...ratios, 1)))));

  const W = 1100;
  const left = 250;
  const plotW = 520;
  const barH = 15;
  const gap = 10;
  const top = 92;
  const x = (ratio: number) => left + ((Math.log2(Math.min(2 ** hi, Math.max(2 ** lo, ratio))) - lo) / (hi - lo)) * plotW;
  const groupH = (w: string) => profiles.filter((p) => rows.some((r) => r.workload === w && r.profile === p && r.system === 'artifacts' && r.ratio_vs_juicefs !== null)).length * barH + gap;
  const plotH = workloads.reduce((a, w) => a + groupH(w), 0);
  const H = top + plotH + 40;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="24" font-size="17" font-weight="bold">artifacts vs juicefs 1.4.2 — speed ratio per workload (log scale; right of 1× = artifacts faster)</text>`);
  out.push(`<text x="16" y="44" fill="#444">${esc(subtitle)}</text>`);
  // Legend.
  let lx = 16;
  for (const p of profiles) {
    out.push(`<rect x="${lx}" y="56" width="12" height="12" fill="${COLORS[p]}"/>`);
    const t = PROFILE_LABEL[p] ?? p;
    out.push(`<text x="${lx + 17}" y="66">${esc(t)}</text>`);
    lx += 30 + t.length * 6.6;
  }
  // Grid.
  for (let e = lo; e <= hi; e++) {
    const gx = x(2 ** e);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + plotH}" stroke="${e === 0 ? '#222' : '#ddd'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`);
    const t = e >= 0 ? `${2 ** e}×` : `1/${2 ** -e}×`;
    out.push(`<text x="${gx}" y="${top + plotH + 16}" text-anchor="middle" fill="#444">${t}</text>`);
  }
  out.push(`<text x="${left + plotW / 2}" y="${top + plotH + 32}" text-anchor="middle" fill="#444">artifacts ÷ juicefs (same workload, same profile; median of rounds)</text>`);
  // Bars.
  let y = top;
  workloads.forEach((w, i) => {
    const h = groupH(w);
    if (i % 2 === 0) out.push(`<rect x="8" y="${y - gap / 2}" width="${W - 16}" height="${h}" fill="#f6f6f6"/>`);
    out.push(`<text x="${left - 10}" y="${y + (h - gap) / 2 + 4}" text-anchor="end">${esc(label.get(w) ?? w)}</text>`);
    for (const p of profiles) {
      const a = rows.find((r) => r.workload === w && r.profile === p && r.system === 'artifacts');
      const j = rows.find((r) => r.workload === w && r.profile === p && r.system === 'juicefs');
      if (!a || a.ratio_vs_juicefs === null || !j) continue;
      const x1 = x(1);
      const x2 = x(a.ratio_vs_juicefs);
      out.push(`<rect x="${Math.min(x1, x2)}" y="${y + 1}" width="${Math.max(1, Math.abs(x2 - x1))}" height="${barH - 2}" fill="${COLORS[p]}"><title>${esc(`${p}: artifacts ${num(a.value)} vs juicefs ${num(j.value)} ${a.unit}`)}</title></rect>`);
      out.push(`<text x="${left + plotW + 10}" y="${y + barH - 3}" fill="${COLORS[p]}">${esc(`${a.ratio_vs_juicefs.toFixed(2)}×  (${num(a.value)} vs ${num(j.value)} ${a.unit})`)}</text>`);
      y += barH;
    }
    y += gap;
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
