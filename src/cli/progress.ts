import type { Writable } from 'node:stream';
import { formatBytes } from './format.js';

const REDRAW_MS = 100; // at most 10 redraws a second: a fast transfer must not flood the terminal

/**
 * Counts the bytes of a transfer and, when enabled, draws one self-overwriting line on `out`
 * (stderr): bytes so far, rate, and percent when the total is known.
 */
export class Progress {
  bytes = 0;
  private readonly started: number;
  private lastDraw = -Infinity; // the first add draws, whatever the clock's origin
  private finished = false;

  constructor(
    private readonly out: Writable | undefined,
    private readonly now: () => number,
    private readonly label: string,
    private total?: number,
    /**
     * A meter of the same command that runs alongside (push hashes while it sends): both would
     * draw on one line, so this one draws only once that one has finished its line.
     */
    private readonly after?: Progress,
  ) {
    this.started = now();
  }

  /** Adds to the total: for a transfer that learns its size as it goes (push's bytes to send). */
  expect(n: number): void {
    this.total = (this.total ?? 0) + n;
  }

  /** Passes `source` through unchanged, counting (and drawing) as chunks go by. */
  async *track(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      this.add(chunk.byteLength);
      yield chunk;
    }
  }

  add(n: number): void {
    this.bytes += n;
    const now = this.now();
    if (this.out && this.after?.finished !== false && now - this.lastDraw >= REDRAW_MS) {
      this.lastDraw = now;
      this.draw(now);
    }
  }

  /** Draws the final state and ends the line, so later output starts on a fresh one. */
  finish(): void {
    this.finished = true;
    if (!this.out) return;
    this.draw(this.now());
    this.out.write('\n');
  }

  private draw(now: number): void {
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    let text = `${this.label} ${formatBytes(this.bytes)}`;
    if (this.total) {
      // The total may be an estimate (tar headers): never show more than 100%.
      const percent = Math.min(100, (this.bytes / this.total) * 100);
      text += ` / ${formatBytes(this.total)} (${percent.toFixed(0)}%)`;
    }
    text += `  ${formatBytes(Math.round(this.bytes / seconds))}/s`;
    this.out?.write(`\r${text}\x1b[K`);
  }
}
