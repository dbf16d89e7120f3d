#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { DomainError } from '../domain/errors.js';
import type { Command, Io } from './command.js';
import { fork } from './commands/fork.js';
import { gc } from './commands/gc.js';
import { fsck } from './commands/fsck.js';
import { pull } from './commands/pull.js';
import { push } from './commands/push.js';
import { quota } from './commands/quota.js';
import { repos } from './commands/repos.js';
import { serve } from './commands/serve.js';
import { tags } from './commands/tags.js';
import { tokenCreate } from './commands/token.js';
import { vmBranch, vmCommit, vmExec, vmFrom, vmLs, vmNew, vmPause, vmResume, vmRm } from './commands/vm.js';
import { CliError, UsageError } from './errors.js';

const COMMANDS: readonly Command[] = [
  serve,
  tokenCreate,
  push,
  pull,
  fork,
  tags,
  repos,
  gc,
  quota,
  vmLs,
  vmNew,
  vmFrom,
  vmBranch,
  vmExec,
  vmCommit,
  vmPause,
  vmResume,
  vmRm,
  fsck,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: snapfork <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary.split('\n')[0]}`),
    '',
    'Server and token: --url/--token, or SNAPFORK_URL (default http://127.0.0.1:3000) and SNAPFORK_TOKEN.',
    'Run "snapfork <command> --help" for its options.',
    '',
  ].join('\n');
}

/** The command whose words start `argv`, and the words after them. */
function findCommand(argv: readonly string[]): [Command, string[]] | undefined {
  for (const command of COMMANDS) {
    const words = command.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return [command, argv.slice(words.length)];
  }
  return undefined;
}

/**
 * Failures a user can act on: ours, the domain's (token create runs in-process), and Node's and
 * node-tar's, which carry a code (ENOENT, EACCES, TAR_BAD_ARCHIVE, ...).
 */
const isExpected = (err: unknown): err is Error =>
  err instanceof CliError ||
  err instanceof DomainError ||
  (err instanceof Error && typeof (err as { code?: unknown }).code === 'string');

/** Runs the CLI on `argv` (the words after `snapfork`); resolves with the exit code. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  try {
    const first = argv[0];
    if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
      (first === undefined ? io.stderr : io.stdout).write(usage());
      return first === undefined ? 2 : 0;
    }
    const found = findCommand(argv);
    if (!found) {
      // A group's first word (`token`, `vm`) alone names no command: show the word after it too.
      const group = COMMANDS.some((c) => c.name.startsWith(`${first} `));
      const words = group ? argv.slice(0, 2).join(' ') : first;
      throw new UsageError(`unknown command "${words}" (see snapfork --help)`);
    }
    const [command, rest] = found;
    return await command.exec(rest, io);
  } catch (err) {
    if (isExpected(err)) {
      io.stderr.write(`snapfork: ${err.message}\n`);
      return err instanceof CliError ? err.exitCode : 1;
    }
    // A bug, not a user error: the stack is what a report needs.
    io.stderr.write(`snapfork: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

/** True when this module is the program (`node dist/cli/main.js`, or the npm bin symlink). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const code = await run(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, now: Date.now });
  // exitCode rather than exit(): lets stdout drain when it is a pipe.
  process.exitCode = code;
}
