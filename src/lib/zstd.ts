/**
 * The narrow zstd interface of snapfork over zstd-codec (zstd compiled to WASM).
 *
 * zstd-codec's WASM heap is fixed at 16 MiB per instance (the module declares it as its
 * maximum): its one-shot `Simple` API aborts from about 5 MiB of input, so blocks stay at
 * 1 MiB at most. Decoding a client's stream uses the incremental binding instead, in a WASM
 * instance of its own per stream, so concurrent uploads never compete for one heap; a frame
 * whose window exceeds MAX_WINDOW_SIZE cannot fit and is refused up front.
 */
import { createRequire } from 'node:module';
import { Transform, type TransformCallback } from 'node:stream';
import { DomainError, corrupt, invalid, isDomainError } from '../domain/errors.js';

interface CodecApi {
  Simple: new () => {
    compress(data: Uint8Array, level: number): Uint8Array | null;
    decompress(data: Uint8Array): Uint8Array | null;
  };
  Generic: new () => { contentSize(data: Uint8Array): number | null };
}

/** zstd-codec's embind binding of ZSTD_decompressStream (lib/module.js). */
interface StreamBinding {
  ZstdDecompressStreamBinding: new () => {
    begin(): boolean;
    /** Calls `out` synchronously with fresh arrays (not views of the heap). */
    transform(input: Uint8Array, out: (data: Uint8Array) => void): boolean;
    end(out: (data: Uint8Array) => void): boolean;
    delete(): void;
  };
}

const require = createRequire(import.meta.url);
const { ZstdCodec } = require('zstd-codec') as { ZstdCodec: { run(ready: (api: CodecApi) => void): void } };
const wasmModule = require('zstd-codec/lib/module.js') as { run(ready: (binding: StreamBinding) => void): void };

export const DEFAULT_LEVEL = 3;
/** Largest input of compressBlock: well under the ~5 MiB where the 16 MiB heap runs out. */
export const MAX_BLOCK_SIZE = 1024 * 1024;
/** Input per frame of createZstdCompressStream. */
const FRAME_INPUT_SIZE = 1024 * 1024;
/** Largest window a 16 MiB heap decodes: what zstd levels up to 19 use without --long. */
export const MAX_WINDOW_SIZE = 8 * 1024 * 1024;
/**
 * Compressed bytes fed to the decoder at a time. zstd reaches ~32000:1 on zeros (VM images are
 * full of them), and one call's output is emitted synchronously, so this bounds a burst to ~64 MiB.
 */
const DECODE_PIECE_SIZE = 2 * 1024;

let codec: { simple: InstanceType<CodecApi['Simple']>; generic: InstanceType<CodecApi['Generic']> } | undefined;
let ready: Promise<void> | undefined;

/** Loads the block codec once; compressBlock and decompressBlock need it to have resolved. */
export function zstdReady(): Promise<void> {
  ready ??= new Promise<void>((resolve) => {
    ZstdCodec.run((api) => {
      codec = { simple: new api.Simple(), generic: new api.Generic() };
      resolve();
    });
  });
  return ready;
}

function blockCodec() {
  if (!codec) throw new Error('zstd used before zstdReady() resolved');
  return codec;
}

/** One zstd frame (content size recorded) holding `data`, at most MAX_BLOCK_SIZE bytes. */
export function compressBlock(data: Uint8Array, level = DEFAULT_LEVEL): Buffer {
  if (data.length > MAX_BLOCK_SIZE) throw new RangeError(`zstd block of ${data.length} bytes exceeds ${MAX_BLOCK_SIZE}`);
  const out = blockCodec().simple.compress(data, level);
  if (!out) throw new Error('zstd compression failed');
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes a frame made by compressBlock. Blocks are data snapfork stored itself, so anything
 * that does not decode to exactly `expectedSize` bytes is `corrupt`.
 */
export function decompressBlock(frame: Uint8Array, expectedSize: number): Buffer {
  const { simple, generic } = blockCodec();
  // Checked before decoding: a damaged header could otherwise ask the fixed heap for gigabytes.
  const size = expectedSize <= MAX_BLOCK_SIZE ? generic.contentSize(frame) : null;
  if (size !== expectedSize) throw corrupt(`zstd block does not declare ${expectedSize} bytes`);
  if (size === 0) return Buffer.alloc(0); // zstd-codec's decompress rejects empty frames
  let out: Uint8Array | null;
  try {
    out = simple.decompress(frame);
  } catch {
    out = null; // an emscripten abort, thrown as a string
  }
  if (!out || out.length !== expectedSize) throw corrupt(`zstd block does not decode to ${expectedSize} bytes`);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
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
 * memory, whatever the size of its frames. Fails with `invalid` on bytes that are not zstd or a
 * stream that ends inside a frame, and `too_large` on a window beyond MAX_WINDOW_SIZE.
 */
export function createZstdDecompressStream(): Transform {
  return new ZstdDecompressStream();
}

const notZstd = () => invalid('request body is not a valid zstd stream');

class ZstdDecompressStream extends Transform {
  private readonly frames = new FrameScanner();
  private readonly decoder = new Promise<InstanceType<StreamBinding['ZstdDecompressStreamBinding']>>((resolve) => {
    wasmModule.run((binding) => {
      const decoder = new binding.ZstdDecompressStreamBinding();
      decoder.begin();
      resolve(decoder);
    });
  });
  /** Set while decoding waits for the reader to drain the output buffer. */
  private resumeDecoding: (() => void) | undefined;
  private readonly pushDecoded = (data: Uint8Array) => {
    this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  };

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.decode(chunk).then(() => callback(), (e: unknown) => callback(asZstdError(e)));
  }

  override _flush(callback: TransformCallback): void {
    this.decoder
      .then((decoder) => {
        if (!this.frames.complete()) throw notZstd();
        if (!decoder.end(this.pushDecoded)) throw notZstd();
        decoder.delete();
      })
      .then(() => callback(), (e: unknown) => callback(asZstdError(e)));
  }

  override _read(size: number): void {
    const resume = this.resumeDecoding;
    this.resumeDecoding = undefined;
    resume?.();
    super._read(size);
  }

  private async decode(chunk: Buffer): Promise<void> {
    const decoder = await this.decoder;
    for (let i = 0; i < chunk.length; i += DECODE_PIECE_SIZE) {
      const piece = chunk.subarray(i, i + DECODE_PIECE_SIZE);
      this.frames.scan(piece); // before the decoder sees it: a huge window would abort the heap
      if (!decoder.transform(piece, this.pushDecoded)) throw notZstd();
      if (this.readableLength >= this.readableHighWaterMark) {
        await new Promise<void>((resolve) => (this.resumeDecoding = resolve));
      }
    }
  }
}

function asZstdError(e: unknown): DomainError {
  return isDomainError(e) ? e : notZstd(); // an emscripten abort is thrown as a plain string
}

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

type Field = 'magic' | 'skippable-size' | 'descriptor' | 'header' | 'block-header' | 'checksum';

/**
 * Follows frame and block boundaries of a zstd stream (RFC 8878 §3.1) without decoding, because
 * zstd-codec's binding reports neither a stream that ends inside a frame nor a window too big
 * for its heap (it aborts instead). Header fields are gathered byte by byte; payloads skipped.
 */
class FrameScanner {
  private field: Field = 'magic';
  private readonly bytes = Buffer.alloc(16);
  private need = 4;
  private have = 0;
  private skip = 0;
  private frames = 0;
  private singleSegment = false;
  private checksum = false;
  private sizeBytes = 0;

  scan(data: Buffer): void {
    for (let i = 0; i < data.length; ) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.need - this.have, data.length - i);
      data.copy(this.bytes, this.have, i, i + n);
      this.have += n;
      i += n;
      if (this.have === this.need) {
        this.have = 0;
        this.onField(this.bytes.subarray(0, this.need));
      }
    }
  }

  /** True when the stream seen so far is one or more whole frames. */
  complete(): boolean {
    return this.frames > 0 && this.field === 'magic' && this.have === 0 && this.skip === 0;
  }

  private expect(field: Field, need: number, skip = 0): void {
    this.field = field;
    this.need = need;
    this.skip = skip;
  }

  private onField(b: Buffer): void {
    switch (this.field) {
      case 'magic': {
        const magic = b.readUInt32LE(0);
        if (magic === ZSTD_MAGIC) return this.expect('descriptor', 1);
        if (((magic & SKIPPABLE_MAGIC_MASK) >>> 0) === SKIPPABLE_MAGIC) return this.expect('skippable-size', 4);
        throw notZstd();
      }
      case 'skippable-size':
        this.frames++;
        return this.expect('magic', 4, b.readUInt32LE(0));
      case 'descriptor': {
        const d = b[0]!;
        if (d & 0x08) throw notZstd(); // reserved bit
        this.singleSegment = (d & 0x20) !== 0;
        this.checksum = (d & 0x04) !== 0;
        const windowBytes = this.singleSegment ? 0 : 1;
        const dictBytes = [0, 1, 2, 4][d & 0x03]!;
        this.sizeBytes = [this.singleSegment ? 1 : 0, 2, 4, 8][d >> 6]!;
        return this.expect('header', windowBytes + dictBytes + this.sizeBytes);
      }
      case 'header': {
        // A single-segment frame has no window descriptor: its window is its content size.
        const window = this.singleSegment ? contentSize(b.subarray(b.length - this.sizeBytes)) : windowSize(b[0]!);
        if (window > MAX_WINDOW_SIZE) {
          throw new DomainError(
            'too_large',
            `zstd window of ${window} bytes exceeds the ${MAX_WINDOW_SIZE} this server decodes; compress at level 19 or below, without --long`,
          );
        }
        return this.expect('block-header', 3);
      }
      case 'block-header': {
        const header = b[0]! | (b[1]! << 8) | (b[2]! << 16);
        const type = (header >> 1) & 3;
        if (type === 3) throw notZstd(); // reserved block type
        const payload = type === 1 ? 1 : header >>> 3; // an RLE block stores its byte once
        if ((header & 1) === 0) return this.expect('block-header', 3, payload);
        if (this.checksum) return this.expect('checksum', 4, payload);
        this.frames++;
        return this.expect('magic', 4, payload);
      }
      case 'checksum':
        this.frames++;
        return this.expect('magic', 4);
    }
  }
}

function windowSize(descriptor: number): number {
  const base = 2 ** (10 + (descriptor >> 3));
  return base + (base / 8) * (descriptor & 7);
}

function contentSize(field: Buffer): number {
  switch (field.length) {
    case 1:
      return field[0]!;
    case 2:
      return field.readUInt16LE(0) + 256;
    case 4:
      return field.readUInt32LE(0);
    default:
      return Number(field.readBigUInt64LE(0));
  }
}
