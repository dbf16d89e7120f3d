/**
 * zstd through zstd-napi: libzstd itself, built natively at install (an optional dependency), at
 * about twice the speed of the WASM build. Where its build is missing, loadNativeZstd() answers
 * undefined and snapfork keeps zstd-codec's WASM build (zstd-wasm.ts).
 *
 * libzstd reports what the WASM binding cannot, so client streams need no frame scanning here:
 * with ZSTD_d_windowLogMax set, a frame whose window exceeds MAX_WINDOW_SIZE fails with
 * ZSTD_error_frameParameter_windowTooLarge before anything is allocated for it, and
 * ZSTD_decompressStream returns 0 exactly when a frame has been decoded and flushed whole, so a
 * stream that ends at any other answer ended inside a frame.
 */
import { createRequire } from 'node:module';
import { MAX_BLOCK_SIZE, MAX_WINDOW_SIZE, notZstd, windowTooLarge, type ZstdBackend, type ZstdStreamDecoder } from './zstd-backend.js';

/** The part of zstd-napi's binding (zstd-napi/binding, one function per libzstd call) used here. */
interface Binding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  DCtx: new () => {
    decompress(dst: Uint8Array, src: Uint8Array): number;
    /** ZSTD_decompressStream: [its return value, bytes written to dst, bytes read from src]. */
    decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
    setParameter(param: number, value: number): void;
  };
  DParameter: { windowLogMax: number };
  compressBound(size: number): number;
  /** Null when the header declares no size; throws when it is no zstd frame header. */
  getFrameContentSize(frame: Uint8Array): number | null;
}

/** ZSTD_getErrorName(ZSTD_error_frameParameter_windowTooLarge), the message zstd-napi throws. */
const WINDOW_TOO_LARGE = 'Frame requires too much memory for decoding';
/** Output buffer of a stream decoder: ZSTD_DStreamOutSize(), one block of zstd. */
const DECODE_OUTPUT_SIZE = 128 * 1024;
const WINDOW_LOG_MAX = Math.log2(MAX_WINDOW_SIZE);

/** The native backend, or undefined when zstd-napi or its build is missing. */
export function loadNativeZstd(): ZstdBackend | undefined {
  const require = createRequire(import.meta.url);
  let workerModule: string;
  let binding: Binding;
  try {
    workerModule = require.resolve('zstd-napi/binding');
    binding = require(workerModule) as Binding;
  } catch {
    return undefined;
  }
  const cctx = new binding.CCtx();
  const dctx = new binding.DCtx();
  // Compressed into this, then copied out at its length: a block never holds the bound's slack.
  const scratch = Buffer.allocUnsafe(binding.compressBound(MAX_BLOCK_SIZE));
  return {
    implementation: 'native',
    workerModule,
    ready: () => Promise.resolve(),

    compress(data, level) {
      return Buffer.from(scratch.subarray(0, cctx.compress(scratch, data, level)));
    },

    contentSize(frame) {
      try {
        return binding.getFrameContentSize(frame);
      } catch {
        return null;
      }
    },

    decompress(frame, size) {
      const out = Buffer.allocUnsafe(size);
      try {
        return dctx.decompress(out, frame) === size ? out : undefined;
      } catch {
        return undefined;
      }
    },

    streamDecoder() {
      const stream = new binding.DCtx();
      stream.setParameter(binding.DParameter.windowLogMax, WINDOW_LOG_MAX);
      return Promise.resolve(new NativeStreamDecoder(stream));
    },
  };
}

class NativeStreamDecoder implements ZstdStreamDecoder {
  /** Output is written at `written` and handed out from `handed` on: views, never overwritten. */
  private out = Buffer.allocUnsafe(DECODE_OUTPUT_SIZE);
  private handed = 0;
  private written = 0;
  /** ZSTD_decompressStream's last answer: 0 at a frame's end, else a hint of input still due. */
  private due = 1;
  private started = false;

  constructor(private readonly dctx: InstanceType<Binding['DCtx']>) {}

  *write(input: Buffer): Iterable<Buffer> {
    this.started ||= input.length > 0;
    // A full output buffer may leave decoded bytes inside libzstd: called again, input or not.
    for (let full = false; input.length > 0 || full; ) {
      const [due, produced, consumed] = this.decompress(input);
      // A call that moves nothing (output just drained at a frame's end) reports the next header's hint.
      if (produced > 0 || consumed > 0) this.due = due;
      this.written += produced;
      input = input.subarray(consumed);
      full = this.written === this.out.length;
      if (full) {
        yield this.out.subarray(this.handed);
        this.out = Buffer.allocUnsafe(DECODE_OUTPUT_SIZE);
        this.handed = this.written = 0;
      }
    }
    if (this.written > this.handed) {
      yield this.out.subarray(this.handed, this.written);
      this.handed = this.written;
    }
  }

  end(): Iterable<Buffer> {
    if (!this.started || this.due !== 0) throw notZstd();
    return [];
  }

  private decompress(input: Buffer): [number, number, number] {
    try {
      return this.dctx.decompressStream(this.out.subarray(this.written), input);
    } catch (e) {
      throw (e as Error).message === WINDOW_TOO_LARGE ? windowTooLarge() : notZstd();
    }
  }
}
