import { randomInt, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalid, notFound, tooLarge, unprocessable } from '../../domain/errors.js';
import {
  MAX_EXEC_OUTPUT,
  type ExecRequest,
  type ExecResult,
  type ExecStream,
  type ExecStreamName,
  type WriteFileOptions,
} from '../../domain/ports/vm-runtime.js';
import { readLines } from './json-lines.js';

/**
 * The longest answer line accepted: qemu-ga keeps at most 16 MiB of each output stream of a
 * guest-exec (GUEST_EXEC_MAX_OUTPUT in qga/commands.c), which guest-exec-status sends base64
 * encoded (4/3 larger), both streams in one line.
 */
const MAX_QGA_LINE = 48 * 1024 * 1024;

/** qemu-ga prefixes the answer to guest-sync-delimited with this byte, which UTF-8 never holds. */
const DELIMITER = 0xff;

/** How often an unanswered guest-sync-delimited is sent again while waiting (the agent may restart). */
const RESYNC_INTERVAL_MS = 2_000;

/** Polls of guest-exec-status start this fast (most commands end within milliseconds)... */
const FIRST_POLL_MS = 5;
/** ...and back off to this, which also bounds how late a timeout's kill is sent. */
const MAX_POLL_MS = 200;

/** The environment of every exec; the request's variables are added to (or replace) these. */
const BASE_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};

/** The exit code of a command killed at its timeout, as coreutils' `timeout` answers. */
export const TIMEOUT_EXIT_CODE = 124;

/** Bytes per guest-file-read or guest-file-write of a file read or written whole: ~1.4 MiB lines. */
const FILE_CHUNK = 1024 * 1024;
/** Bytes per read of a streamed command's output: the largest piece handed over at once. */
export const STREAM_PIECE = 64 * 1024;
/** Reads of one output stream per poll, so that a chatty stdout cannot starve stderr or a kill. */
const STREAM_READS_PER_POLL = 16;

/**
 * Runs a streamed command with its output appended to two files of the guest's /tmp (a tmpfs)
 * that the host opened (and so holds) first: the shell opens them, unlinks their names (they
 * vanish with the last handle, whatever happens next), and becomes the command.
 */
const STREAM_WRAPPER = 'exec >>"$1" 2>>"$2" && rm -f -- "$1" "$2" && shift 2 && exec "$@"';

/**
 * Moves a written temporary file ($1) over the target ($2): never into it when it is a
 * directory; with mode $3, else the target's, else 644.
 */
const REPLACE_FILE =
  'if [ -d "$2" ]; then echo "$2 is a directory" >&2; exit 1; fi; ' +
  'm=${3:-$(stat -c %a -- "$2" 2>/dev/null || echo 644)}; chmod "$m" -- "$1" && mv -f -- "$1" "$2"';

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  'out-data'?: string;
  'err-data'?: string;
  'out-truncated'?: boolean;
  'err-truncated'?: boolean;
}

interface FileRead {
  count: number;
  'buf-b64'?: string;
  eof: boolean;
}

/** What the guest agent answered as an error (`desc`), as opposed to a broken channel. */
export class GuestAgentError extends Error {
  constructor(readonly desc: string) {
    super(`guest agent: ${desc}`);
    this.name = 'GuestAgentError';
  }
}

interface InFlight {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * A client of qemu-guest-agent over its virtio-serial channel
 * (https://qemu-project.gitlab.io/qemu/interop/qemu-ga-ref.html). The protocol has no request
 * ids: answers come in the order of commands, so commands run one at a time, and after a command
 * that timed out (its answer may still come) the channel is resynchronised with
 * guest-sync-delimited and a random id before the next one.
 */
export class QgaClient {
  private queue: Promise<unknown> = Promise.resolve();
  private inFlight: InFlight | undefined;
  /** Set while waiting for the answer to guest-sync-delimited with this id. */
  private syncing: { id: number; done: () => void } | undefined;
  private desynced = true;
  private closedBy: Error | undefined;

  constructor(
    private readonly socket: Socket,
    /** How long one command may go unanswered before the guest is taken to be hung. */
    private readonly commandTimeoutMs: number,
  ) {
    readLines(socket, MAX_QGA_LINE, (line) => this.receive(line));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('guest agent connection closed')));
  }

  /**
   * Waits until the agent answers (it starts late in the guest's boot; what is written before
   * stays queued in the channel), then checks it with guest-ping. Rejects at `deadline` (ms since
   * the epoch), when `gaveUp()` says the VM is gone, or when the connection closes.
   */
  async waitReady(deadline: number, gaveUp: () => boolean): Promise<void> {
    await this.serialized(async () => {
      while (this.desynced) {
        if (gaveUp()) throw new Error('the VM exited before its guest agent answered');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('the guest agent did not answer in time');
        await this.sync(Math.min(left, RESYNC_INTERVAL_MS));
      }
    });
    await this.command('guest-ping');
  }

  /** Runs one agent command and resolves with its `return` value (rejects with the agent's error). */
  command(name: string, args?: Record<string, unknown>): Promise<unknown> {
    return this.serialized(async () => {
      if (this.desynced) await this.sync(this.commandTimeoutMs);
      if (this.desynced) throw new Error('the guest agent does not answer');
      return this.send(name, args);
    });
  }

  /**
   * Runs a command in the guest (guest-exec, then guest-exec-status polled with backoff) and
   * answers its exit code and output, each stream cut at MAX_EXEC_OUTPUT bytes. The command runs
   * through `setsid`, so that it leads its own process group: at its timeout the whole group is
   * killed (children that would hold the output pipes open too) and the answer is exit code 124.
   * `beforePoll` runs before each poll (the VM waits there while paused). A command the guest
   * cannot find exits 127.
   */
  async exec(request: ExecRequest, beforePoll: () => Promise<void>): Promise<ExecResult> {
    const started = Date.now();
    const deadline = request.timeoutSecs === undefined ? Infinity : started + request.timeoutSecs * 1000;
    const { pid } = (await this.command('guest-exec', {
      path: 'setsid',
      arg: guestArgs(request),
      env: guestEnv(request.env),
      'input-data': (request.stdin ?? Buffer.alloc(0)).toString('base64'),
      'capture-output': true,
    })) as { pid: number };
    let killed = false;
    for (let wait = FIRST_POLL_MS; ; wait = Math.min(wait * 1.5, MAX_POLL_MS)) {
      await beforePoll();
      const status = (await this.command('guest-exec-status', { pid })) as ExecStatus;
      if (status.exited) return execResult(status, killed);
      if (!killed && Date.now() >= deadline) {
        killed = true;
        // A negative pid names the process group that setsid made the command lead.
        await this.command('guest-exec', { path: 'kill', arg: ['-KILL', `-${pid}`] });
        continue;
      }
      await sleep(killed ? wait : Math.max(0, Math.min(wait, deadline - Date.now())));
    }
  }

  /**
   * Starts a command whose output goes to two files of the guest's tmpfs, read back while it
   * runs (guest-exec hands output over only at the exit). qemu-ga clears a file's EOF after each
   * read, so one handle per stream keeps reading what is appended. The guest holds what the
   * command wrote until the stream ends (its /tmp, in the guest's memory); the server holds at
   * most one piece per stream.
   */
  async execStream(request: ExecRequest, beforePoll: () => Promise<void>): Promise<ExecStream> {
    const args = guestArgs(request);
    const env = guestEnv(request.env);
    const base = `/tmp/.snapfork-exec-${randomUUID()}`;
    const files = { stdout: `${base}.out`, stderr: `${base}.err` };
    const handles: Partial<Record<ExecStreamName, number>> = {};
    let pid: number;
    try {
      // 'w+': created (mode 0600) and readable through the same handle.
      for (const stream of ['stdout', 'stderr'] as const) handles[stream] = await this.openFile(files[stream], 'w+');
      ({ pid } = (await this.command('guest-exec', {
        path: 'setsid',
        arg: ['sh', '-c', STREAM_WRAPPER, 'sh', files.stdout, files.stderr, ...args],
        env,
        'input-data': (request.stdin ?? Buffer.alloc(0)).toString('base64'),
      })) as { pid: number });
    } catch (error) {
      await this.closeFiles(Object.values(handles));
      if (handles.stderr !== undefined) await this.exec({ command: ['rm', '-f', '--', files.stdout, files.stderr] }, beforePoll).catch(() => undefined);
      throw error;
    }
    const opened = handles as Record<ExecStreamName, number>;
    let pumped = false;
    return {
      pump: async (onOutput, signal) => {
        if (pumped) throw new Error('an exec stream is pumped once');
        pumped = true;
        try {
          return await this.pumpOutput(pid, opened, request.timeoutSecs, onOutput, beforePoll, signal);
        } finally {
          await this.closeFiles(Object.values(opened));
        }
      },
    };
  }

  /** A guest file whole, read FILE_CHUNK at a time and refused (too_large) past `maxBytes`. */
  async readFile(path: string, maxBytes: number, beforeCommand: () => Promise<void>): Promise<Buffer> {
    await beforeCommand();
    const handle = await this.openFile(path, 'r').catch((error: unknown) => rethrowFileError(path, error));
    try {
      const parts: Buffer[] = [];
      let size = 0;
      for (;;) {
        await beforeCommand();
        const read = (await this.command('guest-file-read', { handle, count: FILE_CHUNK }).catch((error: unknown) =>
          rethrowFileError(path, error),
        )) as FileRead;
        const bytes = Buffer.from(read['buf-b64'] ?? '', 'base64');
        size += bytes.length;
        if (size > maxBytes) throw tooLarge(`${path} is larger than ${maxBytes} bytes, the most read whole`);
        parts.push(bytes);
        if (read.eof || bytes.length === 0) return Buffer.concat(parts);
      }
    } finally {
      await this.closeFiles([handle]);
    }
  }

  /**
   * Writes a guest file atomically: to a temporary file beside it (guest-file-write, FILE_CHUNK
   * at a time), then chmod and rename over it in one guest command. The temporary file is
   * removed when any step fails.
   */
  async writeFile(path: string, content: Buffer, options: WriteFileOptions, beforeCommand: () => Promise<void>): Promise<void> {
    const dir = posix.dirname(path);
    if (options.createDirs) await this.runOrThrow(['mkdir', '-p', '--', dir], beforeCommand);
    const temp = `${dir}/.${posix.basename(path)}.snapfork-${randomUUID().slice(0, 8)}`;
    await beforeCommand();
    const handle = await this.openFile(temp, 'w').catch((error: unknown) => rethrowFileError(dir, error));
    try {
      try {
        for (let offset = 0; offset < content.length; offset += FILE_CHUNK) {
          await beforeCommand();
          await this.command('guest-file-write', { handle, 'buf-b64': content.subarray(offset, offset + FILE_CHUNK).toString('base64') });
        }
      } finally {
        await this.closeFiles([handle]);
      }
      const mode = options.mode === undefined ? '' : options.mode.toString(8);
      await this.runOrThrow(['sh', '-c', REPLACE_FILE, 'sh', temp, path, mode], beforeCommand);
    } catch (error) {
      await this.exec({ command: ['rm', '-f', '--', temp] }, beforeCommand).catch(() => undefined);
      throw isAgentError(error) ? rethrowFileError(path, error) : error;
    }
  }

  /** Closes the connection; pending and later commands reject. Idempotent. */
  close(): void {
    this.fail(new Error('guest agent connection closed'));
    this.socket.destroy();
  }

  /**
   * Polls the command's status, then reads what each stream gained since (so that, once the
   * status says exited, what follows reads everything it wrote), backing off while it is quiet.
   */
  private async pumpOutput(
    pid: number,
    handles: Record<ExecStreamName, number>,
    timeoutSecs: number | undefined,
    onOutput: (stream: ExecStreamName, data: Buffer) => Promise<void>,
    beforePoll: () => Promise<void>,
    signal: AbortSignal,
  ): Promise<number> {
    const deadline = timeoutSecs === undefined ? Infinity : Date.now() + timeoutSecs * 1000;
    let killedAtTimeout = false;
    let killed = false;
    /** Set once guest-exec-status said so: qemu-ga forgets an exited command once it has reported it. */
    let exited: ExecStatus | undefined;
    for (let wait = FIRST_POLL_MS; ; ) {
      await beforePoll();
      if (!exited) {
        const status = (await this.command('guest-exec-status', { pid })) as ExecStatus;
        if (status.exited) exited = status;
      }
      let read = 0;
      let more = false;
      if (!signal.aborted) {
        for (const stream of ['stdout', 'stderr'] as const) {
          const drained = await this.drain(handles[stream], (data) => onOutput(stream, data));
          read += drained.bytes;
          more ||= drained.more;
        }
      }
      if (exited && (!more || signal.aborted)) return exitCodeOf(exited, killedAtTimeout);
      if (!exited && !killed && (signal.aborted || Date.now() >= deadline)) {
        killed = true;
        killedAtTimeout = !signal.aborted;
        // A negative pid names the process group that setsid made the command lead.
        await this.command('guest-exec', { path: 'kill', arg: ['-KILL', `-${pid}`] });
        continue;
      }
      if (read > 0) {
        wait = FIRST_POLL_MS;
        continue;
      }
      // Quiet: back off, but wake at once when the consumer goes away.
      const quiet = new AbortController();
      const wake = () => quiet.abort();
      signal.addEventListener('abort', wake, { once: true });
      const left = killed ? wait : Math.max(0, Math.min(wait, deadline - Date.now()));
      await sleep(left, undefined, { signal: quiet.signal }).catch(() => undefined);
      signal.removeEventListener('abort', wake);
      wait = Math.min(wait * 1.5, MAX_POLL_MS);
    }
  }

  /** Reads what a stream's file gained, at most STREAM_READS_PER_POLL pieces; `more` when it stopped at that bound. */
  private async drain(handle: number, onOutput: (data: Buffer) => Promise<void>): Promise<{ bytes: number; more: boolean }> {
    let bytes = 0;
    for (let reads = 0; reads < STREAM_READS_PER_POLL; reads++) {
      const read = (await this.command('guest-file-read', { handle, count: STREAM_PIECE })) as FileRead;
      const data = Buffer.from(read['buf-b64'] ?? '', 'base64');
      if (data.length > 0) await onOutput(data);
      bytes += data.length;
      if (data.length < STREAM_PIECE) return { bytes, more: false };
    }
    return { bytes, more: true };
  }

  /**
   * Writes a small guest file (or a /proc or /dev file) in place with the agent's own file
   * calls: no process starts in the guest, which is what costs most in a VM just resumed under
   * TCG (every guest code path is translated again in a new QEMU).
   */
  async overwriteFile(path: string, content: Buffer): Promise<void> {
    const handle = await this.openFile(path, 'w');
    try {
      await this.command('guest-file-write', { handle, 'buf-b64': content.toString('base64') });
    } finally {
      await this.closeFiles([handle]);
    }
  }

  private async openFile(path: string, mode: 'r' | 'w' | 'w+'): Promise<number> {
    return (await this.command('guest-file-open', { path, mode })) as number;
  }

  /** Closes guest file handles; a handle the agent lost (it restarted) is no error. */
  private async closeFiles(handles: readonly number[]): Promise<void> {
    for (const handle of handles) await this.command('guest-file-close', { handle }).catch(() => undefined);
  }

  /** Runs a helper command; `unprocessable` with its stderr when it fails. */
  private async runOrThrow(command: string[], beforePoll: () => Promise<void>): Promise<void> {
    const result = await this.exec({ command }, beforePoll);
    if (result.exitCode !== 0) {
      const why = result.stderr.toString('utf8').trim() || `exit code ${result.exitCode}`;
      throw unprocessable(`${command[0] === 'mkdir' ? 'creating the directory' : 'replacing the file'} failed: ${why}`);
    }
  }

  private serialized<T>(run: () => Promise<T>): Promise<T> {
    const result = this.queue.then(run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Sends one command and waits for the next answer line; on timeout the channel is marked desynced. */
  private send(name: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.inFlight = undefined;
        this.desynced = true;
        reject(new Error(`the guest agent did not answer ${name} within ${this.commandTimeoutMs} ms`));
      }, this.commandTimeoutMs);
      const settle =
        <A>(done: (value: A) => void) =>
        (value: A) => {
          clearTimeout(timer);
          done(value);
        };
      this.inFlight = { resolve: settle(resolve), reject: settle(reject) };
      this.socket.write(JSON.stringify({ execute: name, ...(args && { arguments: args }) }) + '\n');
    });
  }

  /**
   * Sends 0xFF (which resets the agent's JSON parser after a half-written command) and
   * guest-sync-delimited with a fresh random id, then drops every line until the delimited
   * answer carrying that id: whatever a timed-out command answered late is skipped this way.
   * Leaves `desynced` set when no answer comes within `timeoutMs`.
   */
  private async sync(timeoutMs: number): Promise<void> {
    this.assertOpen();
    const id = randomInt(1, 2 ** 47);
    const answered = new Promise<void>((resolve) => (this.syncing = { id, done: resolve }));
    this.socket.write(Buffer.concat([Buffer.of(DELIMITER), Buffer.from(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } }) + '\n')]));
    const timeout = new AbortController();
    await Promise.race([answered, sleep(timeoutMs, undefined, { signal: timeout.signal }).catch(() => undefined)]);
    timeout.abort();
    this.syncing = undefined;
    this.assertOpen();
  }

  private assertOpen(): void {
    if (this.closedBy) throw this.closedBy;
  }

  private receive(line: Buffer): void {
    if (this.syncing) {
      const delimiter = line.lastIndexOf(DELIMITER);
      if (delimiter === -1) return;
      const answer = parse(line.subarray(delimiter + 1));
      if (answer?.return === this.syncing.id) {
        this.desynced = false;
        this.syncing.done();
      }
      return;
    }
    const inFlight = this.inFlight;
    this.inFlight = undefined;
    if (!inFlight) return; // the late answer of a timed-out command; a sync precedes the next one
    const answer = parse(line);
    const error = answer?.error as { desc?: string } | undefined;
    if (!answer) inFlight.reject(new Error('the guest agent sent a line that is not JSON'));
    else if (error) inFlight.reject(new GuestAgentError(error.desc ?? 'error'));
    else inFlight.resolve(answer.return);
  }

  private fail(error: Error): void {
    if (this.closedBy) return;
    this.closedBy = error;
    this.inFlight?.reject(error);
    this.inFlight = undefined;
    this.syncing?.done();
  }
}

function parse(line: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line.toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What setsid runs: the command itself, or a shell that enters the working directory first. */
function guestArgs({ command, workingDir }: ExecRequest): string[] {
  if (command.length === 0) throw invalid('the command is empty');
  const args = workingDir === undefined ? [...command] : ['sh', '-c', 'cd -- "$1" && shift && exec "$@"', 'sh', workingDir, ...command];
  // The agent passes C strings: a NUL would silently cut an argument short.
  if (args.some((arg) => arg.includes('\0'))) throw invalid('a command argument holds a NUL character');
  return args;
}

/** guest-exec's `env` replaces the whole environment, so the defaults are always sent along. */
function guestEnv(env: Readonly<Record<string, string>> | undefined): string[] {
  const merged = { ...BASE_ENV, ...env };
  return Object.entries(merged).map(([name, value]) => {
    if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
      throw invalid(`environment variable "${name}" cannot be passed (empty name, '=' in the name or a NUL)`);
    }
    return `${name}=${value}`;
  });
}

function exitCodeOf(status: ExecStatus, killedAtTimeout: boolean): number {
  return killedAtTimeout && status.signal !== undefined ? TIMEOUT_EXIT_CODE : (status.exitcode ?? 128 + (status.signal ?? 0));
}

const isAgentError = (error: unknown): error is GuestAgentError => error instanceof GuestAgentError;

/**
 * A file command's agent error as the domain's: qemu-ga reports the errno as strerror's text
 * after its message. Anything else (a broken channel) is rethrown as it is.
 */
function rethrowFileError(path: string, error: unknown): never {
  if (!isAgentError(error)) throw error;
  if (/No such file or directory|Not a directory/.test(error.desc)) throw notFound(`${path} not found in the VM`);
  if (/Is a directory|Permission denied|Operation not permitted|Read-only file system|No space left|File too large|directory/.test(error.desc)) {
    throw unprocessable(`${path}: ${error.desc.replace(/^.*: /, '')}`);
  }
  throw error;
}

function execResult(status: ExecStatus, killedAtTimeout: boolean): ExecResult {
  const stdout = decodeBounded(status['out-data']);
  const stderr = decodeBounded(status['err-data']);
  return {
    exitCode: exitCodeOf(status, killedAtTimeout),
    stdout: stdout.bytes,
    stderr: stderr.bytes,
    truncated: stdout.truncated || stderr.truncated || !!status['out-truncated'] || !!status['err-truncated'],
  };
}

/** Decodes at most MAX_EXEC_OUTPUT bytes of base64, never the whole of a longer string. */
function decodeBounded(base64: string | undefined): { bytes: Buffer; truncated: boolean } {
  if (base64 === undefined) return { bytes: Buffer.alloc(0), truncated: false };
  const maxChars = Math.ceil(MAX_EXEC_OUTPUT / 3) * 4;
  const bytes = Buffer.from(base64.slice(0, maxChars), 'base64');
  return { bytes: bytes.subarray(0, MAX_EXEC_OUTPUT), truncated: base64.length > maxChars || bytes.length > MAX_EXEC_OUTPUT };
}
