/**
 * A Map bounded by a total weight (each entry's `weigh`, 1 by default: a count), that drops its
 * least recently used entries first, telling `onEvict` of each. Map iterates in insertion order,
 * so re-inserting an entry makes it the most recently used.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();
  private weight = 0;
  private readonly weigh: (value: V) => number;
  private readonly onEvict: (key: K, value: V) => void;

  constructor(
    private readonly capacity: number,
    options: { weigh?: (value: V) => number; onEvict?: (key: K, value: V) => void } = {},
  ) {
    this.weigh = options.weigh ?? (() => 1);
    this.onEvict = options.onEvict ?? (() => undefined);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value of `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** The value of `key`, its recency unchanged. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /**
   * Sets `key` as the most recently used, then evicts the least recently used entries while
   * the total weight is over capacity. A value weighing more than the capacity is not kept.
   */
  set(key: K, value: V): void {
    if (this.weigh(value) > this.capacity) return;
    this.delete(key);
    this.entries.set(key, value);
    this.weight += this.weigh(value);
    for (const [oldest, old] of this.entries) {
      if (this.weight <= this.capacity) break;
      this.delete(oldest);
      this.onEvict(oldest, old);
    }
  }

  /** Removes `key` (onEvict is not told): whether it was there. */
  delete(key: K): boolean {
    const value = this.entries.get(key);
    if (value === undefined) return false;
    this.entries.delete(key);
    this.weight -= this.weigh(value);
    return true;
  }
}
