/**
 * The trees both directions build: every kind of object and write pattern that changes how data
 * and metadata are laid out (block-boundary sizes, two chunks, holes, overwrites that stack slices,
 * truncate down/up, many small appends, links, xattrs, odd names, modes/owners/ns times).
 * The same script runs against the model and against a real client.
 */
import { bytes, rng, text } from './content.js';
import type { FsDriver, Write } from './driver.js';

const MiB = 1 << 20;
const BS = 4 * MiB;
const CHUNK = 64 * MiB;

export interface TreeOptions {
  /** Seed for all content (different volumes get different bytes). */
  seed: string;
  /** 'full': every case; 'light': one of each kind, small sizes. */
  size: 'full' | 'light';
  /** Include the 64 MiB + 1 file (two chunks). */
  big: boolean;
}

export const UNICODE_NAME = 'ünïcødé-日本語-🎉.txt';
/** 255 bytes of ASCII. */
export const LONG_ASCII = 'n'.repeat(255);
/** 85 × U+8A9E (3 bytes in UTF-8) = 255 bytes. */
export const LONG_UTF8 = '語'.repeat(85);

/** Sequential writes of `data` in `piece`-sized calls (like cp does). */
function pieces(data: Buffer, piece: number, start = 0): Write[] {
  const out: Write[] = [];
  for (let off = 0; off < data.length; off += piece) out.push({ off: start + off, data: data.subarray(off, off + piece) });
  return out;
}

export async function buildTree(d: FsDriver, o: TreeOptions): Promise<void> {
  const s = (name: string) => `${o.seed}/${name}`;
  const full = o.size === 'full';

  await d.mkdir('dir', 0o755);
  await d.mkdir('dir/sub', 0o750);
  await d.mkdir('dir/sub/deeper', 0o700);

  // Sizes around the block size and the empty file.
  await d.writeFile('empty', [], { mode: 0o644 });
  await d.writeFile('one', [{ off: 0, data: bytes(s('one'), 1) }]);
  const sizes = full ? [BS - 1, BS, BS + 1] : [BS + 1];
  for (const n of sizes) await d.writeFile(`size-${n}`, pieces(bytes(s(`size-${n}`), n), MiB));
  // Compressible content: lz4 blocks that actually shrink.
  await d.writeFile('dir/text', pieces(text(s('text'), full ? 5 * MiB + 77 : 300_000), 256 * 1024));

  if (o.big) await d.writeFile('big', pieces(bytes(s('big'), CHUNK + 1), MiB));

  // A sparse file: data, a hole across block boundaries, data, then extended by truncate.
  if (full) {
    await d.writeFile('sparse', [
      { off: 100, data: bytes(s('sparse-a'), 1000) },
      { off: 9 * MiB + 5, data: bytes(s('sparse-b'), 3000) },
    ]);
    await d.truncate('sparse', 12 * MiB);
  } else {
    await d.writeFile('sparse', [{ off: 5 * MiB + 3, data: bytes(s('sparse'), 10) }]);
  }

  // Overwritten in the middle by a second open (a second slice on top of the first, crossing a block boundary).
  const baseLen = full ? 6 * MiB : MiB + 5;
  await d.writeFile('overwritten', pieces(bytes(s('ow-base'), baseLen), MiB));
  const owAt = full ? BS - 50 * 1024 : 500_000;
  await d.writeFile('overwritten', [{ off: owAt, data: bytes(s('ow-patch'), 100 * 1024) }]);
  if (full) await d.writeFile('overwritten', [{ off: 10, data: bytes(s('ow-patch2'), 7) }]);

  // Truncated down then up (the regrown tail must read as zeros), then written past the old end.
  await d.writeFile('trunc', pieces(bytes(s('trunc'), full ? 3 * MiB : 200_000), MiB));
  await d.truncate('trunc', full ? MiB + 3 : 1000);
  await d.truncate('trunc', full ? 5 * MiB : 300_000);
  await d.writeFile('trunc', [{ off: full ? 4 * MiB : 250_000, data: bytes(s('trunc-tail'), 10) }]);

  // Many small appends with fsyncs between groups (several slices in one chunk).
  const r = rng(s('appends'));
  const appends: Write[] = [];
  const count = full ? 400 : 60;
  for (let i = 0; i < count; i++) {
    appends.push({ append: bytes(s(`append-${i}`), 1 + (r() % 5000)) });
    if (i % 50 === 49) appends.push('fsync');
  }
  await d.writeFile('appended', appends, { append: true });

  // Symlinks: relative, absolute dangling, long target.
  await d.symlink('one', 'link-rel');
  await d.symlink('/nonexistent/absolute/target', 'dir/link-abs');
  if (full) await d.symlink('x/'.repeat(500) + 'end', 'link-long');

  // Hard links across directories.
  await d.writeFile('hard', [{ off: 0, data: bytes(s('hard'), 12345) }]);
  await d.link('hard', 'dir/hard2');
  if (full) await d.link('hard', 'dir/sub/hard3');

  // Extended attributes on a file and a directory (empty and binary values too).
  await d.setxattr('one', 'user.a', Buffer.from('v1'));
  await d.setxattr('one', 'user.bin', Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  await d.setxattr('dir', 'user.dirattr', Buffer.from('d'));
  if (full) {
    await d.setxattr('one', 'user.empty', Buffer.alloc(0));
    await d.setxattr('hard', 'user.big', bytes(s('xattr-big'), 4000));
  }

  // Names: unicode, 255 bytes ASCII, 255 bytes of 3-byte characters.
  await d.writeFile(UNICODE_NAME, [{ off: 0, data: bytes(s('unicode'), 333) }]);
  await d.writeFile(`dir/${LONG_ASCII}`, [{ off: 0, data: bytes(s('long-ascii'), 10) }]);
  if (full) await d.mkdir(`dir/sub/${LONG_UTF8}`, 0o755);
  await d.writeFile('dir/sub/deeper/leaf', [{ off: 0, data: bytes(s('leaf'), 4097) }]);

  // Modes, owners, nanosecond times.
  await d.writeFile('owned', [{ off: 0, data: bytes(s('owned'), 10) }], { mode: 0o600 });
  await d.chown('owned', 1234, 5678);
  await d.chmod('owned', full ? 0o4751 : 0o640);
  await d.utimes('owned', 1_600_000_000_123_456_789n, 1_500_000_000_987_654_321n);
  await d.mkdir('dir/sticky', 0o755);
  await d.chmod('dir/sticky', 0o1777);
  await d.chown('dir/sticky', 42, 43);
  await d.utimes('dir/sticky', 1_234_567_890_000_000_001n, 1_234_567_891_999_999_999n);
  if (full) {
    await d.mkfifo('fifo', 0o640);
    await d.mkchr('dir/null-like', 0o600, 1, 3);
    await d.mkchr('dir/big-minor', 0o644, 254, 300);
  }

  // Renames (one replacing an existing file) and an unlink: what the namespace looks like after.
  await d.writeFile('tmp-name', [{ off: 0, data: bytes(s('renamed'), 2000) }]);
  await d.rename('tmp-name', 'dir/renamed');
  await d.writeFile('victim', [{ off: 0, data: bytes(s('victim'), 5000) }]);
  await d.writeFile('replacer', [{ off: 0, data: bytes(s('replacer'), 6000) }]);
  await d.rename('replacer', 'victim');
  await d.writeFile('gone', [{ off: 0, data: bytes(s('gone'), 100_000) }]);
  await d.unlink('gone');
  if (full) {
    await d.mkdir('dir/empty-dir-to-remove', 0o755);
    await d.rmdir('dir/empty-dir-to-remove');
  }
}

/**
 * More changes made by the *other* client on an existing tree (built by buildTree with the same
 * options): modify files the first client wrote, add new ones, link, rename, unlink, truncate.
 */
export async function extendTree(d: FsDriver, o: TreeOptions): Promise<void> {
  const s = (name: string) => `${o.seed}/extend/${name}`;
  await d.writeFile('one', [{ append: bytes(s('one-more'), 4096 * 3 + 1) }], { append: true });
  await d.writeFile(`size-${BS + 1}`, [{ off: BS - 10, data: bytes(s('patch'), 20) }]);
  await d.writeFile('jfs-new', pieces(bytes(s('new'), 5 * MiB + 1), MiB));
  await d.mkdir('jfs-dir', 0o711);
  await d.symlink('../jfs-new', 'jfs-dir/link');
  await d.link('dir/renamed', 'jfs-dir/hard-to-ours');
  await d.setxattr('dir/sub', 'user.from-other', Buffer.from('x'));
  await d.truncate('appended', 1234);
  await d.rename('dir/text', 'jfs-dir/text-moved');
  await d.unlink('dir/link-abs');
  await d.chmod('dir/sub', 0o705);
}
