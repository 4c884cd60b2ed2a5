/**
 * `artifacts fsck <meta-url>`: read-only consistency check of a volume (cli/fsck.ts).
 * Exit code 0 when no error was found (warnings are printed), 1 otherwise.
 */
import type { Command } from 'commander';
import type { ObjectStore } from '../../chunkstore/types.js';
import { readFormat } from '../../metadata/format.js';
import { connectMeta, MetaUrlError, parseMetaUrl, validatePrefix } from '../../metadata/redis/connect.js';
import { decryptSecrets } from '../../metadata/setting.js';
import { ExitError, outputOf, UsageError } from '../output.js';

interface FsckFlags {
  keyPrefix?: string;
  objects: boolean;
  maxFindings: string;
}

export function register(program: Command): void {
  program
    .command('fsck')
    .description('check a volume: blocks of every slice, slice reference counts, usage counters, directory entries and links')
    .argument('<meta-url>', 'meta URL of the volume (see `artifacts format --help`)')
    .option('--key-prefix <prefix>', 'Redis key prefix of the volume')
    .option('--no-objects', 'skip the object store (metadata checks only)')
    .option('--max-findings <n>', 'findings listed per kind', '50')
    .action(async (metaUrl: string, flags: FsckFlags, cmd: Command) => {
      const out = outputOf(cmd);
      try {
        parseMetaUrl(metaUrl);
        if (flags.keyPrefix !== undefined) validatePrefix(flags.keyPrefix, false);
      } catch (e) {
        if (e instanceof MetaUrlError) throw new UsageError(e.message);
        throw e;
      }
      if (!/^[0-9]+$/.test(flags.maxFindings)) throw new UsageError('--max-findings must be a number');
      // Loaded on use (object-store SDKs are heavy).
      const [{ createObjectStore }, { fsckVolume }] = await Promise.all([import('../../chunkstore/object/index.js'), import('../fsck.js')]);
      const conn = await connectMeta(metaUrl, { prefix: flags.keyPrefix });
      let store: ObjectStore | null = null;
      try {
        if (flags.objects) {
          const fmt = await readFormat(conn.redis, conn.prefix);
          if (fmt) {
            store = createObjectStore(decryptSecrets(fmt));
            out.debug(`objects: ${store.describe()}`);
          }
        }
        const started = Date.now();
        const report = await fsckVolume(conn, {
          store,
          maxFindingsPerKind: Number(flags.maxFindings),
          progress: (m) => out.debug(m),
        });
        if (out.json) out.result(report);
        else {
          for (const f of report.findings) (f.severity === 'error' ? out.error.bind(out) : out.warn.bind(out))(`[${f.kind}] ${f.message}`);
          if (report.suppressed) out.info(`(${report.suppressed} more findings not listed; raise --max-findings)`);
          const s = report.stats;
          out.print(
            `Checked ${s.inodes} inodes (${s.directories} directories, ${s.files} files, ${s.symlinks} symlinks), ${s.dentries} entries, ` +
              `${s.chunks} chunks, ${s.slices} slices` +
              (store ? `, ${s.blocks} blocks against ${s.objects} objects` : ' (objects not checked)') +
              ` in ${((Date.now() - started) / 1000).toFixed(1)}s`,
          );
          out.print(
            `usedSpace ${report.counters.usedSpace.stored} (recount ${report.counters.usedSpace.actual}), ` +
              `totalInodes ${report.counters.totalInodes.stored} (recount ${report.counters.totalInodes.actual})`,
          );
          out.print(report.ok ? `OK: no errors, ${report.warnings} warnings` : `FAILED: ${report.errors} errors, ${report.warnings} warnings`);
        }
        if (!report.ok) throw new ExitError(1);
      } finally {
        store?.close?.();
        await conn.close();
      }
    });
}
