/** `artifacts down`: stop what `artifacts up` started (by the pids in its state file). */
import type { Command } from 'commander';
import { outputOf } from '../output.js';
import { readState, stopStack } from './up.js';

export function register(program: Command): void {
  program
    .command('down')
    .description('stop the local stack (data and credentials stay; `artifacts up` starts it again)')
    .action(async (_flags: unknown, cmd: Command) => {
      const out = outputOf(cmd);
      const state = await readState();
      if (!state) {
        if (out.json) out.result({ stopped: [] });
        else out.info('The local stack is not running.');
        return;
      }
      const stopped = await stopStack(state, out);
      if (out.json) out.result({ stopped });
      else out.info(stopped.length ? `Stopped ${stopped.join(', ')}.` : 'Nothing was running; removed the stale state file.');
    });
}
