import type { Socket } from 'node:net';

/**
 * Bytes an HTTP connection carried per request (headers and bodies), from its socket's counters.
 * A kept-alive connection serves its requests one after another, so each request gets what the
 * socket carried since the previous one's answer was counted. Each counter keeps its own marks:
 * the metrics and the logs count at different moments of the same answer.
 */
export class ConnectionBytes {
  private readonly counted = new WeakMap<Socket, { read: number; written: number }>();

  /** The bytes read and written on `socket` since the last call for it (since it opened, at first). */
  since(socket: Socket): { read: number; written: number } {
    const before = this.counted.get(socket) ?? { read: 0, written: 0 };
    const now = { read: socket.bytesRead, written: socket.bytesWritten };
    this.counted.set(socket, now);
    return { read: Math.max(0, now.read - before.read), written: Math.max(0, now.written - before.written) };
  }
}
