/**
 * Chunk lists of files written in place (a VM's disk at a commit), computed from where they
 * changed instead of from every byte: a commit of a 10 GiB disk after a 10 MiB write reads and
 * stores about 10 MiB.
 */
import { Chunker, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from './chunker.js';
import type { ChunkRef } from './model.js';
import type { DiskRange } from './ports/vm-runtime.js';
import type { ChunkSink } from './segment-chunker.js';
import { ZeroDigests } from '../lib/zeros.js';

/** What the new bytes are read in. */
const READ_PIECE = 1024 * 1024;

/**
 * The content-defined chunks of a file that is `base` (its chunk list) with the bytes of
 * `changed` replaced, and grown to `size` when larger, as chunking the whole new file would cut
 * it but in runs of zeros. Base chunks before a change are kept; from the base chunk holding a
 * change the new bytes are chunked until a cut falls on a base chunk boundary past every change
 * it has met, from where the base chunks are kept again: a cut depends only on the bytes since
 * the previous cut, so from a common boundary on, equal bytes cut equally. In a run of zeros,
 * where no such boundary would come, one or two zero chunks step back to the base's (see
 * zeroRunStep): the work stays that of the changes, whatever the size of a sparse image. `changed` may be unsorted and
 * overlapping; a range marked changed whose bytes are in fact the same costs only its reading.
 * Each new chunk goes to `sink` with the list (PutPipeline.append), which is complete once the
 * sink's stores are.
 */
export async function chunkEditedFile(
  base: readonly ChunkRef[],
  size: number,
  changed: readonly DiskRange[],
  read: (offset: number, length: number) => Promise<Buffer>,
  sink: ChunkSink,
): Promise<ChunkRef[]> {
  const starts = [0];
  for (const chunk of base) starts.push(starts[starts.length - 1]! + chunk.size);
  const baseSize = starts[base.length]!;
  if (size < baseSize) throw new RangeError(`a file of ${baseSize} bytes cannot shrink to ${size} in place`);
  const ranges = [...changed, ...(size > baseSize ? [{ offset: baseSize, length: size - baseSize }] : [])]
    .filter((r) => r.length > 0)
    .sort((a, b) => a.offset - b.offset);

  const zeroDigests = new ZeroDigests();
  const isZeroChunk = (index: number): boolean => base[index]!.digest === zeroDigests.of(base[index]!.size);
  /**
   * In a run of zeros both the base and the new bytes cut every MAX_CHUNK_SIZE bytes, but out
   * of step, and would stay so to the run's end (for a disk image, often the end of the file).
   * When `at` (a new cut past every change met) lies in a base chunk of zeros that no change
   * touches, the zeros up to that chunk's end (or the next's, when too short for a chunk) are
   * cut into one or two valid chunks, which brings the new chunks back in step with the base's.
   */
  const zeroRunStep = (at: number): { lengths: number[]; boundary: number } | undefined => {
    const index = chunkIndexAt(starts, at);
    const untouchedTo = next < ranges.length ? ranges[next]!.offset : size;
    for (let end = index + 1; end <= Math.min(index + 2, base.length); end++) {
      if (!isZeroChunk(end - 1) || starts[end]! > untouchedTo || (end === base.length && size > baseSize)) return undefined;
      const length = starts[end]! - at;
      if (length >= MIN_CHUNK_SIZE) {
        const first = length <= MAX_CHUNK_SIZE ? length : Math.ceil(length / 2);
        return { lengths: first === length ? [length] : [first, length - first], boundary: end };
      }
    }
    return undefined;
  };

  const out: ChunkRef[] = [];
  let kept = 0; // base chunks [0, kept) are decided: copied to `out` or replaced
  let next = 0; // ranges [0, next) are covered
  while (next < ranges.length) {
    const first = ranges[next]!;
    // Keep every base chunk that ends at or before the change; not the last of a file that
    // grows, whose end was the end of the file rather than a cut.
    const keepable = size > baseSize ? base.length - 1 : base.length;
    while (kept < keepable && starts[kept + 1]! <= first.offset) out.push(base[kept++]!);
    let coveredTo = 0;
    const cover = (through: number) => {
      while (next < ranges.length && ranges[next]!.offset < through) {
        coveredTo = Math.max(coveredTo, ranges[next]!.offset + ranges[next]!.length);
        next++;
      }
    };
    cover(first.offset + 1);
    const chunker = new Chunker();
    let cut = kept < base.length ? starts[kept]! : baseSize; // where the next new chunk starts
    let position = cut; // how far the new bytes have been read
    let resynced = false;
    while (!resynced && position < size) {
      // Up to the end of the changes met, then a chunk's worth at a time until back in step.
      const want = Math.min(READ_PIECE, Math.max(MAX_CHUNK_SIZE, coveredTo - position));
      const piece = await read(position, Math.min(want, size - position));
      position += piece.length;
      const chunks = chunker.push(piece);
      if (position === size) chunks.push(...chunker.finish());
      for (const chunk of chunks) {
        cut += chunk.length; // before the sink, which may hand the chunk to another thread (and leave it empty)
        await sink(out, zeroDigests.named(chunk));
        cover(cut);
        if (cut < coveredTo || cut >= baseSize) continue;
        const boundary = boundaryIndex(starts, cut);
        if (boundary >= 0) {
          // Back in step with the base: what the chunker buffered past here is the base's again.
          kept = boundary;
          resynced = true;
          break;
        }
        const stepped = zeroRunStep(cut);
        if (stepped) {
          for (const length of stepped.lengths) await sink(out, { data: Buffer.alloc(length), digest: zeroDigests.of(length) });
          kept = stepped.boundary;
          resynced = true;
          break;
        }
      }
    }
    if (!resynced) kept = base.length;
  }
  while (kept < base.length) out.push(base[kept++]!);
  return out;
}

/** The index of the chunk holding byte `offset` (< the file's size): the last i with starts[i] <= offset. */
function chunkIndexAt(starts: readonly number[], offset: number): number {
  let low = 0;
  let high = starts.length - 2;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (starts[middle]! <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}

/** The index i with starts[i] === offset, or -1. */
function boundaryIndex(starts: readonly number[], offset: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const at = starts[middle]!;
    if (at === offset) return middle;
    if (at < offset) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}
