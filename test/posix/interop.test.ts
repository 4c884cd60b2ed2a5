/**
 * Interop through the kernel: ONE volume mounted twice at once, by upstream `juicefs mount` (1.4.2)
 * and by `artifacts mount`, both on the same real redis-server and file object store.
 *   - close-to-open: what one side writes and closes, the other side's next open reads, byte for
 *     byte (new files, overwrites of files the reader has cached, appends, truncates), both ways;
 *   - namespace changes show up on the other side (within the entry/attr TTL);
 *   - flock and fcntl locks held through one mount block the other, both ways (our engine stores
 *     them in Redis in upstream's format), F_GETLK sees the other side's lock, SETLKW waits for it.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsck, type JuicefsMount, mount as jfsMount } from '../helpers/juicefs.js';
import { b64, PosixProc, ROOT, unb64 } from './lib/posix.js';
import { type ArtifactsMount, mountArtifacts, startStack, type Stack } from './lib/stack.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Poll `fn` until it returns true (the other mount's kernel caches entries/attrs for 1 s). */
async function eventually(what: string, fn: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('artifacts mount and juicefs mount of one volume', { timeout: 180_000 }, () => {
  let stack: Stack;
  let ours: ArtifactsMount | undefined;
  let theirs: JuicefsMount | undefined;
  let A: string; // dir on our mount
  let J: string; // the same dir on juicefs' mount
  let pa: PosixProc; // a process using our mount
  let pj: PosixProc; // a process using juicefs' mount

  beforeAll(async () => {
    stack = await startStack('interop');
    [ours, theirs] = await Promise.all([
      mountArtifacts(stack.metaUrl, path.join(stack.dir, 'ours')),
      jfsMount(stack.metaUrl, path.join(stack.dir, 'theirs'), ['--enable-xattr']),
    ]);
    A = path.join(ours.mountpoint, 'shared');
    J = path.join(theirs.mountpoint, 'shared');
    [pa, pj] = await Promise.all([PosixProc.start(ROOT), PosixProc.start(ROOT)]);
    await pa.ok('mkdir', A, 0o777);
    await eventually('shared dir visible on juicefs', async () => (await pj.errno('stat', J)) === 'OK');
  }, 180_000);

  afterAll(async () => {
    await Promise.all([pa?.close(), pj?.close()]);
    try {
      await Promise.all([ours?.unmount(), theirs?.unmount()]);
    } finally {
      const f = stack ? await fsck(stack.metaUrl) : undefined;
      await stack?.stop();
      // Both clients wrote to the volume at once: upstream's fsck must still find it consistent.
      if (f) expect(f.ok, f.output).toBe(true);
    }
  });

  const writeAll = async (p: PosixProc, file: string, data: Buffer, flags = ['O_WRONLY', 'O_CREAT', 'O_TRUNC']) => {
    const fd = await p.ok<number>('open', file, flags, 0o644);
    for (let off = 0; off < data.length; off += 1 << 20) await p.ok('write', fd, b64(data.subarray(off, off + (1 << 20))));
    await p.ok('close', fd);
  };

  for (const [from, to] of [['artifacts', 'juicefs'], ['juicefs', 'artifacts']] as const) {
    it(`close-to-open: ${from} writes, ${to} reads the same bytes on its next open`, async () => {
      const [w, r] = from === 'artifacts' ? [pa, pj] : [pj, pa];
      const [W, R] = from === 'artifacts' ? [A, J] : [J, A];
      const name = `from-${from}`;
      // small and multi-block new files
      const small = randomBytes(1000);
      const big = randomBytes(5 * 1024 * 1024 + 777); // two 4 MiB blocks, unaligned tail
      await writeAll(w, path.join(W, `${name}-small`), small);
      await writeAll(w, path.join(W, `${name}-big`), big);
      expect(sha(await r.readFile(path.join(R, `${name}-small`)))).toBe(sha(small));
      expect(sha(await r.readFile(path.join(R, `${name}-big`)))).toBe(sha(big));
      // the reader now has the file in its caches; the writer changes the middle and closes
      const patch = randomBytes(100_000);
      const fd = await w.ok<number>('open', path.join(W, `${name}-big`), ['O_WRONLY']);
      await w.ok('pwrite', fd, b64(patch), 4_000_000);
      await w.ok('close', fd);
      patch.copy(big, 4_000_000);
      expect(sha(await r.readFile(path.join(R, `${name}-big`)))).toBe(sha(big));
      // append, then truncate: length changes seen on the next open
      const fa = await w.ok<number>('open', path.join(W, `${name}-small`), ['O_WRONLY', 'O_APPEND']);
      await w.ok('write', fa, b64('tail'));
      await w.ok('close', fa);
      expect((await r.readFile(path.join(R, `${name}-small`))).toString('latin1').slice(-4)).toBe('tail');
      await w.ok('truncate', path.join(W, `${name}-big`), 12345);
      const rf = await r.ok<number>('open', path.join(R, `${name}-big`), ['O_RDONLY']);
      expect((await r.ok<{ size: number }>('fstat', rf)).size).toBe(12345);
      expect(unb64(await r.ok('pread', rf, 20_000, 0)).equals(big.subarray(0, 12345))).toBe(true);
      await r.ok('close', rf);
      // an fsync'ed write is visible before close too
      const fs1 = await w.ok<number>('open', path.join(W, `${name}-sync`), ['O_WRONLY', 'O_CREAT'], 0o644);
      await w.ok('write', fs1, b64('synced'));
      await w.ok('fsync', fs1);
      await eventually(`${to} sees the fsync'ed file`, async () => (await r.call('readfile', path.join(R, `${name}-sync`))).r === b64('synced'));
      await w.ok('close', fs1);
    });

    it(`namespace: mkdir, rename, link, symlink, chmod, unlink on ${from} show up on ${to}`, async () => {
      const [w, r] = from === 'artifacts' ? [pa, pj] : [pj, pa];
      const [W, R] = from === 'artifacts' ? [A, J] : [J, A];
      const d = `ns-${from}`;
      await w.ok('mkdir', path.join(W, d), 0o750);
      await w.writeFile(path.join(W, d, 'f'), 'content');
      await w.ok('link', path.join(W, d, 'f'), path.join(W, d, 'hard'));
      await w.ok('symlink', 'f', path.join(W, d, 'sym'));
      await w.ok('rename', path.join(W, d, 'f'), path.join(W, d, 'g'));
      await w.ok('chmod', path.join(W, d, 'g'), 0o600);
      await w.ok('setxattr', path.join(W, d, 'g'), 'user.k', b64('v'));
      await eventually(`${to} lists ${d}`, async () => JSON.stringify(await r.call('listdir', path.join(R, d))) === JSON.stringify({ r: ['g', 'hard', 'sym'] }));
      await eventually(`${to} sees nlink 2 and mode 0600`, async () => {
        const s = await r.call('stat', path.join(R, d, 'hard'));
        return (s.r as { nlink: number; perm: number } | undefined)?.nlink === 2 && (s.r as { perm: number }).perm === 0o600;
      });
      expect(await r.ok('readlink', path.join(R, d, 'sym'))).toBe('f');
      expect(await r.errno('stat', path.join(R, d, 'sym'))).toBe('ENOENT'); // f was renamed away
      expect((await r.readFile(path.join(R, d, 'g'))).toString()).toBe('content');
      expect(await r.ok('getxattr', path.join(R, d, 'g'), 'user.k')).toBe(b64('v'));
      await w.ok('unlink', path.join(W, d, 'hard'));
      await eventually(`${to} sees nlink 1`, async () => ((await r.call('stat', path.join(R, d, 'g'))).r as { nlink: number }).nlink === 1);
      for (const n of ['g', 'sym']) await w.ok('unlink', path.join(W, d, n));
      await w.ok('rmdir', path.join(W, d));
      await eventually(`${to} sees ${d} gone`, async () => (await r.errno('stat', path.join(R, d))) === 'ENOENT');
    });

    it(`flock held through ${from} blocks ${to}, and the other way round after release`, async () => {
      const [h, o] = from === 'artifacts' ? [pa, pj] : [pj, pa];
      const [H, O] = from === 'artifacts' ? [A, J] : [J, A];
      const name = `flock-${from}`;
      await h.writeFile(path.join(H, name), 'lock');
      await eventually('lock file visible', async () => (await o.errno('stat', path.join(O, name))) === 'OK');
      const hf = await h.ok<number>('open', path.join(H, name), ['O_RDWR']);
      const of = await o.ok<number>('open', path.join(O, name), ['O_RDWR']);
      await h.ok('flock', hf, 'ex');
      expect(await o.errno('flock', of, 'ex')).toBe('EAGAIN');
      expect(await o.errno('flock', of, 'sh')).toBe('EAGAIN');
      // a blocking request on the other mount is granted once the holder unlocks
      const waiting = o.ok('flock', of, 'ex', false);
      let granted = false;
      void waiting.then(() => (granted = true));
      await new Promise((r) => setTimeout(r, 500));
      expect(granted).toBe(false);
      await h.ok('flock', hf, 'un');
      await waiting;
      expect(await h.errno('flock', hf, 'sh')).toBe('EAGAIN');
      await o.ok('flock', of, 'sh');
      await h.ok('flock', hf, 'sh'); // shared locks from both mounts coexist
      expect(await o.errno('flock', of, 'ex')).toBe('EAGAIN');
      await h.ok('flock', hf, 'un');
      await o.ok('flock', of, 'un');
      await h.ok('close', hf);
      await o.ok('close', of);
    });

    it(`fcntl byte-range locks held through ${from} block ${to}: ranges, F_GETLK, SETLKW`, async () => {
      const [h, o] = from === 'artifacts' ? [pa, pj] : [pj, pa];
      const [H, O] = from === 'artifacts' ? [A, J] : [J, A];
      const name = `plock-${from}`;
      await h.writeFile(path.join(H, name), 'lock');
      await eventually('lock file visible', async () => (await o.errno('stat', path.join(O, name))) === 'OK');
      const hf = await h.ok<number>('open', path.join(H, name), ['O_RDWR']);
      const of = await o.ok<number>('open', path.join(O, name), ['O_RDWR']);
      await h.ok('lock', hf, 'setlk', 'wr', 0, 100);
      expect(await o.errno('lock', of, 'setlk', 'wr', 10, 10)).toBe('EAGAIN');
      expect(await o.errno('lock', of, 'setlk', 'rd', 99, 1)).toBe('EAGAIN');
      await o.ok('lock', of, 'setlk', 'wr', 100, 50); // no overlap
      const seen = await o.ok<{ type: string; start: number; len: number }>('lock', of, 'getlk', 'wr', 0, 10);
      expect(seen).toMatchObject({ type: 'wr', start: 0, len: 100 });
      expect(await h.ok('lock', hf, 'getlk', 'rd', 120, 1)).toMatchObject({ type: 'wr', start: 100, len: 50 });
      // read locks from both sides share a range
      await o.ok('lock', of, 'setlk', 'un', 0, 0);
      await h.ok('lock', hf, 'setlk', 'rd', 0, 100);
      await o.ok('lock', of, 'setlk', 'rd', 50, 100);
      expect(await h.errno('lock', hf, 'setlk', 'wr', 120, 1)).toBe('EAGAIN');
      await o.ok('lock', of, 'setlk', 'un', 0, 0);
      // SETLKW on the other mount waits for the holder
      await h.ok('lock', hf, 'setlk', 'wr', 0, 0);
      const waiting = o.ok('lock', of, 'setlkw', 'wr', 0, 0);
      let granted = false;
      void waiting.then(() => (granted = true));
      await new Promise((r) => setTimeout(r, 500));
      expect(granted).toBe(false);
      await h.ok('close', hf); // close drops the process's POSIX locks
      await waiting;
      const hf2 = await h.ok<number>('open', path.join(H, name), ['O_RDWR']);
      expect(await h.errno('lock', hf2, 'setlk', 'rd', 0, 1)).toBe('EAGAIN');
      await o.ok('close', of);
      await eventually('lock released by the other side', async () => (await h.errno('lock', hf2, 'setlk', 'wr', 0, 0)) === 'OK', 3000);
      await h.ok('close', hf2);
    });
  }
});
