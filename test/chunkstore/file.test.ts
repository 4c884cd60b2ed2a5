import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { FileObjectStore } from '../../chunkstore/object/file.js';
import { createObjectStore } from '../../chunkstore/object/index.js';
import { NotFoundError, type ObjectStore } from '../../chunkstore/types.js';
import { tmpDir } from '../helpers/servers.js';

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

describe('file object store', () => {
  let root: string;
  let store: FileObjectStore;
  beforeEach(async () => {
    root = await tmpDir('filestore');
    store = new FileObjectStore(root);
  });

  it('maps keys to <root>/<key>, creating directories', async () => {
    await store.put('vol/chunks/0/0/1_0_5', Buffer.from('hello'));
    const st = await stat(path.join(root, 'vol/chunks/0/0/1_0_5'));
    expect(st.size).toBe(5);
    expect((await stat(path.join(root, 'vol/chunks/0'))).isDirectory()).toBe(true);
    expect((await store.get('vol/chunks/0/0/1_0_5')).toString()).toBe('hello');
    expect(store.describe()).toBe(`file://${root}/`);
  });

  it('ranged reads, clipped at the end', async () => {
    await store.put('k', Buffer.from('0123456789'));
    expect((await store.get('k', 3, 4)).toString()).toBe('3456');
    expect((await store.get('k', 7)).toString()).toBe('789');
    expect((await store.get('k', 7, -1)).toString()).toBe('789');
    expect((await store.get('k', 8, 100)).toString()).toBe('89');
    expect((await store.get('k', 10, 5)).length).toBe(0);
  });

  it('missing get is NotFoundError, missing head is null, missing delete succeeds', async () => {
    await expect(store.get('nope/x')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.get('nope/x')).rejects.toMatchObject({ key: 'nope/x' });
    expect(await store.head('nope/x')).toBeNull();
    await store.delete('nope/x');
    await store.put('a', Buffer.from('x'));
    await store.delete('a');
    await expect(store.get('a')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('overwrites atomically and leaves no temp files behind', async () => {
    await store.put('d/k', Buffer.alloc(1000, 1));
    await store.put('d/k', Buffer.alloc(10, 2));
    expect(await store.get('d/k')).toEqual(Buffer.alloc(10, 2));
    expect(await readdir(path.join(root, 'd'))).toEqual(['k']);
    const info = await store.head('d/k');
    expect(info).toMatchObject({ key: 'd/k', size: 10 });
    expect(info!.mtime).toBeGreaterThan(Date.now() - 60_000);
  });

  it('lists recursively in lexicographic key order, honouring the prefix', async () => {
    const all = ['a-b', 'a/x', 'a/y/z', 'a0', 'b/1', 'b/10', 'b/2', 'ab/c'];
    for (const k of [...all].reverse()) await store.put(k, Buffer.from(k));
    expect(await keys(store, '')).toEqual([...all].sort());
    expect(await keys(store, 'a')).toEqual(['a-b', 'a/x', 'a/y/z', 'a0', 'ab/c']);
    expect(await keys(store, 'a/')).toEqual(['a/x', 'a/y/z']);
    expect(await keys(store, 'b/1')).toEqual(['b/1', 'b/10']);
    expect(await keys(store, 'zzz')).toEqual([]);
    const sizes = [];
    for await (const o of store.list('b/')) sizes.push(o.size);
    expect(sizes).toEqual([3, 4, 3]);
  });

  it('createObjectStore(file) prefixes Name/ and matches the upstream layout', async () => {
    const vol = createObjectStore({ Storage: 'file', Bucket: root + '/', Name: 'myjfs' });
    await vol.put('chunks/0/0/1_0_3', Buffer.from('abc'));
    expect((await stat(path.join(root, 'myjfs/chunks/0/0/1_0_3'))).size).toBe(3);
    expect(await keys(vol, 'chunks/')).toEqual(['chunks/0/0/1_0_3']);
    expect(vol.describe()).toBe(`file://${root}/myjfs/`);
    await expect(vol.get('chunks/x')).rejects.toMatchObject({ name: 'NotFoundError', key: 'chunks/x' });
  });

  it('refuses relative roots and ".." keys', async () => {
    expect(() => new FileObjectStore('rel/dir')).toThrow(/absolute/);
    await expect(store.put('../escape', Buffer.from('x'))).rejects.toThrow(/invalid object key/);
  });
});
