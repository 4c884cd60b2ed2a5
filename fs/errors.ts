/**
 * Errno helpers for the VFS. Everything the VFS rejects with is a MetaError (the transport maps any
 * other rejection to EIO); errors from the object store or the network become EIO here so callers
 * see a POSIX error, not a stack trace.
 */
import { ERRNO, type ErrnoCode, MetaError } from '../metadata/types.js';

/**
 * A MetaError for an errno the shared ERRNO table lacks (ENXIO for lseek past the data). The
 * `code` stays a known name so code switching on it keeps working; `errno` carries the real value.
 */
class RawErrnoError extends MetaError {
  constructor(
    code: ErrnoCode,
    private readonly raw: number,
    readonly rawName: string,
    message?: string,
  ) {
    super(code, message ?? rawName);
  }
  override get errno(): number {
    return this.raw;
  }
}

export const ENXIO_ERRNO = 6;

/** ENXIO: lseek SEEK_DATA/SEEK_HOLE at or past EOF, or SEEK_DATA with no data after the offset. */
export function enxio(): MetaError {
  // 'EINVAL' is only the nearest named code; `errno` (what the transport sends) is 6.
  return new RawErrnoError('EINVAL', ENXIO_ERRNO, 'ENXIO');
}

export function errnoName(e: unknown): string {
  if (e instanceof RawErrnoError) return e.rawName;
  if (e instanceof MetaError) return e.code;
  return 'EIO';
}

/** Map anything thrown below the VFS to a MetaError. */
export function asMetaError(e: unknown): MetaError {
  if (e instanceof MetaError) return e;
  return new MetaError('EIO', e instanceof Error ? e.message : String(e));
}

export function isErrno(e: unknown, code: ErrnoCode): boolean {
  return e instanceof MetaError && e.errno === ERRNO[code];
}
