import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkDiskSource } from '../../src/domain/disk-source.js';
import { DomainError } from '../../src/domain/errors.js';
import type { ChunkRef } from '../../src/domain/model.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { ChunkStore } from '../../src/store/types.js';
import { storedDisk } from '../support/chunk-disk.js';
import { generatedBytes } from '../support/generated.js';

const MIB = 1024 * 1024;

/** Keystream, a run of zeros (one chunk repeated), keystream, and an odd tail: ~100 chunks. */
async function diskImage(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of generatedBytes(3 * MIB, 7)) parts.push(part);
  parts.push(Buffer.alloc(MIB));
  for await (const part of generatedBytes(2 * MIB + 777, 8)) parts.push(part);
  return Buffer.concat(parts);
}

/** Deterministic pseudo-random integers (xorshift32), so a failing range can be replayed. */
function randomInts(seed: number): (below: number) => number {
  let x = seed;
  return (below) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % below;
  };
}

async function rejection(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

describe('ChunkDiskSource over the local chunk store', () => {
  let root: string;
  let store: ChunkStore;
  let image: Buffer;
  let chunks: ChunkRef[];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'snapfork-disk-source-'));
    store = await openFsChunkStore(join(root, 'chunks'));
    image = await diskImage();
    ({ chunks } = await storedDisk(store, image));
  });

  afterAll(async () => {
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('answers random ranges, chunk boundaries and the ends with the original bytes', async () => {
    expect(chunks.length).toBeGreaterThan(50);
    // A cache of four average chunks, so the ranges below also read through evictions.
    const disk = new ChunkDiskSource({ size: image.length, chunks }, store, { cacheBytes: 256 * 1024 });
    expect(disk.size).toBe(image.length);
    const next = randomInts(12345);
    const ranges: [number, number][] = [
      [0, image.length],
      [0, 1],
      [image.length - 1, 1],
      [image.length, 0],
      [0, 0],
      [chunks[0]!.size - 1, 2], // across the first boundary
      [chunks[0]!.size, chunks[1]!.size], // exactly the second chunk
    ];
    for (let i = 0; i < 200; i++) {
      const offset = next(image.length);
      ranges.push([offset, next(Math.min(image.length - offset, i % 2 ? 4096 : 2 * MIB) + 1)]);
    }
    // Concurrently too: reads of one chunk in flight at once share its load.
    const answers = await Promise.all(ranges.map(([offset, length]) => disk.read(offset, length)));
    answers.forEach((answer, i) => {
      const [offset, length] = ranges[i]!;
      expect(answer.equals(image.subarray(offset, offset + length)), `range ${offset}+${length}`).toBe(true);
    });
  });

  it('refuses a range outside the disk', async () => {
    const disk = new ChunkDiskSource({ size: image.length, chunks }, store);
    expect((await rejection(disk.read(image.length - 10, 11))).kind).toBe('invalid');
    expect((await rejection(disk.read(-1, 2))).kind).toBe('invalid');
    expect((await rejection(disk.read(0.5, 2))).kind).toBe('invalid');
  });

  it('refuses chunks whose sizes do not add up to the file size', () => {
    expect(() => new ChunkDiskSource({ size: image.length + 1, chunks }, store)).toThrow(DomainError);
  });

  it('reads only the chunks a range needs: a missing chunk fails just the ranges that cover it', async () => {
    const own = await openFsChunkStore(join(root, 'own-chunks'));
    try {
      const { disk, chunks: ownChunks } = await storedDisk(own, image);
      const victim = 20;
      const start = ownChunks.slice(0, victim).reduce((n, c) => n + c.size, 0);
      const end = start + ownChunks[victim]!.size;
      expect(await own.delete(ownChunks[victim]!.digest)).toBe(true);
      expect((await disk.read(0, start)).equals(image.subarray(0, start))).toBe(true);
      expect((await disk.read(end, image.length - end)).equals(image.subarray(end))).toBe(true);
      expect((await rejection(disk.read(start + 10, 10))).kind).toBe('not_found');
      expect((await rejection(disk.read(start - 1, 2))).kind).toBe('not_found');
    } finally {
      await own.close();
    }
  });
});
