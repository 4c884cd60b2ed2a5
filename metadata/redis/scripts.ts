/**
 * Server-side lookup in one round trip (upstream loads an equivalent script for its Redis engine):
 * HGET the dentry, decode the inode number from its 8 big-endian bytes, GET the inode's attributes.
 * Without it a lookup costs two round trips (HGET, then GET).
 *
 * Used only where scripting is allowed and all keys live on one server: a standalone Redis with a
 * user that may run scripts. Workspace sessions made by the orchestrator may not (their ACL has no
 * scripting), and a Redis Cluster would need the inode key declared up front; both fall back to the
 * two-round-trip path, decided once by SCRIPT LOAD at start (and again if a call is refused later).
 */
import type { Redis } from 'ioredis';
import type { Conn } from './txn.js';

const LOOKUP_LUA = `
local e = redis.call('HGET', KEYS[1], ARGV[1])
if not e then return false end
if string.len(e) ~= 9 then return {e, false} end
local ino = 0
for i = 2, 9 do ino = ino * 256 + string.byte(e, i) end
return {e, redis.call('GET', ARGV[2] .. string.format('%.0f', ino))}
`;

interface EvalShaBuffer {
  evalshaBuffer(sha: string, numKeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
}

export type LookupReply = null | [entry: Buffer, attr: Buffer | null];

export class LookupScript {
  private sha: string | undefined;

  /** Load the script; leaves it disabled if this connection may not (or cannot) run scripts. */
  async init(conn: Conn, isCluster: boolean): Promise<boolean> {
    if (isCluster) return false;
    try {
      this.sha = String(await (conn as Redis).script('LOAD', LOOKUP_LUA));
    } catch {
      this.sha = undefined; // NOPERM, scripting disabled, an old server: two round trips it is
    }
    return this.sha !== undefined;
  }

  get enabled(): boolean {
    return this.sha !== undefined;
  }

  /**
   * The raw dentry and attributes of `name` in the directory whose entry hash is `entryKey`, or
   * null if there is no such entry; undefined if the script cannot run (caller falls back).
   * `inodeKeyPrefix` is the volume's key prefix followed by 'i'. Inode numbers beyond 2^53 would
   * lose precision in Lua's doubles; upstream allocates them from 2 upwards, so none exist.
   */
  async run(conn: Conn, entryKey: string, name: Buffer, inodeKeyPrefix: string): Promise<LookupReply | undefined> {
    if (!this.sha) return undefined;
    let r: unknown;
    try {
      // evalshaBuffer exists at runtime (one *Buffer variant per command) but is not in the typings;
      // callBuffer would lose its command name under auto-pipelining (ioredis 6).
      r = await (conn as unknown as EvalShaBuffer).evalshaBuffer(this.sha, 1, entryKey, name, inodeKeyPrefix);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.startsWith('NOSCRIPT')) {
        // The server lost its script cache (restart, SCRIPT FLUSH): load it again once.
        if (await this.init(conn, false)) return this.run(conn, entryKey, name, inodeKeyPrefix);
        return undefined;
      }
      if (msg.startsWith('NOPERM')) {
        this.sha = undefined;
        return undefined;
      }
      throw e;
    }
    if (r === null) return null;
    const [entry, attr] = r as [Buffer, Buffer | null];
    return [entry, attr ?? null];
  }
}
