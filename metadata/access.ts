/**
 * Permission rules shared by every engine: POSIX mode-bit checks (no ACLs yet), sticky bit,
 * name validation. Kept apart from Redis so they can be tested alone.
 */
import { type Attr, type Ctx, FileType, MAX_NAME_LEN, metaErr } from './types.js';

export const MODE_R = 4;
export const MODE_W = 2;
export const MODE_X = 1;

/** The rwx bits `ctx` holds on `attr` (0..7). Root holds everything except x on a file with no x bit at all. */
export function permOf(ctx: Ctx, attr: Attr): number {
  if (ctx.uid === 0) {
    if (attr.type !== FileType.Dir && (attr.mode & 0o111) === 0) return 6;
    return 7;
  }
  if (ctx.uid === attr.uid) return (attr.mode >> 6) & 7;
  if (ctx.gid === attr.gid || ctx.gids.includes(attr.gid)) return (attr.mode >> 3) & 7;
  return attr.mode & 7;
}

export function checkAccess(ctx: Ctx, attr: Attr, mask: number): void {
  if (ctx.checkPermission === false) return;
  if ((permOf(ctx, attr) & mask) !== mask) throw metaErr('EACCES');
}

/** Sticky directory: only the owner of the entry, of the directory, or root may remove/rename it. */
export function checkSticky(ctx: Ctx, dir: Attr, entry: Attr): void {
  if (ctx.checkPermission === false || ctx.uid === 0) return;
  if ((dir.mode & 0o1000) !== 0 && ctx.uid !== dir.uid && ctx.uid !== entry.uid) throw metaErr('EPERM');
}

export function toName(name: Buffer | string): Buffer {
  return typeof name === 'string' ? Buffer.from(name) : name;
}

export function validName(name: Buffer): void {
  if (name.length === 0) throw metaErr('EINVAL', 'empty name');
  if (name.length > MAX_NAME_LEN) throw metaErr('ENAMETOOLONG');
  if (name.includes(0x2f) || name.includes(0)) throw metaErr('EINVAL', 'invalid character in name');
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
    throw metaErr('EEXIST');
  }
}
