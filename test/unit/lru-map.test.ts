import { describe, expect, it } from 'vitest';
import { LruMap } from '../../src/lib/lru-map.js';

describe('LruMap', () => {
  it('drops the least recently used beyond its count, telling onEvict; get() touches, peek() does not', () => {
    const evicted: string[] = [];
    const map = new LruMap<string, number>(2, { onEvict: (key) => evicted.push(key) });
    map.set('a', 1);
    map.set('b', 2);
    expect(map.get('a')).toBe(1); // a is now the most recently used
    expect(map.peek('b')).toBe(2); // b stays the least
    map.set('c', 3);
    expect(evicted).toEqual(['b']);
    expect([map.has('a'), map.has('b'), map.has('c'), map.size]).toEqual([true, false, true, 2]);
  });

  it('bounds the total weight, keeps no value heavier than the capacity, and delete() evicts nothing', () => {
    const evicted: string[] = [];
    const map = new LruMap<string, Buffer>(10, { weigh: (b) => b.length, onEvict: (key) => evicted.push(key) });
    map.set('a', Buffer.alloc(4));
    map.set('b', Buffer.alloc(4));
    map.set('huge', Buffer.alloc(11));
    expect([map.has('huge'), map.size, evicted]).toEqual([false, 2, []]);
    map.set('c', Buffer.alloc(4)); // 12 > 10: a goes
    expect(evicted).toEqual(['a']);
    expect(map.delete('b')).toBe(true);
    map.set('d', Buffer.alloc(6)); // c 4 + d 6 = 10: fits, since b's weight went with it
    expect([evicted, map.size]).toEqual([['a'], 2]);
    map.set('c', Buffer.alloc(2)); // replacing weighs the new value only
    map.set('e', Buffer.alloc(2));
    expect([evicted, map.size]).toEqual([['a'], 3]);
  });
});
