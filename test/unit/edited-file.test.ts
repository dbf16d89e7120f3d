import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chunkBuffer, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../../src/domain/chunker.js';
import { chunkEditedFile } from '../../src/domain/edited-file.js';
import type { ChunkRef } from '../../src/domain/model.js';
import type { DiskRange } from '../../src/domain/ports/vm-runtime.js';
import { sha256 } from '../../src/lib/sha256.js';

const refs = (chunks: Buffer[]): ChunkRef[] => chunks.map((c) => ({ digest: sha256(c), size: c.length }));

/** Applies edits to a copy of `base` (growing it to `size`) and returns the new bytes. */
function edited(base: Buffer, size: number, edits: { offset: number; bytes: Buffer }[]): Buffer {
  const out = Buffer.alloc(size);
  base.copy(out);
  for (const { offset, bytes } of edits) bytes.copy(out, offset);
  return out;
}

/** Runs chunkEditedFile over `after`, counting the bytes it reads and the chunks it puts. */
async function rechunk(before: Buffer, after: Buffer, changed: DiskRange[]) {
  const stats = { read: 0, put: 0 };
  const chunks = await chunkEditedFile(
    refs(chunkBuffer(before)),
    after.length,
    changed,
    async (offset, length) => {
      stats.read += length;
      return Buffer.from(after.subarray(offset, offset + length));
    },
    async (chunks, chunk) => {
      const { data, digest } = Buffer.isBuffer(chunk) ? { data: chunk, digest: undefined } : chunk;
      // A digest given with the bytes (a chunk of zeros, named by its length) is theirs.
      if (digest !== undefined) expect(digest).toBe(sha256(data));
      stats.put += data.length;
      chunks.push({ digest: sha256(data), size: data.length });
      // As PutPipeline does: a whole buffer is handed to another thread, and left empty here.
      if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) structuredClone(data.buffer, { transfer: [data.buffer as ArrayBuffer] });
    },
  );
  return { chunks, stats };
}

describe('chunkEditedFile', () => {
  const base = randomBytes(8 * 1024 * 1024);

  it('cuts an edited file exactly as chunking it whole, reading little more than the edits', async () => {
    const edits = [
      { offset: 100, bytes: randomBytes(10) },
      { offset: 3 * 1024 * 1024, bytes: randomBytes(1024 * 1024) },
      { offset: 3 * 1024 * 1024 + 2 * 1024 * 1024, bytes: randomBytes(4096) },
      { offset: base.length - 5, bytes: randomBytes(5) },
    ];
    const after = edited(base, base.length, edits);
    const { chunks, stats } = await rechunk(base, after, edits.map((e) => ({ offset: e.offset, length: e.bytes.length })));
    expect(chunks).toEqual(refs(chunkBuffer(after)));
    // Each edit costs its bytes and a few chunks around it, never the whole file.
    expect(stats.read).toBeLessThan(1024 * 1024 + 4 * 4 * MAX_CHUNK_SIZE + 4 * 1024 * 1024);
    expect(stats.read).toBeLessThan(base.length / 2);
  });

  it('handles unsorted, overlapping, unchanged and adjacent ranges, and no ranges', async () => {
    const after = edited(base, base.length, [{ offset: 2_000_000, bytes: randomBytes(70_000) }]);
    const ranges = [
      { offset: 2_050_000, length: 30_000 },
      { offset: 2_000_000, length: 60_000 },
      { offset: 5_000_000, length: 1000 }, // marked changed, same bytes
      { offset: 5_001_000, length: 0 },
    ];
    expect((await rechunk(base, after, ranges)).chunks).toEqual(refs(chunkBuffer(after)));
    const untouched = await rechunk(base, base, []);
    expect(untouched.chunks).toEqual(refs(chunkBuffer(base)));
    expect(untouched.stats.read).toBe(0);
  });

  it('steps back in step with the base in a run of zeros, instead of re-cutting it to its end', async () => {
    // A sparse image: data, 40 MiB of zeros, data.
    const sparse = Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(40 * 1024 * 1024), randomBytes(1024 * 1024)]);
    const write = { offset: 1024 * 1024 + 5_000_000, bytes: randomBytes(300_000) };
    const after = edited(sparse, sparse.length, [write]);
    const { chunks, stats } = await rechunk(sparse, after, [{ offset: write.offset, length: write.bytes.length }]);
    // The bytes are the new file's, in chunks the manifest rules accept.
    expect(chunks.reduce((n, c) => n + c.size, 0)).toBe(after.length);
    chunks.slice(0, -1).forEach((c) => expect(c.size).toBeGreaterThanOrEqual(MIN_CHUNK_SIZE));
    chunks.forEach((c) => expect(c.size).toBeLessThanOrEqual(MAX_CHUNK_SIZE));
    let at = 0;
    for (const c of chunks) {
      const expected = refs([after.subarray(at, at + c.size)])[0]!;
      expect(c).toEqual(expected);
      at += c.size;
    }
    // Only the neighbourhood of the write was read, and the base's chunks follow it.
    expect(stats.read).toBeLessThan(300_000 + 4 * MAX_CHUNK_SIZE);
    const baseRefs = refs(chunkBuffer(sparse));
    expect(chunks.slice(-20)).toEqual(baseRefs.slice(-20));
  });

  it('grows a file, cutting the old last chunk anew', async () => {
    const after = edited(base, base.length + 300_000, [{ offset: base.length, bytes: randomBytes(300_000) }]);
    expect((await rechunk(base, after, [])).chunks).toEqual(refs(chunkBuffer(after)));
  });
});
