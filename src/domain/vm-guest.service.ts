import { randomUUID } from 'node:crypto';
import { invalid, notFound } from './errors.js';
import type { ExecLogRecord, ExecLogStore, ExecOutputRecord } from './ports/exec-log.js';
import type { ExecRequest, ExecResult, ExecStreamName, WriteFileOptions } from './ports/vm-runtime.js';
import type { Principal } from './principal.js';
import type { VmService } from './vm.service.js';

/** The largest piece of output one log record holds: an exec's whole output is split into these. */
export const EXEC_LOG_PIECE = 64 * 1024;
/** Log entries one read answers when the caller names no number, and the most it may name. */
export const DEFAULT_LOG_ENTRIES = 100;
export const MAX_LOG_ENTRIES = 1000;
const MAX_PATH_LENGTH = 4096;

export interface LogQuery {
  offset: number;
  maxEntries: number;
  stream?: ExecStreamName;
}

export interface LogPage {
  entries: ExecOutputRecord[];
  nextOffset: number;
  eof: boolean;
}

/** Runs a started exec stream: `emit` gets each record (output, then the exit) as it comes. */
export type ExecPump = (emit: (record: ExecLogRecord) => Promise<void>, signal: AbortSignal) => Promise<void>;

/**
 * What runs inside a VM (issue 12): exec, whole or streamed, with every exec's output and exit
 * appended to the VM's exec log (ExecLogStore), which it reads back by offset or by exec; and
 * the VM's files. Who may do it is VmService's: members of the VM's namespace (404 to others),
 * write scope to run or touch files, read scope to read the log. A VM's log goes with it.
 */
export class VmGuestService {
  constructor(
    private readonly vms: VmService,
    private readonly logs: ExecLogStore,
    private readonly now: () => string,
  ) {
    vms.onDeleted((vmId) => logs.remove(vmId));
  }

  /** Runs a command (see VmService.guest) and logs its output and exit; `execId` is given or new. */
  async exec(principal: Principal, id: string, request: ExecRequest, execId: string = randomUUID()): Promise<ExecResult & { execId: string }> {
    const { vm, handle } = await this.vms.guest(principal, id);
    const result = await handle.exec(request);
    const timestamp = this.now();
    const records: ExecLogRecord[] = [];
    for (const [stream, bytes] of [['stdout', result.stdout], ['stderr', result.stderr]] as const) {
      for (let at = 0; at < bytes.length; at += EXEC_LOG_PIECE) {
        records.push({ kind: 'output', execId, cursor: records.length + 1, stream, data: bytes.subarray(at, at + EXEC_LOG_PIECE), timestamp });
      }
    }
    records.push({ kind: 'exit', execId, cursor: records.length, exitCode: result.exitCode, timestamp });
    await this.logs.append(vm.id, records);
    return { ...result, execId };
  }

  /**
   * Starts a command whose output is handed over while it runs: refusals (404, 409, a bad
   * request) come from this call, before any output; the pump then runs it to its end, logging
   * each record before emitting it. When `signal` aborts (the client left), the command is
   * killed and its exit logged.
   */
  async execStream(principal: Principal, id: string, request: ExecRequest, execId: string = randomUUID()): Promise<{ execId: string; pump: ExecPump }> {
    const { vm, handle } = await this.vms.guest(principal, id);
    const stream = await handle.execStream(request);
    const pump: ExecPump = async (emit, signal) => {
      let cursor = 0;
      const exitCode = await stream.pump(async (name, data) => {
        const record: ExecLogRecord = { kind: 'output', execId, cursor: ++cursor, stream: name, data, timestamp: this.now() };
        await this.logs.append(vm.id, [record]);
        await emit(record);
      }, signal);
      const exit: ExecLogRecord = { kind: 'exit', execId, cursor, exitCode, timestamp: this.now() };
      await this.logs.append(vm.id, [exit]);
      if (!signal.aborted) await emit(exit);
    };
    return { execId, pump };
  }

  /** Output entries of the VM's log from a byte offset, of one stream or both (exits are skipped). */
  async logPage(principal: Principal, id: string, query: LogQuery): Promise<LogPage> {
    const vm = await this.vms.status(principal, id);
    const entries: ExecOutputRecord[] = [];
    let offset = query.offset;
    for (;;) {
      const page = await this.logs.read(vm.id, offset, query.maxEntries - entries.length);
      for (const record of page.records) {
        if (record.kind === 'output' && (query.stream === undefined || record.stream === query.stream)) entries.push(record);
      }
      offset = page.nextOffset;
      if (page.eof || entries.length >= query.maxEntries) return { entries, nextOffset: offset, eof: page.eof };
    }
  }

  /**
   * The retained records of one exec after `cursor` (exclusive; all when absent), its exit last
   * when it has ended; with `fromLatest`, only what follows its latest output (its exit). Only
   * what the log still holds: `not_found` when it holds nothing of that exec.
   */
  async replay(principal: Principal, id: string, execId: string, from: { cursor?: number; fromLatest?: boolean }): Promise<ExecLogRecord[]> {
    const vm = await this.vms.status(principal, id);
    const records: ExecLogRecord[] = [];
    let found = false;
    for (let offset = 0, eof = false; !eof; ) {
      const page = await this.logs.read(vm.id, offset, MAX_LOG_ENTRIES);
      for (const record of page.records) {
        if (record.execId !== execId) continue;
        found = true;
        if (from.fromLatest ? record.kind === 'exit' : record.cursor > (from.cursor ?? 0) || record.kind === 'exit') records.push(record);
      }
      ({ nextOffset: offset, eof } = page);
    }
    if (!found) throw notFound(`exec ${execId} not found in the log of vm ${vm.id}`);
    return records;
  }

  /** A file of the VM, at most `maxBytes` (see RunningVm.readFile). */
  async readFile(principal: Principal, id: string, path: string, maxBytes: number): Promise<Buffer> {
    checkPath(path);
    const { handle } = await this.vms.guest(principal, id);
    return handle.readFile(path, maxBytes);
  }

  /** Replaces or creates a file of the VM atomically (see RunningVm.writeFile). */
  async writeFile(principal: Principal, id: string, path: string, content: Buffer, options: WriteFileOptions): Promise<void> {
    checkPath(path);
    if (options.mode !== undefined && !(Number.isInteger(options.mode) && options.mode >= 0 && options.mode <= 0o7777)) {
      throw invalid(`mode ${options.mode} is not a permission between 0 and 0o7777 (4095)`);
    }
    const { handle } = await this.vms.guest(principal, id);
    await handle.writeFile(path, content, options);
  }
}

/** Guest paths are absolute, of a sane length, without NUL (the agent passes C strings). */
function checkPath(path: string): void {
  if (!path.startsWith('/')) throw invalid(`path "${path}" is not absolute`);
  if (path.length > MAX_PATH_LENGTH || path.includes('\0')) throw invalid(`path is longer than ${MAX_PATH_LENGTH} characters or holds a NUL`);
}
