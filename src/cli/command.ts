import type { Readable, Writable } from 'node:stream';
import { parseArgs, type FlagSpecs, type FlagValues } from './args.js';
import { UsageError } from './errors.js';
import { Progress } from './progress.js';

/** Where a command reads its environment and writes its output; tests pass their own. */
export interface Io {
  /** What a command may forward (`vm exec`); absent means no input, as tests pass. */
  stdin?: Readable;
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
  /**
   * Positional placeholders: `<x>` required, `[x]` optional; a last `<x...>` takes every word
   * left (shown after the flags and a `--`, which lets those words start with a dash).
   */
  args: readonly string[];
  /** Flags as shown in usage, after the positionals. */
  flagsUsage: string;
  summary: string;
  flags: S;
  /** Resolves with the exit code when it is not 0 on success (`vm exec`: the command's). */
  run(io: Io, positionals: string[], flags: FlagValues<S>): Promise<number | void>;
}

export interface Command {
  name: string;
  usage: string;
  summary: string;
  /** Parses `argv` (the words after the command name) and runs; resolves with the exit code. */
  exec(argv: readonly string[], io: Io): Promise<number>;
}

export function defineCommand<S extends FlagSpecs>(spec: CommandSpec<S>): Command {
  const rest = spec.args.at(-1)?.endsWith('...>') ? spec.args.at(-1) : undefined;
  const fixed = rest ? spec.args.slice(0, -1) : spec.args;
  const usage = ['snapfork', spec.name, ...fixed, spec.flagsUsage, ...(rest ? ['--', rest] : [])].filter(Boolean).join(' ');
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
      if (!rest && positionals.length > spec.args.length) {
        throw new UsageError(`${spec.name}: unexpected argument "${positionals[spec.args.length]}" (usage: ${usage})`);
      }
      return (await spec.run(io, positionals, flags)) ?? 0;
    },
  };
}

/** The one output path: the JSON value on one line with `--json`, else the human text. */
export function output(io: Io, json: boolean, value: unknown, human: () => string): void {
  io.stdout.write(`${json ? JSON.stringify(value) : human()}\n`);
}

/**
 * A progress line on stderr only for a person watching: stdout a TTY and no `--json`; drawn
 * once `after` (another meter of the command, running alongside) has finished its line.
 */
export function progress(io: Io, json: boolean, label: string, total?: number, after?: Progress): Progress {
  const tty = (io.stdout as Writable & { isTTY?: boolean }).isTTY === true;
  return new Progress(tty && !json ? io.stderr : undefined, io.now, label, total, after);
}
