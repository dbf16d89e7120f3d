/**
 * Throughput of the chunker, the chunker with SHA-256, and the local chunk store's writes and reads, on
 * 256 MiB of semi-compressible generated data; five repetitions, medians printed. Run with:
 *
 *   npm run bench -- scripts/bench/chunk-store.bench.ts
 *
 * (that config sets SNAPFORK_BENCH=1; the suite is skipped without it). It is a vitest file only
 * because vitest runs TypeScript here without a build step; it asserts nothing.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { chunkBuffer } from '../../src/domain/chunker.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';

const MIB = 1024 * 1024;
const SIZE = 256 * MIB;
const REPETITIONS = 5;

/** Alternating 32 KiB of keystream and 32 KiB of text: compresses about 2:1. */
function semiCompressible(size: number, seed: number): Buffer {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  const text = Buffer.from('a VM image holds code, text, tables and zeros; '.repeat(1000)).subarray(0, 32 * 1024);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 64 * 1024) {
    cipher.update(Buffer.alloc(32 * 1024)).copy(out, i);
    text.copy(out, i + 32 * 1024);
  }
  return out;
}

async function median(label: string, run: (repetition: number) => Promise<void> | void): Promise<void> {
  const rates: number[] = [];
  for (let r = 0; r < REPETITIONS; r++) {
    const start = performance.now();
    await run(r);
    rates.push(SIZE / MIB / ((performance.now() - start) / 1000));
  }
  rates.sort((a, b) => a - b);
  const shown = rates.map((x) => x.toFixed(0)).join(', ');
  console.log(`${label.padEnd(28)} median ${rates[REPETITIONS >> 1]!.toFixed(0)} MB/s  (${shown})`);
}

describe.skipIf(!process.env['SNAPFORK_BENCH'])('chunk store throughput', () => {
  it('measures', async () => {
    const data = semiCompressible(SIZE, 1);
    await median('chunker', () => {
      chunkBuffer(data);
    });
    await median('chunker + SHA-256', () => {
      for (const chunk of chunkBuffer(data)) createHash('sha256').update(chunk).digest();
    });
    const root = await mkdtemp(join(tmpdir(), 'snapfork-bench-'));
    try {
      const chunks = chunkBuffer(data);
      const digests: string[] = [];
      await median('writer put + commit', async (r) => {
        const store = await openFsChunkStore(join(root, `store-${r}`));
        const writer = store.writer();
        for (const chunk of chunks) digests.push((await writer.put(chunk)).digest);
        await writer.commit();
        await store.close();
      });
      const store = await openFsChunkStore(join(root, 'store-0'));
      await median('stream (read + verify)', async () => {
        for await (const _ of store.stream(digests.slice(0, chunks.length)));
      });
      await store.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
