/**
 * Sequential read throughput of a VM's base disk served from the chunk store over NBD:
 * `qemu-img convert` of a 1 GiB export (ChunkDiskSource over the local chunk store, served by
 * serveNbd) to a raw file, for semi-compressible and for incompressible data; three runs each,
 * medians printed, beside what bounds it: ChunkDiskSource read alone as qemu-img reads, the
 * same convert through the server over a plain file (the protocol's own cost), and `qemu-img
 * convert` of that file directly. Needs qemu-utils. Run with:
 *
 *   npm run bench -- scripts/bench/nbd.bench.ts
 *
 * (that config sets SNAPFORK_BENCH=1; the suite is skipped without it). It asserts only that
 * the copy is the source, byte for byte.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Chunker } from '../../src/domain/chunker.js';
import { ChunkDiskSource } from '../../src/domain/disk-source.js';
import type { ChunkRef } from '../../src/domain/model.js';
import type { DiskSource } from '../../src/domain/ports/vm-runtime.js';
import { serveNbd } from '../../src/runtime/nbd/nbd-server.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { ChunkStore } from '../../src/store/types.js';

const MIB = 1024 * 1024;
const SIZE = 1024 * MIB;
const BLOCK = 16 * MIB;
const REPETITIONS = 3;
const run = promisify(execFile);

/** Block `index` of the source: keystream, with every other 32 KiB text when `compressible`. */
function sourceBlock(index: number, compressible: boolean): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(index, 0);
  const block = createCipheriv('aes-128-ctr', Buffer.alloc(16, 9), iv).update(Buffer.alloc(BLOCK));
  if (compressible) {
    const text = Buffer.from('a VM image holds code, text, tables and zeros; '.repeat(1000)).subarray(0, 32 * 1024);
    for (let i = 32 * 1024; i < BLOCK; i += 64 * 1024) text.copy(block, i);
  }
  return block;
}

/** Writes the source to `file` and into `store` as one file's chunks; answers the chunks and the SHA-256. */
async function storeSource(store: ChunkStore, file: string, compressible: boolean): Promise<{ chunks: ChunkRef[]; sha256: string }> {
  const handle = await open(file, 'w');
  const hash = createHash('sha256');
  const chunker = new Chunker();
  const writer = store.writer();
  const chunks: ChunkRef[] = [];
  const put = async (pieces: Buffer[]) => {
    for (const piece of pieces) chunks.push({ digest: (await writer.put(piece)).digest, size: piece.length });
  };
  for (let i = 0; i < SIZE / BLOCK; i++) {
    const block = sourceBlock(i, compressible);
    await handle.write(block);
    hash.update(block);
    await put(chunker.push(block));
  }
  await put(chunker.finish());
  await writer.commit();
  await handle.close();
  return { chunks, sha256: hash.digest('hex') };
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const part of createReadStream(file)) hash.update(part as Buffer);
  return hash.digest('hex');
}

/** Converts the NBD export of `disk` to the raw file `out`. */
async function convertOverNbd(disk: DiskSource, socketPath: string, out: string): Promise<void> {
  const server = await serveNbd(socketPath, disk);
  try {
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///?socket=${server.socketPath}`, out]);
  } finally {
    await server.close();
  }
}

async function median(label: string, run: () => Promise<void>): Promise<void> {
  const rates: number[] = [];
  for (let r = 0; r < REPETITIONS; r++) {
    const start = performance.now();
    await run();
    rates.push(SIZE / MIB / ((performance.now() - start) / 1000));
  }
  rates.sort((a, b) => a - b);
  const shown = rates.map((x) => x.toFixed(0)).join(', ');
  console.log(`${label.padEnd(56)} median ${rates[REPETITIONS >> 1]!.toFixed(0)} MB/s  (${shown})`);
}

describe.skipIf(!process.env['SNAPFORK_BENCH'])('NBD export throughput', () => {
  it('measures', async () => {
    const root = await mkdtemp(join(tmpdir(), 'snapfork-bench-nbd-'));
    try {
      for (const compressible of [true, false]) {
        const kind = compressible ? 'semi-compressible' : 'incompressible';
        const store = await openFsChunkStore(join(root, `chunks-${kind}`));
        const source = join(root, `source-${kind}.raw`);
        const out = join(root, 'copy.raw');
        const { chunks, sha256 } = await storeSource(store, source, compressible);
        // A fresh disk (and so a cold chunk cache) for every run.
        const disk = () => new ChunkDiskSource({ size: SIZE, chunks }, store);

        // As qemu-img convert reads: 2 MiB requests, 8 of them at a time.
        await median(`${kind}: ChunkDiskSource, 8 x 2 MiB reads at once`, async () => {
          const d = disk();
          for (let offset = 0; offset < SIZE; offset += 16 * MIB) {
            await Promise.all(Array.from({ length: 8 }, (_, k) => d.read(offset + k * 2 * MIB, 2 * MIB)));
          }
        });
        await median(`${kind}: qemu-img convert from NBD`, () => convertOverNbd(disk(), join(root, 'disk.sock'), out));
        expect(await fileSha256(out)).toBe(sha256);
        const file = await open(source, 'r');
        const plain: DiskSource = {
          size: SIZE,
          read: async (offset, length) => (await file.read(Buffer.allocUnsafe(length), 0, length, offset)).buffer,
        };
        await median(`${kind}: qemu-img convert from NBD over a file`, () => convertOverNbd(plain, join(root, 'disk.sock'), out));
        await file.close();
        await median(`${kind}: qemu-img convert from a file`, async () => {
          await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', source, out]);
        });
        await store.close();
        await rm(source);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
