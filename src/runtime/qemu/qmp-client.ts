import type { Socket } from 'node:net';
import { readLines } from './json-lines.js';

/** QMP answers are small (query-status, ringbuf reads); anything past this is a broken peer. */
const MAX_QMP_LINE = 1024 * 1024;

/** An asynchronous QMP event (STOP, RESUME, SHUTDOWN, ...) with its data. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * A client of QEMU's machine protocol on a Unix socket
 * (https://qemu-project.gitlab.io/qemu/interop/qmp-spec.html): the greeting, capability
 * negotiation, then commands matched to their answers by id, with events delivered as they come.
 */
export class QmpClient {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedBy: Error | undefined;
  private greeted: (() => void) | undefined;
  private failGreeting: ((error: Error) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly onEvent: (event: QmpEvent) => void,
  ) {}

  /** Reads the greeting of a connected socket and leaves capability negotiation mode. */
  static async open(socket: Socket, onEvent: (event: QmpEvent) => void): Promise<QmpClient> {
    const client = new QmpClient(socket, onEvent);
    const greeting = new Promise<void>((resolve, reject) => {
      client.greeted = resolve;
      client.failGreeting = reject;
    });
    readLines(socket, MAX_QMP_LINE, (line) => client.receive(line));
    socket.on('error', (error) => client.fail(error));
    socket.on('close', () => client.fail(new Error('QMP connection closed')));
    await greeting;
    await client.execute('qmp_capabilities');
    return client;
  }

  /**
   * Runs a command and resolves with its `return` value; rejects with QEMU's error description,
   * or when the connection closes first (the process died).
   */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(JSON.stringify({ execute: command, ...(args && { arguments: args }), id }) + '\n');
    });
  }

  /** Closes the connection; pending commands are rejected. Idempotent. */
  close(): void {
    this.fail(new Error('QMP connection closed'));
    this.socket.destroy();
  }

  private receive(line: Buffer): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
    } catch {
      this.socket.destroy(new Error('QMP sent a line that is not JSON'));
      return;
    }
    if ('QMP' in message) {
      this.greeted?.();
      this.greeted = undefined;
    } else if (typeof message.event === 'string') {
      this.onEvent(message as unknown as QmpEvent);
    } else if (typeof message.id === 'string') {
      const pending = this.pending.get(message.id);
      this.pending.delete(message.id);
      const error = message.error as { desc?: string } | undefined;
      if (error) pending?.reject(new Error(`QMP: ${error.desc ?? 'error'}`));
      else pending?.resolve(message.return);
    }
  }

  private fail(error: Error): void {
    if (this.closedBy) return;
    this.closedBy = error;
    this.failGreeting?.(error);
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
