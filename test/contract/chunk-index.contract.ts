/**
 * The suite every ChunkIndex implementation must pass (the SQLite file today; a SQL database
 * shared by several servers next). Each test gets a fresh, empty index from `open` and releases
 * it with `cleanup`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/lib/sha256.js';
import type { ChunkIndex, ChunkLocation, IndexedPack } from '../../src/store/packs/chunk-index.js';

export type OpenChunkIndex = () => Promise<{ index: ChunkIndex; cleanup: () => Promise<void> }>;

const digestOf = (name: string) => sha256(Buffer.from(name));
const packId = (n: number) => n.toString(16).padStart(32, '0');

/** A pack `id` holding chunks named `names`, laid out one after the other. */
function packOf(id: string, names: readonly string[]): IndexedPack {
  let offset = 16;
  const entries = names.map((name, i): ChunkLocation => {
    const entry = { digest: digestOf(name), pack: id, offset, storedSize: 100 + i, size: 200 + i, compression: i % 2 ? 'none' : 'zstd' } as const;
    offset += 48 + entry.storedSize;
    return entry;
  });
  return { id, size: offset, entries };
}

export function chunkIndexContract(name: string, open: OpenChunkIndex): void {
  describe(`ChunkIndex contract: ${name}`, () => {
    let index: ChunkIndex;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ index, cleanup } = await open());
    });
    afterEach(async () => {
      await cleanup();
    });

    it('locates published chunks with their exact location, and leaves unknown digests out', async () => {
      const pack = packOf(packId(1), ['a', 'b', 'c']);
      expect(await index.locate([digestOf('a')])).toEqual(new Map());
      expect(await index.publish([pack])).toEqual([]);
      const found = await index.locate([digestOf('c'), digestOf('unknown'), digestOf('a'), digestOf('c')]);
      expect(found).toEqual(new Map([pack.entries[2]!, pack.entries[0]!].map((e) => [e.digest, e])));
      expect(await index.locate([])).toEqual(new Map());
      expect(await index.packIds()).toEqual(new Set([packId(1)]));
      expect(await index.count()).toBe(3);
    });

    it('answers a batch of thousands of digests in one call', async () => {
      const names = Array.from({ length: 5000 }, (_, i) => `chunk ${i}`);
      await index.publish([packOf(packId(1), names.slice(0, 2500)), packOf(packId(2), names.slice(2500))]);
      const asked = [...names.filter((_, i) => i % 2 === 0), ...names.map((n) => `absent ${n}`)].map(digestOf);
      const found = await index.locate(asked);
      expect(found.size).toBe(2500);
      expect(found.get(digestOf('chunk 4998'))).toMatchObject({ pack: packId(2) });
      expect(await index.count()).toBe(5000);
    });

    it('keeps the first location of a chunk published twice, and reports a pack of duplicates only as unused', async () => {
      const first = packOf(packId(1), ['a', 'b']);
      await index.publish([first]);
      const overlapping = packOf(packId(2), ['b', 'c']);
      const duplicates = packOf(packId(3), ['a', 'c']);
      // In one call: `c` goes to pack 2 (published first), so pack 3 holds nothing live.
      expect(await index.publish([overlapping, duplicates])).toEqual([packId(3)]);
      expect((await index.locate([digestOf('b')])).get(digestOf('b'))).toEqual(first.entries[1]);
      expect((await index.locate([digestOf('c')])).get(digestOf('c'))).toEqual(overlapping.entries[1]);
      expect(await index.packIds()).toEqual(new Set([packId(1), packId(2)]));
      expect(await index.count()).toBe(3);
    });

    it('removes chunks, reporting a pack once its last live chunk goes', async () => {
      await index.publish([packOf(packId(1), ['a', 'b']), packOf(packId(2), ['c'])]);
      expect(await index.remove(digestOf('a'))).toBeNull();
      expect(await index.remove(digestOf('a'))).toBeUndefined();
      expect(await index.remove(digestOf('c'))).toBe(packId(2));
      expect(await index.packIds()).toEqual(new Set([packId(1)]));
      expect(await index.remove(digestOf('b'))).toBe(packId(1));
      expect(await index.packIds()).toEqual(new Set());
      expect(await index.count()).toBe(0);
      expect(await index.remove(digestOf('never'))).toBeUndefined();
      // A removed chunk may be published again, in a new pack.
      expect(await index.publish([packOf(packId(3), ['a'])])).toEqual([]);
      expect((await index.locate([digestOf('a')])).get(digestOf('a'))).toMatchObject({ pack: packId(3) });
    });

    it('pages digests in order after a key', async () => {
      const names = Array.from({ length: 25 }, (_, i) => `page ${i}`);
      await index.publish([packOf(packId(1), names)]);
      const sorted = names.map(digestOf).sort();
      expect(await index.page('', 10)).toEqual(sorted.slice(0, 10));
      expect(await index.page(sorted[9]!, 10)).toEqual(sorted.slice(10, 20));
      expect(await index.page(sorted[19]!, 10)).toEqual(sorted.slice(20));
      expect(await index.page(sorted[24]!, 10)).toEqual([]);
    });
  });
}
