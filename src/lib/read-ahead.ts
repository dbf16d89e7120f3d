/**
 * The results of `load` over `items`, in order, with up to `depth` loads started ahead of the
 * consumer: enough to hide read latency while at most `depth` results wait in memory. A failed
 * load surfaces when its turn comes; the loads of a consumer that stops early are left to finish
 * unobserved, so their failures are swallowed rather than reported as unhandled.
 */
export async function* readAhead<T, R>(items: Iterable<T>, depth: number, load: (item: T) => Promise<R>): AsyncGenerator<R> {
  const iterator = items[Symbol.iterator]();
  const ahead: Promise<R>[] = [];
  let next = iterator.next();
  for (;;) {
    for (; ahead.length < depth && !next.done; next = iterator.next()) {
      const loading = load(next.value);
      loading.catch(() => undefined);
      ahead.push(loading);
    }
    const loading = ahead.shift();
    if (!loading) return;
    yield await loading;
  }
}
