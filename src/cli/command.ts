import type { Writable } from 'node:stream';
import { parseArgs, type FlagSpecs, type FlagValues } from './args.js';
import { UsageError } from './errors.js';
import { Progress } from './progress.js';

/** Where a command reads its environment and writes its output; tests pass their own. */
export interface Io {
  stdout: Writable;
  stderr: Writable;
  env: Record<string, string | undefined>;
  /** The clock progress lines are throttled and timed by, in milliseconds (as Date.now). */
  now: () => number;
}

/** What every command that talks HTTP accepts. */
export const HTTP_FLAGS = {
  url: { type: 'string' },
  token: { type: 'string' },
} as const;

export const JSON_FLAG = { json: { type: 'boolean' } } as const;

export interface CommandSpec<S extends FlagSpecs> {
  /** One or more words: `push`, `token create`. */
  name: string;
  /** Positional placeholders: `<x>` required, `[x]` optional. */
  args: readonly string[];
  /** Flags as shown in usage, after the positionals. */
  flagsUsage: string;
  summary: string;
  flags: S;
  run(io: Io, positionals: string[], flags: FlagValues<S>): Promise<void>;
}

export interface Command {
  name: string;
  usage: string;
  summary: string;
  /** Parses `argv` (the words after the command name) and runs; resolves with the exit code. */
  exec(argv: readonly string[], io: Io): Promise<number>;
}

export function defineCommand<S extends FlagSpecs>(spec: CommandSpec<S>): Command {
  const usage = ['snapfork', spec.name, ...spec.args, spec.flagsUsage].filter(Boolean).join(' ');
  const required = spec.args.filter((a) => a.startsWith('<')).length;
  return {
    name: spec.name,
    usage,
    summary: spec.summary,
    async exec(argv, io) {
      const { positionals, flags, help } = parseArgs(argv, spec.flags);
      if (help) {
        io.stdout.write(`usage: ${usage}\n\n${spec.summary}\n`);
        return 0;
      }
      if (positionals.length < required) {
        throw new UsageError(`${spec.name}: missing ${spec.args[positionals.length]} (usage: ${usage})`);
      }
      if (positionals.length > spec.args.length) {
        throw new UsageError(`${spec.name}: unexpected argument "${positionals[spec.args.length]}" (usage: ${usage})`);
      }
      await spec.run(io, positionals, flags);
      return 0;
    },
  };
}

/** The one output path: the JSON value on one line with `--json`, else the human text. */
export function output(io: Io, json: boolean, value: unknown, human: () => string): void {
  io.stdout.write(`${json ? JSON.stringify(value) : human()}\n`);
}

/** A progress line on stderr only for a person watching: stdout a TTY and no `--json`. */
export function progress(io: Io, json: boolean, label: string, total?: number): Progress {
  const tty = (io.stdout as Writable & { isTTY?: boolean }).isTTY === true;
  return new Progress(tty && !json ? io.stderr : undefined, io.now, label, total);
}
