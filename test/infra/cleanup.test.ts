// The helpers must not leak servers or mounts when a test process ends without calling stop():
// the exit hook handles a normal exit, the watchdogs handle SIGKILL.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { daemonPids, isMounted } from '../helpers/juicefs.js';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'leaky-child.ts');

interface Leaked {
  redisPid: number;
  redisDir: string;
  dir: string;
  mountpoint: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by PID 1) is not a leak.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function runChild(mode: 'exit' | 'hang'): Promise<{ leaked: Leaked; exited: Promise<number | null>; pid: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let out = '';
  const leaked = await new Promise<Leaked>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as Leaked);
    });
    void exited.then((code) => reject(new Error(`fixture exited (${code}) before reporting: ${out}`)));
  });
  return { leaked, exited, pid: child.pid! };
}

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

describe('cleanup when a test process forgets to stop things', () => {
  it('on a normal exit: the redis is killed, the mount and its daemons are gone, temp dirs removed', async () => {
    const { leaked, exited } = await runChild('exit');
    expect(await exited).toBe(0);
    expect(await eventually(() => !alive(leaked.redisPid), 3000)).toBe(true);
    expect(isMounted(leaked.mountpoint)).toBe(false);
    expect(await eventually(() => daemonPids(leaked.mountpoint).length === 0, 5000)).toBe(true);
    expect(existsSync(leaked.redisDir)).toBe(false);
    expect(existsSync(leaked.dir)).toBe(false);
  });

  it('on SIGKILL: the watchdogs kill the redis and lazily unmount', async () => {
    const { leaked, exited, pid } = await runChild('hang');
    expect(alive(leaked.redisPid)).toBe(true);
    expect(isMounted(leaked.mountpoint)).toBe(true);
    process.kill(pid, 'SIGKILL');
    await exited;
    expect(await eventually(() => !alive(leaked.redisPid), 5000)).toBe(true);
    expect(await eventually(() => !isMounted(leaked.mountpoint), 5000)).toBe(true);
    expect(await eventually(() => daemonPids(leaked.mountpoint).length === 0, 5000)).toBe(true);
    // The janitor removes the temp dirs a couple of seconds later.
    expect(await eventually(() => !existsSync(leaked.dir) && !existsSync(leaked.redisDir), 8000)).toBe(true);
  });

  it('on SIGTERM (how vitest ends a fork): cleans up within vitest\'s 500 ms grace', async () => {
    const { leaked, exited, pid } = await runChild('hang');
    const t0 = Date.now();
    process.kill(pid, 'SIGTERM');
    await exited;
    expect(Date.now() - t0).toBeLessThan(500);
    expect(alive(leaked.redisPid)).toBe(false);
    expect(isMounted(leaked.mountpoint)).toBe(false);
    expect(existsSync(leaked.dir)).toBe(false);
    expect(existsSync(leaked.redisDir)).toBe(false);
    expect(await eventually(() => daemonPids(leaked.mountpoint).length === 0, 5000)).toBe(true);
  });
});
