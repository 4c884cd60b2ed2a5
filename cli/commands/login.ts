/** `artifacts login --token <key>`: check the key against the orchestrator, save it (0600). */
import type { Command } from 'commander';
import { ArtifactsClient } from '../../orchestrator/client.js';
import { clientSettings, saveCredentials } from '../../orchestrator/client-config.js';
import { API_KEY_RE } from '../../orchestrator/secrets.js';
import { outputOf, UsageError } from '../output.js';
import { apiAction } from './workspace.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

export function register(program: Command): void {
  program
    .command('login')
    .description('save an API key for this machine (checked against the orchestrator first)')
    .requiredOption('--token <key>', 'API key art_… (use - to read it from stdin)')
    .option('--url <url>', 'orchestrator URL (default: ARTIFACTS_ORCHESTRATOR_URL, the saved one, or http://127.0.0.1:8787)')
    .action(async (flags: { token: string; url?: string }, cmd: Command) => {
      const out = outputOf(cmd);
      const token = flags.token === '-' ? await readStdin() : flags.token;
      if (!API_KEY_RE.test(token)) throw new UsageError('--token must be an API key: art_ followed by 32 letters and digits');
      const url = (flags.url ?? (await clientSettings()).orchestratorUrl).replace(/\/+$/, '');
      const client = new ArtifactsClient({ baseUrl: url, apiKey: token });
      const me = await apiAction(() => client.whoami());
      const path = await saveCredentials({ api_key: token, orchestrator_url: url, handle: me.user.handle });
      if (out.json) out.result({ user: me.user, orchestrator_url: url, credentials: path });
      else out.info(`Logged in to ${url} as ${me.user.handle}; credentials saved to ${path} (mode 0600).`);
    });
}
