/** `artifacts logout`: forget the saved API key. The BYO S3 cache stays (`artifacts storage clear`). */
import type { Command } from 'commander';
import { credentialsPath, removeCredentials } from '../../orchestrator/client-config.js';
import { outputOf } from '../output.js';

export function register(program: Command): void {
  program
    .command('logout')
    .description('forget the saved API key (the BYO credentials cache is kept: see `storage clear`)')
    .action(async (_flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const removed = await removeCredentials();
      if (out.json) out.result({ logged_out: removed, credentials: credentialsPath() });
      else out.info(removed ? `Logged out (removed ${credentialsPath()}).` : 'Not logged in.');
      if (process.env.ARTIFACTS_API_KEY) out.warn('ARTIFACTS_API_KEY is still set in this environment');
    });
}
