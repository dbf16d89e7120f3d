/**
 * The VMs' exec logs (ExecLogStore) as files, one directory per VM:
 *
 * ```
 * <dir>/                        <dataDir>/vm-logs
 * └── <vm id>/                  removed with the VM
 *     ├── 0000000000000000.ndjson   a segment: one JSON record per line, named by the log
 *     └── 0000000004194012.ndjson   offset of its first byte (16 decimal digits)
 * ```
 *
 * A record is `{"timestamp","stream","data_b64","exec_id","cursor"}` (output) or
 * `{"timestamp","exec_id","cursor","exit_code"}` (an exec's end). Appends go to the newest
 * segment; one that would pass EXEC_LOG_SEGMENT_BYTES starts the next, and only the newest two
 * are kept, so a log holds its newest 4 to 8 MiB and offsets never move. Best effort, as a log
 * is: no fsync, and a line torn by a crash reads as no record.
 */
import { appendFile, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalid } from '../../domain/errors.js';
import { EXEC_LOG_SEGMENT_BYTES, type ExecLogPage, type ExecLogRecord, type ExecLogStore } from '../../domain/ports/exec-log.js';

/** How much one read may scan: a page of records stays a few MiB whatever maxRecords says. */
const MAX_PAGE_BYTES = 4 * 1024 * 1024;
const READ_BLOCK = 256 * 1024;
const SEGMENT_NAME = /^(\d{16})\.ndjson$/;
const VM_ID = /^[0-9a-f-]{36}$/i;

interface Segment {
  base: number;
  size: number;
  path: string;
}

export class FsExecLogStore implements ExecLogStore {
  /** The append or removal under way per VM: they run one at a time. */
  private readonly queues = new Map<string, Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly segmentBytes: number = EXEC_LOG_SEGMENT_BYTES,
  ) {}

  append(vmId: string, records: readonly ExecLogRecord[]): Promise<void> {
    return this.serialized(vmId, async () => {
      if (records.length === 0) return;
      const vmDir = this.vmDir(vmId);
      await mkdir(vmDir, { recursive: true });
      const bytes = Buffer.from(records.map(recordLine).join(''));
      const segments = await this.segments(vmDir);
      let last = segments.at(-1);
      if (!last || (last.size > 0 && last.size + bytes.length > this.segmentBytes)) {
        const base = last ? last.base + last.size : 0;
        last = { base, size: 0, path: join(vmDir, segmentName(base)) };
        segments.push(last);
      }
      await appendFile(last.path, bytes);
      for (const old of segments.slice(0, -2)) await rm(old.path, { force: true });
    });
  }

  async read(vmId: string, offset: number, maxRecords: number): Promise<ExecLogPage> {
    const segments = await this.segments(this.vmDir(vmId));
    const end = segments.length === 0 ? 0 : segments.at(-1)!.base + segments.at(-1)!.size;
    let position = Math.min(end, Math.max(offset, segments[0]?.base ?? 0));
    const records: ExecLogRecord[] = [];
    const startedAt = position;
    for (const [index, segment] of segments.entries()) {
      if (position >= segment.base + segment.size) continue;
      // An append may have dropped this segment since it was listed: read on from the next.
      const file = await open(segment.path).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      });
      if (!file) {
        position = segment.base + segment.size;
        continue;
      }
      try {
        let carry = Buffer.alloc(0);
        for (let at = position - segment.base; at < segment.size; ) {
          const block = Buffer.alloc(Math.min(READ_BLOCK, segment.size - at));
          const { bytesRead } = await file.read(block, 0, block.length, at);
          if (bytesRead === 0) break;
          at += bytesRead;
          const bytes = carry.length > 0 ? Buffer.concat([carry, block.subarray(0, bytesRead)]) : block.subarray(0, bytesRead);
          let start = 0;
          for (let newline = bytes.indexOf(0x0a); newline !== -1; newline = bytes.indexOf(0x0a, start)) {
            const record = parseRecord(bytes.subarray(start, newline));
            position += newline + 1 - start;
            start = newline + 1;
            if (record) records.push(record);
            if (records.length >= maxRecords || position - startedAt >= MAX_PAGE_BYTES) return { records, nextOffset: position, eof: position >= end };
          }
          carry = bytes.subarray(start);
        }
        // A line without its newline ends the log while it is being appended (read it next
        // time); at the end of an older segment it was torn by a crash: skip it.
        if (carry.length > 0 && index === segments.length - 1) return { records, nextOffset: position, eof: true };
        position = segment.base + segment.size;
      } finally {
        await file.close();
      }
    }
    return { records, nextOffset: position, eof: true };
  }

  remove(vmId: string): Promise<void> {
    return this.serialized(vmId, () => rm(this.vmDir(vmId), { recursive: true, force: true }));
  }

  private vmDir(vmId: string): string {
    if (!VM_ID.test(vmId)) throw invalid(`VM id "${vmId}" is not a UUID`);
    return join(this.dir, vmId);
  }

  /** The VM's segments, oldest first, with their sizes now; none when it has no log. */
  private async segments(vmDir: string): Promise<Segment[]> {
    let names: string[];
    try {
      names = await readdir(vmDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const segments: Segment[] = [];
    for (const name of names) {
      const match = SEGMENT_NAME.exec(name);
      if (!match) continue;
      const path = join(vmDir, name);
      const size = await stat(path).then((s) => s.size, () => undefined);
      if (size !== undefined) segments.push({ base: Number(match[1]), size, path });
    }
    return segments.sort((a, b) => a.base - b.base);
  }

  private serialized(vmId: string, work: () => Promise<void>): Promise<void> {
    const run = (this.queues.get(vmId) ?? Promise.resolve()).then(work);
    const settled = run.catch(() => undefined);
    this.queues.set(vmId, settled);
    void settled.then(() => {
      if (this.queues.get(vmId) === settled) this.queues.delete(vmId);
    });
    return run;
  }
}

const segmentName = (base: number) => `${String(base).padStart(16, '0')}.ndjson`;

function recordLine(record: ExecLogRecord): string {
  const { timestamp, execId: exec_id, cursor } = record;
  const json =
    record.kind === 'output'
      ? { timestamp, stream: record.stream, data_b64: record.data.toString('base64'), exec_id, cursor }
      : { timestamp, exec_id, cursor, exit_code: record.exitCode };
  return `${JSON.stringify(json)}\n`;
}

/** A record of a log line; undefined for a line that is not one (torn, or read from its middle). */
function parseRecord(line: Buffer): ExecLogRecord | undefined {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const { timestamp, exec_id: execId, cursor } = value;
  if (typeof timestamp !== 'string' || typeof execId !== 'string' || typeof cursor !== 'number') return undefined;
  if (typeof value.exit_code === 'number') return { kind: 'exit', execId, cursor, exitCode: value.exit_code, timestamp };
  if ((value.stream === 'stdout' || value.stream === 'stderr') && typeof value.data_b64 === 'string') {
    return { kind: 'output', execId, cursor, stream: value.stream, data: Buffer.from(value.data_b64, 'base64'), timestamp };
  }
  return undefined;
}
