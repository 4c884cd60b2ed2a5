/** `artifacts whoami`: the identity behind the current API key. */
import type { Command } from 'commander';
import { clientSettings, openClient } from '../../orchestrator/client-config.js';
import { outputOf } from '../output.js';
import { apiAction } from './workspace.js';

export function register(program: Command): void {
  program
    .command('whoami')
    .description('print the authenticated identity')
    .action(async (_flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const settings = await clientSettings();
      const client = await openClient();
      const me = await apiAction(() => client.whoami());
      if (out.json) out.result({ ...me, orchestrator_url: settings.orchestratorUrl, key_source: settings.source });
      else out.print(`${me.user.handle} (key ${me.api_key.hint}${me.api_key.name ? ` "${me.api_key.name}"` : ''}, ${settings.orchestratorUrl})`);
    });
}
