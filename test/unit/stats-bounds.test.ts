/**
 * The pieces that bound what a storage statistics request costs (src/domain/storage-stats.service.ts):
 * a gate on computations running and waiting, answers shared by key, and a distinct count that
 * stays exact up to its bound and small beyond it.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unavailable } from '../../src/domain/errors.js';
import { toHttpError } from '../../src/http/errors.js';
import { DistinctDigests } from '../../src/lib/distinct-digests.js';
import { SharedResults } from '../../src/lib/shared-results.js';
import { WorkGate } from '../../src/lib/work-gate.js';

/** A promise and its resolver, to hold a computation open until the test lets it finish. */
function held<T = void>() {
  let release!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (release = resolve));
  return { promise, release };
}

const digest = () => randomBytes(32).toString('hex');

describe('WorkGate', () => {
  it('runs at most `concurrency` at once, queues at most `queue`, turns the rest away, and hands freed turns on in order', async () => {
    const gate = new WorkGate(1, 1);
    const order: string[] = [];
    const first = held();
    const running = gate.run(async () => {
      order.push('first');
      await first.promise;
    });
    const queued = gate.run(async () => void order.push('queued'));
    expect(running).toBeDefined();
    expect(queued).toBeDefined();
    expect(gate.run(async () => void order.push('turned away'))).toBeUndefined();

    first.release();
    await Promise.all([running, queued]);
    expect(order).toEqual(['first', 'queued']);
    // Idle again: runs at once.
    await gate.run(async () => void order.push('later'));
    expect(order.at(-1)).toBe('later');
  });

  it('frees the turn of a computation that fails', async () => {
    const gate = new WorkGate(1, 0);
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run(async () => 'ran')).toBe('ran');
  });
});

describe('a caller turned away', () => {
  it('is answered 503 with Retry-After', () => {
    expect(toHttpError(unavailable('busy', 5))).toMatchObject({ status: 503, headers: { 'Retry-After': '5' } });
    expect(toHttpError(unavailable('no guest assets')).headers).toBeUndefined();
  });
});

describe('SharedResults', () => {
  it('computes once for concurrent askers of a key, keeps the answer, and forgets the least recently used first', async () => {
    const results = new SharedResults<number>(2);
    let computed = 0;
    const slow = held<number>();
    const compute = () => {
      computed++;
      return slow.promise;
    };
    const asked = [results.get('a', compute), results.get('a', compute), results.get('a', compute)];
    slow.release(7);
    expect(await Promise.all(asked)).toEqual([7, 7, 7]);
    expect(computed).toBe(1);

    const count = (value: number) => async () => {
      computed++;
      return value;
    };
    expect(await results.get('a', count(0))).toBe(7); // kept
    await results.get('b', count(2));
    await results.get('a', count(0)); // a is now the most recently used
    await results.get('c', count(3)); // evicts b
    computed = 0;
    expect(await results.get('a', count(0))).toBe(7);
    expect(await results.get('b', count(20))).toBe(20);
    expect(computed).toBe(1);
  });

  it('keeps no failure: the next asker computes again, even after a computation that threw at once', async () => {
    const results = new SharedResults<string>(4);
    await expect(results.get('k', () => { throw new Error('full'); })).rejects.toThrow('full');
    await expect(results.get('k', () => Promise.reject(new Error('later')))).rejects.toThrow('later');
    expect(await results.get('k', async () => 'ok')).toBe('ok');
  });
});

describe('DistinctDigests', () => {
  it('counts exactly up to its limit', () => {
    const digests = Array.from({ length: 1000 }, digest);
    const set = new DistinctDigests(1000, 0);
    expect(digests.filter((d) => set.add(d)).length).toBe(1000);
    expect(digests.filter((d) => set.add(d)).length).toBe(0);
    expect(set.exact).toBe(true);
    expect(set.has(digests[500]!)).toBe(true);
    expect(set.has(digest())).toBe(false);
  });

  it('past its limit, keeps every member, counts new ones within a few percent, and says it is no longer exact', () => {
    const set = new DistinctDigests(1000, 20_000);
    const digests = Array.from({ length: 20_000 }, digest);
    const added = digests.filter((d) => set.add(d)).length;
    expect(set.exact).toBe(false);
    expect(added).toBeGreaterThan(20_000 * 0.97);
    expect(added).toBeLessThanOrEqual(20_000);
    expect(digests.every((d) => set.has(d))).toBe(true);
    expect(digests.filter((d) => set.add(d)).length).toBe(0);
    const strangers = Array.from({ length: 10_000 }, digest).filter((d) => set.has(d)).length;
    expect(strangers).toBeLessThan(10_000 * 0.03);
  });
});
