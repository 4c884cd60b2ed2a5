/**
 * One-shot comparison of the two transports (run as root): 64 MiB sequential write and read with
 * dd, through our /dev/fuse transport and through the fuse-native fallback, serving
 *  - MemVfs (transport cost only; reads with iflag=direct so the page cache cannot answer), and
 *  - the real VFS (Redis + file store; written, unmounted, mounted again, read cold).
 * Prints a markdown table. `node --import tsx test/fuse/native-bench.ts`
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { format as jfsFormat } from '../helpers/juicefs.js';
import { startRedis, tmpDir } from '../helpers/servers.js';
import { REPO_ROOT, sh } from './harness.js';

type Transport = 'dev-fuse' | 'fuse-native';

async function serve(mp: string, transport: Transport, env: NodeJS.ProcessEnv): Promise<{ stop(): Promise<void> }> {
  const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/fuse/native-serve.ts'), mp], {
    cwd: REPO_ROOT,
    env: { ...process.env, UV_THREADPOOL_SIZE: '16', ARTIFACTS_FUSE_TRANSPORT: transport, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((r) => proc.on('exit', r));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) resolve();
    });
    proc.on('exit', () => reject(new Error(`server for ${mp} exited: ${out}`)));
  });
  return {
    async stop() {
      proc.stdin!.write('unmount\n');
      await exited;
    },
  };
}

/** MiB/s from dd's summary line. */
async function dd(args: string[]): Promise<number> {
  const t0 = performance.now();
  await sh('dd', args, { timeoutMs: 300_000 });
  return 64 / ((performance.now() - t0) / 1000);
}

const rows: string[] = [];
const redis = await startRedis();
try {
  const dir = await tmpDir('native-bench');
  const metaUrl = `${redis.url}/6`;
  await jfsFormat(metaUrl, 'nbench', { storage: 'file', bucket: path.join(dir, 'objects') + '/', trashDays: 0 });
  for (const transport of ['dev-fuse', 'fuse-native'] as Transport[]) {
    const mp = path.join(dir, `mnt-${transport}`);
    await fs.mkdir(mp);
    let s = await serve(mp, transport, {});
    const memW = await dd(['if=/dev/zero', `of=${mp}/f`, 'bs=1M', 'count=64', 'conv=fsync', 'status=none']);
    const memR = await dd([`if=${mp}/f`, 'of=/dev/null', 'bs=1M', 'iflag=direct', 'status=none']);
    await s.stop();
    const vol = { SERVE_META_URL: metaUrl, SERVE_CACHE_DIR: path.join(dir, `cache-${transport}`) };
    s = await serve(mp, transport, vol);
    const volW = await dd(['if=/dev/urandom', `of=${mp}/f-${transport}`, 'bs=1M', 'count=64', 'conv=fsync', 'status=none']);
    await s.stop();
    await fs.rm(path.join(dir, `cache-${transport}`), { recursive: true, force: true });
    s = await serve(mp, transport, vol);
    const volR = await dd([`if=${mp}/f-${transport}`, 'of=/dev/null', 'bs=1M', 'status=none']);
    await s.stop();
    rows.push(`| ${transport} | ${memW.toFixed(0)} | ${memR.toFixed(0)} | ${volW.toFixed(0)} | ${volR.toFixed(0)} |`);
  }
} finally {
  await redis.stop();
}
console.log('| transport | MemVfs write | MemVfs read (O_DIRECT) | real VFS write (fsync) | real VFS read (cold) |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`load average: ${(await fs.readFile('/proc/loadavg', 'utf8')).trim()}`);
process.exit(0);
