/**
 * Per-block compression exactly as JuiceFS stores it (juicefs-format.md 5.3):
 *  - `none`: raw bytes;
 *  - `lz4`:  LZ4 raw block (no frame, no length prefix; the plaintext length is the key's bsize);
 *  - `zstd`: one standard Zstandard frame, level 1.
 * Decoders produce exactly `bsize` bytes and fail otherwise, like upstream, so a truncated or
 * foreign object is an error and never silently short data.
 *
 * lz4 uses lz4-napi (lz4_flex, a native addon shipped per platform inside npm packages); its
 * async calls run on the libuv pool so large blocks do not stall the event loop. Its block API
 * prepends a 4-byte little-endian length, which we strip on compress and add on decompress.
 * zstd uses the WebAssembly build of the reference C library (@bokuweb/zstd-wasm); we drive its
 * exported C functions directly so the decoder gets an output buffer of exactly bsize bytes and
 * frames without a content-size field decode too.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import lz4 from 'lz4-napi';
import type { Compression } from './types.js';

export interface Codec {
  readonly name: Compression;
  /** Object bytes for one plaintext block. May return `block` itself (none). */
  compress(block: Buffer): Promise<Buffer>;
  /** Plaintext of one block object; rejects with CorruptBlockError unless exactly `bsize` bytes result. */
  decompress(data: Buffer, bsize: number): Promise<Buffer>;
}

export class CorruptBlockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CorruptBlockError';
  }
}

const noneCodec: Codec = {
  name: 'none',
  async compress(block) {
    return block;
  },
  async decompress(data, bsize) {
    if (data.length !== bsize) throw new CorruptBlockError(`block has ${data.length} bytes, expected ${bsize}`);
    return data;
  },
};

const lz4Codec: Codec = {
  name: 'lz4',
  async compress(block) {
    const framed = await lz4.compress(block);
    return framed.subarray(4);
  },
  async decompress(data, bsize) {
    const framed = Buffer.allocUnsafe(data.length + 4);
    framed.writeUInt32LE(bsize, 0);
    data.copy(framed, 4);
    let out: Buffer;
    try {
      out = await lz4.uncompress(framed);
    } catch (err) {
      throw new CorruptBlockError(`lz4: cannot decode block of ${bsize} bytes: ${(err as Error).message}`, { cause: err });
    }
    if (out.length !== bsize) throw new CorruptBlockError(`lz4: decoded ${out.length} bytes, expected ${bsize}`);
    return out;
  },
};

/** The part of the Emscripten module of @bokuweb/zstd-wasm that we call. */
interface ZstdWasm {
  HEAPU8: Uint8Array;
  _malloc(n: number): number;
  _free(p: number): void;
  _ZSTD_compressBound(n: number): number;
  _ZSTD_compress(dst: number, cap: number, src: number, n: number, level: number): number;
  _ZSTD_decompress(dst: number, cap: number, src: number, n: number): number;
  _ZSTD_isError(code: number): number;
}

const ZSTD_LEVEL = 1;
let zstdReady: Promise<ZstdWasm> | undefined;

function loadZstd(): Promise<ZstdWasm> {
  zstdReady ??= (async () => {
    const require = createRequire(import.meta.url);
    const main = require.resolve('@bokuweb/zstd-wasm');
    const pkg = require(main) as { init(): Promise<void> };
    await pkg.init();
    // The Emscripten module is not in the package's "exports"; load the sibling file by path
    // (the same module instance the package initialised).
    return (require(path.join(path.dirname(main), 'module.js')) as { Module: ZstdWasm }).Module;
  })();
  return zstdReady;
}

/** Runs `fn` with `n` bytes of wasm heap, always freeing it. */
function withHeap<T>(z: ZstdWasm, n: number, fn: (ptr: number) => T): T {
  const ptr = z._malloc(Math.max(n, 1));
  if (!ptr) throw new Error(`zstd: out of wasm memory (${n} bytes)`);
  try {
    return fn(ptr);
  } finally {
    z._free(ptr);
  }
}

const zstdCodec: Codec = {
  name: 'zstd',
  async compress(block) {
    const z = await loadZstd();
    const bound = z._ZSTD_compressBound(block.length);
    return withHeap(z, block.length, (src) =>
      withHeap(z, bound, (dst) => {
        z.HEAPU8.set(block, src); // HEAPU8 is re-read after every malloc: the heap may have grown
        const n = z._ZSTD_compress(dst, bound, src, block.length, ZSTD_LEVEL);
        if (z._ZSTD_isError(n)) throw new Error(`zstd: compression failed (code ${n})`);
        return Buffer.from(z.HEAPU8.subarray(dst, dst + (n >>> 0)));
      }),
    );
  },
  async decompress(data, bsize) {
    const z = await loadZstd();
    return withHeap(z, data.length, (src) =>
      withHeap(z, bsize, (dst) => {
        z.HEAPU8.set(data, src);
        const n = z._ZSTD_decompress(dst, bsize, src, data.length);
        if (z._ZSTD_isError(n)) throw new CorruptBlockError(`zstd: cannot decode block of ${bsize} bytes (code ${n})`);
        if (n >>> 0 !== bsize) throw new CorruptBlockError(`zstd: decoded ${n >>> 0} bytes, expected ${bsize}`);
        return Buffer.from(z.HEAPU8.subarray(dst, dst + bsize));
      }),
    );
  },
};

export function codecFor(compression: Compression | string): Codec {
  switch ((compression || 'none').toLowerCase()) {
    case 'none':
      return noneCodec;
    case 'lz4':
      return lz4Codec;
    case 'zstd':
      return zstdCodec;
    default:
      throw new Error(`unsupported compression: ${compression}`);
  }
}
