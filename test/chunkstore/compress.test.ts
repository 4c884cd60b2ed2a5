import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { codecFor, CorruptBlockError } from '../../chunkstore/compress.js';

/** Deterministic, compressible text with some entropy (like source files). */
function textish(n: number, seed = 7): Buffer {
  const words = ['alpha ', 'beta ', 'gamma ', 'delta\n', 'slice ', 'block ', 'chunk ', '0123456789 '];
  const out = Buffer.allocUnsafe(n);
  let pos = 0;
  let s = seed;
  while (pos < n) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    pos += out.write(words[s % words.length]!, pos);
  }
  return out;
}

const samples: [string, Buffer][] = [
  ['1 byte', Buffer.from([42])],
  ['text 100 KiB', textish(100 * 1024)],
  ['random 64 KiB', randomBytes(64 * 1024)],
  ['zeros 4 MiB', Buffer.alloc(4 << 20)],
  ['text 4 MiB', textish(4 << 20, 3)],
  ['odd size 2109497', textish(2109497, 5)],
];

describe.each(['none', 'lz4', 'zstd'] as const)('%s codec', (name) => {
  const codec = codecFor(name);

  it.each(samples)('round-trips %s', async (_label, block) => {
    const packed = await codec.compress(block);
    const back = await codec.decompress(packed, block.length);
    expect(back.length).toBe(block.length);
    expect(back.equals(block)).toBe(true);
    if (name !== 'none' && block.length >= 4096 && block.every((b) => b === 0)) expect(packed.length).toBeLessThan(block.length / 50);
  });

  it('rejects a bsize larger than the content (never short data)', async () => {
    const block = textish(10_000);
    const packed = await codec.compress(block);
    await expect(codec.decompress(packed, block.length + 1)).rejects.toBeInstanceOf(CorruptBlockError);
  });

  it('rejects a bsize smaller than the content', async () => {
    const block = textish(10_000);
    const packed = await codec.compress(block);
    await expect(codec.decompress(packed, block.length - 1)).rejects.toBeInstanceOf(CorruptBlockError);
  });
});

describe('formats on the wire', () => {
  it('lz4 output is a raw block: no frame magic, no size prefix; a hand-made raw block decodes', async () => {
    const lz4 = codecFor('lz4');
    const block = textish(50_000);
    const packed = await lz4.compress(block);
    expect(packed.readUInt32LE(0)).not.toBe(0x184d2204); // LZ4 frame magic
    expect(packed.readUInt32LE(0)).not.toBe(block.length); // lz4-napi's size prefix was stripped
    // Token 0x50: 5 literals, no match (a valid final sequence of an LZ4 raw block).
    const raw = Buffer.concat([Buffer.from([0x50]), Buffer.from('hello')]);
    expect((await lz4.decompress(raw, 5)).toString()).toBe('hello');
    // Literals then a match of offset 5, length 4+6=10: "hellohellohello" + 5 final literals.
    const withMatch = Buffer.from([0x56, ...Buffer.from('hello'), 0x05, 0x00, 0x50, ...Buffer.from('world')]);
    expect((await lz4.decompress(withMatch, 20)).toString()).toBe('hellohellohelloworld');
  });

  it('zstd output is one standard frame with the content size; frames without it decode too', async () => {
    const zstd = codecFor('zstd');
    const block = textish(70_000);
    const packed = await zstd.compress(block);
    expect(packed.readUInt32LE(0)).toBe(0xfd2fb528); // zstd frame magic
    // Hand-made frame: descriptor 0x00 (no content size, not single-segment), window descriptor,
    // one raw last block of 5 bytes (header = last | raw<<1 | size<<3).
    const header = (5 << 3) | 1;
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, header & 0xff, (header >> 8) & 0xff, header >> 16, ...Buffer.from('hello')]);
    expect((await zstd.decompress(frame, 5)).toString()).toBe('hello');
  });

  it('corrupt input is a CorruptBlockError', async () => {
    for (const name of ['lz4', 'zstd'] as const) {
      const codec = codecFor(name);
      const packed = Buffer.from(await codec.compress(textish(30_000)));
      packed.fill(0xff, 0, Math.min(packed.length, 64));
      await expect(codec.decompress(packed, 30_000)).rejects.toBeInstanceOf(CorruptBlockError);
    }
  });

  it('unknown compression names are refused', () => {
    expect(() => codecFor('brotli')).toThrow(/unsupported compression/);
    expect(codecFor('').name).toBe('none');
    expect(codecFor('LZ4').name).toBe('lz4');
  });
});
