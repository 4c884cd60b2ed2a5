/**
 * Run the same errno-level POSIX checks on an artifacts mount and on a local ext4 directory.
 * The local run proves each expectation is what Linux really does (a wrong expectation fails
 * there, not only on the mount); the mount run proves artifacts does the same.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { type ArtifactsMount, mountArtifacts, startStack, type Stack } from './stack.js';

export interface Target {
  kind: 'ext4' | 'artifacts';
  /** A fresh world-writable directory on the target for one test file. */
  root: string;
  stack?: Stack;
  mount?: ArtifactsMount;
  stop(): Promise<void>;
}

export async function localTarget(base: string): Promise<Target> {
  await fs.chmod(base, 0o755); // other users must reach it (tmpDir makes 0700 dirs)
  const root = path.join(base, 'local');
  await fs.mkdir(root, { recursive: true });
  await fs.chmod(root, 0o777);
  return { kind: 'ext4', root, stop: async () => {} };
}

export async function mountTarget(tag: string, o: { s3?: boolean } = {}): Promise<Target> {
  const stack = await startStack(tag, o);
  let mount: ArtifactsMount | undefined;
  try {
    mount = await mountArtifacts(stack.metaUrl, path.join(stack.dir, 'mnt'));
    const root = path.join(mount.mountpoint, 'work');
    await fs.mkdir(root);
    await fs.chmod(root, 0o777);
    return {
      kind: 'artifacts',
      root,
      stack,
      mount,
      stop: async () => {
        try {
          await mount?.unmount();
        } finally {
          await stack.stop();
        }
      },
    };
  } catch (e) {
    await mount?.unmount().catch(() => undefined);
    await stack.stop();
    throw e;
  }
}
