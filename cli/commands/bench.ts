/**
 * `artifacts bench`: the benchmark harness (bench/run.ts) — artifacts against the real juicefs on
 * servers it starts itself. Needs root (FUSE, drop_caches), fio and juicefs. See docs/BENCHMARKS.md.
 */
import type { Command } from 'commander';
import { outputOf, UsageError } from '../output.js';

interface BenchFlags {
  quick?: boolean;
  rounds?: string;
  json?: string;
  svg?: string;
  markdown?: string;
  only?: string;
  target?: string[];
  cpuProf?: string;
  tree?: string[];
  logDir?: string;
  stats?: string;
  seqSize?: string;
  smallFiles?: string;
  randSeconds?: string;
}

const TARGETS = ['artifacts/interactive', 'juicefs/interactive', 'artifacts/benchmark', 'juicefs/benchmark'];

export function register(program: Command): void {
  program
    .command('bench')
    .description('benchmark artifacts against juicefs 1.4.2 (starts its own Redis and S3; needs root, fio, juicefs)')
    .option('--quick', 'smaller sizes and one round (under 5 minutes)')
    .option('--rounds <n>', 'rounds per target (default: 3, quick: 1)')
    .option('--json <file>', 'write result rows {system, profile, workload, metric, value, unit, ratio_vs_juicefs}')
    .option('--svg <file>', 'write the chart (SVG)')
    .option('--markdown <file>', 'write the table as markdown')
    .option('--only <regex>', 'only workloads whose name matches (e.g. "small-|agent-", "mdtest")')
    .option('--target <label...>', `only these targets (${TARGETS.join(', ')})`)
    .option('--cpu-prof <dir>', 'run the artifacts mount daemons under node --cpu-prof, profiles in <dir>/<target>/')
    .option('--seq-size <MiB>', 'size of the sequential file (default 1024, quick 128)')
    .option('--rand-seconds <s>', 'runtime of each random-read job (default 15, quick 2)')
    .option('--small-files <n>', 'number of small files (default 10000, quick 300)')
    .option('--tree <dir...>', 'directories under node_modules (or absolute) to pack as the agent tree')
    .option('--log-dir <dir>', 'keep the mount daemons\' logs here')
    .option('--stats <file>', 'diff each mount\'s .stats around every step (op latencies, object requests); write them here (JSON); -v also logs them')
    .action(async (flags: BenchFlags, cmd: Command) => {
      const out = outputOf(cmd);
      const rounds = flags.rounds === undefined ? undefined : Number(flags.rounds);
      if (rounds !== undefined && !(Number.isInteger(rounds) && rounds > 0)) throw new UsageError('--rounds must be a positive integer');
      for (const t of flags.target ?? []) if (!TARGETS.includes(t)) throw new UsageError(`unknown --target ${t} (one of ${TARGETS.join(', ')})`);
      if (flags.only) {
        try {
          new RegExp(flags.only);
        } catch (e) {
          throw new UsageError(`--only: ${(e as Error).message}`);
        }
      }
      const positive = (flag: string, v: string | undefined): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!(Number.isInteger(n) && n > 0)) throw new UsageError(`--${flag} must be a positive integer`);
        return n;
      };
      const sizes: Record<string, number> = {};
      const seq = positive('seq-size', flags.seqSize);
      if (seq) sizes.seqBytes = seq * 2 ** 20;
      const rs = positive('rand-seconds', flags.randSeconds);
      if (rs) sizes.randSeconds = rs;
      const sf = positive('small-files', flags.smallFiles);
      if (sf) sizes.smallFiles = sf;
      // Loaded on use: the harness pulls in the test helpers and the metadata engine.
      const { runBench } = await import('../../bench/run.js');
      const report = await runBench({
        quick: flags.quick,
        rounds,
        sizes,
        json: flags.json,
        svg: flags.svg,
        markdown: flags.markdown,
        only: flags.only,
        targets: flags.target,
        cpuProf: flags.cpuProf,
        tree: flags.tree,
        logDir: flags.logDir,
        stats: flags.stats,
        verbose: out.level === 'verbose' || out.level === 'trace',
        log: (m) => out.info(m),
      });
      if (out.json) out.result(report.rows);
      else out.print([...report.header, ...report.table].join('\n'));
    });
}
