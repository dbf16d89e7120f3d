import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const CONNECT_RETRY_MAX_MS = 8;

/**
 * Splits what a socket sends into newline-terminated lines, as QMP and the guest agent answer
 * (one JSON document per line; JSON never holds a raw newline). A line longer than `maxLine`
 * destroys the socket: the peer is broken or hostile, and nothing proportional to what it sends
 * is held beyond that bound.
 */
export function readLines(socket: Socket, maxLine: number, onLine: (line: Buffer) => void): void {
  let parts: Buffer[] = [];
  let held = 0;
  socket.on('data', (chunk: Buffer) => {
    let start = 0;
    for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
      parts.push(chunk.subarray(start, newline));
      const line = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      parts = [];
      held = 0;
      start = newline + 1;
      onLine(line);
      if (socket.destroyed) return;
    }
    if (start < chunk.length) {
      held += chunk.length - start;
      if (held > maxLine) {
        socket.destroy(new Error(`a line of more than ${maxLine} bytes`));
        return;
      }
      parts.push(chunk.subarray(start));
    }
  });
}

/**
 * Connects to a Unix socket that a process just started is about to create, retrying while it
 * does not exist yet (or refuses), until `deadline` (ms since the epoch) or `gaveUp()` says the
 * process is gone. Retries come at most CONNECT_RETRY_MAX_MS apart: QEMU makes its sockets
 * ~0.1-0.2 s after it starts, and a resumed VM waits for QMP, so a longer backoff (100 ms, once)
 * added its overshoot to every branch. A failed attempt is one syscall.
 */
export async function connectWhenListening(path: string, deadline: number, gaveUp: () => boolean): Promise<Socket> {
  for (let wait = 2; ; wait = Math.min(wait * 2, CONNECT_RETRY_MAX_MS)) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect(path);
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || gaveUp() || Date.now() >= deadline) throw error;
    }
    await sleep(wait);
  }
}
