/**
 * What a chunk costs in CPU on its way into a store: its SHA-256 and its zstd block. Behind this
 * interface so that a push spends it on every core (ChunkCodecPool, worker threads) while the
 * main thread reads the request and writes the packs, and a store that needs no threads (a
 * test's, a one-off command's) spends it inline.
 */
import { MAX_BLOCK_SIZE, compressBlock, zstdReady } from './zstd.js';
import { sha256 } from './sha256.js';

/** The work asked of a codec for one chunk. */
export interface CodecWork {
  /** Answer the chunk's SHA-256. */
  hash: boolean;
  /** Answer its zstd block (compressBlock), when that is shorter than the chunk. */
  compress: boolean;
}

/** What a codec made of one chunk. */
export interface EncodedChunk {
  /**
   * The chunk's bytes, unchanged. Read them here, not from the Buffer given to encode(): that one
   * may have been handed to another thread, and left empty (detached).
   */
  data: Buffer;
  /** Lower-case hex SHA-256 of `data`, when asked for. */
  digest?: string;
  /** One zstd frame of `data` (as compressBlock makes), when asked for and shorter than `data`. */
  compressed?: Buffer;
}

export interface ChunkCodec {
  /**
   * Hashes and/or compresses `data`. With `transfer`, the caller gives `data` up: it neither
   * reads nor changes it after the call (it may be moved to another thread without a copy, and
   * left empty); without, the codec copies what it hands over. Either way the caller reads the
   * answer's `data`. Rejects, never hangs, when the codec fails (a worker thread died) or is
   * closed; concurrent calls may settle in any order.
   */
  encode(data: Buffer, work: CodecWork, options?: { transfer?: boolean }): Promise<EncodedChunk>;
  /** Stops the codec's threads, if any; encodes still in flight reject. Idempotent. */
  close(): Promise<void>;
}

/** Whether zstd is tried on a chunk of `length` bytes: not on nothing, and not past compressBlock's limit. */
export const compressible = (length: number) => length > 0 && length <= MAX_BLOCK_SIZE;

/** A codec that does the work on the calling thread. */
export const inlineChunkCodec: ChunkCodec = {
  async encode(data, work) {
    if (work.compress) await zstdReady();
    const compressed = work.compress && compressible(data.length) ? compressBlock(data) : undefined;
    return {
      data,
      ...(work.hash && { digest: sha256(data) }),
      ...(compressed && compressed.length < data.length && { compressed }),
    };
  },
  async close() {},
};
