/**
 * Small-file workload, one phase per child process run by the harness (so a hung mount cannot
 * block it, and the harness can drop kernel caches and read `.stats` between phases): create N
 * files of `size` bytes spread over `dirs` directories, read them all, stat them all, delete them.
 * Synchronous calls on purpose: one file at a time, like `cp`, `cat` or `rm`, and no threadpool in
 * the way, so the rate is the filesystem's round-trip cost.
 *
 *   node dist/bench/smallfiles.js <root> <files> <dirs> <size> create|read|stat|delete
 *
 * Prints one JSON line {phase, files, seconds, perSec}; the time excludes Node's start.
 */
import { closeSync, lstatSync, mkdirSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export type Phase = 'create' | 'read' | 'stat' | 'delete';
export const PHASES: Phase[] = ['create', 'read', 'stat', 'delete'];

/** Run one phase over the tree; returns its wall seconds. Phases must run in order. */
export function smallFilesPhase(root: string, files: number, dirs: number, size: number, phase: Phase): number {
  const paths: string[] = [];
  const dirPaths: string[] = [];
  for (let d = 0; d < dirs; d++) dirPaths.push(path.join(root, `d${d}`));
  for (let i = 0; i < files; i++) paths.push(path.join(dirPaths[i % dirs]!, `f${i}`));
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24; // not all zeros, no compression games
  const buf = Buffer.alloc(size + 1);
  const t = performance.now();
  switch (phase) {
    case 'create':
      mkdirSync(root);
      for (const d of dirPaths) mkdirSync(d);
      for (const p of paths) {
        const fd = openSync(p, 'wx', 0o644);
        writeSync(fd, data, 0, size, 0);
        closeSync(fd);
      }
      break;
    case 'read':
      for (const p of paths) {
        const fd = openSync(p, 'r');
        let got = 0;
        for (let n; (n = readSync(fd, buf, got, buf.length - got, got)) > 0; ) got += n;
        closeSync(fd);
        if (got !== size) throw new Error(`${p}: read ${got} bytes, wrote ${size}`);
      }
      break;
    case 'stat':
      for (const p of paths) if (lstatSync(p).size !== size) throw new Error(`${p}: stat size is not ${size}`);
      break;
    case 'delete':
      for (const p of paths) unlinkSync(p);
      for (const d of dirPaths) rmdirSync(d);
      rmdirSync(root);
      break;
  }
  return (performance.now() - t) / 1000;
}

if (process.argv[1] && /smallfiles\.(js|ts)$/.test(process.argv[1])) {
  const [root, files, dirs, size, phase] = process.argv.slice(2);
  if (!root || !files || !dirs || !size || !PHASES.includes(phase as Phase)) {
    console.error('usage: smallfiles <root> <files> <dirs> <size> create|read|stat|delete');
    process.exit(2);
  }
  const seconds = smallFilesPhase(root, Number(files), Number(dirs), Number(size), phase as Phase);
  console.log(JSON.stringify({ phase, files: Number(files), seconds, perSec: Number(files) / seconds }));
}
