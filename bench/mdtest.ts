/**
 * Metadata benchmark on the engine, shaped like `juicefs mdtest` (a tree of `dirs` sub-directories
 * per level, `depth` levels, `files` files per directory) so the two can run on the same Redis and
 * be compared: `juicefs mdtest` reports create rates; we also time lookup, getattr and unlink.
 *
 *   node dist/bench/mdtest.js <meta-url> [--dirs 3] [--depth 3] [--files 100] [--juicefs]
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { formatMeta, newFormat } from '../metadata/format.js';
import { openMeta } from '../metadata/index.js';
import type { RedisMeta } from '../metadata/redis/engine.js';
import { type Ino, ROOT_CTX, ROOT_INODE } from '../metadata/types.js';

export interface MdtestResult {
  op: string;
  count: number;
  seconds: number;
  opsPerSec: number;
  meanUs: number;
}

interface Shape {
  dirs: number;
  depth: number;
  files: number;
}

async function timed(op: string, items: (() => Promise<unknown>)[], concurrency = 1): Promise<MdtestResult> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await items[next++]();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { op, count: items.length, seconds, opsPerSec: items.length / seconds, meanUs: (seconds * 1e6 * concurrency) / items.length };
}

/** Run the create/lookup/getattr/unlink/rmdir phases on `meta` under a fresh top directory. */
export async function mdtest(meta: RedisMeta, shape: Shape, top: string): Promise<MdtestResult[]> {
  const root = await meta.mkdir(ROOT_CTX, ROOT_INODE, top, 0o755);
  const dirs: Ino[] = [root.ino];
  const out: MdtestResult[] = [];
  // Directories level by level (the first level under `top`).
  let level: Ino[] = [root.ino];
  const mk: (() => Promise<unknown>)[] = [];
  const made: Ino[] = [];
  for (let d = 0; d < shape.depth; d++) {
    const nextLevel: Ino[] = [];
    for (const parent of level) {
      for (let i = 0; i < shape.dirs; i++) {
        const name = `dir.${d}.${i}`;
        mk.push(async () => {
          const r = await meta.mkdir(ROOT_CTX, parent, name, 0o755);
          made.push(r.ino);
          nextLevel.push(r.ino);
        });
      }
    }
    out.push(await timed(`mkdir (level ${d})`, mk.splice(0)));
    level = nextLevel;
    dirs.push(...nextLevel);
  }
  const files: [Ino, string][] = [];
  for (const dir of dirs) for (let i = 0; i < shape.files; i++) files.push([dir, `file.${i}`]);
  const inodes: Ino[] = new Array(files.length);
  out.push(await timed('create', files.map(([p, n], i) => async () => (inodes[i] = (await meta.create(ROOT_CTX, p, n, 0o644, true)).ino))));
  out.push(await timed('lookup', files.map(([p, n]) => () => meta.lookup(ROOT_CTX, p, n))));
  out.push(await timed('getattr', inodes.map((i) => () => meta.getAttr(i))));
  out.push(await timed('readdir+', dirs.map((d) => () => meta.readdir(ROOT_CTX, d, true))));
  out.push(await timed('unlink', files.map(([p, n]) => () => meta.unlink(ROOT_CTX, p, n))));
  // Merge the per-level mkdir rows into one.
  const mkRows = out.filter((r) => r.op.startsWith('mkdir'));
  const mkdir = mkRows.reduce((a, r) => ({ ...a, count: a.count + r.count, seconds: a.seconds + r.seconds }), { op: 'mkdir', count: 0, seconds: 0, opsPerSec: 0, meanUs: 0 });
  mkdir.opsPerSec = mkdir.count / mkdir.seconds;
  mkdir.meanUs = (mkdir.seconds * 1e6) / mkdir.count;
  return [mkdir, ...out.filter((r) => !r.op.startsWith('mkdir'))];
}

/** `juicefs mdtest` on the same Redis: returns its dirs/s and files/s. */
export function juicefsMdtest(juicefs: string, url: string, shape: Shape, path: string): { mkdir: number; create: number } {
  const r = spawnSync(juicefs, ['mdtest', '--threads', '1', '--dirs', String(shape.dirs), '--depth', String(shape.depth), '--files', String(shape.files), '--no-bgjob', url, path], {
    encoding: 'utf8',
    env: { ...process.env, JFS_NO_USAGE_REPORT: '1' },
    timeout: 600_000,
  });
  const text = `${r.stdout}\n${r.stderr}`;
  const dirs = /Created \d+ dirs in .*?\(([\d.]+) dirs\/s\)/.exec(text);
  const files = /Created \d+ files in .*?\(([\d.]+) files\/s\)/.exec(text);
  if (!dirs || !files) throw new Error(`could not parse juicefs mdtest output:\n${text.slice(-2000)}`);
  return { mkdir: Number(dirs[1]), create: Number(files[1]) };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const url = args.find((a) => !a.startsWith('--'));
  if (!url) {
    console.error('usage: mdtest <redis-url-with-db> [--dirs N] [--depth N] [--files N] [--juicefs PATH] [--format]');
    process.exit(2);
  }
  const opt = (name: string, dflt: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const shape = { dirs: opt('dirs', 3), depth: opt('depth', 3), files: opt('files', 100) };
  if (args.includes('--format')) {
    const r = new Redis(url);
    if ((await r.exists('setting')) === 0) await formatMeta(r, '', newFormat({ name: 'mdtest', storage: 'file', bucket: '/tmp/artifacts-mdtest', trashDays: 0 }).format);
    r.disconnect();
  }
  const jIdx = args.indexOf('--juicefs');
  const rows: string[] = [];
  // Alternate systems to cancel drift: juicefs, artifacts, juicefs, artifacts.
  const ours: MdtestResult[][] = [];
  const theirs: { mkdir: number; create: number }[] = [];
  for (let round = 0; round < 2; round++) {
    if (jIdx >= 0) theirs.push(juicefsMdtest(args[jIdx + 1], url, shape, `/jfs-mdtest-${Date.now()}`));
    const meta = await openMeta(url, { backgroundJobs: false });
    await meta.newSession();
    ours.push(await mdtest(meta, shape, `artifacts-mdtest-${Date.now()}`));
    await meta.shutdown();
  }
  const best = (op: string) => Math.max(...ours.map((r) => r.find((x) => x.op === op)!.opsPerSec));
  const mean = (op: string) => Math.min(...ours.map((r) => r.find((x) => x.op === op)!.meanUs));
  rows.push(`shape: dirs=${shape.dirs} depth=${shape.depth} files=${shape.files}, best of ${ours.length} rounds`);
  rows.push(['op', 'artifacts ops/s', 'mean µs', 'juicefs mdtest ops/s', 'ratio'].join('\t'));
  for (const op of ['mkdir', 'create', 'lookup', 'getattr', 'readdir+', 'unlink']) {
    const j = theirs.length ? Math.max(...theirs.map((t) => (op === 'mkdir' ? t.mkdir : op === 'create' ? t.create : NaN))) : NaN;
    rows.push([op, best(op).toFixed(0), mean(op).toFixed(0), Number.isNaN(j) ? '-' : j.toFixed(0), Number.isNaN(j) ? '-' : (best(op) / j).toFixed(2) + 'x'].join('\t'));
  }
  console.log(rows.join('\n'));
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\/bench\//, 'bench/').replace(/\.ts$/, '.js'))) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
