/**
 * Direction 2 — we write, upstream reads (and writes back).
 *
 * For every cell of the matrix: OUR format (formatMeta + object store) and OUR VFS build the tree;
 * then the real juicefs must accept the volume: `juicefs fsck` passes, `juicefs dump` succeeds and
 * shows the same tree, `juicefs gc` finds no leaked object, and a `juicefs mount` reads identical
 * bytes, sizes, modes, owners, link counts, ns times and xattrs. Then juicefs writes more into the
 * volume through its mount, and our VFS must read that back exactly.
 *
 * A separate block builds the tree on Meta + BlockStore directly (no VFS), so an incompatibility
 * can be pinned on the engine or on the VFS write path.
 *
 * Run: npx vitest run test/compat/we-write.test.ts   (COMPAT_CELLS=none-s3-sa,... to narrow)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dump as jfsDump, fsck as jfsFsck, gc as jfsGc } from '../helpers/juicefs.js';
import { traced } from './lib/driver.js';
import { type Cell, type Env, MATRIX, selectedCells, startEnv, type Volume, volumeFor } from './lib/env.js';
import { Model } from './lib/model.js';
import { MountDriver, snapshotMount } from './lib/mountfs.js';
import { EngineDriver, openOurs, ourFormat, snapshotEngine, snapshotVfs, VfsDriver } from './lib/ours.js';
import { compareAttrs, compareToModel, type Expectation, type Snapshot } from './lib/snapshot.js';
import { compareDumpToModel, withJuicefsMount } from './lib/steps.js';
import { buildTree, extendTree, type TreeOptions } from './lib/tree.js';

const cells = selectedCells();
/** The engine-only block runs on the first standalone cell without S3 of the selection (or its first cell). */
const engineCell: Cell = cells.find((c) => c.meta === 'standalone' && c.store === 'file') ?? cells[0] ?? MATRIX[0]!;
let env: Env | undefined;

beforeAll(async () => {
  env = await startEnv('ww', cells);
}, 180_000);

afterAll(async () => {
  await env?.stop();
}, 60_000);

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} is missing: an earlier step of this cell failed`);
  return v;
}

async function formatOurs(vol: Volume): Promise<void> {
  await ourFormat({
    metaUrl: vol.metaUrl,
    name: vol.name,
    storage: vol.storage,
    bucket: vol.bucket,
    accessKey: vol.accessKey,
    secretKey: vol.secretKey,
    compression: vol.cell.compression,
    trashDays: vol.cell.trashDays,
    blockSizeKiB: vol.cell.blockSizeKiB,
    hashPrefix: vol.cell.hashPrefix,
  });
}

/** fsck + gc: every block a slice needs exists, and no object is left that no slice needs. */
async function upstreamChecks(vol: Volume): Promise<string[]> {
  const problems: string[] = [];
  const f = await jfsFsck(vol.metaUrl, ['--path', '/', '--recursive']);
  if (!f.ok || f.lostObjects !== 0 || f.brokenFiles !== 0)
    problems.push(`juicefs fsck failed (exit ${f.code}, ${f.lostObjects} lost objects, ${f.brokenFiles} broken files):\n${f.output.split('\n').slice(-25).join('\n')}`);
  const g = await jfsGc(vol.metaUrl);
  if (g.leaked.count !== 0) problems.push(`juicefs gc: ${g.leaked.count} leaked objects (${g.leaked.bytes} bytes):\n${g.output.split('\n').filter((l) => /leak/i.test(l)).slice(0, 20).join('\n')}`);
  if (g.skipped.count !== 0) problems.push(`juicefs gc skipped ${g.skipped.count} objects (JFS_GC_SKIPPEDTIME=0 not honoured?)`);
  console.log(
    `[${vol.cell.id}] fsck: ${f.blocks ?? '?'} blocks, ${f.slices ?? '?'} slices; gc: scanned ${g.scanned}, valid ${g.valid}, leaked ${g.leaked.count}, ` +
      `pending delete ${g.pendingDelete.count}, compacted ${g.compacted.count}, delfiles ${g.delFiles.count}, delslices ${g.delSlices.count}`,
  );
  if (g.scanned === 0) problems.push('juicefs gc scanned no objects: the volume has no data blocks?');
  if (g.pendingDelete.count !== 0 || g.delFiles.count !== 0)
    problems.push(`juicefs gc: ${g.pendingDelete.count} slices pending delete, ${g.delFiles.count} delfiles left behind`);
  // `compacted`: blocks of slices replaced by compaction, kept in delSlices while trash is on.
  if (g.valid + g.compacted.count + g.leaked.count + g.skipped.count + g.pendingDelete.count !== g.scanned) problems.push(`juicefs gc: scanned ${g.scanned}, valid ${g.valid}: ${g.output.split('\n').filter((l) => /scanned|WARN|ERROR/.test(l)).join(' | ')}`);
  return problems;
}

cells.forEach((c: Cell, i: number) => {
  describe(`we write, juicefs reads [${c.id}, ${c.tree}${c.big ? ', 64 MiB+1' : ''}, trash ${c.trashDays}]`, () => {
    const opts: TreeOptions = { seed: `ww-${c.id}`, size: c.tree, big: c.big };
    let vol: Volume | undefined;
    let model: Model | undefined;
    let expected: Expectation | undefined;
    let ourView: Snapshot | undefined;

    it('our format + VFS build the tree; our VFS shows what the model predicts', async () => {
      vol = await volumeFor(need(env, 'env'), c, 'ww', i + 1);
      await formatOurs(vol);
      const ours = await openOurs(vol.metaUrl);
      try {
        const d = new VfsDriver(ours.vfs);
        await buildTree(process.env.COMPAT_TRACE ? traced(d) : d, opts);
        ourView = await snapshotVfs(ours.vfs);
      } finally {
        await ours.close();
      }
      model = new Model();
      await buildTree(model, opts);
      expected = model.expect();
      expect(compareToModel('our vfs', expected, ourView)).toEqual([]);
    }, 240_000);

    it('juicefs fsck passes and juicefs gc finds no leaked objects', async () => {
      expect(await upstreamChecks(need(vol, 'volume'))).toEqual([]);
    }, 120_000);

    it('juicefs dump succeeds and shows the same tree', async () => {
      const d = await jfsDump(need(vol, 'volume').metaUrl);
      expect(d.Setting.Name).toBe(vol!.name);
      expect(d.Setting.Compression).toBe(c.compression);
      expect(d.Setting.BlockSize).toBe(c.blockSizeKiB ?? 4096);
      expect(!!d.Setting.HashPrefix).toBe(!!c.hashPrefix);
      expect(compareDumpToModel(d, need(expected, 'model'))).toEqual([]);
    }, 120_000);

    it('a juicefs mount reads identical bytes, sizes, modes, owners, link counts, times and xattrs', async () => {
      const v = need(vol, 'volume');
      const view = await withJuicefsMount(v.metaUrl, v.work, (mp) => snapshotMount(mp));
      expect([...compareToModel('juicefs mount', need(expected, 'model'), view), ...compareAttrs('ours', need(ourView, 'our view'), 'juicefs', view)]).toEqual([]);
    }, 240_000);

    it('juicefs writes more into our volume; we read it back exactly; fsck/gc stay clean', async () => {
      const v = need(vol, 'volume');
      const m = need(model, 'model');
      const jfsView = await withJuicefsMount(v.metaUrl, v.work, async (mp) => {
        await extendTree(new MountDriver(mp), opts);
        return snapshotMount(mp);
      });
      await extendTree(m, opts);
      const exp = m.expect();
      const ours = await openOurs(v.metaUrl, { readOnly: true });
      let snap: Snapshot;
      try {
        snap = await snapshotVfs(ours.vfs);
      } finally {
        await ours.close();
      }
      expect([
        ...compareToModel('juicefs mount', exp, jfsView),
        ...compareToModel('our vfs', exp, snap),
        ...compareAttrs('juicefs', jfsView, 'ours', snap),
        ...(await upstreamChecks(v)),
      ]).toEqual([]);
    }, 240_000);
  });
});

describe(`engine-level writes without the VFS (Meta + BlockStore) [${engineCell.id}, light]`, () => {
  const opts: TreeOptions = { seed: 'engine-only', size: 'light', big: false };
  let vol: Volume | undefined;
  let expected: Expectation | undefined;
  let ourView: Snapshot | undefined;

  it('the engine builds the tree; juicefs fsck/gc are clean', async () => {
    // DB 15: never used by the matrix (cells use 1..8).
    vol = await volumeFor(need(env, 'env'), engineCell, 'we', 15);
    await formatOurs(vol);
    const ours = await openOurs(vol.metaUrl);
    try {
      await buildTree(new EngineDriver(ours.meta, ours.blocks), opts);
      ourView = await snapshotEngine(ours.meta, ours.blocks);
    } finally {
      await ours.close();
    }
    const model = new Model();
    await buildTree(model, opts);
    expected = model.expect();
    expect([...compareToModel('engine', expected, ourView), ...(await upstreamChecks(vol))]).toEqual([]);
  }, 240_000);

  it('a juicefs mount reads it identically', async () => {
    const v = need(vol, 'volume');
    const view = await withJuicefsMount(v.metaUrl, v.work, (mp) => snapshotMount(mp));
    expect([...compareToModel('juicefs mount', need(expected, 'model'), view), ...compareAttrs('engine', need(ourView, 'engine view'), 'juicefs', view)]).toEqual([]);
  }, 240_000);
});
