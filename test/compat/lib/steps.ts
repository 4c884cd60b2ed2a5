/**
 * Steps shared by the compatibility test files: mount with the real juicefs and always unmount,
 * check a daemon log for fatal errors, read `juicefs dump` into a comparable form.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { mount, type DumpEntry, type JuicefsDump, type JuicefsMount } from '../../helpers/juicefs.js';
import type { Expectation, NodeType } from './snapshot.js';

/** Mount `metaUrl` with the real juicefs (xattrs on), run `fn`, always unmount. */
export async function withJuicefsMount<T>(metaUrl: string, work: string, fn: (mp: string, m: JuicefsMount) => Promise<T>): Promise<T> {
  const m = await mount(metaUrl, path.join(work, `mnt-${Date.now()}`), ['--enable-xattr']);
  let result: T;
  try {
    result = await fn(m.mountpoint, m);
  } finally {
    await m.unmount();
  }
  assertNoFatal(m.logFile);
  return result;
}

/** Upstream CI's check: a juicefs daemon log must not contain `<FATAL>:`. */
export function assertNoFatal(logFile: string): void {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return;
  }
  const fatal = text.split('\n').filter((l) => l.includes('<FATAL>'));
  if (fatal.length > 0) throw new Error(`juicefs log ${logFile} has fatal errors:\n${fatal.join('\n')}`);
}

/** Lines of a juicefs log at WARNING or worse (reported, not asserted: upstream warns about benign things). */
export function warningsIn(logFile: string): string[] {
  try {
    return readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => /<(WARNING|ERROR|FATAL)>/.test(l));
  } catch {
    return [];
  }
}

const DUMP_TYPES: Record<string, NodeType> = {
  regular: 'file',
  directory: 'dir',
  symlink: 'symlink',
  fifo: 'fifo',
  blockdev: 'blk',
  chardev: 'chr',
  socket: 'sock',
};

/**
 * Compare `juicefs dump`'s FSTree with the model: every path, type, mode, owner, link count,
 * length, symlink target and xattr name must be there. Dumped xattr values are compared when
 * they are printable ASCII (the dump's own escaping of binary values is not part of the format).
 */
export function compareDumpToModel(dump: JuicefsDump, exp: Expectation): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (rel: string, e: DumpEntry) => {
    seen.add(rel);
    const where = `dump ${JSON.stringify(rel === '' ? '/' : rel)}`;
    const x = exp.get(rel);
    if (!x) {
      out.push(`${where}: unexpected entry`);
      return;
    }
    const type = DUMP_TYPES[e.attr.type] ?? e.attr.type;
    if (type !== x.type) out.push(`${where}: type ${e.attr.type}, expected ${x.type}`);
    if ((e.attr.mode & 0o7777) !== x.perm) out.push(`${where}: mode 0${e.attr.mode.toString(8)}, expected 0${x.perm.toString(8)}`);
    const uid = Number(e.attr.uid ?? 0);
    const gid = Number(e.attr.gid ?? 0);
    if (uid !== x.uid || gid !== x.gid) out.push(`${where}: owner ${uid}:${gid}, expected ${x.uid}:${x.gid}`);
    if (e.attr.nlink !== x.nlink) out.push(`${where}: nlink ${e.attr.nlink}, expected ${x.nlink}`);
    if (x.type === 'file' && Number(e.attr.length ?? 0) !== x.size) out.push(`${where}: length ${e.attr.length}, expected ${x.size}`);
    if (x.target && e.symlink !== x.target.toString()) out.push(`${where}: symlink ${JSON.stringify(e.symlink)}, expected ${JSON.stringify(x.target.toString())}`);
    if (x.xattrs) {
      const got = new Map((e.xattrs ?? []).map((a) => [a.name, a.value]));
      const names = [...new Set([...got.keys(), ...x.xattrs.keys()])].sort();
      for (const n of names) {
        const want = x.xattrs.get(n);
        if (want === undefined) out.push(`${where}: unexpected xattr ${n}`);
        else if (!got.has(n)) out.push(`${where}: missing xattr ${n}`);
        else if (/^[\x20-\x7e]*$/.test(want.toString('latin1')) && got.get(n) !== want.toString('latin1'))
          out.push(`${where}: xattr ${n}=${JSON.stringify(got.get(n))}, expected ${JSON.stringify(want.toString())}`);
      }
    }
    if (e.entries) for (const [name, child] of Object.entries(e.entries)) walk(rel === '' ? name : `${rel}/${name}`, child);
  };
  walk('', dump.FSTree);
  for (const p of exp.keys()) if (!seen.has(p)) out.push(`dump ${JSON.stringify(p)}: missing`);
  return out;
}
