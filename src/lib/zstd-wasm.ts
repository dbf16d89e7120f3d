/**
 * zstd through zstd-codec (zstd compiled to WASM): snapfork's fallback where zstd-napi's native
 * build is missing, and its choice with SNAPFORK_ZSTD=wasm.
 *
 * zstd-codec's WASM heap is fixed at 16 MiB per instance (the module declares it as its
 * maximum): its one-shot `Simple` API aborts from about 5 MiB of input, hence MAX_BLOCK_SIZE.
 * Decoding a client's stream uses the incremental binding instead, in a WASM instance of its own
 * per stream, so concurrent uploads never compete for one heap; a frame whose window exceeds
 * MAX_WINDOW_SIZE cannot fit and is refused up front, by a FrameScanner, because the binding
 * aborts instead of reporting it.
 */
import { createRequire } from 'node:module';
import { MAX_WINDOW_SIZE, notZstd, windowTooLarge, type ZstdBackend, type ZstdStreamDecoder } from './zstd-backend.js';

interface CodecApi {
  Simple: new () => {
    compress(data: Uint8Array, level: number): Uint8Array | null;
    decompress(data: Uint8Array): Uint8Array | null;
  };
  Generic: new () => { contentSize(data: Uint8Array): number | null };
}

/** zstd-codec's embind binding of ZSTD_decompressStream (lib/module.js). */
interface StreamBinding {
  ZstdDecompressStreamBinding: new () => StreamDecoderBinding;
}

interface StreamDecoderBinding {
  begin(): boolean;
  /** Calls `out` synchronously with fresh arrays (not views of the heap). */
  transform(input: Uint8Array, out: (data: Uint8Array) => void): boolean;
  end(out: (data: Uint8Array) => void): boolean;
  delete(): void;
}

const require = createRequire(import.meta.url);
const codecModule = require.resolve('zstd-codec');
const { ZstdCodec } = require(codecModule) as { ZstdCodec: { run(ready: (api: CodecApi) => void): void } };
const wasmModule = require('zstd-codec/lib/module.js') as { run(ready: (binding: StreamBinding) => void): void };

/**
 * Compressed bytes fed to the decoder at a time. zstd reaches ~32000:1 on zeros (VM images are
 * full of them), and one call's output comes out at once, so this bounds a burst to ~64 MiB.
 */
const DECODE_PIECE_SIZE = 2 * 1024;

let codec: { simple: InstanceType<CodecApi['Simple']>; generic: InstanceType<CodecApi['Generic']> } | undefined;
let ready: Promise<void> | undefined;

function blockCodec() {
  if (!codec) throw new Error('zstd used before zstdReady() resolved');
  return codec;
}

const asBuffer = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

export const wasmZstd: ZstdBackend = {
  implementation: 'wasm',
  workerModule: codecModule,

  ready() {
    ready ??= new Promise<void>((resolve) => {
      ZstdCodec.run((api) => {
        codec = { simple: new api.Simple(), generic: new api.Generic() };
        resolve();
      });
    });
    return ready;
  },

  compress(data, level) {
    const out = blockCodec().simple.compress(data, level);
    if (!out) throw new Error('zstd compression failed');
    return asBuffer(out);
  },

  contentSize(frame) {
    return blockCodec().generic.contentSize(frame);
  },

  decompress(frame, size) {
    const { simple } = blockCodec();
    if (size === 0) return Buffer.alloc(0); // zstd-codec's decompress rejects empty frames
    let out: Uint8Array | null;
    try {
      out = simple.decompress(frame);
    } catch {
      out = null; // an emscripten abort, thrown as a string
    }
    return out && out.length === size ? asBuffer(out) : undefined;
  },

  streamDecoder() {
    return new Promise((resolve) => {
      wasmModule.run((binding) => {
        const decoder = new binding.ZstdDecompressStreamBinding();
        decoder.begin();
        resolve(new WasmStreamDecoder(decoder));
      });
    });
  },
};

class WasmStreamDecoder implements ZstdStreamDecoder {
  private readonly frames = new FrameScanner();

  constructor(private readonly decoder: StreamDecoderBinding) {}

  *write(input: Buffer): Iterable<Buffer> {
    for (let i = 0; i < input.length; i += DECODE_PIECE_SIZE) {
      const piece = input.subarray(i, i + DECODE_PIECE_SIZE);
      this.frames.scan(piece); // before the decoder sees it: a huge window would abort the heap
      const out: Buffer[] = [];
      if (!this.decoder.transform(piece, (data) => out.push(asBuffer(data)))) throw notZstd();
      yield* out;
    }
  }

  *end(): Iterable<Buffer> {
    if (!this.frames.complete()) throw notZstd();
    const out: Buffer[] = [];
    if (!this.decoder.end((data) => out.push(asBuffer(data)))) throw notZstd();
    this.decoder.delete();
    yield* out;
  }
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
        if (window > MAX_WINDOW_SIZE) throw windowTooLarge(window);
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
