/**
 * The narrow zstd interface of snapfork: blocks (one frame per stored chunk), response streams,
 * and client streams decoded in bounded memory. Two implementations behind it, chosen once per
 * process: native libzstd through zstd-napi when its build loads (zstd-native.ts), else
 * zstd-codec's WASM build (zstd-wasm.ts); useZstd() forces one (SNAPFORK_ZSTD, config.ts). Both
 * write the same frames, so data stored under one is read under the other.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { corrupt, isDomainError, type DomainError } from '../domain/errors.js';
import { MAX_BLOCK_SIZE, notZstd, type ZstdBackend, type ZstdImplementation, type ZstdStreamDecoder } from './zstd-backend.js';
import { loadNativeZstd } from './zstd-native.js';
import { wasmZstd } from './zstd-wasm.js';

export { MAX_BLOCK_SIZE, MAX_WINDOW_SIZE, type ZstdImplementation } from './zstd-backend.js';

export const DEFAULT_LEVEL = 3;
/** Input per frame of createZstdCompressStream. */
const FRAME_INPUT_SIZE = 1024 * 1024;

const nativeZstd = loadNativeZstd();
let active: ZstdBackend = nativeZstd ?? wasmZstd;

/** The implementations this process can run, the one used by default first. */
export const ZSTD_IMPLEMENTATIONS: readonly ZstdImplementation[] = nativeZstd ? ['native', 'wasm'] : ['wasm'];

/**
 * Runs every later zstd call of this process on `implementation` (the composition root calls it
 * once, at start; tests, to cover both). Throws when it is 'native' and zstd-napi's build is missing.
 */
export function useZstd(implementation: ZstdImplementation): void {
  if (implementation === 'wasm') active = wasmZstd;
  else if (nativeZstd) active = nativeZstd;
  else throw new Error('native zstd was asked for, but zstd-napi is not built on this machine (npm rebuild zstd-napi)');
}

/** The implementation in use. */
export function zstdImplementation(): ZstdImplementation {
  return active.implementation;
}

/** What a codec worker thread loads to compress as this process does (chunk-codec-pool.ts). */
export function zstdWorkerCodec(): { implementation: ZstdImplementation; module: string } {
  return { implementation: active.implementation, module: active.workerModule };
}

/** Loads the block codec once; compressBlock and decompressBlock need it to have resolved. */
export function zstdReady(): Promise<void> {
  return active.ready();
}

/** One zstd frame (content size recorded) holding `data`, at most MAX_BLOCK_SIZE bytes. */
export function compressBlock(data: Uint8Array, level = DEFAULT_LEVEL): Buffer {
  if (data.length > MAX_BLOCK_SIZE) throw new RangeError(`zstd block of ${data.length} bytes exceeds ${MAX_BLOCK_SIZE}`);
  return active.compress(data, level);
}

/**
 * Decodes a frame made by compressBlock. Blocks are data snapfork stored itself, so anything
 * that does not decode to exactly `expectedSize` bytes is `corrupt`.
 */
export function decompressBlock(frame: Uint8Array, expectedSize: number): Buffer {
  // Checked before decoding: a damaged header must not make the decoder allocate gigabytes.
  const size = expectedSize <= MAX_BLOCK_SIZE ? active.contentSize(frame) : null;
  if (size !== expectedSize) throw corrupt(`zstd block does not declare ${expectedSize} bytes`);
  const out = active.decompress(frame, size);
  if (!out) throw corrupt(`zstd block does not decode to ${expectedSize} bytes`);
  return out;
}

/**
 * Compresses a byte stream into concatenated zstd frames of up to 1 MiB of input each, which
 * any zstd decoder reads as one stream. Empty input yields one empty frame (a stream has ≥ 1).
 */
export function createZstdCompressStream(level = DEFAULT_LEVEL): Transform {
  const staged = Buffer.allocUnsafe(FRAME_INPUT_SIZE);
  let stagedLength = 0;
  let framed = false;
  const emitFrame = (stream: Transform) => {
    stream.push(compressBlock(staged.subarray(0, stagedLength), level));
    stagedLength = 0;
    framed = true;
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      zstdReady().then(() => {
        for (let i = 0; i < chunk.length; ) {
          const n = Math.min(chunk.length - i, FRAME_INPUT_SIZE - stagedLength);
          chunk.copy(staged, stagedLength, i, i + n);
          stagedLength += n;
          i += n;
          if (stagedLength === FRAME_INPUT_SIZE) emitFrame(this);
        }
      }).then(() => callback(), callback);
    },
    flush(callback) {
      zstdReady().then(() => {
        if (stagedLength > 0 || !framed) emitFrame(this);
      }).then(() => callback(), callback);
    },
  });
}

/**
 * Decodes any zstd stream (RFC 8878: one or more frames, skippable frames allowed) with bounded
 * memory, whatever the size of its frames: decoding waits while the reader is behind. Fails with
 * `invalid` on bytes that are not zstd or a stream that ends inside a frame, and `too_large` on a
 * window beyond MAX_WINDOW_SIZE.
 */
export function createZstdDecompressStream(): Transform {
  return new ZstdDecompressStream(active.streamDecoder());
}

class ZstdDecompressStream extends Transform {
  /** Set while decoding waits for the reader to drain the output buffer. */
  private resumeDecoding: (() => void) | undefined;

  constructor(private readonly decoder: Promise<ZstdStreamDecoder>) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.decoder
      .then(async (decoder) => {
        for (const out of decoder.write(chunk)) {
          this.push(out);
          if (this.readableLength >= this.readableHighWaterMark) {
            await new Promise<void>((resolve) => (this.resumeDecoding = resolve));
          }
        }
      })
      .then(() => callback(), (e: unknown) => callback(asZstdError(e)));
  }

  override _flush(callback: TransformCallback): void {
    this.decoder
      .then((decoder) => {
        for (const out of decoder.end()) this.push(out);
      })
      .then(() => callback(), (e: unknown) => callback(asZstdError(e)));
  }

  override _read(size: number): void {
    const resume = this.resumeDecoding;
    this.resumeDecoding = undefined;
    resume?.();
    super._read(size);
  }
}

function asZstdError(e: unknown): DomainError {
  return isDomainError(e) ? e : notZstd(); // an emscripten abort is thrown as a plain string
}
