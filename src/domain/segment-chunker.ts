/**
 * Chunks files on the chunk codec's threads (ChunkCodec.cut: the FastCDC scan, SHA-256 and zstd
 * together), with exactly chunkBuffer's cut points: they are part of the on-disk format, and a
 * server that cut otherwise would store the CLI's chunks (cut locally) a second time.
 *
 * A file of up to SEGMENT_SIZE goes to a worker whole, in one job, and its cuts are the file's.
 * A longer file goes in segments, each cut by a worker as if a chunk began at its first byte:
 * a guess, since the file's true chunk open at the segment's start began in an earlier segment.
 * Stitching, on this thread and in file order, carries that open chunk over and runs the scan
 * (scanForCut, the one implementation) from it until it reaches a cut the worker found too: from
 * a common cut on, both cut alike, because the gear hash starts afresh at each chunk (and only
 * its last 32 bytes count). That takes a chunk or two of scanning a segment; the few chunks cut
 * here are hashed and compressed by the writer, the worker's guesses before the common cut are
 * dropped. Data with no common cut in a segment (constant bytes: cuts at the maximum size only,
 * offset from the worker's) is cut here for that segment, as chunkBuffer would.
 *
 * A segment of zeros (a hole of a sparse disk image, most of a guest's RAM) is cut here, never
 * sent: the scan compares zeros 4 KiB at a time. Every chunk of zeros, cut here or stitched, is
 * a view of one buffer of zeros named from a table by length (ZeroDigests): never hashed, nor
 * copied, and the segment's buffer takes the next segment's bytes. Fresh memory costs a page
 * fault per 4 KiB, which on this project's hosts (nested virtualisation) made reading a guest's
 * RAM into new buffers ten times slower than into reused ones.
 */
import { MAX_CHUNK_SIZE, scanForCut, type ScanState } from './chunker.js';
import type { ChunkRef } from './model.js';
import { inlineChunkCodec, type ChunkCodec, type CutSegment, type EncodedChunk } from '../lib/chunk-codec.js';
import { isZeros, ZeroDigests } from '../lib/zeros.js';

/**
 * 2 MiB: whole files up to it (a dataset's 20-200 KiB blobs) in one job each, and for longer
 * ones, a stitch's scan of a chunk or two (~64-128 KiB) and one dropped guess per 2 MiB.
 */
const SEGMENT_SIZE = 2 * 1024 * 1024;
/**
 * Segments sent to the codec and not stitched yet, per chunker (a push), at most, in bytes:
 * enough to keep two workers busy while this thread stitches, as PutPipeline bounds the chunks
 * after it. The codec bounds what all pushes have in its threads together.
 */
const LOOKAHEAD_SEGMENTS = 4;

/**
 * Takes each chunk of a file, in the file's order, to store it: appends its ChunkRef to `refs` at
 * once, complete once stored (PutPipeline.append). It takes the chunk over: a whole buffer may be
 * handed to another thread, and left empty.
 */
export type ChunkSink = (refs: ChunkRef[], chunk: Buffer | EncodedChunk) => Promise<void>;

interface SentSegment {
  result: Promise<CutSegment>;
  refs: ChunkRef[];
  last: boolean;
  bytes: number;
}

export class SegmentChunker {
  /** Bytes of the segments sent to the codec and not stitched yet. */
  private sentBytes = 0;
  /**
   * The stitches of the segments sent, chained in file order: each runs as soon as its cuts are
   * back and the one before it is done, whether or not more input comes (a push whose client
   * pauses still stores what it sent). Rejected from the first failure on.
   */
  private stitching: Promise<void> = Promise.resolve();
  /** The stitches not done yet, oldest first. */
  private readonly stitches: Promise<void>[] = [];
  /** The file's true open chunk, as stitching left it: views of earlier segments, and its scan state. */
  private open: Buffer[] = [];
  private openLength = 0;
  private readonly state: ScanState = { hash: 0 };
  private readonly segmentSize: number;
  private readonly zeroDigests = new ZeroDigests();
  /**
   * What every chunk of zeros is a view of, made at the first: longer than any segment or chunk,
   * so that no view of it is a whole buffer, which a put could hand to another thread (PutOptions.transfer).
   */
  private zeros: Buffer | undefined;
  /** A segment's buffer that held zeros, for the next segment's bytes. */
  private spare: Buffer | undefined;

  /**
   * `compress` tells, as each segment is sent, whether its chunks are to be compressed as they
   * are hashed (PutPipeline.storingNew); when not, the writer compresses those that are new.
   * `segmentSize` is SEGMENT_SIZE but in tests, which stitch more often with smaller ones.
   */
  constructor(
    private readonly codec: ChunkCodec,
    private readonly sink: ChunkSink,
    private readonly compress: () => boolean,
    options: { segmentSize?: number } = {},
  ) {
    this.segmentSize = options.segmentSize ?? SEGMENT_SIZE;
  }

  /**
   * Reads a file of `size` bytes (as its header says: it sizes the buffers) from `data` and sends
   * it to the codec; its chunks reach the sink, with `refs`, by flush() at the latest. Waits while
   * LOOKAHEAD_SEGMENTS are sent, stitching the oldest segments meanwhile. Throws a sink's or the
   * codec's failure; the chunker is of no further use then.
   */
  async chunkFile(refs: ChunkRef[], size: number, data: AsyncIterable<Uint8Array>): Promise<void> {
    let left = size;
    let segment: Buffer | undefined;
    let filled = 0;
    let first = true;
    for await (const piece of data) {
      for (let at = 0; at < piece.length; ) {
        if (segment && filled === segment.length) {
          await this.send(segment, refs, { first, last: false });
          segment = undefined;
          filled = 0;
          first = false;
        }
        segment ??= this.segmentBuffer(left > 0 ? Math.min(left, this.segmentSize) : this.segmentSize);
        const n = Math.min(piece.length - at, segment.length - filled);
        segment.set(piece.subarray(at, at + n), filled);
        filled += n;
        left -= n;
        at += n;
      }
    }
    await this.send(segment?.subarray(0, filled) ?? Buffer.alloc(0), refs, { first, last: true });
  }

  /**
   * chunkFile() of a file of `size` bytes that `readInto` fills buffers from (as StateFile.readInto:
   * from `offset` on, the buffer's length): each segment is read straight into its buffer rather
   * than copied from pieces, and a segment of zeros leaves its buffer to the next (a guest's RAM).
   */
  async chunkFileAt(refs: ChunkRef[], size: number, readInto: (into: Buffer, offset: number) => Promise<void>): Promise<void> {
    let offset = 0;
    do {
      const segment = this.segmentBuffer(Math.min(size - offset, this.segmentSize));
      await readInto(segment, offset);
      await this.send(segment, refs, { first: offset === 0, last: (offset += segment.length) === size });
    } while (offset < size);
  }

  /** Waits for every segment sent to be stitched: every chunk of the files read so far has reached the sink. */
  async flush(): Promise<void> {
    await this.stitching;
  }

  /** A buffer for a segment of `length` bytes: the spare one, else one of its own (not a slice of Node's pool), which the codec takes without a copy. */
  private segmentBuffer(length: number): Buffer {
    const spare = this.spare;
    this.spare = undefined;
    return spare?.length === length ? spare : Buffer.allocUnsafeSlow(length);
  }

  private async send(segment: Buffer, refs: ChunkRef[], position: { first: boolean; last: boolean }): Promise<void> {
    const bytes = segment.length; // before cut(), which may hand the segment over (and leave it empty)
    while (this.stitches.length > 0 && this.sentBytes + bytes > LOOKAHEAD_SEGMENTS * this.segmentSize) await this.stitches[0];
    let result: Promise<CutSegment>;
    if (isZeros(segment)) {
      result = this.cutZeros(bytes, position);
      if (bytes === this.segmentSize) this.spare = segment;
    } else {
      result = this.codec.cut(segment, { hash: true, compress: this.compress(), ...position }, { transfer: true });
    }
    result.catch(() => undefined); // thrown by the stitch that awaits it
    this.sentBytes += bytes;
    const stitch = this.stitching.then(() => this.stitch({ result, refs, last: position.last, bytes }));
    this.stitching = stitch;
    this.stitches.push(stitch);
    const done = () => void this.stitches.shift();
    stitch.then(done, done); // a failure is thrown by send() or flush()
  }

  /** A segment of `length` zeros cut on this thread, in views of `zeros`, its chunks named by their length. */
  private async cutZeros(length: number, position: { first: boolean; last: boolean }): Promise<CutSegment> {
    const cut = await inlineChunkCodec.cut(this.zeroView(length), { hash: false, compress: false, ...position });
    return { ...cut, chunks: cut.chunks.map(({ data }) => this.zeroChunk(data.length)) };
  }

  private zeroView(length: number): Buffer {
    this.zeros ??= Buffer.alloc(Math.max(this.segmentSize, MAX_CHUNK_SIZE) + 1);
    return this.zeros.subarray(0, length);
  }

  /** A chunk of `length` zeros, named. */
  private zeroChunk(length: number): EncodedChunk {
    return { data: this.zeroView(length), digest: this.zeroDigests.of(length) };
  }

  private async stitch({ result, refs, last, bytes }: SentSegment): Promise<void> {
    const segment = await result;
    this.sentBytes -= bytes;
    const { data, chunks } = segment;
    // The first of the codec's chunks that is one of the file's: all of them when a chunk begins here.
    let next = 0;
    if (this.openLength > 0) {
      let end = 0;
      let k = -1; // the codec's chunk ending at `end`
      for (let from = 0; ; ) {
        const cut = scanForCut(data, from, from - this.openLength, this.state);
        if (cut < 0) {
          this.keepOpen(data.subarray(from));
          if (last && this.openLength > 0) await this.sinkOpen(refs);
          return;
        }
        await this.sinkOpen(refs, data.subarray(from, cut));
        while (k + 1 < chunks.length && end < cut) end += chunks[++k]!.data.length;
        if (end === cut) {
          next = k + 1;
          break;
        }
        from = cut;
      }
    }
    for (const chunk of chunks.slice(next)) await this.sink(refs, chunk);
    this.open = [];
    this.openLength = 0;
    this.keepOpen(segment.open);
    this.state.hash = segment.openState.hash;
  }

  private keepOpen(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.open.push(bytes);
    this.openLength += bytes.length;
  }

  /** Sinks the open chunk, ended by `rest`: a buffer of its own, or a chunk of zeros; a new chunk begins. */
  private async sinkOpen(refs: ChunkRef[], rest?: Buffer): Promise<void> {
    const parts = rest ? [...this.open, rest] : this.open;
    const length = this.openLength + (rest?.length ?? 0);
    this.open = [];
    this.openLength = 0;
    this.state.hash = 0;
    const zeros = parts.every((part) => part.buffer === this.zeros?.buffer || isZeros(part));
    await this.sink(refs, zeros ? this.zeroChunk(length) : Buffer.concat(parts, length));
  }
}
