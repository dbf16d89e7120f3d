import { createRequire } from 'node:module';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/errors.js';
import {
  MAX_WINDOW_SIZE,
  ZSTD_IMPLEMENTATIONS,
  compressBlock,
  createZstdCompressStream,
  createZstdDecompressStream,
  decompressBlock,
  useZstd,
  zstdImplementation,
  zstdReady,
  type ZstdImplementation,
} from '../../src/lib/zstd.js';
import { generatedBytes } from '../support/generated.js';

const MIB = 1024 * 1024;

/** Half keystream, half text: compresses about 2:1, like typical image data. */
async function semiCompressible(size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const text = Buffer.from('snapfork stores tagged snapshots of VM images and datasets. '.repeat(20_000));
  for await (const random of generatedBytes(size / 2, 9)) parts.push(random, text.subarray(0, random.length));
  return Buffer.concat(parts).subarray(0, size);
}

/** Runs `input`, fed in `pieceSize` writes, through `transform` and collects the output. */
async function through(transform: NodeJS.ReadWriteStream, input: Buffer, pieceSize = 64 * 1024): Promise<Buffer> {
  const out: Buffer[] = [];
  const pieces = function* () {
    for (let i = 0; i < input.length; i += pieceSize) yield input.subarray(i, i + pieceSize);
  };
  await pipeline(
    Readable.from(pieces()),
    transform,
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        out.push(chunk);
        done();
      },
    }),
  );
  return Buffer.concat(out);
}

/** One zstd frame over all of `data`, as any streaming client (zstd CLI, libzstd) makes it. */
function singleFrame(data: Buffer): Promise<Buffer> {
  type Binding = {
    ZstdCompressStreamBinding: new () => {
      begin(level: number): boolean;
      transform(data: Uint8Array, out: (b: Uint8Array) => void): boolean;
      end(out: (b: Uint8Array) => void): boolean;
      delete(): void;
    };
  };
  const wasm = createRequire(import.meta.url)('zstd-codec/lib/module.js') as { run(f: (b: Binding) => void): void };
  return new Promise((resolve) =>
    wasm.run((binding) => {
      const encoder = new binding.ZstdCompressStreamBinding();
      const out: Buffer[] = [];
      const collect = (b: Uint8Array) => out.push(Buffer.from(b));
      encoder.begin(3);
      for (let i = 0; i < data.length; i += 256 * 1024) encoder.transform(data.subarray(i, i + 256 * 1024), collect);
      encoder.end(collect);
      encoder.delete();
      resolve(Buffer.concat(out));
    }),
  );
}

async function decodeError(input: Buffer): Promise<DomainError> {
  const error = await through(createZstdDecompressStream(), input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

/** Runs the calls of `use` on `implementation`. */
async function on<T>(implementation: ZstdImplementation, use: () => T | Promise<T>): Promise<T> {
  const previous = zstdImplementation();
  useZstd(implementation);
  try {
    await zstdReady();
    return await use();
  } finally {
    useZstd(previous);
  }
}

describe.each(ZSTD_IMPLEMENTATIONS)('zstd (%s)', (implementation) => {
  beforeAll(async () => {
    useZstd(implementation);
    await zstdReady();
  });

  it('round-trips blocks and shrinks compressible ones', async () => {
    const data = await semiCompressible(256 * 1024);
    const frame = compressBlock(data);
    expect(frame.length).toBeLessThan(data.length * 0.7);
    expect(decompressBlock(frame, data.length).equals(data)).toBe(true);
    expect(decompressBlock(compressBlock(Buffer.alloc(0)), 0).length).toBe(0);
  });

  it('reports a block that does not decode to its size as corrupt', async () => {
    const frame = compressBlock(await semiCompressible(64 * 1024));
    expect(() => decompressBlock(frame, 1000)).toThrow(expect.objectContaining({ kind: 'corrupt' }));
    // A flipped byte inside a block may still decode to the right length: the chunk store's
    // SHA-256 check catches that (test/contract/fs-chunk-store.test.ts).
    expect(() => decompressBlock(Buffer.from('not a zstd frame'), 10)).toThrow(expect.objectContaining({ kind: 'corrupt' }));
  });

  it('round-trips a multi-MiB stream made of 1 MiB frames', async () => {
    const data = await semiCompressible(5 * MIB + 4321);
    const compressed = await through(createZstdCompressStream(), data, 100_000);
    expect(compressed.length).toBeLessThan(data.length * 0.7);
    expect(compressed.readUInt32LE(0)).toBe(0xfd2fb528);
    const restored = await through(createZstdDecompressStream(), compressed, 7777);
    expect(restored.equals(data)).toBe(true);
  });

  it('compresses empty input to a valid stream of one empty frame', async () => {
    const compressed = await through(createZstdCompressStream(), Buffer.alloc(0));
    expect(compressed.length).toBeGreaterThan(0);
    expect((await through(createZstdDecompressStream(), compressed)).length).toBe(0);
  });

  it('decodes a single frame far larger than the one-shot API can hold', async () => {
    const data = await semiCompressible(24 * MIB);
    const frame = await singleFrame(data);
    const restored = await through(createZstdDecompressStream(), frame, MIB);
    expect(restored.equals(data)).toBe(true);
  });

  it('decodes concatenated frames with a skippable frame between them', async () => {
    const a = await semiCompressible(3 * MIB);
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from('abc')]);
    const stream = Buffer.concat([await singleFrame(a), skippable, compressBlock(a.subarray(0, 1000))]);
    const restored = await through(createZstdDecompressStream(), stream, 1000);
    expect(restored.equals(Buffer.concat([a, a.subarray(0, 1000)]))).toBe(true);
  });

  it('fails with invalid, not a crash, on garbage and on a stream cut inside a frame', async () => {
    expect((await decodeError(Buffer.from('this is certainly not zstd'.repeat(1000)))).kind).toBe('invalid');
    const frame = await singleFrame(await semiCompressible(2 * MIB));
    expect((await decodeError(frame.subarray(0, frame.length - 100))).kind).toBe('invalid');
    expect((await decodeError(Buffer.concat([frame, Buffer.from('trailing junk')]))).kind).toBe('invalid');
    expect((await decodeError(Buffer.alloc(0))).kind).toBe('invalid');
    // The process is still healthy afterwards.
    const data = await semiCompressible(MIB);
    expect((await through(createZstdDecompressStream(), await singleFrame(data))).equals(data)).toBe(true);
  });

  it('refuses a window beyond MAX_WINDOW_SIZE with too_large, one at it decodes', async () => {
    // Frame header: magic, descriptor 0 (window descriptor present), window 2^(10+exponent) plus
    // mantissa eighths; then zeros, empty raw blocks that never end the frame.
    const frame = (exponent: number, mantissa: number) => Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, (exponent << 3) | mantissa]), Buffer.alloc(1000)]);
    expect(MAX_WINDOW_SIZE).toBe(2 ** 23);
    expect((await decodeError(frame(14, 0))).kind).toBe('too_large'); // 16 MiB
    expect((await decodeError(frame(13, 1))).kind).toBe('too_large'); // 9 MiB
    expect((await decodeError(frame(13, 0))).kind).toBe('invalid'); // 8 MiB: accepted, then cut short
    // A single-segment frame's window is its content size: 16 MiB declared in 4 bytes.
    const singleSegment = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 1]);
    expect((await decodeError(Buffer.concat([singleSegment, Buffer.alloc(100)]))).kind).toBe('too_large');
  });

  it('holds back decoding while the reader is slow', async () => {
    const frame = await singleFrame(await semiCompressible(32 * MIB));
    // one 16 MiB write; one decoder that ignored backpressure would hand over all 32 MiB at once
    const { largestRead, total } = await readsOfDecoding(frame);
    expect(largestRead).toBeLessThan(4 * MIB);
    expect(total).toBe(32 * MIB);
  });

  it('holds back decoding of a zstd bomb (zeros at ~32000:1) as well', async () => {
    const zeros = Buffer.alloc(MIB);
    const bomb = await through(createZstdCompressStream(), Buffer.concat(Array.from({ length: 64 }, () => zeros)), MIB);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const { largestRead, total } = await readsOfDecoding(bomb);
    expect(largestRead).toBeLessThan(4 * MIB);
    expect(total).toBe(64 * MIB);
  });
});

/**
 * Decodes `stream` written at once and read as fast as it comes: each read takes all that is
 * buffered, so the largest read is the most the decoder ran ahead of its reader.
 */
async function readsOfDecoding(stream: Buffer): Promise<{ largestRead: number; total: number }> {
  const decoder = createZstdDecompressStream();
  decoder.end(stream);
  let largestRead = 0;
  let total = 0;
  for await (const chunk of decoder) {
    largestRead = Math.max(largestRead, (chunk as Buffer).length);
    total += (chunk as Buffer).length;
  }
  return { largestRead, total };
}

describe.runIf(ZSTD_IMPLEMENTATIONS.length === 2)('native and WASM zstd', () => {
  it('read each other\'s blocks and streams', async () => {
    const data = await semiCompressible(3 * MIB + 17);
    const block = data.subarray(0, 256 * 1024);
    for (const [writer, reader] of [['native', 'wasm'], ['wasm', 'native']] as const) {
      const frame = await on(writer, () => compressBlock(block));
      expect((await on(reader, () => decompressBlock(frame, block.length))).equals(block), `${writer} block read by ${reader}`).toBe(true);
      await expect(on(reader, () => decompressBlock(frame, block.length + 1))).rejects.toMatchObject({ kind: 'corrupt' });
      const empty = await on(writer, () => compressBlock(Buffer.alloc(0)));
      expect((await on(reader, () => decompressBlock(empty, 0))).length).toBe(0);
      const stream = await on(writer, () => through(createZstdCompressStream(), data));
      expect((await on(reader, () => through(createZstdDecompressStream(), stream, 5000))).equals(data), `${writer} stream read by ${reader}`).toBe(true);
    }
  });
});
