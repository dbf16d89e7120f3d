/**
 * The worker-thread codec (src/lib/chunk-codec-pool.ts): its answers are the inline codec's on
 * either zstd implementation, each matched to its own input whatever order the workers finish
 * in; a buffer handed over is moved, not copied; a dying worker fails its jobs with an error and the pool goes on; close()
 * ends every thread.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Chunker } from '../../src/domain/chunker.js';
import { ChunkCodecPool } from '../../src/lib/chunk-codec-pool.js';
import { inlineChunkCodec, type ChunkCodec, type CutSegment, type EncodedChunk } from '../../src/lib/chunk-codec.js';
import { sha256 } from '../../src/lib/sha256.js';
import { ZSTD_IMPLEMENTATIONS, decompressBlock, useZstd, zstdReady } from '../../src/lib/zstd.js';
import { PutPipeline } from '../../src/domain/put-pipeline.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { ChunkRef } from '../../src/domain/model.js';
import { generatedBytes } from '../support/generated.js';

/** Chunks of every size class: keystream (incompressible), text (compressible), a tiny tail. */
async function sampleChunks(): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  for await (const random of generatedBytes(2 * 1024 * 1024, 3)) parts.push(random);
  parts.push(Buffer.from('id,label,value\n'.repeat(100_000)), Buffer.from('tail'));
  const chunker = new Chunker();
  return [...chunker.push(Buffer.concat(parts)), ...chunker.finish()];
}

describe('ChunkCodecPool', () => {
  let pool: ChunkCodecPool;
  afterEach(() => pool.close());

  it.each(ZSTD_IMPLEMENTATIONS)('answers what the inline codec answers on %s zstd, each chunk its own, handed over without a copy', async (implementation) => {
    useZstd(implementation); // before the pool starts: its workers load the process's implementation
    pool = new ChunkCodecPool(2);
    await zstdReady();
    const chunks = await sampleChunks();
    const copies = chunks.map((c) => Buffer.from(c));
    // The chunker's small tail lies in Node's shared pool: copied, as a view of a larger buffer is.
    const owned = chunks.map((c) => c.byteOffset === 0 && c.byteLength === c.buffer.byteLength);
    expect(owned.filter(Boolean).length).toBeGreaterThan(10);
    const answers = await Promise.all(chunks.map((c) => pool.encode(c, { hash: true, compress: true }, { transfer: true })));
    expect(pool.workers).toBe(2);
    for (const [i, answer] of answers.entries()) {
      const expected = await inlineChunkCodec.encode(copies[i]!, { hash: true, compress: true });
      if (owned[i]) expect(chunks[i]!.length, 'handed over: moved to the worker, not copied').toBe(0);
      expect(answer.data.equals(copies[i]!)).toBe(true);
      expect(answer.digest).toBe(sha256(copies[i]!));
      expect(answer.compressed?.length).toBe(expected.compressed?.length);
      if (answer.compressed) expect(decompressBlock(answer.compressed, copies[i]!.length).equals(copies[i]!)).toBe(true);
    }
    expect(answers.some((a) => a.compressed) && answers.some((a) => !a.compressed)).toBe(true);
  });

  it('copies a buffer its caller keeps, and a view of a larger one, leaving them intact', async () => {
    pool = new ChunkCodecPool(2);
    const whole = Buffer.from('x'.repeat(100_000));
    const view = whole.subarray(10, 50_000);
    const [kept, viewed] = await Promise.all([pool.encode(whole, { hash: true, compress: false }), pool.encode(view, { hash: true, compress: false }, { transfer: true })]);
    expect(whole.length).toBe(100_000);
    expect(kept.digest).toBe(sha256(whole));
    expect(viewed.digest).toBe(sha256(view));
  });

  it('fails the jobs of a worker that dies with an error, and goes on with a new worker', async () => {
    pool = new ChunkCodecPool(1);
    const chunks = await sampleChunks();
    await pool.encode(Buffer.from('warm'), { hash: true, compress: false });
    pool.failNextBatch('simulated worker failure');
    const failed = await Promise.allSettled(chunks.slice(0, 4).map((c) => pool.encode(c, { hash: true, compress: true })));
    expect(failed[0]).toMatchObject({ status: 'rejected', reason: { message: expect.stringContaining('simulated worker failure') } });
    expect(failed.every((f) => f.status === 'rejected' || f.value.digest !== undefined)).toBe(true);
    const after = await pool.encode(Buffer.from(chunks[5]!), { hash: true, compress: true });
    expect(after.digest).toBe(sha256(chunks[5]!));
  });

  it('encodes a chunk under the chunker minimum on the calling thread, starting no worker', async () => {
    pool = new ChunkCodecPool(2);
    const small = Buffer.from('id,label,value\n'.repeat(1000)); // 15,000 bytes
    const encoded = await pool.encode(small, { hash: true, compress: true }, { transfer: true });
    expect(pool.workers).toBe(0);
    expect(encoded.digest).toBe(sha256(small));
    expect(decompressBlock(encoded.compressed!, small.length).equals(small)).toBe(true);
    await pool.encode(Buffer.alloc(16 * 1024, 1), { hash: true, compress: false });
    expect(pool.workers).toBe(1);
  });

  it('ends its threads on close(), after which it refuses work', async () => {
    pool = new ChunkCodecPool(2);
    await Promise.all([1, 2, 3, 4].map((n) => pool.encode(Buffer.alloc(70_000, n), { hash: true, compress: true })));
    expect(pool.workers).toBe(2);
    await pool.close();
    expect(pool.workers).toBe(0);
    await expect(pool.encode(Buffer.from('late'), { hash: true, compress: false })).rejects.toThrow(/closed/);
  });
});

/** The inline codec, each answer held back until `release()`, then given in reverse order. */
class ReversingCodec implements ChunkCodec {
  private readonly held: (() => void)[] = [];

  async encode(data: Buffer, work: { hash: boolean; compress: boolean }): Promise<EncodedChunk> {
    const answer = await inlineChunkCodec.encode(data, work);
    await new Promise<void>((resolve) => this.held.push(resolve));
    return answer;
  }

  cut(): Promise<CutSegment> {
    throw new Error('not used: the pipeline puts chunks');
  }

  /** Resolves every answer held so far, last first. */
  release(): number {
    const held = this.held.splice(0);
    for (const resolve of held.reverse()) resolve();
    return held.length;
  }

  async close(): Promise<void> {}
}

it('keeps chunk refs in file order when the codec finishes the puts in reverse order', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'snapfork-codec-order-'));
  const codec = new ReversingCodec();
  const store = await openFsChunkStore(dir, { codec });
  try {
    const chunks = await sampleChunks();
    const originals = chunks.map((c) => Buffer.from(c));
    const writer = store.writer();
    const puts = new PutPipeline(writer);
    const refs: ChunkRef[] = [];
    const appending = (async () => {
      for (const chunk of chunks) await puts.append(refs, chunk);
      await puts.drain();
    })();
    // Released in rounds, each in reverse, until the pipeline has put every chunk.
    let done = false;
    void appending.finally(() => (done = true));
    while (!done) {
      await new Promise((resolve) => setImmediate(resolve));
      codec.release();
    }
    await appending;
    await writer.commit();
    expect(refs.map((r) => r.digest)).toEqual(originals.map((c) => sha256(c)));
    expect(refs.map((r) => r.size)).toEqual(originals.map((c) => c.length));
    for (const [i, ref] of refs.entries()) expect((await store.get(ref.digest)).equals(originals[i]!)).toBe(true);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
