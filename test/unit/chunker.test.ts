import { sha256 } from '../../src/lib/sha256.js';
import { describe, expect, it } from 'vitest';
import { AVG_CHUNK_SIZE, Chunker, GEAR, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, chunkBuffer } from '../../src/domain/chunker.js';
import { generatedBytes } from '../support/generated.js';

const MIB = 1024 * 1024;

async function bytes(size: number, seed: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of generatedBytes(size, seed)) parts.push(part);
  return Buffer.concat(parts);
}

function pushInPieces(data: Buffer, pieceSize: number): Buffer[] {
  const chunker = new Chunker();
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += pieceSize) chunks.push(...chunker.push(data.subarray(i, i + pieceSize)));
  return [...chunks, ...chunker.finish()];
}


describe('chunker', () => {
  it('has the gear table and parameters of the on-disk format', () => {
    // Pinned: changing any of these re-chunks every stored byte (storage/README.md).
    expect([MIN_CHUNK_SIZE, AVG_CHUNK_SIZE, MAX_CHUNK_SIZE]).toEqual([16384, 65536, 262144]);
    expect(GEAR[0]! >>> 0).toBe(0x6e340b9c);
    expect(GEAR[255]! >>> 0).toBe(0xa8100ae6);
    expect(new Set(GEAR).size).toBe(256);
  });

  it('cuts at the same, pinned points every time', async () => {
    const data = await bytes(2 * MIB, 7);
    const lengths = chunkBuffer(data).map((c) => c.length);
    expect(lengths).toEqual(PINNED_LENGTHS);
  });

  it('returns the same chunks whether data comes in 1-byte, odd-sized or whole pieces', async () => {
    const data = await bytes(MIB + 12345, 3);
    const whole = chunkBuffer(data).map(sha256);
    expect(whole.length).toBeGreaterThan(5);
    expect(pushInPieces(data, 1).map(sha256)).toEqual(whole);
    expect(pushInPieces(data, 7919).map(sha256)).toEqual(whole);
    expect(pushInPieces(data, 300_001).map(sha256)).toEqual(whole);
  });

  it('keeps every chunk but the last within [min, max] and loses no byte', async () => {
    const data = await bytes(8 * MIB + 1000, 5);
    const chunks = chunkBuffer(data);
    for (const chunk of chunks.slice(0, -1)) {
      expect(chunk.length).toBeGreaterThanOrEqual(MIN_CHUNK_SIZE);
      expect(chunk.length).toBeLessThanOrEqual(MAX_CHUNK_SIZE);
    }
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(AVG_CHUNK_SIZE * 0.75);
    expect(mean).toBeLessThan(AVG_CHUNK_SIZE * 1.5);
  });

  it('cuts data without content boundaries (zeros) at the maximum size', () => {
    const chunks = chunkBuffer(Buffer.alloc(2 * MIB + 5));
    expect(chunks.map((c) => c.length)).toEqual([...Array<number>(8).fill(MAX_CHUNK_SIZE), 5]);
  });

  it('skips runs of zeros without changing a cut: the same lengths as hashing every byte', async () => {
    // The cut points by the format's definition, one byte at a time (the oracle).
    const reference = (data: Buffer): number[] => {
      const lengths: number[] = [];
      let start = 0;
      while (start < data.length) {
        let h = 0;
        let cut = Math.min(data.length, start + MAX_CHUNK_SIZE);
        for (let i = start + MIN_CHUNK_SIZE; i < cut; i++) {
          h = ((h << 1) + GEAR[data[i]!]!) | 0;
          const mask = i < start + AVG_CHUNK_SIZE ? 0xffffc000 | 0 : 0xfffc0000 | 0;
          if ((h & mask) === 0) cut = i + 1;
        }
        lengths.push(cut - start);
        start = cut;
      }
      return lengths;
    };
    // A sparse disk: runs of zeros of many lengths between stretches of data, some tiny.
    const random = await bytes(4 * MIB, 9);
    const parts: Buffer[] = [];
    for (let k = 0, at = 0; k < 40; k++) {
      parts.push(Buffer.alloc([1, 31, 32, 33, 4095, 4097, 70_000, 300_000][k % 8]!));
      const take = [1, 7, 5000, 90_000][k % 4]!;
      parts.push(random.subarray(at, at + take));
      at += take;
    }
    // And bytes that cut right where a run of zeros ends (found by search): a skip that
    // mishandled the first byte after the run would move that cut.
    const zeroHash = -GEAR[0]! | 0;
    let pattern = Buffer.alloc(0);
    for (let seed = 0; pattern.length === 0; seed++) {
      const candidate = Buffer.from(sha256(String(seed)).slice(0, 12), 'hex');
      let h = zeroHash;
      candidate.forEach((byte, i) => {
        h = ((h << 1) + GEAR[byte]!) | 0;
        if ((h & (0xfffc0000 | 0)) === 0 && i === candidate.length - 1) pattern = candidate;
        else if ((h & (0xfffc0000 | 0)) === 0) h = 1; // a cut before the end: not this one
      });
    }
    parts.push(Buffer.alloc(AVG_CHUNK_SIZE + 1000), pattern, random.subarray(0, 1000));
    const data = Buffer.concat(parts);
    expect(pushInPieces(data, 65_537).map((c) => c.length)).toEqual(reference(data));
    expect(chunkBuffer(data).map((c) => c.length)).toEqual(reference(data));
    const alone = Buffer.concat([Buffer.alloc(AVG_CHUNK_SIZE + 1000), pattern, random.subarray(0, 1000)]);
    expect(chunkBuffer(alone)[0]!.length).toBe(AVG_CHUNK_SIZE + 1000 + pattern.length);
  });

  it('re-chunks only the neighbourhood of an insertion', async () => {
    const data = await bytes(8 * MIB, 11);
    const edited = Buffer.concat([data.subarray(0, 4 * MIB), Buffer.from('a small edit in the middle'), data.subarray(4 * MIB)]);
    const before = new Set(chunkBuffer(data).map(sha256));
    const after = chunkBuffer(edited).map(sha256);
    const changed = after.filter((d) => !before.has(d));
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.length).toBeLessThanOrEqual(2);
    expect(after.length - changed.length).toBeGreaterThan(100);
  });

  it('returns chunks that later pushes never overwrite', async () => {
    const data = await bytes(MIB, 13);
    const chunker = new Chunker();
    const piece = Buffer.alloc(4096);
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += piece.length) {
      data.copy(piece, 0, i, i + piece.length); // the caller reuses its buffer
      chunks.push(...chunker.push(piece));
    }
    chunks.push(...chunker.finish());
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });
});

/** Chunk lengths of generatedBytes(2 MiB, seed 7) (AES-128-CTR keystream), cut by format v1. */
const PINNED_LENGTHS = [
  25136, 98419, 68515, 72444, 65832, 102235, 72258, 114397, 68452, 77314, 77415, 68446, 74337, 88569,
  122114, 83904, 77502, 40332, 46858, 96895, 20918, 98287, 67658, 131505, 79517, 75384, 70445, 12064,
];
