/**
 * Small fakes for unit tests of the write/read paths only (the proof that the VFS works is the
 * integration suite on real Redis + real object stores, vfs-*.test.ts).
 */
import type { Meta } from '../../metadata/interface.js';
import { buildSlices } from '../../metadata/slices.js';
import { CHUNK_SIZE, type Ino, type Slice, metaErr } from '../../metadata/types.js';
import { NotFoundError, type ObjectInfo, type ObjectStore } from '../../chunkstore/types.js';

/** An object store in a Map. */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, Buffer>();
  puts = 0;
  gets = 0;
  describe(): string {
    return 'memory://';
  }
  async get(key: string, offset = 0, length?: number): Promise<Buffer> {
    this.gets++;
    const v = this.objects.get(key);
    if (!v) throw new NotFoundError(key);
    const end = length === undefined || length < 0 ? v.length : Math.min(v.length, offset + length);
    return Buffer.from(v.subarray(offset, end));
  }
  async put(key: string, data: Buffer): Promise<void> {
    this.puts++;
    this.objects.set(key, Buffer.from(data));
  }
  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
  async head(key: string): Promise<ObjectInfo | null> {
    const v = this.objects.get(key);
    return v ? { key, size: v.length, mtime: Date.now() } : null;
  }
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for (const k of [...this.objects.keys()].sort()) if (k.startsWith(prefix)) yield { key: k, size: this.objects.get(k)!.length, mtime: 0 };
  }
}

export interface Committed {
  ino: Ino;
  indx: number;
  pos: number;
  slice: Slice;
  mtime: { sec: number; nsec: number };
  at: number;
}

/** The data-path part of Meta: slice ids, writeSlice, readChunk; everything else throws. */
export class FakeDataMeta {
  nextId = 1;
  readonly commits: Committed[] = [];
  readonly chunks = new Map<string, Slice[]>();
  readonly lengths = new Map<Ino, number>();
  /** When set, writeSlice fails with this error (once per call). */
  failCommit?: Error;
  commitDelayMs = 0;

  async newSliceId(): Promise<number> {
    return this.nextId++;
  }
  async writeSlice(ino: Ino, indx: number, pos: number, slice: Slice, mtime: { sec: number; nsec: number }): Promise<void> {
    if (this.commitDelayMs) await new Promise((r) => setTimeout(r, this.commitDelayMs));
    if (this.failCommit) throw this.failCommit;
    if (slice.pos !== pos || (slice.id !== 0 && (slice.off !== 0 || slice.len !== slice.size))) throw metaErr('EINVAL', 'bad record');
    const k = `${ino}_${indx}`;
    const l = this.chunks.get(k) ?? [];
    l.push({ ...slice });
    this.chunks.set(k, l);
    const end = indx * CHUNK_SIZE + pos + slice.len;
    if (end > (this.lengths.get(ino) ?? 0)) this.lengths.set(ino, end);
    this.commits.push({ ino, indx, pos, slice: { ...slice }, mtime, at: Date.now() });
  }
  async readChunk(ino: Ino, indx: number): Promise<Slice[]> {
    return buildSlices(this.chunks.get(`${ino}_${indx}`) ?? []);
  }
  asMeta(): Meta {
    return new Proxy(this, {
      get(t, p) {
        if (p in t) {
          const v = (t as unknown as Record<string | symbol, unknown>)[p];
          return typeof v === 'function' ? v.bind(t) : v;
        }
        return () => {
          throw new Error(`FakeDataMeta: ${String(p)} not implemented`);
        };
      },
    }) as unknown as Meta;
  }
}
