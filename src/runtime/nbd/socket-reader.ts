import type { Socket } from 'node:net';

/**
 * Buffered bytes past which the socket is paused: the peer then blocks in its own send buffer
 * instead of making this process hold whatever it sends. Requests are 28 bytes and option data
 * is bounded by the caller, so this only ever holds a few requests ahead of the server.
 */
const BUFFER_LIMIT = 64 * 1024;

/**
 * Exact-length reads off a socket for a message parser. The socket is paused while BUFFER_LIMIT
 * bytes wait unread, so a parser that stops reading (waiting for a free slot, say) stops the
 * peer too: memory stays bounded whatever the peer sends.
 */
export class SocketReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered >= BUFFER_LIMIT) socket.pause();
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  /** Exactly `length` bytes, or undefined when the peer stops sending before they all came. */
  async read(length: number): Promise<Buffer | undefined> {
    while (this.buffered < length) {
      if (!(await this.more())) return undefined;
    }
    const out = Buffer.allocUnsafe(length);
    for (let filled = 0; filled < length; ) filled += this.take(length - filled).copy(out, filled);
    return out;
  }

  /** Drops the next `length` bytes as they arrive, never holding them; false when the peer stops first. */
  async skip(length: number): Promise<boolean> {
    for (let left = length; left > 0; ) {
      if (this.buffered === 0 && !(await this.more())) return false;
      left -= this.take(left).length;
    }
    return true;
  }

  /** Up to `length` bytes from the head of the buffer (at least one when any is buffered). */
  private take(length: number): Buffer {
    const head = this.chunks[0]!;
    const part = head.subarray(0, length);
    if (part.length === head.length) this.chunks.shift();
    else this.chunks[0] = head.subarray(part.length);
    this.buffered -= part.length;
    return part;
  }

  /** Waits for more bytes; false when none will come. */
  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const before = this.buffered;
    this.socket.resume();
    while (this.buffered === before && !this.ended) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.buffered > before;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
