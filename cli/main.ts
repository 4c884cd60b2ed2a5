#!/usr/bin/env node
/**
 * The `artifacts` command. Global flags live here; every command is a module in cli/commands/
 * exporting `register(program)`. Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { register as registerFormat } from './commands/format.js';
import { register as registerFsck } from './commands/fsck.js';
import { register as registerMount } from './commands/mount.js';
import { register as registerLogin } from './commands/login.js';
import { register as registerLogout } from './commands/logout.js';
import { register as registerWhoami } from './commands/whoami.js';
import { register as registerWorkspace } from './commands/workspace.js';
import { register as registerStorage } from './commands/storage.js';
import { register as registerPlatform } from './commands/platform.js';
import { register as registerUp } from './commands/up.js';
import { register as registerDown } from './commands/down.js';
import { register as registerOrchestrator } from './commands/orchestrator.js';
import { register as registerBench } from './commands/bench.js';
import { ExitError, Output, UsageError } from './output.js';

/** Command modules, in help order. Add new commands here. */
const COMMANDS: ((program: Command) => void)[] = [registerFormat, registerFsck, registerMount, registerLogin, registerLogout, registerWhoami, registerWorkspace, registerStorage, registerPlatform, registerUp, registerDown, registerOrchestrator, registerBench];

// The AWS SDK warns on every run under Node 20 (it wants 22); we support Node 20 on purpose.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

function packageVersion(): string {
  // dist/cli/main.js and cli/main.ts (tests) sit at different depths below package.json.
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'artifacts' && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('artifacts')
    .description('A shared POSIX filesystem: JuiceFS-compatible metadata on Redis, blocks on S3')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('-v, --verbose', 'debug output')
    .option('-q, --quiet', 'only warnings and errors')
    .option('--trace', 'trace output')
    .option('--format <format>', 'output format: text or json', 'text')
    .option('--no-color', 'disable colour')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const register of COMMANDS) register(program);
  return program;
}

/** Run the CLI; resolves to the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander already printed it
    if (err instanceof ExitError) {
      if (err.message) new Output({}).error(err.message);
      return err.exitCode;
    }
    let out: Output;
    try {
      out = new Output(program.opts());
    } catch {
      out = new Output({});
    }
    out.error((err as Error)?.message ?? String(err));
    if (out.level === 'trace' || out.level === 'verbose') out.debug((err as Error)?.stack ?? '');
    return err instanceof UsageError ? 2 : 1;
  }
}

function invokedDirectly(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
