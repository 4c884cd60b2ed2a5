/**
 * `artifacts storage set|show|clear`: the BYO S3 credentials cache (mode 0600). It never leaves
 * this machine: the orchestrator is not told these keys.
 */
import type { Command } from 'commander';
import { byoCredentialsPath, clearByoCache, mask, readByoCache, s3FromEnv, writeByoCache, type S3Credentials } from '../../orchestrator/client-config.js';
import { outputOf, UsageError } from '../output.js';

interface SetFlags {
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  region?: string;
}

export function register(program: Command): void {
  const st = program.command('storage').description('the local cache of BYO bucket credentials');

  st.command('set')
    .description('save credentials: the given flags, or else the ARTIFACTS_S3_* environment variables')
    .option('--access-key-id <id>', 'S3 access key id')
    .option('--secret-access-key <key>', 'S3 secret access key')
    .option('--session-token <token>', 'S3 session token')
    .option('--region <region>', 'S3 region')
    .action(async (flags: SetFlags, cmd: Command) => {
      const out = outputOf(cmd);
      const given: S3Credentials = {};
      if (flags.accessKeyId) given.ACCESS_KEY_ID = flags.accessKeyId;
      if (flags.secretAccessKey) given.SECRET_ACCESS_KEY = flags.secretAccessKey;
      if (flags.sessionToken) given.SESSION_TOKEN = flags.sessionToken;
      if (flags.region) given.REGION = flags.region;
      const update = Object.keys(given).length > 0 ? given : s3FromEnv();
      if (Object.keys(update).length === 0) {
        throw new UsageError('nothing to save: pass --access-key-id/--secret-access-key/--region, or set ARTIFACTS_S3_* variables');
      }
      const path = await writeByoCache({ ...((await readByoCache()) ?? {}), ...update });
      if (out.json) out.result({ path, updated: Object.keys(update) });
      else out.info(`Saved ${Object.keys(update).join(', ')} to ${path} (mode 0600).`);
    });

  st.command('show')
    .description('print the cache path and masked values')
    .action(async (_flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const c = await readByoCache();
      const path = byoCredentialsPath();
      if (out.json) {
        out.result({
          path,
          exists: c !== null,
          ACCESS_KEY_ID: c?.ACCESS_KEY_ID ? mask(c.ACCESS_KEY_ID) : null,
          SECRET_ACCESS_KEY: c?.SECRET_ACCESS_KEY ? mask(c.SECRET_ACCESS_KEY) : null,
          SESSION_TOKEN: c?.SESSION_TOKEN ? mask(c.SESSION_TOKEN) : null,
          REGION: c?.REGION ?? null,
        });
        return;
      }
      if (!c) {
        out.print(`No BYO credentials cached (${path}).`);
        return;
      }
      out.print(
        [
          `Path: ${path}`,
          `ACCESS_KEY_ID: ${mask(c.ACCESS_KEY_ID)}`,
          `SECRET_ACCESS_KEY: ${mask(c.SECRET_ACCESS_KEY)}`,
          `SESSION_TOKEN: ${mask(c.SESSION_TOKEN)}`,
          `REGION: ${c.REGION ?? '(unset)'}`,
        ].join('\n'),
      );
    });

  st.command('clear')
    .description('delete the cache (later mounts need the ARTIFACTS_S3_* variables)')
    .action(async (_flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const removed = await clearByoCache();
      if (out.json) out.result({ removed, path: byoCredentialsPath() });
      else out.info(removed ? `Removed ${byoCredentialsPath()}.` : 'No BYO credentials cached.');
    });
}
