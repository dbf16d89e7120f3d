/**
 * SegmentChunker (src/domain/segment-chunker.ts) cuts exactly where chunkBuffer cuts, on the
 * worker pool and inline, whatever the sizes, the segment boundaries and the pieces the bytes
 * arrive in: random data of sizes around every boundary (minimum, average, maximum, segment),
 * long runs of zeros (a sparse image), constant bytes (cuts at the maximum size only, never
 * in step with a segment's guess), and files one after the other; and it reads no further ahead
 * than its bound while the codec holds its segments.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { AVG_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, chunkBuffer } from '../../src/domain/chunker.js';
import { SegmentChunker } from '../../src/domain/segment-chunker.js';
import type { ChunkRef } from '../../src/domain/model.js';
import { ChunkCodecPool } from '../../src/lib/chunk-codec-pool.js';
import { inlineChunkCodec, type ChunkCodec, type EncodedChunk } from '../../src/lib/chunk-codec.js';
import { sha256 } from '../../src/lib/sha256.js';
import { decompressBlock } from '../../src/lib/zstd.js';
import { generatedBuffer } from '../support/generated.js';
import { seededRandom } from '../support/seeded-random.js';

const KIB = 1024;
const MIB = 1024 * KIB;

const randomBytes = generatedBuffer;

/** `data` in pieces of random sizes up to `max` (1 when max is 1). */
async function* inPieces(data: Buffer, max: number, seed: number): AsyncGenerator<Buffer> {
  const random = seededRandom(seed);
  for (let at = 0; at < data.length; ) {
    const n = Math.max(1, Math.floor(random() * max));
    yield data.subarray(at, at + n);
    at += n;
  }
}

interface ChunkingOptions {
  segmentSize?: number;
  piece?: number;
  /** Read the files with chunkFileAt (straight into the segments) rather than in pieces. */
  inPlace?: boolean;
}

/**
 * Every file chunked by a SegmentChunker over `codec`, one after the other: each file's chunks,
 * checked on the way (a digest is the chunk's SHA-256, a zstd block decompresses to it).
 */
async function segmentChunks(codec: ChunkCodec, files: Buffer[], options: ChunkingOptions = {}): Promise<Buffer[][]> {
  const chunks = files.map(() => [] as Buffer[]);
  const refsOf = files.map(() => [] as ChunkRef[]);
  const sink = async (refs: ChunkRef[], chunk: Buffer | EncodedChunk) => {
    const encoded: EncodedChunk = Buffer.isBuffer(chunk) ? { data: chunk } : chunk;
    if (encoded.digest !== undefined) expect(encoded.digest).toBe(sha256(encoded.data));
    if (encoded.compressed) expect(decompressBlock(encoded.compressed, encoded.data.length).equals(encoded.data)).toBe(true);
    chunks[refsOf.indexOf(refs)]!.push(Buffer.from(encoded.data));
  };
  const chunker = new SegmentChunker(codec, sink, () => true, { segmentSize: options.segmentSize });
  for (const [i, file] of files.entries()) {
    if (options.inPlace) await chunker.chunkFileAt(refsOf[i]!, file.length, async (into, offset) => void file.copy(into, 0, offset, offset + into.length));
    else await chunker.chunkFile(refsOf[i]!, file.length, inPieces(file, options.piece ?? 256 * KIB, i + 1));
  }
  await chunker.flush();
  return chunks;
}

const lengths = (chunks: Buffer[]) => chunks.map((c) => c.length);

describe.each([
  ['the worker pool', () => new ChunkCodecPool(2)],
  ['the inline codec', () => inlineChunkCodec],
] as const)('SegmentChunker on %s', (_, makeCodec) => {
  const codec = makeCodec();
  afterAll(() => codec.close());

  /** Asserts that every file comes out cut as chunkBuffer cuts it, byte for byte. */
  async function expectChunkBufferCuts(files: Buffer[], options: ChunkingOptions = {}) {
    const got = await segmentChunks(codec, files, options);
    for (const [i, file] of files.entries()) {
      const expected = chunkBuffer(file);
      expect(lengths(got[i]!), `file ${i} of ${file.length} bytes`).toEqual(lengths(expected));
      expect(Buffer.concat(got[i]!).equals(file)).toBe(true);
    }
  }

  it('cuts random files of every size class as chunkBuffer does', async () => {
    const sizes = [0, 1, MIN_CHUNK_SIZE - 1, MIN_CHUNK_SIZE, MIN_CHUNK_SIZE + 1, AVG_CHUNK_SIZE - 1, AVG_CHUNK_SIZE + 1, MAX_CHUNK_SIZE - 1, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1];
    sizes.push(2 * MIB - 1, 2 * MIB, 2 * MIB + 1, 4 * MIB + MAX_CHUNK_SIZE + 7, 9 * MIB + 12_345);
    const files = await Promise.all(sizes.map((size, i) => randomBytes(size, i + 1)));
    await expectChunkBufferCuts(files);
  });

  it('stitches segments of many sizes, smaller than a chunk too, at every offset', async () => {
    const file = await randomBytes(3 * MIB + 4321, 42);
    for (const segmentSize of [20 * KIB, MIN_CHUNK_SIZE + 1, 100 * KIB + 3, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, 777 * KIB]) {
      await expectChunkBufferCuts([file], { segmentSize });
    }
  });

  it('cuts a sparse image (long runs of zeros across segments) as chunkBuffer does', async () => {
    const parts: Buffer[] = [];
    for (const [i, [kind, size]] of ([['data', 700 * KIB], ['zeros', 3 * MIB + 5], ['data', 40 * KIB], ['zeros', 300 * KIB], ['data', 1 * MIB + 17], ['zeros', 2 * MIB]] as const).entries()) {
      parts.push(kind === 'zeros' ? Buffer.alloc(size) : await randomBytes(size, 100 + i));
    }
    const image = Buffer.concat(parts);
    await expectChunkBufferCuts([image]);
    await expectChunkBufferCuts([image], { segmentSize: 300 * KIB + 1 });
  });

  it('cuts constant bytes at the maximum size only, out of step with every segment', async () => {
    const constant = Buffer.alloc(5 * MIB + 3, 0x5a);
    const [chunks] = await segmentChunks(codec, [constant]);
    expect(lengths(chunks!)).toEqual([...Array<number>(20).fill(MAX_CHUNK_SIZE), 3]);
    await expectChunkBufferCuts([constant], { segmentSize: 100 * KIB + 1 });
  });

  it('cuts runs of zeros on this thread as chunkBuffer does: at odd offsets, whole segments, a file ending in them', async () => {
    const data = (size: number, seed: number) => randomBytes(size, seed);
    const zeros = (size: number) => Buffer.alloc(size);
    // A guest's RAM: pages of data amid long runs of zeros, the boundaries anywhere.
    const memory = Buffer.concat([await data(100_001, 1), zeros(5 * MIB + 3), await data(17, 2), zeros(2 * MIB), await data(300 * KIB + 5, 3), zeros(4 * MIB + 1)]);
    // Zeros first, data across a segment's end, runs shorter than a chunk, zeros last.
    const zerosFirst = Buffer.concat([zeros(2 * MIB + MIN_CHUNK_SIZE - 1), await data(MAX_CHUNK_SIZE + 1, 4), zeros(MIN_CHUNK_SIZE / 2), await data(3 * MIB - 9, 5), zeros(MAX_CHUNK_SIZE - 1)]);
    const allZeros = [1, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 2 * MIB, 2 * MIB + 1, 7 * MIB + 12_345].map(zeros);
    for (const segmentSize of [undefined, 300 * KIB + 1, 64 * KIB]) {
      for (const inPlace of [false, true]) await expectChunkBufferCuts([memory, zerosFirst, ...allZeros], { segmentSize, piece: 1 * MIB + 7, inPlace });
    }
  });

  it('cuts data in RAM as on a disk, so that both share its chunks', async () => {
    const data = await randomBytes(3 * MIB, 12);
    // The data as a guest's page cache holds it: after other pages, amid zeros.
    const memory = Buffer.concat([await randomBytes(200_000, 13), Buffer.alloc(5 * MAX_CHUNK_SIZE), data, Buffer.alloc(3 * MAX_CHUNK_SIZE)]);
    const [chunks] = await segmentChunks(codec, [memory]);
    const onDisk = new Set(chunkBuffer(data).map((c) => sha256(c)));
    const shared = chunks!.filter((c) => onDisk.has(sha256(c))).reduce((n, c) => n + c.length, 0);
    expect(shared).toBeGreaterThan(data.length - 2 * MAX_CHUNK_SIZE);
  });

  it('cuts files one after the other, each from its start, whatever pieces their bytes come in', async () => {
    const files = await Promise.all([5 * MIB + 3, 10, 300 * KIB, 0, 2 * MIB + 99].map((size, i) => randomBytes(size, 200 + i)));
    for (const piece of [1 * MIB + 1, 64 * KIB, 4099]) await expectChunkBufferCuts(files, { piece });
    await expectChunkBufferCuts(files, { inPlace: true });
    await expectChunkBufferCuts(files.slice(1, 4), { piece: 1 });
  });
});

it('reads no further ahead than its look-ahead while the codec holds its segments, even when it takes them over', async () => {
  const held: (() => void)[] = [];
  // Takes each segment over as a worker pool does (its buffer is moved away, the caller's left empty) and answers when released.
  const holding: ChunkCodec = {
    encode: (data, work) => inlineChunkCodec.encode(data, work),
    cut(data, work) {
      const moved = Buffer.from(structuredClone(data.buffer as ArrayBuffer, { transfer: [data.buffer as ArrayBuffer] }));
      return new Promise((resolve) => held.push(() => resolve(inlineChunkCodec.cut(moved, work))));
    },
    close: async () => {},
  };
  const segmentSize = 64 * KIB;
  const file = await randomBytes(40 * segmentSize, 9);
  let read = 0;
  async function* counted() {
    for await (const piece of inPieces(file, 16 * KIB, 1)) {
      read += piece.length;
      yield piece;
    }
  }
  const chunks: Buffer[] = [];
  const chunker = new SegmentChunker(holding, async (_, c) => void chunks.push(Buffer.from(Buffer.isBuffer(c) ? c : c.data)), () => true, { segmentSize });
  const reading = chunker.chunkFile([], file.length, counted());
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
  expect(held.length, 'segments sent').toBe(4);
  expect(read, "the segments sent, the one filling, and a piece").toBeLessThanOrEqual(5 * segmentSize + 16 * KIB);
  let done = false;
  void reading.then(() => (done = true));
  while (!done) {
    held.splice(0).forEach((release) => release());
    await new Promise((resolve) => setImmediate(resolve));
  }
  const flushing = chunker.flush();
  while (held.length > 0) held.splice(0).forEach((release) => release());
  await flushing;
  expect(lengths(chunks)).toEqual(lengths(chunkBuffer(file)));
});

it('sends no segment of zeros to the codec, and names the chunks of zeros without hashing them', async () => {
  const sent: number[] = [];
  const counting: ChunkCodec = {
    encode: (data, work) => inlineChunkCodec.encode(data, work),
    cut(data, work) {
      sent.push(data.length);
      return inlineChunkCodec.cut(data, work);
    },
    close: async () => {},
  };
  const segmentSize = 1 * MIB;
  // Zero segments at 0, 1 and 2 MiB, data in the segment at 3 MiB, zero segments at 4, 5 and 6 MiB (the last one short).
  const file = Buffer.concat([Buffer.alloc(3 * MIB + 5), await randomBytes(700 * KIB, 5), Buffer.alloc(3 * MIB - 700 * KIB - 5 + 77)]);
  const zeroChunks: EncodedChunk[] = [];
  const sink = async (_: ChunkRef[], chunk: Buffer | EncodedChunk) => {
    const encoded = Buffer.isBuffer(chunk) ? { data: chunk } : chunk;
    if (!encoded.data.some((byte) => byte !== 0)) zeroChunks.push(encoded);
  };
  const chunker = new SegmentChunker(counting, sink, () => true, { segmentSize });
  await chunker.chunkFile([], file.length, inPieces(file, 256 * KIB, 3));
  await chunker.flush();
  expect(sent).toEqual([segmentSize]);
  const expectedZeroChunks = chunkBuffer(file).filter((c) => !c.some((byte) => byte !== 0));
  expect(zeroChunks.map((c) => c.data.length)).toEqual(expectedZeroChunks.map((c) => c.length));
  for (const chunk of zeroChunks) expect(chunk.digest).toBe(sha256(chunk.data));
});
