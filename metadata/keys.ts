/**
 * Key names of the JuiceFS Redis keyspace (juicefs-format.md 1.2): always prefix + name, except
 * the field names inside `sliceRef`. Never add product keys under a volume prefix: upstream jobs
 * scan i*, c*, d*, k*, session* and would misread them.
 */
import type { Ino } from './types.js';

export class Keys {
  readonly setting: string;
  readonly allSessions: string;
  readonly sessionInfos: string;
  readonly delfiles: string;
  readonly delSlices: string;
  readonly sliceRef: string;
  readonly usedSpace: string;
  readonly totalInodes: string;
  readonly nextInode: string;
  readonly nextChunk: string;
  readonly nextSession: string;
  readonly nextTrash: string;
  readonly dirUsedInodes: string;
  readonly dirUsedSpace: string;
  readonly dirDataLength: string;
  readonly dirQuota: string;
  readonly dirQuotaUsedSpace: string;
  readonly dirQuotaUsedInodes: string;
  readonly detachedNodes: string;
  readonly lastCleanupSessions: string;
  readonly lastCleanupFiles: string;
  readonly nextCleanupSlices: string;
  readonly lastCleanupTrash: string;

  constructor(readonly prefix: string) {
    const p = prefix;
    this.setting = p + 'setting';
    this.allSessions = p + 'allSessions';
    this.sessionInfos = p + 'sessionInfos';
    this.delfiles = p + 'delfiles';
    this.delSlices = p + 'delSlices';
    this.sliceRef = p + 'sliceRef';
    this.usedSpace = p + 'usedSpace';
    this.totalInodes = p + 'totalInodes';
    this.nextInode = p + 'nextinode';
    this.nextChunk = p + 'nextchunk';
    this.nextSession = p + 'nextsession';
    this.nextTrash = p + 'nextTrash';
    this.dirUsedInodes = p + 'dirUsedInodes';
    this.dirUsedSpace = p + 'dirUsedSpace';
    this.dirDataLength = p + 'dirDataLength';
    this.dirQuota = p + 'dirQuota';
    this.dirQuotaUsedSpace = p + 'dirQuotaUsedSpace';
    this.dirQuotaUsedInodes = p + 'dirQuotaUsedInodes';
    this.detachedNodes = p + 'detachedNodes';
    this.lastCleanupSessions = p + 'lastCleanupSessions';
    this.lastCleanupFiles = p + 'lastCleanupFiles';
    this.nextCleanupSlices = p + 'nextCleanupSlices';
    this.lastCleanupTrash = p + 'lastCleanupTrash';
  }

  inode(ino: Ino): string {
    return this.prefix + 'i' + ino;
  }
  entry(ino: Ino): string {
    return this.prefix + 'd' + ino;
  }
  parents(ino: Ino): string {
    return this.prefix + 'p' + ino;
  }
  chunk(ino: Ino, indx: number): string {
    return this.prefix + 'c' + ino + '_' + indx;
  }
  symlink(ino: Ino): string {
    return this.prefix + 's' + ino;
  }
  xattr(ino: Ino): string {
    return this.prefix + 'x' + ino;
  }
  flock(ino: Ino): string {
    return this.prefix + 'lockf' + ino;
  }
  plock(ino: Ino): string {
    return this.prefix + 'lockp' + ino;
  }
  locked(sid: number): string {
    return this.prefix + 'locked' + sid;
  }
  session(sid: number): string {
    return this.prefix + 'session' + sid;
  }
}

/** `sliceRef` field (unprefixed). */
export function sliceRefField(id: number, size: number): string {
  return 'k' + id + '_' + size;
}

/** Lock owner field: "{sid}_{owner:016X}". */
export function lockOwnerField(sid: number, owner: bigint): string {
  return sid + '_' + BigInt.asUintN(64, owner).toString(16).toUpperCase().padStart(16, '0');
}
