/**
 * `artifacts bench`: artifacts (interactive and benchmark profiles) against the real juicefs 1.4.2
 * with equivalent settings, on one Redis and one S3 server that the harness starts on loopback.
 *
 * Method (docs/BENCHMARKS.md): one volume per target on the same Redis (one db each) and the same
 * SeaweedFS bucket; every round runs the whole suite on every target, the order of targets
 * reversed on odd rounds so that machine drift (the box is shared) hits both systems alike; each
 * number is the median over rounds; the 1-minute load is recorded with every sample. The metadata
 * benchmark (bench/mdtest.ts against `juicefs mdtest`) runs on the same Redis, alternating too.
 *
 * Everything started here is stopped on the way out, also on failure and Ctrl-C: children first,
 * then mounts, then servers (the cleanup registry of test/helpers/servers.ts runs last-first).
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openMeta } from '../metadata/index.js';
import { juicefsBin, logTail, startRedis, startS3, tmpDir, type RedisHandle, type S3Handle } from '../test/helpers/servers.js';
import { renderChart } from './chart.js';
import { juicefsMdtest, mdtest } from './mdtest.js';
import { load1, run, uptimeLine } from './proc.js';
import { jsonRows, median, tableLines, toRows, type Row, type TaggedSample } from './results.js';
import { artifactsTarget, cliMain, juicefsTarget, PROFILES, type ProfileName, type RemountTimes, type SystemName, type Target } from './systems.js';
import { FULL, QUICK, runSuite, type AgentTree, type Sizes, type StepStats } from './workloads.js';

export interface BenchOptions {
  quick?: boolean;
  rounds?: number;
  /** Override individual sizes of the quick or full set. */
  sizes?: Partial<Sizes>;
  /** Write the JSON rows here. */
  json?: string;
  /** Write the SVG chart here. */
  svg?: string;
  /** Write a markdown report (header + table) here. */
  markdown?: string;
  /** Only workloads matching this regular expression (mdtest rows: `mdtest`). */
  only?: string;
  /** Only these targets, e.g. ['artifacts/interactive', 'juicefs/interactive']. */
  targets?: string[];
  /** Profile the artifacts mount daemons: node --cpu-prof into <dir>/<target>/. */
  cpuProf?: string;
  /** Directories (relative to node_modules, or absolute) packed into the agent-tree tarball. */
  tree?: string[];
  /** Keep the daemon logs here (default: the scratch dir, removed at exit). */
  logDir?: string;
  /** Diff each mount's `.stats` around every step; write the differences (JSON) here. */
  stats?: string;
  /** Log remount timings (and `.stats` differences) too. */
  verbose?: boolean;
  log?: (msg: string) => void;
}

export interface BenchReport {
  rows: Row[];
  header: string[];
  table: string[];
  markdown: string;
}

const packageRoot = () => fileURLToPath(new URL('../../', import.meta.url));

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('artifacts bench needs root: FUSE mounts via /dev/fuse and dropping kernel caches');
  accessSync('/proc/sys/vm/drop_caches', constants.W_OK);
  for (const bin of ['fio', 'tar', 'grep', 'find', 'rm', 'sync']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`artifacts bench needs \`${bin}\` on PATH${bin === 'fio' ? ' (apt-get install fio)' : ''}`);
    }
  }
  juicefsBin(); // throws with an install hint
}

async function makeTree(scratch: string, dirs: string[]): Promise<AgentTree> {
  const nm = path.join(packageRoot(), 'node_modules');
  const tarball = path.join(scratch, 'tree.tar');
  const rel = dirs.map((d) => (path.isAbsolute(d) ? path.relative(nm, d) : d));
  await run('tar', ['-C', nm, '-cf', tarball, ...rel]);
  const list = await run('tar', ['-tvf', tarball]);
  let files = 0;
  let bytes = 0;
  for (const line of list.stdout.split('\n')) {
    if (!line.startsWith('-')) continue;
    files++;
    bytes += Number(line.split(/\s+/)[2]);
  }
  if (files < 100) throw new Error(`the agent tree (${rel.join(', ')} under ${nm}) has only ${files} files`);
  return { tarball, files, bytes, word: 'deprecated' };
}

function gitCommit(): string {
  try {
    // A snapshot build (bench/snapshot.sh) has no .git but records its commit.
    return readFileSync(path.join(packageRoot(), '.commit'), 'utf8').trim();
  } catch {
    // a checkout: ask git
  }
  try {
    return execFileSync('git', ['-C', packageRoot(), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function juicefsVersion(): string {
  try {
    return execFileSync(juicefsBin(), ['version'], { encoding: 'utf8' }).trim().replace(/^juicefs version /, '');
  } catch {
    return 'unknown';
  }
}

async function formatVolumes(redis: RedisHandle, s3: S3Handle, specs: { system: SystemName; profile: ProfileName; db: number; name?: string }[]): Promise<void> {
  const env = { ...process.env, ACCESS_KEY: s3.accessKey, SECRET_KEY: s3.secretKey, JFS_NO_USAGE_REPORT: '1' };
  const bucket = s3.bucketUrl('bench');
  for (const s of specs) {
    const url = `${redis.url}/${s.db}`;
    const name = s.name ?? `bench-${s.system}-${s.profile}`;
    if (s.system === 'artifacts') await run(process.execPath, [cliMain(), 'format', url, name, '--storage', 's3', '--bucket', bucket, '--trash-days', '0'], { env });
    else await run(juicefsBin(), ['--no-agent', 'format', '--storage', 's3', '--bucket', bucket, '--trash-days', '0', url, name], { env });
  }
}

async function runMdtest(redis: RedisHandle, db: number, sizes: Sizes, rounds: number, log: (m: string) => void): Promise<TaggedSample[]> {
  const url = `${redis.url}/${db}`;
  const out: TaggedSample[] = [];
  const jfs = juicefsBin();
  const shape = sizes.mdtest;
  for (let round = 0; round < rounds; round++) {
    const ours = async () => {
      const meta = await openMeta(url, { backgroundJobs: false });
      try {
        await meta.newSession();
        for (const r of await mdtest(meta, shape, `artifacts-mdtest-${round}-${Date.now()}`)) {
          out.push({ system: 'artifacts', profile: 'engine', workload: `mdtest-${r.op}`, metric: 'rate', unit: 'ops/s', value: r.opsPerSec, load1: load1() });
        }
      } finally {
        await meta.shutdown();
      }
    };
    const theirs = async () => {
      const j = juicefsMdtest(jfs, url, shape, `/jfs-mdtest-${round}-${Date.now()}`);
      const l = load1();
      out.push({ system: 'juicefs', profile: 'engine', workload: 'mdtest-mkdir', metric: 'rate', unit: 'ops/s', value: j.mkdir, load1: l });
      out.push({ system: 'juicefs', profile: 'engine', workload: 'mdtest-create', metric: 'rate', unit: 'ops/s', value: j.create, load1: l });
    };
    // Alternate which system goes first.
    for (const f of round % 2 === 0 ? [theirs, ours] : [ours, theirs]) await f();
    const last = out.slice(-8).filter((s) => s.workload === 'mdtest-create');
    log(`  mdtest round ${round + 1}: create ${last.map((s) => `${s.system} ${s.value.toFixed(0)}/s`).join(', ')} (load ${load1().toFixed(1)})`);
  }
  return out;
}

export async function runBench(o: BenchOptions = {}): Promise<BenchReport> {
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  preflight();
  // Say why a run ended early. Registered before the cleanup registry's own handlers (which run
  // the cleanups and exit), so this line comes first; if no other handler exists yet, exit here.
  for (const [sig, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    process.once(sig, () => {
      log(`received ${sig} at ${new Date().toISOString()}: stopping children, mounts and servers`);
      if (process.listenerCount(sig) === 0) process.exit(code);
    });
  }
  const sizes: Sizes = { ...(o.quick ? QUICK : FULL), ...o.sizes };
  if (o.rounds) sizes.rounds = o.rounds;
  const only = o.only ? new RegExp(o.only) : undefined;
  const started = new Date();
  const uptimeStart = await uptimeLine();
  log(`artifacts bench (${o.quick ? 'quick' : 'full'}): ${sizes.rounds} round(s); ${uptimeStart}`);

  const scratch = await tmpDir('bench');
  const logDir = o.logDir ? path.resolve(o.logDir) : path.join(scratch, 'logs');
  await mkdir(logDir, { recursive: true });
  let redis: RedisHandle | undefined;
  let s3: S3Handle | undefined;
  const targets: Target[] = [];
  try {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    await s3.createBucket('bench');
    log(`servers: redis ${redis.url}, S3 ${s3.endpoint}`);

    const all: { system: SystemName; profile: ProfileName; db: number }[] = [];
    let db = 1;
    for (const profile of PROFILES) for (const system of ['artifacts', 'juicefs'] as SystemName[]) all.push({ system, profile, db: db++ });
    const chosen = all.filter((s) => !o.targets?.length || o.targets.includes(`${s.system}/${s.profile}`));
    const mdtestDb = db;
    const wantMdtest = !only || only.test('mdtest');
    await formatVolumes(redis, s3, [...chosen, ...(wantMdtest ? [{ system: 'artifacts' as SystemName, profile: 'interactive' as ProfileName, db: mdtestDb, name: 'bench-mdtest' }] : [])]);

    for (const s of chosen) {
      const label = `${s.system}-${s.profile}`;
      const common = {
        profile: s.profile,
        metaUrl: `${redis.url}/${s.db}`,
        mountpoint: path.join(scratch, 'mnt', label),
        cacheDir: path.join(scratch, 'cache', label),
        logFile: path.join(logDir, `${label}.log`),
      };
      if (s.system === 'artifacts') {
        const nodeFlags = o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(path.resolve(o.cpuProf), label)}`] : [];
        targets.push(artifactsTarget({ ...common, nodeFlags }));
      } else targets.push(juicefsTarget(common));
    }

    const suiteWanted = !only || !/^\^?mdtest/.test(o.only ?? '');
    const tree = await makeTree(scratch, o.tree?.length ? o.tree : o.quick ? ['typescript'] : ['typescript', '@aws-sdk', '@smithy']);
    log(`agent tree: ${tree.files} files, ${(tree.bytes / 2 ** 20).toFixed(1)} MiB`);

    const samples: TaggedSample[] = [];
    const remounts: Record<string, RemountTimes[]> = {};
    const stepStats: StepStats[] = [];
    if (suiteWanted && targets.length) {
      for (let round = 0; round < sizes.rounds; round++) {
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        log(`round ${round + 1}/${sizes.rounds}: ${order.map((t) => t.label).join(' → ')}`);
        for (const t of order) {
          try {
            const t0 = Date.now();
            const got = await runSuite(t, { sizes, tree, log, only, verbose: o.verbose, remounts: (remounts[t.label] ??= []), stats: o.stats ? stepStats : undefined });
            log(`  ${t.label} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
            samples.push(...got.map((s) => ({ ...s, system: t.system, profile: t.profile })));
            // Partial results survive a run that is cut short (the machine is shared).
            if (o.json) await writeFile(o.json, JSON.stringify(jsonRows(toRows(samples)), null, 1) + '\n');
          } catch (e) {
            log(`${t.label} failed: ${(e as Error).message}\n--- ${t.label} log ---\n${logTail(path.join(logDir, `${t.label.replace('/', '-')}.log`), 30)}`);
            throw e;
          }
        }
      }
    }
    if (wantMdtest) {
      log(`metadata benchmark (mdtest shape dirs=${sizes.mdtest.dirs} depth=${sizes.mdtest.depth} files=${sizes.mdtest.files})`);
      samples.push(...(await runMdtest(redis, mdtestDb, sizes, Math.max(3, sizes.rounds), log)));
    }

    const rows = toRows(samples);
    const uptimeEnd = await uptimeLine();
    const header = [
      `date ${started.toISOString()}, commit ${gitCommit()}, ${o.quick ? 'quick' : 'full'} run, ${sizes.rounds} round(s) (median), juicefs ${juicefsVersion()}, node ${process.version}, ${os.cpus().length} CPUs, kernel ${os.release()}`,
      `sizes: seq file ${sizes.seqBytes / 2 ** 20} MiB in 1 MiB writes; randread ${sizes.randSeconds} s per job; ${sizes.smallFiles} small files of ${sizes.smallFileBytes} B in ${sizes.smallDirs} dirs; agent tree ${tree.files} files (${(tree.bytes / 2 ** 20).toFixed(1)} MiB); mdtest dirs=${sizes.mdtest.dirs} depth=${sizes.mdtest.depth} files=${sizes.mdtest.files}`,
      `mount until it answers (median over ${Object.values(remounts)[0]?.length ?? 0} remounts per target): ${Object.entries(remounts).map(([l, r]) => `${l} ${median(r.map((x) => x.mount)).toFixed(1)} s`).join(', ')}; unmount: ${Object.entries(remounts).map(([l, r]) => `${l} ${median(r.map((x) => x.unmount)).toFixed(1)} s`).join(', ')}`,
      `load at start: ${uptimeStart.replace(/^.*load average: /, '')}; at end: ${uptimeEnd.replace(/^.*load average: /, '')} (shared machine; per-row load in --json)`,
    ];
    // Three tables: rates through FUSE, the mount daemon's CPU per unit of work, the engine (mdtest).
    const groups: [string, Row[]][] = [
      ['Throughput through the mount (higher is better; ratio = artifacts ÷ juicefs, same profile)', rows.filter((r) => r.profile !== 'engine' && r.metric !== 'daemon-cpu')],
      ['Mount daemon CPU per unit of work (lower is better; ratio = artifacts ÷ juicefs)', rows.filter((r) => r.metric === 'daemon-cpu')],
      ['Metadata engine, no FUSE: bench/mdtest.ts vs `juicefs mdtest` (higher is better)', rows.filter((r) => r.profile === 'engine')],
    ];
    const table: string[] = [];
    const md: string[] = [...header.map((h) => `- ${h}`)];
    for (const [title, g] of groups) {
      if (!g.length) continue;
      table.push('', title, ...tableLines(g, false));
      md.push('', `**${title}**`, '', ...tableLines(g, true));
    }
    const markdown = md.join('\n') + '\n';
    const subtitle = `${o.quick ? 'quick' : 'full'} run ${started.toISOString().slice(0, 16).replace('T', ' ')}, commit ${gitCommit()}, ${sizes.rounds} round(s); loopback Redis + SeaweedFS S3; load ${uptimeStart.replace(/^.*load average: /, '')} (2-core shared box)`;
    if (o.json) await writeFile(o.json, JSON.stringify(jsonRows(rows), null, 1) + '\n');
    if (o.svg) await writeFile(o.svg, renderChart(rows.filter((r) => r.metric !== 'daemon-cpu'), subtitle));
    if (o.markdown) await writeFile(o.markdown, markdown);
    if (o.stats) await writeFile(o.stats, JSON.stringify(stepStats, null, 1) + '\n');
    return { rows, header, table, markdown };
  } finally {
    for (const t of targets) {
      if (t.isMounted()) await t.unmount().catch((e) => log(`unmount ${t.label}: ${(e as Error).message}`));
    }
    await s3?.stop().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
  }
}

