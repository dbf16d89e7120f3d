/**
 * The suite every ChunkStore implementation must pass. Each test gets a fresh, empty store from
 * `open` and releases it with `cleanup`; `damage`, where the opener can reach the stored bytes,
 * flips a bit of a stored chunk as a failing disk would and answers where the chunk lives (its
 * pack). `skip` says why a store cannot run here (shown in the suite's name).
 */
import { sha256 } from '../../src/lib/sha256.js';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/errors.js';
import type { ChunkStore } from '../../src/store/types.js';
import { generatedBytes } from '../support/generated.js';
import { expectDomainError } from '../support/domain-errors.js';

export type OpenChunkStore = () => Promise<{ store: ChunkStore; cleanup: () => Promise<void>; damage?: (digest: string) => Promise<string> }>;

export { sha256 };

/** `size` bytes, half keystream and half text (compressible), distinct for each seed. */
export async function chunkOf(size: number, seed: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of generatedBytes(Math.ceil(size / 2), seed)) parts.push(part);
  const text = Buffer.from(`chunk ${seed} `.repeat(size));
  return Buffer.concat([...parts, text]).subarray(0, size);
}


async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

export function chunkStoreContract(name: string, open: OpenChunkStore, skip?: string): void {
  describe.skipIf(skip !== undefined)(`ChunkStore contract: ${name}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let store: ChunkStore;
    let cleanup: () => Promise<void>;
    let damage: ((digest: string) => Promise<string>) | undefined;

    beforeEach(async () => {
      ({ store, cleanup, damage } = await open());
    });
    afterEach(async () => {
      await cleanup();
    });

    it('answers ping while open and rejects it once closed (what readiness probes rely on)', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
      await store.close();
      await expect(store.ping()).rejects.toThrow();
    });

    it('puts, gets and stats a chunk, compressed when that helps', async () => {
      const data = await chunkOf(64 * 1024, 1);
      const digest = sha256(data);
      expect(await store.has(digest)).toBe(false);
      const put = await store.put(data);
      expect(put).toMatchObject({ digest, size: data.length, created: true });
      expect(put.storedSize).toBeLessThan(data.length);
      expect(await store.has(digest)).toBe(true);
      expect((await store.get(digest)).equals(data)).toBe(true);
      expect(await store.stat(digest)).toEqual({ digest, size: data.length, storedSize: put.storedSize, compression: 'zstd' });
      expect(await store.count()).toBe(1);
    });

    it('stores incompressible chunks raw and empty chunks too', async () => {
      const random = (await chunkOf(128 * 1024, 2)).subarray(0, 32 * 1024); // keystream half only
      const put = await store.put(random);
      expect(put.storedSize).toBe(random.length);
      expect(await store.stat(put.digest)).toMatchObject({ compression: 'none', storedSize: random.length });
      const empty = await store.put(Buffer.alloc(0));
      expect((await store.get(empty.digest)).length).toBe(0);
    });

    it('stores a chunk once (dedupe), and reports it as not created', async () => {
      const data = await chunkOf(50_000, 3);
      expect((await store.put(data)).created).toBe(true);
      const again = await store.put(data, sha256(data));
      expect(again).toMatchObject({ created: false, storedSize: 0 });
      expect(await store.count()).toBe(1);
    });

    it('rejects a digest that does not match the bytes with unprocessable, storing nothing', async () => {
      const data = await chunkOf(1000, 4);
      await expectDomainError(store.put(data, sha256(Buffer.from('other'))), 'unprocessable');
      const writer = store.writer();
      await expectDomainError(writer.put(data, 'not-a-digest'), 'unprocessable');
      await writer.commit();
      expect(await store.count()).toBe(0);
    });

    it('answers not_found and undefined for unknown chunks', async () => {
      const unknown = sha256(Buffer.from('never stored'));
      await expectDomainError(store.get(unknown), 'not_found');
      await expectDomainError(store.get('not-a-digest'), 'not_found');
      expect(await store.stat(unknown)).toBeUndefined();
      expect(await store.has(unknown)).toBe(false);
      expect(await store.delete(unknown)).toBe(false);
    });

    it('stats many chunks at once, leaving absent ones out', async () => {
      const writer = store.writer();
      const data = await Promise.all([1, 2, 3].map((seed) => chunkOf(20_000, 60 + seed)));
      for (const d of data) await writer.put(d);
      await writer.commit();
      const absent = sha256(Buffer.from('absent'));
      const stats = await store.statMany([sha256(data[2]!), absent, sha256(data[0]!), sha256(data[2]!)]);
      expect([...stats.keys()].sort()).toEqual([sha256(data[0]!), sha256(data[2]!)].sort());
      expect(stats.get(sha256(data[0]!))).toEqual(await store.stat(sha256(data[0]!)));
      expect(await store.statMany([])).toEqual(new Map());
    });

    it('lists missing digests in input order without duplicates', async () => {
      const stored = await store.put(await chunkOf(1000, 5));
      const a = sha256(Buffer.from('a'));
      const b = sha256(Buffer.from('b'));
      expect(await store.missing([b, stored.digest, a, b, a])).toEqual([b, a]);
      expect(await store.missing([])).toEqual([]);
    });

    it('makes a writer’s chunks visible only on commit, stored once within the writer', async () => {
      const writer = store.writer();
      const data = await Promise.all([1, 2, 3].map((seed) => chunkOf(70_000, 10 + seed)));
      for (const d of data) expect((await writer.put(d)).created).toBe(true);
      expect((await writer.put(data[0]!)).created).toBe(false);
      expect(await store.has(sha256(data[0]!))).toBe(false);
      expect(await store.missing(data.map(sha256))).toEqual(data.map(sha256));
      expect(await store.count()).toBe(0);
      await writer.commit();
      await writer.commit(); // idempotent
      await writer.abort(); // nothing to do after commit
      expect(await store.missing(data.map(sha256))).toEqual([]);
      expect(await store.count()).toBe(3);
      for (const d of data) expect((await store.get(sha256(d))).equals(d)).toBe(true);
    });

    it('discards an aborted writer’s chunks', async () => {
      const writer = store.writer();
      const data = await chunkOf(40_000, 20);
      await writer.put(data);
      await writer.abort();
      expect(await store.has(sha256(data))).toBe(false);
      await expectDomainError(store.get(sha256(data)), 'not_found');
      expect(await store.count()).toBe(0);
      expect((await store.put(data)).created).toBe(true); // and it can be stored later
    });

    it('keeps one copy when two writers store the same chunk', async () => {
      const data = await chunkOf(30_000, 21);
      const first = store.writer();
      const second = store.writer();
      expect((await first.put(data)).created).toBe(true);
      expect((await second.put(data)).created).toBe(true); // not committed yet: invisible
      await first.commit();
      await second.commit();
      expect(await store.count()).toBe(1);
      expect((await store.get(sha256(data))).equals(data)).toBe(true);
      expect(await store.delete(sha256(data))).toBe(true);
      expect(await store.count()).toBe(0);
    });

    it('deletes chunks, keeps their pack mates, and lists and counts what is left', async () => {
      const writer = store.writer();
      const data = await Promise.all([1, 2, 3, 4].map((seed) => chunkOf(20_000, 30 + seed)));
      for (const d of data) await writer.put(d);
      await writer.commit();
      expect(await store.delete(sha256(data[1]!))).toBe(true);
      expect(await store.delete(sha256(data[1]!))).toBe(false);
      await expectDomainError(store.get(sha256(data[1]!)), 'not_found');
      expect((await store.get(sha256(data[2]!))).equals(data[2]!)).toBe(true);
      const listed: string[] = [];
      for await (const d of store.list()) listed.push(d);
      expect(listed.sort()).toEqual([data[0]!, data[2]!, data[3]!].map(sha256).sort());
      expect(await store.count()).toBe(3);
      for (const d of [data[0]!, data[2]!, data[3]!]) expect(await store.delete(sha256(d))).toBe(true);
      expect(await store.count()).toBe(0);
      expect((await store.put(data[0]!)).created).toBe(true);
    });

    it('lists more chunks than one page', async () => {
      const writer = store.writer();
      const expected = new Set<string>();
      for (let i = 0; i < 2500; i++) expected.add((await writer.put(Buffer.from(`chunk number ${i}`))).digest);
      await writer.commit();
      const listed = new Set<string>();
      for await (const d of store.list()) listed.add(d);
      expect(listed).toEqual(expected);
    });

    it('streams chunks in order, with skip and length across chunk boundaries', async () => {
      const data = await Promise.all([1, 2, 3, 4, 5].map((seed) => chunkOf(10_000 + seed * 1000, 40 + seed)));
      const digests: string[] = [];
      for (const d of data) digests.push((await store.put(d)).digest);
      digests.push(digests[0]!); // a chunk may repeat within a file
      const whole = Buffer.concat([...data, data[0]!]);
      expect((await collect(store.stream(digests))).equals(whole)).toBe(true);
      for (const [skip, length] of [
        [0, 1],
        [5, 11_000],
        [10_999, 2], // last byte of chunk 1, first of chunk 2
        [11_000, 12_000], // exactly chunk 2
        [30_000, 40_000], // starts in chunk 3, ends in chunk 5
        [whole.length - 1, 10],
      ] as const) {
        const part = await collect(store.stream(digests, { skip, length }));
        expect(part.equals(whole.subarray(skip, skip + length))).toBe(true);
      }
      expect((await collect(store.stream(digests, { skip: 12_345 }))).equals(whole.subarray(12_345))).toBe(true);
      expect((await collect(store.stream([]))).length).toBe(0);
    });

    it('verifies stored chunks without answering their bytes, naming each damaged one once', async () => {
      const stored = await Promise.all([1, 2, 3].map(async (seed) => (await store.put(await chunkOf(30_000, 70 + seed))).digest));
      const [a, b, c] = stored as [string, string, string];
      const absent = sha256(Buffer.from('never stored'));
      expect(await store.verify([a, absent, b, c])).toEqual([]);
      expect(await store.verify([])).toEqual([]);
      if (!damage) return;
      const pack = await damage(b);
      expect(await store.verify([c, absent, b, a, b])).toEqual([{ digest: b, pack, reason: expect.any(String) }]);
      await expectDomainError(store.get(b), 'corrupt');
      expect(sha256(await store.get(a))).toBe(a);
    });

    it('fails a stream with not_found when a chunk is missing', async () => {
      const stored = await store.put(await chunkOf(5000, 50));
      const error = await collect(store.stream([stored.digest, sha256(Buffer.from('missing'))])).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).kind).toBe('not_found');
    });
  });
}
