/**
 * The exec log of a VM (issue 12, Vers' GET /vm/{id}/logs): every exec's output, in the order it
 * was produced, and each exec's exit, kept by the server per VM, bounded, until the VM is deleted.
 * Readers address it by byte offset, as Vers does; the implementation is src/store/fs/exec-log-store.ts.
 */
import type { ExecStreamName } from './vm-runtime.js';

/** A piece of one exec's output. */
export interface ExecOutputRecord {
  kind: 'output';
  execId: string;
  /** This record's number within its exec, from 1: what attaching from a cursor skips to. */
  cursor: number;
  stream: ExecStreamName;
  data: Buffer;
  timestamp: string;
}

/** The end of one exec; its cursor is the exec's last (that of its last piece, or 0). */
export interface ExecExitRecord {
  kind: 'exit';
  execId: string;
  cursor: number;
  exitCode: number;
  timestamp: string;
}

export type ExecLogRecord = ExecOutputRecord | ExecExitRecord;

export interface ExecLogPage {
  records: ExecLogRecord[];
  /** Where the next read continues: just past the last record read (or skipped). */
  nextOffset: number;
  /** True when the read reached the end of what is logged now. */
  eof: boolean;
}

/** The newest EXEC_LOG_SEGMENT_BYTES to twice that of each VM's log are kept; older records are dropped. */
export const EXEC_LOG_SEGMENT_BYTES = 4 * 1024 * 1024;

export interface ExecLogStore {
  /**
   * Appends records at the end of the VM's log, in order, each whole (appends to one VM run one
   * at a time). Offsets only grow: dropping the oldest records never moves the others.
   */
  append(vmId: string, records: readonly ExecLogRecord[]): Promise<void>;
  /**
   * Records from byte `offset`: one before the oldest kept record reads from that record, one
   * inside a record from the next. At most `maxRecords`, and fewer when they hold several MiB.
   * A VM without a log reads as an empty one.
   */
  read(vmId: string, offset: number, maxRecords: number): Promise<ExecLogPage>;
  /** Removes the VM's log (its VM is deleted). Idempotent. */
  remove(vmId: string): Promise<void>;
}
