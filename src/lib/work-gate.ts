/**
 * Bounds how many costly computations run at once, and how many wait: a burst of requests for
 * them then waits in a short queue or is turned away, rather than piling up in memory.
 */
export class WorkGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    /** Computations run at once, at most. */
    private readonly concurrency: number,
    /** Computations waiting for a turn, at most. */
    private readonly queue: number,
  ) {}

  /**
   * Runs `work` once fewer than `concurrency` others run, in the order asked; undefined (and
   * `work` never runs) when `queue` others wait already.
   */
  run<T>(work: () => Promise<T>): Promise<T> | undefined {
    if (this.running >= this.concurrency && this.waiting.length >= this.queue) return undefined;
    return this.turn().then(async () => {
      try {
        return await work();
      } finally {
        this.release();
      }
    });
  }

  private async turn(): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return;
    }
    // The slot is handed over by release(), so that no newcomer takes it in between.
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}
