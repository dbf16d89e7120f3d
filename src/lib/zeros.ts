/**
 * Runs of zeros: most of a sparse disk image and of a guest's RAM. Told apart by a compare
 * (memcmp speed), and their chunks named from a table by length instead of hashed one by one.
 */
import type { EncodedChunk } from './chunk-codec.js';
import { sha256 } from './sha256.js';

/** What isZeros compares against, a piece at a time. */
const ZEROS = Buffer.alloc(256 * 1024);

/** Whether every byte of `bytes` is zero. */
export function isZeros(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.length; at += ZEROS.length) {
    const piece = bytes.subarray(at, Math.min(at + ZEROS.length, bytes.length));
    if (Buffer.compare(piece, ZEROS.subarray(0, piece.length)) !== 0) return false;
  }
  return true;
}

/**
 * The SHA-256 digests of runs of zeros, by length, each length hashed once. One table per job
 * (a push, a commit) rather than per process: the lengths a job meets are few (the chunker's
 * maximum and a handful of others), those of a long-lived process are not.
 */
export class ZeroDigests {
  private readonly digests = new Map<number, string>();

  /** The digest of `length` zero bytes. */
  of(length: number): string {
    let digest = this.digests.get(length);
    if (digest === undefined) this.digests.set(length, (digest = sha256(new Uint8Array(length))));
    return digest;
  }

  /** `chunk` with its digest when it is zeros (found, not hashed), else as it is: for ChunkWriter.put. */
  named(chunk: Buffer): Buffer | EncodedChunk {
    return isZeros(chunk) ? { data: chunk, digest: this.of(chunk.length) } : chunk;
  }
}
