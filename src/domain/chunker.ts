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

/**
 * The gear hash after 32 or more zero bytes, whatever it was before: (h << 1) + GEAR[0] maps
 * it to itself, and it matches neither mask, so a run of zeros never cuts once the hash has
 * reached it (a sparse disk image's zeros are skipped, not hashed byte by byte).
 */
const ZERO_FIXPOINT = -GEAR[0]! | 0;
const ZERO_BLOCK = new Uint8Array(4096);

/** The index of the first byte in data[from..limit) that is not zero, or limit. */
function zeroRunEnd(data: Uint8Array, from: number, limit: number): number {
  let i = from;
  while (i + ZERO_BLOCK.length <= limit && Buffer.compare(data.subarray(i, i + ZERO_BLOCK.length), ZERO_BLOCK) === 0) i += ZERO_BLOCK.length;
  while (i < limit && data[i] === 0) i++;
  return i;
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
  /** Gear hash of the open chunk's bytes scanned so far (those past MIN_CHUNK_SIZE). */
  private hash = 0;

  push(data: Uint8Array): Buffer[] {
    const chunks: Buffer[] = [];
    let start = 0; // where the open chunk's bytes begin in `data`
    while (start < data.length) {
      const cut = this.scan(data, start);
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
      this.hash = 0;
      start = cut;
    }
    return chunks;
  }

  /** Emits the last chunk (shorter than the minimum when the input ends early) and resets. */
  finish(): Buffer[] {
    if (this.pendingLength === 0) return [];
    const last = Buffer.from(this.pending.subarray(0, this.pendingLength));
    this.pendingLength = 0;
    this.hash = 0;
    return [last];
  }

  /**
   * Scans data[from..] as the continuation of the open chunk (pendingLength bytes so far) and
   * returns the index in `data` just past the cut, or -1 when data ends first. The hash state
   * is kept across calls, so how the input is split into pushes never changes the cut points.
   */
  private scan(data: Uint8Array, from: number): number {
    const chunkStart = from - this.pendingLength; // may be negative: virtual index of byte 0
    const end = data.length;
    let i = Math.max(from, chunkStart + MIN_CHUNK_SIZE);
    let h = this.hash;
    const hardEnd = Math.min(end, chunkStart + AVG_CHUNK_SIZE);
    for (; i < hardEnd; i++) {
      if (h === ZERO_FIXPOINT && data[i] === 0) {
        i = zeroRunEnd(data, i, hardEnd) - 1;
        continue;
      }
      h = ((h << 1) + (GEAR[data[i]!] as number)) | 0;
      if ((h & MASK_HARD) === 0) return i + 1;
    }
    const easyEnd = Math.min(end, chunkStart + MAX_CHUNK_SIZE);
    for (; i < easyEnd; i++) {
      if (h === ZERO_FIXPOINT && data[i] === 0) {
        i = zeroRunEnd(data, i, easyEnd) - 1;
        continue;
      }
      h = ((h << 1) + (GEAR[data[i]!] as number)) | 0;
      if ((h & MASK_EASY) === 0) return i + 1;
    }
    if (i === chunkStart + MAX_CHUNK_SIZE) return i;
    this.hash = h;
    return -1;
  }
}

/** Chunks a whole buffer; equals pushing it in any pieces and finishing. */
export function chunkBuffer(data: Uint8Array): Buffer[] {
  const chunker = new Chunker();
  return [...chunker.push(data), ...chunker.finish()];
}
