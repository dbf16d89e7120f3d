/**
 * Content-defined chunking (FastCDC with normalized chunking, Xia et al. 2016/2020).
 *
 * Cut points depend only on the bytes, so an edit moves the boundaries near it and nowhere else:
 * two versions of a VM image or dataset share every chunk away from the edit. The parameters and
 * the gear table are part of the on-disk format (storage/README.md): every client and server
 * must cut identically forever, so changing any of them is a format version change.
 */
import { createHash } from 'node:crypto';

/**
 * 16 KiB: no chunk is shorter, and the first 16 KiB of a chunk are skipped without hashing, which
 * is where most of FastCDC's speed comes from.
 */
export const MIN_CHUNK_SIZE = 16 * 1024;
/**
 * 64 KiB: a manifest holds ~16K chunk refs per GiB, while a small edit re-stores only the one or
 * two chunks around it (~64-128 KiB).
 */
export const AVG_CHUNK_SIZE = 64 * 1024;
/** 256 KiB: bounds the chunker's buffer, a chunk's memory everywhere else, and the worst case. */
export const MAX_CHUNK_SIZE = 256 * 1024;

/**
 * Normalized chunking: below the average size a cut needs 18 zero bits (harder, 2 bits more than
 * log2(avg)), above it 14 (easier, 2 bits fewer), which pulls chunk sizes towards the average.
 * The masks take the high bits because the high bits of the gear hash depend on the most bytes
 * (bit k depends on the last k+1 bytes).
 */
const MASK_HARD = 0xffffc000 | 0; // top 18 bits
const MASK_EASY = 0xfffc0000 | 0; // top 14 bits

/**
 * GEAR[i] = the first 4 bytes, big-endian, of SHA-256 of the single byte i. Deterministic and
 * documented, so any implementation can rebuild it.
 */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(Uint8Array.of(i)).digest().readInt32BE(0);
  }
  return table;
})();

/** The chunking parameters, as cutScanner takes them. */
export interface CutParameters {
  min: number;
  avg: number;
  max: number;
  maskHard: number;
  maskEasy: number;
}

/** The format's parameters (above). */
export const CUT_PARAMETERS: Readonly<CutParameters> = Object.freeze({
  min: MIN_CHUNK_SIZE,
  avg: AVG_CHUNK_SIZE,
  max: MAX_CHUNK_SIZE,
  maskHard: MASK_HARD,
  maskEasy: MASK_EASY,
});

/** The gear hash of an open chunk's bytes scanned so far (those past the minimum), carried between scans. */
export interface ScanState {
  hash: number;
}

/**
 * Scans data[from..] as the continuation of a chunk that began at index `chunkStart` of `data`
 * (negative when its first bytes came in an earlier piece) with `state` as left by the scan of
 * those bytes, and returns the index in `data` just past the cut, or -1 when data ends first
 * (then `state` holds the hash so far, so how the input is split never changes a cut). After a
 * cut the caller starts the next chunk with a hash of 0.
 */
export type CutScan = (data: Uint8Array, from: number, chunkStart: number, state: ScanState) => number;

/**
 * The FastCDC scan over `gear` and `p`: the one implementation of the cut points, used by Chunker
 * here and, from its source text (Function.prototype.toString), by the chunk codec pool's
 * worker threads (src/lib/chunk-codec-pool.ts), whose program is eval'd source so that it runs
 * alike from dist/ and from the TypeScript sources under test. So this function must stay
 * self-contained: it may use its arguments and JavaScript's and Node's globals, nothing of this
 * module, and no named inner function (a transpiler may wrap those in helpers of its own).
 *
 * Runs of zeros: after 32 or more zero bytes the hash is -gear[0] whatever it was before
 * ((h << 1) + gear[0] maps it to itself) and matches neither mask, so a run of zeros never cuts
 * once the hash has reached it: a sparse disk image's zeros are compared 4 KiB at a time, not
 * hashed byte by byte.
 */
export function cutScanner(gear: Int32Array, p: CutParameters): CutScan {
  const zeroFixpoint = -gear[0]! | 0;
  const zeroBlock = new Uint8Array(4096);
  return (data, from, chunkStart, state) => {
    const end = data.length;
    let i = Math.max(from, chunkStart + p.min);
    let h = state.hash;
    // Two phases: the hard mask up to the average size, then the easy one up to the maximum.
    for (let phase = 0; phase < 2; phase++) {
      const mask = phase === 0 ? p.maskHard : p.maskEasy;
      const limit = Math.min(end, chunkStart + (phase === 0 ? p.avg : p.max));
      for (; i < limit; i++) {
        if (h === zeroFixpoint && data[i] === 0) {
          let zeros = i;
          while (zeros + zeroBlock.length <= limit && Buffer.compare(data.subarray(zeros, zeros + zeroBlock.length), zeroBlock) === 0) zeros += zeroBlock.length;
          while (zeros < limit && data[zeros] === 0) zeros++;
          i = zeros - 1;
          continue;
        }
        h = ((h << 1) + gear[data[i]!]!) | 0;
        if ((h & mask) === 0) return i + 1;
      }
    }
    if (i === chunkStart + p.max) return i;
    state.hash = h;
    return -1;
  };
}

/** The scan of the format's parameters, on this thread. */
export const scanForCut: CutScan = cutScanner(GEAR, CUT_PARAMETERS);

/**
 * The ends of the chunks of `data` were a chunk to begin at its first byte, the end of `data`
 * included when `last` (the stream ends there); `state` is left as the scan of the bytes after
 * the last end left it. Self-contained as cutScanner is, and for the same reason.
 */
export function cutPoints(scan: CutScan, data: Uint8Array, last: boolean, state: ScanState): number[] {
  const ends: number[] = [];
  for (let start = 0; start < data.length; ) {
    const end = scan(data, start, start, state);
    if (end < 0) {
      if (last) ends.push(data.length);
      break;
    }
    ends.push(end);
    state.hash = 0;
    start = end;
  }
  return ends;
}

/**
 * Streaming chunker: push() bytes as they arrive, then finish(). Returned chunks are fresh
 * buffers owned by the caller (never views of its input or of the internal buffer), and at most
 * MAX_CHUNK_SIZE bytes stay buffered between calls.
 */
export class Chunker {
  /** Bytes of the current, still open chunk. */
  private readonly pending = Buffer.allocUnsafe(MAX_CHUNK_SIZE);
  private pendingLength = 0;
  private readonly state: ScanState = { hash: 0 };

  push(data: Uint8Array): Buffer[] {
    const chunks: Buffer[] = [];
    let start = 0; // where the open chunk's bytes begin in `data`
    while (start < data.length) {
      const cut = scanForCut(data, start, start - this.pendingLength, this.state);
      if (cut < 0) {
        this.pending.set(data.subarray(start), this.pendingLength);
        this.pendingLength += data.length - start;
        break;
      }
      const chunk = Buffer.allocUnsafe(this.pendingLength + cut - start);
      this.pending.copy(chunk, 0, 0, this.pendingLength);
      chunk.set(data.subarray(start, cut), this.pendingLength);
      chunks.push(chunk);
      this.pendingLength = 0;
      this.state.hash = 0;
      start = cut;
    }
    return chunks;
  }

  /** Emits the last chunk (shorter than the minimum when the input ends early) and resets. */
  finish(): Buffer[] {
    if (this.pendingLength === 0) return [];
    const last = Buffer.from(this.pending.subarray(0, this.pendingLength));
    this.pendingLength = 0;
    this.state.hash = 0;
    return [last];
  }
}

/** Chunks a whole buffer; equals pushing it in any pieces and finishing. */
export function chunkBuffer(data: Uint8Array): Buffer[] {
  const chunker = new Chunker();
  return [...chunker.push(data), ...chunker.finish()];
}
