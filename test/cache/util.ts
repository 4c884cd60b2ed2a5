/** Shared helpers of the block-cache tests. */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const UUID = '5f6b2c1e-8a3d-4c1b-9e2f-0a1b2c3d4e5f';

/** Relative block key as in juicefs-format.md 5.2 (no hash prefix). */
export function blockKey(id: number, index: number, bsize: number): string {
  return `chunks/${Math.floor(id / 1_000_000)}/${Math.floor(id / 1000)}/${id}_${index}_${bsize}`;
}

export function block(len: number): Buffer {
  return randomBytes(len);
}

export async function scratchDir(tag: string): Promise<string> {
  const base = join(tmpdir(), 'cache-eng');
  await fsp.mkdir(base, { recursive: true });
  return fsp.mkdtemp(join(base, `${tag}-`));
}

/** Every regular file under `dir` with its size (relative paths). */
export async function listFiles(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  async function walk(d: string, prefix: string): Promise<void> {
    let names;
    try {
      names = await fsp.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n.name);
      if (n.isDirectory()) await walk(p, prefix + n.name + '/');
      else if (n.isFile()) {
        try {
          out.set(prefix + n.name, (await fsp.stat(p)).size);
        } catch {
          // removed while walking
        }
      }
    }
  }
  await walk(dir, '');
  return out;
}

export async function bytesOnDisk(dir: string): Promise<number> {
  let sum = 0;
  for (const size of (await listFiles(dir)).values()) sum += size;
  return sum;
}

/** Bitwise CRC32-C (Castagnoli, reflected poly 0x82F63B78): an independent reference for the lib. */
export function referenceCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
