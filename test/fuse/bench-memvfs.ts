/**
 * Transport benchmark: fio and a metadata loop against MemVfs mounted through the FUSE server, the
 * workloads of spec/fuse-transport.md. Not a test (no assertions); prints a markdown table.
 *
 *   node --import tsx test/fuse/bench-memvfs.ts [runs=3] [mountpoint]
 *
 * Each profile gets a fresh server; each number is the median of `runs`.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { forceUnmount, isMountPoint } from '../../fs/fuse/mount.js';
import { scratchDir, sh, startMemServer } from './harness.js';

const runs = Number(process.argv[2] ?? 3);
const mp = process.argv[3] ?? path.join(await scratchDir('bench'), 'mnt');
await fs.mkdir(mp, { recursive: true });

interface Result {
  [k: string]: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function fio(args: string[]): Promise<{ readBw: number; writeBw: number; readIops: number }> {
  const r = await sh('fio', ['--output-format=json', '--directory', mp, ...args], { timeoutMs: 600_000 });
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  let readBw = 0;
  let writeBw = 0;
  let readIops = 0;
  for (const job of j.jobs) {
    readBw += job.read.bw_bytes / 2 ** 20;
    writeBw += job.write.bw_bytes / 2 ** 20;
    readIops += job.read.iops;
  }
  return { readBw, writeBw, readIops };
}

const META = `
import os, sys, time
d = sys.argv[1] + '/meta'
os.mkdir(d)
N = 10000
t = time.time()
for i in range(N): os.close(os.open(d + '/f%d' % i, os.O_CREAT | os.O_WRONLY, 0o644))
c = time.time() - t
time.sleep(1.2)  # let entry/attr caches expire so stat reaches the server
t = time.time()
for i in range(N): os.stat(d + '/f%d' % i)
st = time.time() - t
t = time.time()
n = len(os.listdir(d))
ls = time.time() - t
t = time.time()
for i in range(N): os.unlink(d + '/f%d' % i)
u = time.time() - t
os.rmdir(d)
print(N / c, N / st, N / u, ls * 1000)
`;

type Stats = Awaited<ReturnType<Awaited<ReturnType<typeof startMemServer>>['stats']>>;

/** Server CPU (user + system) per request between two snapshots, in µs: less load-sensitive than wall time. */
function cpuPerRequest(a: Stats, b: Stats): number {
  const cpu = b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system;
  return cpu / Math.max(1, b.server.requests - a.server.requests - 1);
}

async function oneRun(opts: Record<string, unknown>): Promise<Result> {
  const s = await startMemServer(mp, opts);
  const res: Result = {};
  try {
    const seq = ['--name=seq', '--filename=seq.bin', '--bs=1M', '--size=1G', '--ioengine=psync'];
    res.seqWrite = (await fio([...seq, '--rw=write', '--end_fsync=1'])).writeBw;
    res.seqRead = (await fio([...seq, '--rw=read'])).readBw;
    const rnd = ['--name=rnd', '--filename=seq.bin', '--bs=4k', '--size=1G', '--rw=randread', '--direct=1', '--time_based', '--runtime=8'];
    const c0 = await s.stats();
    res.rand1 = (await fio([...rnd, '--ioengine=psync'])).readIops;
    const c1 = await s.stats();
    res.cpuRead = cpuPerRequest(c0, c1);
    res.rand16 = (await fio([...rnd, '--ioengine=libaio', '--iodepth=16'])).readIops;
    res.rand4jobs = (await fio([...rnd, '--ioengine=psync', '--numjobs=4'])).readIops;
    await fs.unlink(path.join(mp, 'seq.bin'));
    const c2 = await s.stats();
    const m = (await sh('python3', ['-c', META, mp], { timeoutMs: 600_000 })).stdout.trim().split(' ').map(Number);
    res.cpuMeta = cpuPerRequest(c2, await s.stats());
    [res.create, res.stat, res.unlink, res.listMs] = m as [number, number, number, number];
    const st = await s.stats();
    res.maxWrite = st.server.maxWriteSeen;
    res.maxRead = st.server.maxReadSeen;
  } finally {
    await s.stop();
    if (await isMountPoint(mp)) await forceUnmount(mp);
  }
  return res;
}

const profiles: [string, Record<string, unknown>][] = [
  ['default', {}],
  ['writeback cache', { writebackCache: true }],
  ['async DIO', { asyncDio: true }],
];

const rows: [string, string, (r: Result) => string][] = [
  ['seq write 1 GiB, 1 MiB writes (MiB/s)', 'seqWrite', (r) => r.seqWrite!.toFixed(0)],
  ['seq read 1 GiB (MiB/s)', 'seqRead', (r) => r.seqRead!.toFixed(0)],
  ['4 KiB randread O_DIRECT iodepth 1 (IOPS)', 'rand1', (r) => r.rand1!.toFixed(0)],
  ['4 KiB randread O_DIRECT iodepth 16 (IOPS)', 'rand16', (r) => r.rand16!.toFixed(0)],
  ['4 KiB randread O_DIRECT 4 readers (IOPS)', 'rand4jobs', (r) => r.rand4jobs!.toFixed(0)],
  ['10k files: create / stat / unlink (per s)', 'create', (r) => `${r.create!.toFixed(0)} / ${r.stat!.toFixed(0)} / ${r.unlink!.toFixed(0)}`],
  ['listing a 10k-entry directory (ms)', 'listMs', (r) => r.listMs!.toFixed(1)],
  ['server CPU per request: 4 KiB read / metadata (µs)', 'cpuRead', (r) => `${r.cpuRead!.toFixed(0)} / ${r.cpuMeta!.toFixed(0)}`],
  ['largest WRITE / READ request (KiB)', 'maxWrite', (r) => `${r.maxWrite! / 1024} / ${r.maxRead! / 1024}`],
];

const results: Result[] = [];
for (const [name, opts] of profiles) {
  const all: Result[] = [];
  for (let i = 0; i < runs; i++) {
    all.push(await oneRun(opts));
    process.stderr.write(`${name} run ${i + 1}/${runs} (load ${os.loadavg()[0]!.toFixed(1)}): ${JSON.stringify(all.at(-1))}\n`);
  }
  const med: Result = {};
  for (const k of Object.keys(all[0]!)) med[k] = median(all.map((r) => r[k]!));
  results.push(med);
}

console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs\n`);
console.log(`| workload | ${profiles.map(([n]) => n).join(' | ')} |`);
console.log(`|---|${profiles.map(() => '---').join('|')}|`);
for (const [label, , fmt] of rows) console.log(`| ${label} | ${results.map(fmt).join(' | ')} |`);
