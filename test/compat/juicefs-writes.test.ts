/**
 * Direction 1 — upstream writes, we read.
 *
 * For every cell of the matrix (compression × object store × Redis mode): the real `juicefs
 * format` + `juicefs mount` (kernel FUSE) build a tree; after unmounting, our engine + block
 * store, and then our VFS, must read every byte and every attribute exactly as the juicefs mount
 * showed them (inode numbers, modes, owners, link counts, nanosecond times, symlink targets,
 * xattrs, directory listings), and as the model of the script predicts.
 *
 * Run: npx vitest run test/compat/juicefs-writes.test.ts   (COMPAT_CELLS=none-s3-sa,... to narrow)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { format as jfsFormat, fsck as jfsFsck } from '../helpers/juicefs.js';
import { type Cell, type Env, juicefsFormatOptions, selectedCells, startEnv, type Volume, volumeFor } from './lib/env.js';
import { traced } from './lib/driver.js';
import { Model } from './lib/model.js';
import { MountDriver, snapshotMount } from './lib/mountfs.js';
import { openOurs, snapshotEngine, snapshotVfs, VfsDriver } from './lib/ours.js';
import { compareAttrs, compareToModel, type Expectation, type Snapshot } from './lib/snapshot.js';
import { withJuicefsMount } from './lib/steps.js';
import { buildTree, extendTree, type TreeOptions } from './lib/tree.js';

const cells = selectedCells();
let env: Env | undefined;

beforeAll(async () => {
  env = await startEnv('jw', cells);
}, 180_000);

afterAll(async () => {
  await env?.stop();
}, 60_000);

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} is missing: an earlier step of this cell failed`);
  return v;
}

cells.forEach((c: Cell, i: number) => {
  describe(`juicefs writes, we read [${c.id}, ${c.tree}${c.big ? ', 64 MiB+1' : ''}, trash ${c.trashDays}]`, () => {
    const opts: TreeOptions = { seed: `jw-${c.id}`, size: c.tree, big: c.big };
    let vol: Volume | undefined;
    let expected: Expectation | undefined;
    let jfsView: Snapshot | undefined;

    it('juicefs format + mount build the tree; the mount shows what the model predicts', async () => {
      vol = await volumeFor(need(env, 'env'), c, 'jw', i + 1);
      await jfsFormat(vol.metaUrl, vol.name, juicefsFormatOptions(vol));
      jfsView = await withJuicefsMount(vol.metaUrl, vol.work, async (mp) => {
        await buildTree(process.env.COMPAT_TRACE ? traced(new MountDriver(mp)) : new MountDriver(mp), opts);
        return snapshotMount(mp);
      });
      const model = new Model();
      await buildTree(model, opts);
      expected = model.expect();
      expect(compareToModel('juicefs mount', expected, jfsView)).toEqual([]);
    }, 240_000);

    it('our engine + block store (Meta.readChunk + BlockStore.read) read every byte and attribute', async () => {
      const v = need(vol, 'volume');
      const ours = await openOurs(v.metaUrl, { readOnly: true });
      let snap: Snapshot;
      try {
        snap = await snapshotEngine(ours.meta, ours.blocks);
      } finally {
        await ours.close();
      }
      const problems = [
        ...compareToModel('engine', need(expected, 'model'), snap),
        ...compareAttrs('juicefs', need(jfsView, 'juicefs view'), 'engine', snap),
      ];
      expect(problems).toEqual([]);
    }, 120_000);

    it('our VFS reads every byte and attribute', async () => {
      const v = need(vol, 'volume');
      const ours = await openOurs(v.metaUrl, { readOnly: true });
      let snap: Snapshot;
      try {
        snap = await snapshotVfs(ours.vfs);
      } finally {
        await ours.close();
      }
      const problems = [
        ...compareToModel('vfs', need(expected, 'model'), snap),
        ...compareAttrs('juicefs', need(jfsView, 'juicefs view'), 'vfs', snap),
      ];
      expect(problems).toEqual([]);
    }, 120_000);

    // Full cells only (runtime): our VFS also writes into the upstream-formatted volume.
    if (c.tree === 'full')
      it('our VFS writes more into the juicefs volume; juicefs fsck and a juicefs mount agree', async () => {
      const v = need(vol, 'volume');
      const model = new Model();
      await buildTree(model, opts);
      await extendTree(model, opts);
      const exp = model.expect();
      const ours = await openOurs(v.metaUrl);
      let ourView: Snapshot;
      try {
        await extendTree(new VfsDriver(ours.vfs), opts);
        ourView = await snapshotVfs(ours.vfs);
      } finally {
        await ours.close();
      }
      const f = await jfsFsck(v.metaUrl, ['--path', '/', '--recursive']);
      const jfsAfter = await withJuicefsMount(v.metaUrl, v.work, (mp) => snapshotMount(mp));
      expect([
        ...compareToModel('our vfs', exp, ourView),
        ...compareToModel('juicefs mount', exp, jfsAfter),
        ...compareAttrs('ours', ourView, 'juicefs', jfsAfter),
        ...(f.ok ? [] : [`juicefs fsck --path / --recursive failed:\n${f.output.split('\n').filter((l) => /WARN|ERROR|FATAL|lost|broken/.test(l)).join('\n')}`]),
      ]).toEqual([]);
    }, 180_000);
  });
});
