/**
 * The workloads, run against one mounted target. Every number is "higher is better" (MiB/s, IOPS,
 * files/s), so a ratio above 1 always means artifacts is faster.
 *
 * One suite per target and round:
 *   seq write (cold mount) → seq read cold → seq read warm →
 *   4 KiB randread iodepth 1 / 16 cold (each after a cold remount) → warm (cache filled, remount) →
 *   small files (create, read, stat, delete; kernel caches dropped between phases) →
 *   agent tree (unpack, grep -r, stat walk, second grep, rm -r).
 * Warm variants are skipped for targets without a disk cache (benchmark profile): there cold and
 * warm are the same by construction.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dropCaches, load1, run } from './proc.js';
import { PHASES } from './smallfiles.js';
import { cpuSeconds, diffStats, formatDeltas, readStats, type StatDelta } from './stats.js';
import { remount as remountTarget, type RemountTimes, type Target } from './systems.js';

export interface Sizes {
  /** Size of the sequential file, also the random-read target. */
  seqBytes: number;
  /** fio time_based runtime of each random-read job. */
  randSeconds: number;
  smallFiles: number;
  smallDirs: number;
  smallFileBytes: number;
  rounds: number;
  mdtest: { dirs: number; depth: number; files: number };
}

export const FULL: Sizes = {
  seqBytes: 1 << 30,
  randSeconds: 15,
  smallFiles: 10_000,
  smallDirs: 100,
  smallFileBytes: 4096,
  rounds: 3,
  mdtest: { dirs: 3, depth: 3, files: 100 },
};

/** Sized so that the whole quick run stays under 5 minutes on a loaded 2-core box. */
export const QUICK: Sizes = {
  seqBytes: 128 << 20,
  randSeconds: 2,
  smallFiles: 300,
  smallDirs: 10,
  smallFileBytes: 4096,
  rounds: 1,
  mdtest: { dirs: 3, depth: 2, files: 20 },
};

export interface Sample {
  workload: string;
  metric: string;
  unit: string;
  value: number;
  /** 1-minute load average when the sample was taken. */
  load1: number;
}

export interface AgentTree {
  /** A tar archive of the tree (made once, outside any mount). */
  tarball: string;
  files: number;
  bytes: number;
  /** A word that occurs in the tree (grep must find it). */
  word: string;
}

export interface SuiteContext {
  sizes: Sizes;
  tree: AgentTree;
  log: (msg: string) => void;
  /** Only run workloads whose name matches. */
  only?: RegExp;
  /** Remount timings are collected here (and logged when verbose). */
  remounts?: RemountTimes[];
  /** When set, `.stats` is diffed around every step and the differences are pushed here. */
  stats?: StepStats[];
  verbose?: boolean;
}

const MiB = 1 << 20;
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

function sample(workload: string, metric: string, unit: string, value: number): Sample {
  return { workload, metric, unit, value, load1: load1() };
}

async function nodeScript(script: string, args: string[]): Promise<unknown> {
  const r = await run(process.execPath, [here(script), ...args], { timeoutMs: 60 * 60_000 });
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function seqWrite(file: string, bytes: number): Promise<number> {
  const r = (await nodeScript('./seqio.js', ['write', file, String(bytes)])) as { bytes: number; mibPerSec: number };
  if (r.bytes !== bytes) throw new Error(`seq write wrote ${r.bytes} of ${bytes} bytes`);
  return r.mibPerSec;
}

async function seqRead(file: string, bytes: number): Promise<number> {
  const r = (await nodeScript('./seqio.js', ['read', file])) as { bytes: number; mibPerSec: number };
  if (r.bytes !== bytes) throw new Error(`seq read got ${r.bytes} of ${bytes} bytes`);
  return r.mibPerSec;
}

/** fio 4 KiB random reads with O_DIRECT; returns IOPS. */
async function randRead(file: string, bytes: number, depth: number, seconds: number): Promise<number> {
  const args = [
    '--output-format=json', '--name=rand', `--filename=${file}`, `--size=${bytes}`, '--rw=randread', '--bs=4k', '--direct=1',
    '--time_based', `--runtime=${seconds}`, '--ramp_time=0', '--randrepeat=0', '--invalidate=0',
    ...(depth > 1 ? ['--ioengine=libaio', `--iodepth=${depth}`] : ['--ioengine=psync']),
  ];
  const r = await run('fio', args, { timeoutMs: (seconds + 300) * 1000 });
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number }; error: number }[] };
  const job = j.jobs[0]!;
  if (job.error) throw new Error(`fio randread error ${job.error}`);
  return job.read.iops;
}

/** `.stats` differences of one timed step (see bench/stats.ts). */
export interface StepStats {
  target: string;
  workload: string;
  deltas: StatDelta[];
}

export async function runSuite(t: Target, ctx: SuiteContext): Promise<Sample[]> {
  const { sizes, log } = ctx;
  const out: Sample[] = [];
  const want = (w: string) => !ctx.only || ctx.only.test(w);
  const warm = t.hasDiskCache;
  const dir = path.join(t.mountpoint, 'bench');
  const file = path.join(dir, 'seq.bin');
  const remount = async (mode: 'cold' | 'warm') => {
    const r = await remountTarget(t, mode);
    ctx.remounts?.push(r);
    if (ctx.verbose) log(`  ${t.label.padEnd(22)} remount ${mode}: unmount ${r.unmount.toFixed(1)} s, mount ${r.mount.toFixed(1)} s, drop caches ${r.drop.toFixed(1)} s`);
  };
  /**
   * Time one step: `fn` returns the value. The mount's `.stats` is read around it (outside the
   * timed part) for the daemon's CPU seconds, which become a second sample: CPU per unit of work
   * (`cpu.unit`, from `cpu.work(value)` units), steadier than wall time on a loaded machine.
   */
  const measure = async (w: string, metric: string, unit: string, fn: () => Promise<number>, cpu: { unit: string; scale: number; work: (v: number) => number }) => {
    const before = await readStats(t.mountpoint);
    const value = await fn();
    const s = sample(w, metric, unit, value);
    out.push(s);
    let cpuText = '';
    const after = before && (await readStats(t.mountpoint));
    if (before && after) {
      const used = cpuSeconds(before, after);
      const work = cpu.work(value);
      if (used !== undefined && work > 0) {
        const c = sample(w, 'daemon-cpu', cpu.unit, (used * cpu.scale) / work);
        out.push(c);
        cpuText = `, daemon CPU ${c.value.toFixed(c.value < 100 ? 2 : 0)} ${cpu.unit}`;
      }
      if (ctx.stats) {
        const deltas = diffStats(before, after);
        ctx.stats.push({ target: t.label, workload: w, deltas });
        if (ctx.verbose) for (const line of formatDeltas(deltas, 8)) log(`      ${line}`);
      }
    }
    log(`  ${t.label.padEnd(22)} ${w.padEnd(22)} ${s.value.toFixed(s.value < 100 ? 1 : 0).padStart(8)} ${s.unit}  (load ${s.load1.toFixed(1)}${cpuText})`);
  };
  const GiB = 2 ** 30;
  const perGiB = { unit: 'CPU s/GiB', scale: 1, work: () => sizes.seqBytes / GiB };
  const perIo = { unit: 'CPU µs/IO', scale: 1e6, work: (iops: number) => iops * sizes.randSeconds };
  const perSmallFile = { unit: 'CPU ms/file', scale: 1e3, work: () => sizes.smallFiles };
  const perTreeFile = { unit: 'CPU ms/file', scale: 1e3, work: () => ctx.tree.files };

  const seqWanted = ['seq-write', 'seq-read-cold', 'seq-read-warm', 'randread-qd1-cold', 'randread-qd16-cold', 'randread-qd1-warm', 'randread-qd16-warm'].some(want);
  if (seqWanted) {
    await remount('cold');
    await mkdir(dir, { recursive: true });
    await measure('seq-write', 'throughput', 'MiB/s', () => seqWrite(file, sizes.seqBytes), perGiB);

    if (want('seq-read-cold')) {
      await remount('cold');
      await measure('seq-read-cold', 'throughput', 'MiB/s', () => seqRead(file, sizes.seqBytes), perGiB);
    }
    if (warm && want('seq-read-warm')) {
      // Fill the cache if the cold read did not run, then remount so only our cache counts.
      if (!want('seq-read-cold')) await seqRead(file, sizes.seqBytes);
      await remount('warm');
      await measure('seq-read-warm', 'throughput', 'MiB/s', () => seqRead(file, sizes.seqBytes), perGiB);
    }
    for (const depth of [1, 16]) {
      const w = `randread-qd${depth}-cold`;
      if (!want(w)) continue;
      await remount('cold');
      await measure(w, 'iops', 'IOPS', () => randRead(file, sizes.seqBytes, depth, sizes.randSeconds), perIo);
    }
    if (warm && (want('randread-qd1-warm') || want('randread-qd16-warm'))) {
      await seqRead(file, sizes.seqBytes); // whole file into the disk cache (untimed)
      await remount('warm');
      for (const depth of [1, 16]) {
        const w = `randread-qd${depth}-warm`;
        if (want(w)) await measure(w, 'iops', 'IOPS', () => randRead(file, sizes.seqBytes, depth, sizes.randSeconds), perIo);
      }
    }
    await rm(dir, { recursive: true, force: true });
  }

  const smallWanted = PHASES.some((p) => want(`small-${p}`));
  const agentWanted = ['agent-unpack', 'agent-grep', 'agent-stat-walk', 'agent-grep2', 'agent-rm'].some(want);
  // Small files and the agent tree run on the mount left by the read workloads (both start by
  // creating their files; kernel caches are dropped before their read phases), or a fresh one.
  if ((smallWanted || agentWanted) && !t.isMounted()) await remount('cold');
  if (smallWanted) {
    const root = path.join(t.mountpoint, 'small');
    for (const phase of PHASES) {
      // As `juicefs bench` does: read and stat must reach the filesystem, not the kernel's caches.
      if (phase === 'read' || phase === 'stat') await dropCaches();
      await measure(`small-${phase}`, 'rate', 'files/s', async () => {
        const r = (await nodeScript('./smallfiles.js', [root, String(sizes.smallFiles), String(sizes.smallDirs), String(sizes.smallFileBytes), phase])) as { perSec: number };
        return r.perSec;
      }, perSmallFile);
    }
  }

  if (agentWanted) {
    const tree = path.join(t.mountpoint, 'agent');
    await mkdir(tree);
    const { files, word } = ctx.tree;
    await measure('agent-unpack', 'rate', 'files/s', async () => files / (await run('tar', ['-xf', ctx.tree.tarball, '-C', tree])).seconds, perTreeFile);
    // A later step of an agent (or another process) reads the tree: the kernel's copy must not count.
    await dropCaches();
    const grep = async () => {
      const g = await run('grep', ['-r', '-c', '-F', word, tree], { okCodes: [0, 1] });
      let hits = 0;
      let seen = 0;
      for (const line of g.stdout.split('\n')) {
        if (!line) continue;
        seen++;
        hits += Number(line.slice(line.lastIndexOf(':') + 1));
      }
      if (seen !== files || hits === 0) throw new Error(`grep -r saw ${seen} of ${files} files, ${hits} hits of "${word}"`);
      return files / g.seconds;
    };
    await measure('agent-grep', 'rate', 'files/s', grep, perTreeFile);
    await measure('agent-stat-walk', 'rate', 'files/s', async () => {
      const walk = await run('find', [tree, '-printf', '%s %T@\n']);
      const entries = walk.stdout.split('\n').length - 1;
      if (entries < files) throw new Error(`find saw ${entries} entries, the tree has ${files} files`);
      return files / walk.seconds;
    }, perTreeFile);
    await measure('agent-grep2', 'rate', 'files/s', grep, perTreeFile);
    await measure('agent-rm', 'rate', 'files/s', async () => files / (await run('rm', ['-rf', tree])).seconds, perTreeFile);
  }
  if (t.isMounted()) await t.unmount();
  return out;
}

/** Human label and order of the workloads in tables and charts. */
export const WORKLOADS: [string, string][] = [
  ['seq-write', 'seq write, 1 MiB writes + fsync'],
  ['seq-read-cold', 'seq read, cold'],
  ['seq-read-warm', 'seq read, warm cache'],
  ['randread-qd1-cold', '4 KiB randread qd1, cold'],
  ['randread-qd16-cold', '4 KiB randread qd16, cold'],
  ['randread-qd1-warm', '4 KiB randread qd1, warm'],
  ['randread-qd16-warm', '4 KiB randread qd16, warm'],
  ['small-create', 'small files: create 4 KiB'],
  ['small-read', 'small files: read'],
  ['small-stat', 'small files: stat'],
  ['small-delete', 'small files: delete'],
  ['agent-unpack', 'agent: tar -x tree'],
  ['agent-grep', 'agent: grep -r (cold kernel)'],
  ['agent-stat-walk', 'agent: find stat walk'],
  ['agent-grep2', 'agent: second grep -r'],
  ['agent-rm', 'agent: rm -r tree'],
  ['mdtest-mkdir', 'mdtest (engine): mkdir'],
  ['mdtest-create', 'mdtest (engine): create'],
  ['mdtest-lookup', 'mdtest (engine): lookup'],
  ['mdtest-getattr', 'mdtest (engine): getattr'],
  ['mdtest-readdir+', 'mdtest (engine): readdir+'],
  ['mdtest-unlink', 'mdtest (engine): unlink'],
];
