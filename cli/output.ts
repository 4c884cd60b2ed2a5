/**
 * What every command shares: the global flags (-v/-q/--trace, --format json, --no-color), a logger on
 * stderr, results on stdout, and the error types that choose the exit code (1 failure, 2 usage).
 */
import type { Command } from 'commander';

export type Level = 'quiet' | 'normal' | 'verbose' | 'trace';

export interface GlobalOptions {
  verbose?: boolean;
  quiet?: boolean;
  trace?: boolean;
  format?: string;
  color?: boolean;
}

/** A wrong invocation: exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A command that ran but found problems (e.g. fsck): exit code 1 without an extra "Error:" line. */
export class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message = '',
  ) {
    super(message);
    this.name = 'ExitError';
  }
}

export class Output {
  readonly level: Level;
  readonly json: boolean;
  readonly color: boolean;

  constructor(opts: GlobalOptions, private readonly err: NodeJS.WritableStream = process.stderr, private readonly out: NodeJS.WritableStream = process.stdout) {
    this.level = opts.trace ? 'trace' : opts.verbose ? 'verbose' : opts.quiet ? 'quiet' : 'normal';
    const fmt = opts.format ?? 'text';
    if (fmt !== 'text' && fmt !== 'json') throw new UsageError(`--format must be text or json, got ${JSON.stringify(fmt)}`);
    this.json = fmt === 'json';
    this.color = opts.color !== false && !process.env.NO_COLOR && (err as NodeJS.WriteStream).isTTY === true;
  }

  private paint(code: string, s: string): string {
    return this.color ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  info(msg: string): void {
    if (this.level !== 'quiet') this.err.write(msg + '\n');
  }
  warn(msg: string): void {
    this.err.write(this.paint('33', 'warning: ') + msg + '\n');
  }
  error(msg: string): void {
    this.err.write(this.paint('31', 'Error: ') + msg + '\n');
  }
  debug(msg: string): void {
    if (this.level === 'verbose' || this.level === 'trace') this.err.write(this.paint('2', msg) + '\n');
  }
  trace(msg: string): void {
    if (this.level === 'trace') this.err.write(this.paint('2', msg) + '\n');
  }
  /** Machine-readable result (json mode) — always printed, even with -q. */
  result(value: unknown): void {
    this.out.write(JSON.stringify(value, null, 2) + '\n');
  }
  /** Human-readable result text on stdout. */
  print(text: string): void {
    this.out.write(text.endsWith('\n') ? text : text + '\n');
  }
}

/** The Output for a command's action (reads the program's global flags). */
export function outputOf(cmd: Command): Output {
  return new Output(cmd.optsWithGlobals() as GlobalOptions);
}
