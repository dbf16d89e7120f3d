/**
 * What differs between the two builds of zstd snapfork runs on (native libzstd through zstd-napi,
 * or zstd-codec's WASM build): src/lib/zstd.ts builds snapfork's one zstd interface over either.
 * Both write the same format, so blocks and streams made by one are read by the other.
 */
import { DomainError, invalid } from '../domain/errors.js';

export type ZstdImplementation = 'native' | 'wasm';

/**
 * Largest input of compressBlock: well under the ~5 MiB where zstd-codec's 16 MiB WASM heap runs
 * out. Kept for native too: chunks are smaller, and stores hold no larger block.
 */
export const MAX_BLOCK_SIZE = 1024 * 1024;
/**
 * Largest window a client's stream may use: what zstd levels up to 19 use without --long, and
 * what a 16 MiB WASM heap decodes. It bounds the memory of every upload the same on both builds.
 */
export const MAX_WINDOW_SIZE = 8 * 1024 * 1024;

export const notZstd = () => invalid('request body is not a valid zstd stream');

/** A frame whose window exceeds MAX_WINDOW_SIZE (`window` bytes, when known). */
export const windowTooLarge = (window?: number) =>
  new DomainError(
    'too_large',
    `zstd window${window === undefined ? '' : ` of ${window} bytes`} exceeds the ${MAX_WINDOW_SIZE} bytes this server decodes; compress at level 19 or below, without --long`,
  );

export interface ZstdBackend {
  readonly implementation: ZstdImplementation;
  /** Resolves once compress, contentSize and decompress may be called (they throw before). Idempotent. */
  ready(): Promise<void>;
  /** One zstd frame holding `data` (at most MAX_BLOCK_SIZE bytes), its content size recorded. Throws if zstd fails. */
  compress(data: Uint8Array, level: number): Buffer;
  /** The content size `frame`'s header declares; null when it declares none or is no zstd frame. Reads the header only. */
  contentSize(frame: Uint8Array): number | null;
  /**
   * Decodes `frame`, whose header declares `size` bytes (at most MAX_BLOCK_SIZE, checked by the
   * caller: a damaged header never makes it allocate more); undefined when it does not decode to
   * exactly `size` bytes. Never throws for bad input.
   */
  decompress(frame: Uint8Array, size: number): Buffer | undefined;
  /** A decoder for one client stream, in memory bounded by MAX_WINDOW_SIZE whatever its frames. */
  streamDecoder(): Promise<ZstdStreamDecoder>;
  /** The module a codec worker (chunk-codec-pool.ts) requires to compress as this backend does. */
  readonly workerModule: string;
}

/**
 * Decodes one stream (RFC 8878: one or more frames, skippable frames allowed), piece by piece:
 * its caller may stop between the pieces it yields (back-pressure), so a stream that decodes to
 * far more than it holds (zeros reach ~32000:1) never sits whole in memory. Both methods throw
 * `invalid` on bytes that are not zstd, `too_large` on a window beyond MAX_WINDOW_SIZE.
 */
export interface ZstdStreamDecoder {
  /** Decodes the stream's next bytes; yields the output as it comes, each Buffer the caller's. */
  write(input: Buffer): Iterable<Buffer>;
  /** The stream has ended: yields the last output; `invalid` if it held no frame or ended inside one. */
  end(): Iterable<Buffer>;
}
