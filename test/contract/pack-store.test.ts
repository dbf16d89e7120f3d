/**
 * PackChunkStore composed by hand (openPackChunkStore over LocalDirBackend + SqliteChunkIndex),
 * as a deployment over a shared bucket composes it: the orphan grace, and the batching that
 * keeps a remote index from costing a round trip per chunk.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PutPipeline } from '../../src/domain/put-pipeline.js';
import { sha256 } from '../../src/lib/sha256.js';
import { LocalDirBackend } from '../../src/store/blobs/local-dir.js';
import type { ChunkIndex, ChunkLocation, IndexedPack } from '../../src/store/packs/chunk-index.js';
import { ORPHAN_GRACE_MS, openPackChunkStore } from '../../src/store/packs/pack-store.js';
import { SqliteChunkIndex } from '../../src/store/packs/sqlite-chunk-index.js';
import { chunkOf } from './chunk-store.contract.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'snapfork-packs-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const indexFile = () => join(root, 'index.db');

describe('orphan packs', () => {
  const ORPHAN = 'packs/ab/ab0000000000000000000000000000ff.pack';

  it('are deleted at open only once older than the grace; published packs never', async () => {
    let store = await openPackChunkStore(await LocalDirBackend.open(root), SqliteChunkIndex.open(indexFile()));
    const data = await chunkOf(10_000, 1);
    await store.put(data);
    await store.close();
    // A pack committed but never published: its writer's server died in between, or is still there.
    const backend = await LocalDirBackend.open(root);
    const upload = backend.create(ORPHAN);
    await upload.write(Buffer.from('SNAPPACK'));
    await upload.commit();
    const { modifiedAt } = (await backend.stat(ORPHAN))!;
    await backend.close();

    const openAt = async (ageMs: number, orphanGraceMs?: number) => {
      const opened = await openPackChunkStore(await LocalDirBackend.open(root), SqliteChunkIndex.open(indexFile()), {
        now: () => new Date(modifiedAt.getTime() + ageMs),
        orphanGraceMs,
      });
      await opened.close();
      const check = await LocalDirBackend.open(root);
      const there = (await check.stat(ORPHAN)) !== undefined;
      await check.close();
      return there;
    };
    expect(await openAt(ORPHAN_GRACE_MS - 1)).toBe(true); // maybe another server between commit and publish
    expect(await openAt(10 * 60_000, 20 * 60_000)).toBe(true);
    expect(await openAt(20 * 60_000, 20 * 60_000)).toBe(false);

    // The published pack, as old as the orphan was, is kept with its chunk.
    store = await openPackChunkStore(await LocalDirBackend.open(root), SqliteChunkIndex.open(indexFile()), {
      now: () => new Date(modifiedAt.getTime() + 10 * ORPHAN_GRACE_MS),
    });
    expect((await store.get(sha256(data))).equals(data)).toBe(true);
    await store.close();
  });
});

/** The SQLite index behind one turn of the event loop per call, as a remote database's round trip, counting locate calls. */
class RemoteLikeIndex implements ChunkIndex {
  locateCalls = 0;
  /** Answered once, instead of the index's, by the next locate call: a location gone stale. */
  staleOnce: Map<string, ChunkLocation> | undefined;
  constructor(private readonly inner: ChunkIndex) {}
  async locate(digests: readonly string[]): Promise<Map<string, ChunkLocation>> {
    this.locateCalls++;
    await new Promise((resolve) => setImmediate(resolve));
    const stale = this.staleOnce;
    this.staleOnce = undefined;
    return stale ?? this.inner.locate(digests);
  }
  publish = (packs: readonly IndexedPack[]) => this.inner.publish(packs);
  removeMany = (digests: readonly string[]) => this.inner.removeMany(digests);
  entries = (after: string, limit: number) => this.inner.entries(after, limit);
  sparsePacks = (fraction: number, limit: number) => this.inner.sparsePacks(fraction, limit);
  packEntries = (id: string) => this.inner.packEntries(id);
  relocate = (from: string, to: IndexedPack) => this.inner.relocate(from, to);
  packIds = () => this.inner.packIds();
  page = (after: string, limit: number) => this.inner.page(after, limit);
  count = () => this.inner.count();
  totals = () => this.inner.totals();
  close = () => this.inner.close();
}

describe('index calls', () => {
  it('are batched for pipelined puts, statMany and stream, not one per chunk', async () => {
    const index = new RemoteLikeIndex(SqliteChunkIndex.open(indexFile()));
    const store = await openPackChunkStore(await LocalDirBackend.open(root), index);
    try {
      const data = Array.from({ length: 640 }, (_, i) => Buffer.from(`chunk number ${i} `.repeat(50)));
      const writer = store.writer();
      const puts = new PutPipeline(writer);
      for (const d of data) await puts.put(d);
      await puts.drain();
      await writer.commit();
      expect(index.locateCalls).toBeLessThanOrEqual(640 / 16);

      const digests = data.map(sha256);
      index.locateCalls = 0;
      const stats = await store.statMany([...digests, sha256(Buffer.from('absent'))]);
      expect(index.locateCalls).toBe(1);
      expect(stats.size).toBe(640);
      expect(stats.get(digests[7]!)).toMatchObject({ size: data[7]!.length, compression: 'zstd' });

      index.locateCalls = 0;
      const parts: Buffer[] = [];
      for await (const part of store.stream(digests)) parts.push(part as Buffer);
      expect(Buffer.concat(parts).equals(Buffer.concat(data))).toBe(true);
      expect(index.locateCalls).toBeLessThanOrEqual(8); // batches of 4, 8, ... 256
    } finally {
      await store.close();
    }
  });
});

describe('repack', () => {
  it('rewrites a pack mostly garbage with its live chunks only, and a read located before finds them where they moved', async () => {
    const index = new RemoteLikeIndex(SqliteChunkIndex.open(indexFile()));
    const store = await openPackChunkStore(await LocalDirBackend.open(root), index);
    try {
      // A pack of one tiny chunk is all live, headers and all: nothing to gain by rewriting it.
      await store.put(Buffer.from('tiny'));
      expect(await store.repack(0.5, 10)).toEqual({ packs: 0, bytes: 0 });
      const garbage = Array.from({ length: 8 }, (_, i) => randomBytes(20_000 + i));
      const kept = Buffer.from('the one live chunk '.repeat(1000));
      const writer = store.writer();
      for (const data of [...garbage, kept]) await writer.put(data);
      await writer.commit();
      expect(await store.repack(0.5, 10)).toEqual({ packs: 0, bytes: 0 });
      await store.deleteMany(garbage.map(sha256));

      const stale = await index.locate([sha256(kept)]);
      const packsBefore = await readdir(join(root, 'packs'), { recursive: true });
      const repacked = await store.repack(0.5, 10);
      expect(repacked.packs).toBe(1);
      expect(repacked.bytes).toBeGreaterThan(8 * 20_000);
      const packsAfter = await readdir(join(root, 'packs'), { recursive: true });
      expect(packsAfter.filter((f) => f.endsWith('.pack'))).toHaveLength(2);
      expect(packsAfter).not.toEqual(packsBefore);

      index.staleOnce = stale;
      expect((await store.get(sha256(kept))).equals(kept)).toBe(true);
      expect(await store.verify([sha256(kept)])).toEqual([]);
      expect(await store.count()).toBe(2);
    } finally {
      await store.close();
    }
  });
});
