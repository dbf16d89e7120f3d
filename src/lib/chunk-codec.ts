/**
 * What a chunk costs in CPU on its way into a store: its SHA-256 and its zstd block. Behind this
 * interface so that a push spends it on every core (ChunkCodecPool, worker threads) while the
 * main thread reads the request and writes the packs, and a store that needs no threads (a
 * test's, a one-off command's) spends it inline.
 */
import { cutPoints, scanForCut, type ScanState } from '../domain/chunker.js';
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
  /**
   * One zstd frame of `data` (as compressBlock makes) when asked for and shorter than `data`;
   * null when asked for and not shorter (or not compressible): `data` is stored raw. Absent when
   * not asked for.
   */
  compressed?: Buffer | null;
}

/** The work asked of a codec for a segment of a stream (ChunkCodec.cut). */
export interface SegmentWork extends CodecWork {
  /** The stream ends with the segment. */
  last: boolean;
  /** The segment begins a chunk: the start of the stream. */
  first: boolean;
}

/** A piece of a stream cut into chunks (ChunkCodec.cut). */
export interface CutSegment {
  /** The segment's bytes (read them here: the Buffer given to cut() may have been handed over). */
  data: Buffer;
  /** The chunks, in order, views of `data`; together with `open`, every byte of it. */
  chunks: EncodedChunk[];
  /** The bytes after the last cut: the start of a chunk the next segment goes on with (empty for a last segment). */
  open: Buffer;
  /** The scan's state over `open`, to go on with (see CutScan). */
  openState: ScanState;
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
  /**
   * Cuts `data` into chunks as chunkBuffer would were a chunk to begin at its first byte (for a
   * segment of a longer stream, a guess its caller checks: see SegmentChunker), and does `work`
   * on each chunk. With `last`, the bytes after the last cut are a chunk too (the stream ends);
   * without, they are answered as `open`. Without `first` (a chunk surely begins at byte 0), the
   * first chunk is cut but not worked on: in a segment of a stream, it is almost never a chunk of
   * the stream. `transfer` and failures as for encode().
   */
  cut(data: Buffer, work: SegmentWork, options?: { transfer?: boolean }): Promise<CutSegment>;
  /** Stops the codec's threads, if any; encodes still in flight reject. Idempotent. */
  close(): Promise<void>;
}

/** Whether zstd is tried on a chunk of `length` bytes: not on nothing, and not past compressBlock's limit. */
export const compressible = (length: number) => length > 0 && length <= MAX_BLOCK_SIZE;

function encodeInline(data: Buffer, work: CodecWork): EncodedChunk {
  const compressed = work.compress && compressible(data.length) ? compressBlock(data) : undefined;
  return {
    data,
    ...(work.hash && { digest: sha256(data) }),
    ...(work.compress && { compressed: compressed && compressed.length < data.length ? compressed : null }),
  };
}

/** A codec that does the work on the calling thread. */
export const inlineChunkCodec: ChunkCodec = {
  async encode(data, work) {
    if (work.compress) await zstdReady();
    return encodeInline(data, work);
  },
  async cut(data, work) {
    if (work.compress) await zstdReady();
    const openState = { hash: 0 };
    const ends = cutPoints(scanForCut, data, work.last, openState);
    const chunks = ends.map((end, i) => {
      const chunk = data.subarray(ends[i - 1] ?? 0, end);
      return i === 0 && !work.first ? { data: chunk } : encodeInline(chunk, work);
    });
    return { data, chunks, open: data.subarray(ends.at(-1) ?? 0), openState };
  },
  async close() {},
};
