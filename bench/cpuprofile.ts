/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`, e.g. `artifacts bench --cpu-prof DIR`):
 * where the mount daemon's CPU time goes, by function (self and inclusive samples) and by source
 * file, as a share of all samples and of the busy (non-idle) ones.
 *
 *   node dist/bench/cpuprofile.js <file.cpuprofile|dir> [--top 30] [--filter substring]
 *
 * A directory means every .cpuprofile in it (merged), e.g. all mounts of one target.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FrameStat {
  frame: string;
  file: string;
  self: number;
  total: number;
}

export interface ProfileSummary {
  samples: number;
  idle: number;
  seconds: number;
  frames: FrameStat[];
  files: { file: string; self: number }[];
}

const IDLE = new Set(['(idle)']);

function shortUrl(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + 1);
  const d = u.indexOf('/dist/');
  if (d >= 0) return u.slice(d + 6);
  return u.startsWith('node:') ? u : path.basename(u);
}

function frameKey(cf: CallFrame): { frame: string; file: string } {
  const file = shortUrl(cf.url);
  const name = cf.functionName || '(anonymous)';
  return { frame: file ? `${name} ${file}:${cf.lineNumber + 1}` : name, file: file || name };
}

export function summarise(profiles: CpuProfile[]): ProfileSummary {
  const stats = new Map<string, FrameStat>();
  const files = new Map<string, number>();
  let samples = 0;
  let idle = 0;
  let seconds = 0;
  for (const p of profiles) {
    seconds += (p.endTime - p.startTime) / 1e6;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const counts = new Map<number, number>();
    for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const [id, n] of counts) {
      const node = byId.get(id)!;
      samples += n;
      if (IDLE.has(node.callFrame.functionName)) {
        idle += n;
        continue;
      }
      const k = frameKey(node.callFrame);
      const st = stats.get(k.frame) ?? { ...k, self: 0, total: 0 };
      st.self += n;
      stats.set(k.frame, st);
      files.set(k.file, (files.get(k.file) ?? 0) + n);
      // Inclusive: each distinct frame on the stack once (recursion must not double count).
      const seen = new Set<string>();
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const f = frameKey(byId.get(cur)!.callFrame);
        if (seen.has(f.frame)) continue;
        seen.add(f.frame);
        const t = stats.get(f.frame) ?? { ...f, self: 0, total: 0 };
        t.total += n;
        stats.set(f.frame, t);
      }
    }
  }
  return {
    samples,
    idle,
    seconds,
    frames: [...stats.values()],
    files: [...files].map(([file, self]) => ({ file, self })).sort((a, b) => b.self - a.self),
  };
}

export function loadProfiles(target: string): CpuProfile[] {
  const paths = statSync(target).isDirectory()
    ? readdirSync(target)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(target, f))
    : [target];
  return paths.map((p) => JSON.parse(readFileSync(p, 'utf8')) as CpuProfile);
}

export function report(s: ProfileSummary, top = 30, filter?: string): string[] {
  const busy = s.samples - s.idle;
  const pct = (n: number, of: number) => `${((100 * n) / Math.max(1, of)).toFixed(1)}%`.padStart(6);
  const out = [`${s.samples} samples over ${s.seconds.toFixed(1)} s of profile; idle ${pct(s.idle, s.samples)}; busy ${busy} samples (percentages below are of busy samples)`];
  const keep = (f: FrameStat) => !filter || f.frame.includes(filter);
  out.push('', 'self time by function:');
  for (const f of s.frames.filter(keep).sort((a, b) => b.self - a.self).slice(0, top)) out.push(`${pct(f.self, busy)}  ${f.frame}`);
  out.push('', 'inclusive time by function (artifacts code only):');
  for (const f of s.frames
    .filter((f) => keep(f) && /^(fs|chunkstore|metadata|cli)\//.test(f.file))
    .sort((a, b) => b.total - a.total)
    .slice(0, top))
    out.push(`${pct(f.total, busy)}  ${f.frame}`);
  out.push('', 'self time by file:');
  for (const f of s.files.slice(0, Math.min(top, 20))) out.push(`${pct(f.self, busy)}  ${f.file}`);
  return out;
}

if (process.argv[1] && /cpuprofile\.(js|ts)$/.test(process.argv[1])) {
  const args = process.argv.slice(2);
  const target = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
  if (!target) {
    console.error('usage: cpuprofile <file.cpuprofile|dir> [--top N] [--filter S]');
    process.exit(2);
  }
  const opt = (n: string) => {
    const i = args.indexOf(`--${n}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  console.log(report(summarise(loadProfiles(target)), Number(opt('top') ?? 30), opt('filter')).join('\n'));
}
