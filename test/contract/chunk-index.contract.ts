/**
 * The suite every ChunkIndex implementation must pass (the SQLite file beside local packs, the
 * PostgreSQL database several servers share). Each test gets a fresh, empty index from `open`,
 * may open more handles on the same index with `another` (as other servers do), and releases
 * them all with `cleanup`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/lib/sha256.js';
import type { ChunkIndex, ChunkLocation, IndexedPack } from '../../src/store/packs/chunk-index.js';

export type OpenChunkIndex = () => Promise<{
  index: ChunkIndex;
  /** Another handle on the same index, as a second process opens it; closed by cleanup. */
  another: () => Promise<ChunkIndex>;
  cleanup: () => Promise<void>;
}>;

/** An engine the suite runs on, or why it cannot run here (`skip`, then shown in the suite's name). */
export interface ChunkIndexEngine {
  name: string;
  open: OpenChunkIndex;
  skip?: string;
}

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
  return { id, size: offset, createdAt: 1_000_000 + parseInt(id, 16), entries };
}

export function chunkIndexContract({ name, open, skip }: ChunkIndexEngine): void {
  describe.skipIf(skip !== undefined)(`ChunkIndex contract: ${name}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let index: ChunkIndex;
    let another: () => Promise<ChunkIndex>;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ index, another, cleanup } = await open());
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
      await index.publish([packOf(packId(1), ['a', 'b']), packOf(packId(2), ['c', 'd'])]);
      expect(await index.removeMany([digestOf('a')])).toEqual({ chunks: 1, storedBytes: 100, emptiedPacks: [] });
      expect(await index.removeMany([digestOf('a'), digestOf('never')])).toEqual({ chunks: 0, storedBytes: 0, emptiedPacks: [] });
      expect(await index.removeMany([digestOf('c'), digestOf('d'), digestOf('c')])).toEqual({ chunks: 2, storedBytes: 201, emptiedPacks: [packId(2)] });
      expect(await index.packIds()).toEqual(new Set([packId(1)]));
      expect(await index.removeMany([digestOf('b')])).toEqual({ chunks: 1, storedBytes: 101, emptiedPacks: [packId(1)] });
      expect(await index.packIds()).toEqual(new Set());
      expect(await index.count()).toBe(0);
      // A removed chunk may be published again, in a new pack.
      expect(await index.publish([packOf(packId(3), ['a'])])).toEqual([]);
      expect((await index.locate([digestOf('a')])).get(digestOf('a'))).toMatchObject({ pack: packId(3) });
    });

    it('sums its chunks\' stored bytes and its packs\' sizes, which keep the bytes of removed chunks until their pack goes', async () => {
      expect(await index.totals()).toEqual({ chunks: 0, storedBytes: 0, packs: 0, packBytes: 0 });
      const first = packOf(packId(1), ['a', 'b']);
      const second = packOf(packId(2), ['c']);
      await index.publish([first, second]);
      expect(await index.totals()).toEqual({ chunks: 3, storedBytes: 100 + 101 + 100, packs: 2, packBytes: first.size + second.size });
      await index.removeMany([digestOf('a'), digestOf('c')]);
      expect(await index.totals()).toEqual({ chunks: 1, storedBytes: 101, packs: 1, packBytes: first.size });
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

    it('names the packs mostly garbage, lists a pack\'s live chunks, and relocates them to a new pack', async () => {
      const old = packOf(packId(1), ['r1', 'r2', 'r3', 'r4']);
      const full = packOf(packId(2), ['r5']);
      await index.publish([old, full]);
      expect(await index.sparsePacks(0.5, 10)).toEqual([]);
      await index.removeMany([digestOf('r1'), digestOf('r2'), digestOf('r3')]);
      expect(await index.sparsePacks(0.5, 10)).toEqual([{ id: packId(1), size: old.size, liveBytes: 16 + 48 + 103 }]);
      const left = await index.packEntries(packId(1));
      expect(left).toEqual([old.entries[3]]);

      const moved = { id: packId(3), size: 16 + 48 + 103, createdAt: 5, entries: [{ ...left[0]!, pack: packId(3), offset: 16 }] };
      expect(await index.relocate(packId(1), moved)).toEqual({ moved: 1, emptied: true });
      expect((await index.locate([digestOf('r4')])).get(digestOf('r4'))).toEqual(moved.entries[0]);
      expect(await index.packIds()).toEqual(new Set([packId(2), packId(3)]));
      expect(await index.packEntries(packId(1))).toEqual([]);
      // A chunk removed meanwhile is not moved: the new pack then holds nothing live and goes.
      await index.removeMany([digestOf('r5')]);
      expect(await index.relocate(packId(3), { ...moved, id: packId(4), entries: [{ ...moved.entries[0]!, digest: digestOf('r5'), pack: packId(4) }] })).toEqual({
        moved: 0,
        emptied: false,
      });
      expect(await index.packIds()).toEqual(new Set([packId(3)]));
    });

    it('pages entries in order with their stored sizes and their packs\' ages', async () => {
      const first = packOf(packId(1), ['e1', 'e2']);
      const second = packOf(packId(2), ['e3']);
      await index.publish([first, second]);
      const all = [...first.entries.map((e) => ({ e, pack: first })), ...second.entries.map((e) => ({ e, pack: second }))]
        .map(({ e, pack }) => ({ digest: e.digest, storedSize: e.storedSize, packCreatedAt: pack.createdAt }))
        .sort((a, b) => (a.digest < b.digest ? -1 : 1));
      expect(await index.entries('', 2)).toEqual(all.slice(0, 2));
      expect(await index.entries(all[1]!.digest, 2)).toEqual(all.slice(2));
    });

    it('indexes each chunk once when two handles publish packs sharing chunks at once, the loser reporting its pack unused', async () => {
      const other = await another();
      const rounds = 3;
      let indexed = 0;
      for (let round = 0; round < rounds; round++) {
        const names = Array.from({ length: 2000 }, (_, i) => `shared ${i} round ${round}`);
        const [ourShared, ourOwn, theirShared, theirOwn] = Array.from({ length: 4 }, (_, i) => packId(10 * round + i + 1));
        // Each side publishes a pack of the shared chunks (in opposite orders) and one of its own, in one call.
        const [ourUnused, theirUnused] = await Promise.all([
          index.publish([packOf(ourShared!, names), packOf(ourOwn!, [`ours ${round}`])]),
          other.publish([packOf(theirShared!, [...names].reverse()), packOf(theirOwn!, [`theirs ${round}`])]),
        ]);
        indexed += names.length + 2;

        // One shared pack won every shared chunk; the other holds nothing live and was reported.
        const unused = [...ourUnused, ...theirUnused];
        expect(unused.length === 1 && [ourShared, theirShared].includes(unused[0])).toBe(true);
        const winner = unused[0] === ourShared ? theirShared! : ourShared!;
        const located = await other.locate(names.map(digestOf));
        expect(located.size).toBe(names.length);
        expect(new Set([...located.values()].map((l) => l.pack))).toEqual(new Set([winner]));
        expect(await index.count()).toBe(indexed);
        const packs = await index.packIds();
        expect([winner, ourOwn, theirOwn].every((id) => packs.has(id!)) && !packs.has(unused[0]!)).toBe(true);

        if (round === rounds - 1) {
          // The winner counted each shared chunk once: it empties with the last of them, not before.
          const [last, ...rest] = names.map(digestOf);
          expect((await index.removeMany(rest)).emptiedPacks).toEqual([]);
          expect((await other.removeMany([last!])).emptiedPacks).toEqual([winner]);
        }
      }
    });
  });
}
