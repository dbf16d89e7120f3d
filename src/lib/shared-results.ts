/**
 * Results of a costly computation by key: the last `capacity` of them kept (the least recently
 * asked for goes first), and concurrent askers for a key not kept yet sharing one computation
 * (single-flight). A computation that fails is not kept: the next asker computes again.
 */
export class SharedResults<V> {
  private readonly kept = new Map<string, V>();
  private readonly pending = new Map<string, Promise<V>>();

  constructor(private readonly capacity: number) {}

  /** The result kept for `key`, else the one being computed, else that of `compute()`, started now. */
  get(key: string, compute: () => Promise<V>): Promise<V> {
    if (this.kept.has(key)) {
      const result = this.kept.get(key)!;
      // Map order is insertion order: re-inserting marks the entry most recently used.
      this.kept.delete(key);
      this.kept.set(key, result);
      return Promise.resolve(result);
    }
    const running = this.pending.get(key);
    if (running) return running;
    // compute() runs a turn later, once `pending` names it: even one that throws at once is forgotten after.
    const started = Promise.resolve()
      .then(compute)
      .then((result) => {
        this.kept.set(key, result);
        if (this.kept.size > this.capacity) this.kept.delete(this.kept.keys().next().value!);
        return result;
      })
      .finally(() => this.pending.delete(key));
    this.pending.set(key, started);
    return started;
  }
}
