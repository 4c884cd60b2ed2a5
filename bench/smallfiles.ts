/**
 * Small-file workload, run as a child process by the harness (so a hung mount cannot block it):
 * create N files of `size` bytes spread over `dirs` directories, read them all, stat them all,
 * delete them. Synchronous calls on purpose: one file at a time, like `cp`, `cat` or `rm`, and no
 * threadpool in the way, so the rate is the filesystem's round-trip cost.
 *
 *   node dist/bench/smallfiles.js <root> <files> <dirs> <size> [--drop-caches]
 *
 * Prints one JSON line: {create, read, stat, delete} in files/s, and the seconds of each phase.
 * With --drop-caches the kernel page/dentry/inode caches are dropped between phases (untimed), as
 * `juicefs bench` does, so read and stat reach the filesystem instead of the kernel.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, lstatSync, mkdirSync, openSync, readSync, rmdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export interface SmallFilesResult {
  files: number;
  create: number;
  read: number;
  stat: number;
  delete: number;
  seconds: { create: number; read: number; stat: number; delete: number };
}

function dropCaches(): void {
  spawnSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

export function smallFiles(root: string, files: number, dirs: number, size: number, drop: boolean): SmallFilesResult {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24; // not all zeros, no compression games
  const paths: string[] = [];
  const dirPaths: string[] = [];
  for (let d = 0; d < dirs; d++) dirPaths.push(path.join(root, `d${d}`));
  for (let i = 0; i < files; i++) paths.push(path.join(dirPaths[i % dirs]!, `f${i}`));
  const seconds = { create: 0, read: 0, stat: 0, delete: 0 };

  let t = performance.now();
  mkdirSync(root);
  for (const d of dirPaths) mkdirSync(d);
  for (const p of paths) {
    const fd = openSync(p, 'wx', 0o644);
    writeSync(fd, data, 0, size, 0);
    closeSync(fd);
  }
  seconds.create = (performance.now() - t) / 1000;

  if (drop) dropCaches();
  const buf = Buffer.alloc(size + 1);
  t = performance.now();
  for (const p of paths) {
    const fd = openSync(p, 'r');
    let got = 0;
    for (let n; (n = readSync(fd, buf, got, buf.length - got, got)) > 0; ) got += n;
    closeSync(fd);
    if (got !== size) throw new Error(`${p}: read ${got} bytes, wrote ${size}`);
  }
  seconds.read = (performance.now() - t) / 1000;

  if (drop) dropCaches();
  t = performance.now();
  for (const p of paths) if (lstatSync(p).size !== size) throw new Error(`${p}: stat size is not ${size}`);
  seconds.stat = (performance.now() - t) / 1000;

  t = performance.now();
  for (const p of paths) unlinkSync(p);
  for (const d of dirPaths) rmdirSync(d);
  rmdirSync(root);
  seconds.delete = (performance.now() - t) / 1000;

  return {
    files,
    create: files / seconds.create,
    read: files / seconds.read,
    stat: files / seconds.stat,
    delete: files / seconds.delete,
    seconds,
  };
}

if (process.argv[1] && /smallfiles\.(js|ts)$/.test(process.argv[1])) {
  const [root, files, dirs, size] = process.argv.slice(2);
  if (!root || !files || !dirs || !size) {
    console.error('usage: smallfiles <root> <files> <dirs> <size> [--drop-caches]');
    process.exit(2);
  }
  const r = smallFiles(root, Number(files), Number(dirs), Number(size), process.argv.includes('--drop-caches'));
  console.log(JSON.stringify(r));
}
