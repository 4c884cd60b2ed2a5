/**
 * Model-based random test: random operation sequences are applied to the Redis engine — through
 * two engine instances ("two clients") interleaving on one volume — and to a small in-memory model
 * of POSIX namespace semantics. Results (success or errno), the final tree, attributes and the
 * volume counters must agree.
 */
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { align4K } from '../../metadata/codec.js';
import { formatMeta, newFormat } from '../../metadata/format.js';
import { openMeta } from '../../metadata/index.js';
import type { RedisMeta } from '../../metadata/redis/engine.js';
import { CHUNK_SIZE, FileType, type Ino, RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_CTX, ROOT_INODE } from '../../metadata/types.js';
import { startRedis, type RedisHandle } from '../helpers/servers.js';

interface MNode {
  type: FileType;
  nlink: number;
  length: number;
  children?: Map<string, Ino>;
  parent?: Ino;
}

/** The model: inode table + directory maps, POSIX rules only. */
class Model {
  nodes = new Map<Ino, MNode>([[ROOT_INODE, { type: FileType.Dir, nlink: 2, length: 4096, children: new Map() }]]);

  dirs(): Ino[] {
    return [...this.nodes].filter(([, n]) => n.type === FileType.Dir).map(([i]) => i);
  }
  private dir(p: Ino): MNode {
    const d = this.nodes.get(p);
    if (!d) throw 'ENOENT';
    if (d.type !== FileType.Dir) throw 'ENOTDIR';
    return d;
  }
  mknod(p: Ino, name: string, type: FileType, ino: Ino): void {
    const d = this.dir(p);
    if (d.children!.has(name)) throw 'EEXIST';
    d.children!.set(name, ino);
    this.nodes.set(ino, { type, nlink: type === FileType.Dir ? 2 : 1, length: type === FileType.Symlink ? 1 : 0, children: type === FileType.Dir ? new Map() : undefined, parent: p });
    if (type === FileType.Dir) d.nlink++;
  }
  /** The engine refused a create: the model must refuse it too, for the same reason. */
  dir_exists(p: Ino, name: string): void {
    const d = this.dir(p);
    if (d.children!.has(name)) throw 'EEXIST';
  }
  unlink(p: Ino, name: string): void {
    const d = this.dir(p);
    const ino = d.children!.get(name);
    if (ino === undefined) throw 'ENOENT';
    const n = this.nodes.get(ino)!;
    if (n.type === FileType.Dir) throw 'EISDIR';
    d.children!.delete(name);
    if (--n.nlink === 0) this.nodes.delete(ino);
  }
  rmdir(p: Ino, name: string): void {
    const d = this.dir(p);
    const ino = d.children!.get(name);
    if (ino === undefined) throw 'ENOENT';
    const n = this.nodes.get(ino)!;
    if (n.type !== FileType.Dir) throw 'ENOTDIR';
    if (n.children!.size) throw 'ENOTEMPTY';
    d.children!.delete(name);
    d.nlink--;
    this.nodes.delete(ino);
  }
  link(ino: Ino, p: Ino, name: string): void {
    const n = this.nodes.get(ino);
    if (!n) throw 'ENOENT';
    const d = this.dir(p);
    if (n.type === FileType.Dir) throw 'EPERM';
    if (d.children!.has(name)) throw 'EEXIST';
    d.children!.set(name, ino);
    n.nlink++;
  }
  isAncestor(a: Ino, b: Ino): boolean {
    for (let cur: Ino | undefined = b; cur !== undefined && cur !== ROOT_INODE; cur = this.nodes.get(cur)?.parent) if (cur === a) return true;
    return false;
  }
  rename(sp: Ino, sn: string, dp: Ino, dn: string, flags: number): void {
    const s = this.dir(sp);
    const d = this.dir(dp);
    const sino = s.children!.get(sn);
    if (sino === undefined) throw 'ENOENT';
    const dino = d.children!.get(dn);
    if (sp === dp && sn === dn) return;
    if (dino !== undefined && flags & RENAME_NOREPLACE) throw 'EEXIST';
    if (dino === undefined && flags & RENAME_EXCHANGE) throw 'ENOENT';
    const sn_ = this.nodes.get(sino)!;
    if (sn_.type === FileType.Dir && this.isAncestor(sino, dp)) throw 'EINVAL';
    if (dino !== undefined && dino === sino && !(flags & RENAME_EXCHANGE)) return;
    if (flags & RENAME_EXCHANGE) {
      const dn_ = this.nodes.get(dino!)!;
      if (dn_.type === FileType.Dir && this.isAncestor(dino!, sp)) throw 'EINVAL';
      s.children!.set(sn, dino!);
      d.children!.set(dn, sino);
      if (sp !== dp) {
        if (sn_.type === FileType.Dir) { s.nlink--; d.nlink++; }
        if (dn_.type === FileType.Dir) { d.nlink--; s.nlink++; }
        if (sn_.type === FileType.Dir || sn_.nlink === 1) sn_.parent = dp;
        if (dn_.type === FileType.Dir || dn_.nlink === 1) dn_.parent = sp;
      }
      return;
    }
    if (dino !== undefined) {
      const dn_ = this.nodes.get(dino)!;
      if (sn_.type === FileType.Dir && dn_.type !== FileType.Dir) throw 'ENOTDIR';
      if (sn_.type !== FileType.Dir && dn_.type === FileType.Dir) throw 'EISDIR';
      if (dn_.type === FileType.Dir && dn_.children!.size) throw 'ENOTEMPTY';
      if (dn_.type === FileType.Dir) d.nlink--;
      if (--dn_.nlink === 0 || dn_.type === FileType.Dir) this.nodes.delete(dino);
    }
    s.children!.delete(sn);
    d.children!.set(dn, sino);
    if (sp !== dp && sn_.type === FileType.Dir) { s.nlink--; d.nlink++; }
    sn_.parent = dp;
  }
  setLength(ino: Ino, len: number): void {
    const n = this.nodes.get(ino);
    if (!n) throw 'ENOENT';
    if (n.type === FileType.Dir) throw 'EISDIR';
    if (n.type !== FileType.File) throw 'EPERM';
    n.length = len;
  }
}

type Op =
  | { k: 'mkdir' | 'create' | 'symlink' | 'unlink' | 'rmdir'; c: number; p: number; name: string }
  | { k: 'link'; c: number; src: number; p: number; name: string }
  | { k: 'rename'; c: number; p: number; name: string; p2: number; name2: string; flags: number }
  | { k: 'truncate' | 'write'; c: number; src: number; len: number };

const names = ['a', 'b', 'c', 'dé', 'x'.repeat(255)];
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constantFrom('mkdir', 'create', 'symlink', 'unlink', 'rmdir') as fc.Arbitrary<'mkdir'>, c: fc.nat(1), p: fc.nat(20), name: fc.constantFrom(...names) }),
  fc.record({ k: fc.constant('link' as const), c: fc.nat(1), src: fc.nat(40), p: fc.nat(20), name: fc.constantFrom(...names) }),
  fc.record({ k: fc.constant('rename' as const), c: fc.nat(1), p: fc.nat(20), name: fc.constantFrom(...names), p2: fc.nat(20), name2: fc.constantFrom(...names), flags: fc.constantFrom(0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE) }),
  fc.record({ k: fc.constantFrom('truncate', 'write') as fc.Arbitrary<'truncate'>, c: fc.nat(1), src: fc.nat(40), len: fc.constantFrom(0, 1, 4096, 5000, CHUNK_SIZE + 7) }),
);

let server: RedisHandle;
beforeAll(async () => (server = await startRedis()));
afterAll(async () => server?.stop());

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (!code) throw e;
    return code;
  }
}
function modelErr(f: () => void): string {
  try {
    f();
    return 'OK';
  } catch (e) {
    if (typeof e !== 'string') throw e;
    return e;
  }
}

describe('engine vs model, two clients', () => {
  it('random operation sequences agree', async () => {
    const url = `${server.url}/5`;
    const admin = new Redis(url);
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 60 }), async (ops) => {
          run++;
          await admin.flushdb();
          const { format } = newFormat({ name: 'model', storage: 'file', bucket: '/tmp/artifacts-model', trashDays: 0 });
          await formatMeta(admin, '', format);
          const clients = [await openMeta(url), await openMeta(url)];
          for (const c of clients) await c.newSession();
          const model = new Model();
          try {
            for (const op of ops) {
              const m: RedisMeta = clients[op.c];
              const dirs = model.dirs();
              const all = [...model.nodes.keys()];
              const pick = (i: number, xs: Ino[]) => xs[i % xs.length];
              let got: string;
              let want: string;
              switch (op.k) {
                case 'mkdir':
                case 'create':
                case 'symlink': {
                  const p = pick(op.p, dirs);
                  const type = op.k === 'mkdir' ? FileType.Dir : op.k === 'create' ? FileType.File : FileType.Symlink;
                  let ino: Ino = 0n;
                  const call = op.k === 'mkdir' ? m.mkdir(ROOT_CTX, p, op.name, 0o755) : op.k === 'create' ? m.create(ROOT_CTX, p, op.name, 0o644, true) : m.symlink(ROOT_CTX, p, op.name, 't');
                  got = await errnoOf(call.then((r) => void (ino = r.ino)));
                  want = modelErr(() => (ino === 0n ? model.dir_exists(p, op.name) : model.mknod(p, op.name, type, ino)));
                  break;
                }
                case 'unlink':
                case 'rmdir': {
                  const p = pick(op.p, dirs);
                  got = await errnoOf(op.k === 'unlink' ? m.unlink(ROOT_CTX, p, op.name) : m.rmdir(ROOT_CTX, p, op.name));
                  want = modelErr(() => (op.k === 'unlink' ? model.unlink(p, op.name) : model.rmdir(p, op.name)));
                  break;
                }
                case 'link': {
                  const src = pick(op.src, all);
                  const p = pick(op.p, dirs);
                  got = await errnoOf(m.link(ROOT_CTX, src, p, op.name));
                  want = modelErr(() => model.link(src, p, op.name));
                  break;
                }
                case 'rename': {
                  const p = pick(op.p, dirs);
                  const p2 = pick(op.p2, dirs);
                  got = await errnoOf(m.rename(ROOT_CTX, p, op.name, p2, op.name2, op.flags));
                  want = modelErr(() => model.rename(p, op.name, p2, op.name2, op.flags));
                  break;
                }
                case 'truncate':
                case 'write': {
                  const src = pick(op.src, all);
                  if (op.k === 'truncate') got = await errnoOf(m.truncate(ROOT_CTX, src, op.len));
                  else {
                    const len = Math.max(1, op.len % CHUNK_SIZE);
                    got = await errnoOf(m.getAttr(src).then(async (a) => {
                      if (a.type === FileType.Dir) throw Object.assign(new Error(), { code: 'EISDIR' });
                      if (a.type !== FileType.File) throw Object.assign(new Error(), { code: 'EPERM' });
                      const id = await m.newSliceId();
                      await m.writeSlice(src, 0, 0, { pos: 0, id, size: len, off: 0, len }, { sec: 1, nsec: 0 });
                    }));
                    want = modelErr(() => {
                      const n = model.nodes.get(src);
                      if (!n) throw 'ENOENT';
                      model.setLength(src, Math.max(n.length, Math.max(1, op.len % CHUNK_SIZE)));
                    });
                    break;
                  }
                  want = modelErr(() => model.setLength(src, op.len));
                  break;
                }
              }
              expect(`${JSON.stringify(op)} → ${got}`).toBe(`${JSON.stringify(op)} → ${want}`);
            }
            // Final state: every model inode exists with the same type, nlink, length and listing.
            let live = 0;
            let space = 0;
            for (const [ino, n] of model.nodes) {
              const a = await clients[0].getAttr(ino);
              expect([ino, a.type, a.nlink, a.type === FileType.Dir ? 4096 : a.length]).toEqual([ino, n.type, n.nlink, n.type === FileType.Dir ? 4096 : n.length]);
              if (n.type === FileType.Dir) {
                const ls = await clients[1].readdir(ROOT_CTX, ino, false);
                expect(ls.map((e) => `${e.name}:${e.ino}`).sort()).toEqual([...n.children!].map(([k, v]) => `${k}:${v}`).sort());
              }
              if (ino !== ROOT_INODE) {
                live++;
                space += n.type === FileType.File ? align4K(n.length) : 4096;
              }
            }
            const [used, inodes] = await admin.mget('usedSpace', 'totalInodes');
            expect([Number(used ?? 0), Number(inodes ?? 0)]).toEqual([space, live]);
          } finally {
            for (const c of clients) await c.shutdown();
          }
        }),
        { numRuns: Number(process.env.MODEL_RUNS ?? 25), endOnFailure: true },
      );
    } finally {
      admin.disconnect();
    }
    expect(run).toBeGreaterThan(0);
  });
});

describe('concurrent clients', () => {
  it('parallel mkdir/create/rename/unlink from two clients keep nlink and counters exact', async () => {
    const url = `${server.url}/6`;
    const admin = new Redis(url);
    await admin.flushdb();
    const { format } = newFormat({ name: 'conc', storage: 'file', bucket: '/tmp/artifacts-conc', trashDays: 0 });
    await formatMeta(admin, '', format);
    const a = await openMeta(url);
    const b = await openMeta(url);
    try {
      const d = await a.mkdir(ROOT_CTX, ROOT_INODE, 'shared', 0o755);
      // 2 × 60 operations racing on the same parent keys: WATCH conflicts must retry, never lose updates.
      await Promise.all(
        [a, b].flatMap((m, ci) =>
          Array.from({ length: 60 }, async (_, i) => {
            if (i % 3 === 0) await m.mkdir(ROOT_CTX, d.ino, `d${ci}-${i}`, 0o755);
            else {
              await m.create(ROOT_CTX, d.ino, `f${ci}-${i}`, 0o644, true);
              await m.rename(ROOT_CTX, d.ino, `f${ci}-${i}`, d.ino, `g${ci}-${i}`, 0);
              if (i % 2 === 0) await m.unlink(ROOT_CTX, d.ino, `g${ci}-${i}`);
            }
          }),
        ),
      );
      const ls = await a.readdir(ROOT_CTX, d.ino, true);
      const dirs = ls.filter((e) => e.type === FileType.Dir).length;
      expect(dirs).toBe(40);
      expect(ls.length).toBe(40 + 2 * 20);
      expect((await b.getAttr(d.ino)).nlink).toBe(2 + dirs);
      expect(await admin.mget('usedSpace', 'totalInodes')).toEqual([String(4096 * (1 + ls.length)), String(1 + ls.length)]);
    } finally {
      await a.shutdown();
      await b.shutdown();
      admin.disconnect();
    }
  });
});
