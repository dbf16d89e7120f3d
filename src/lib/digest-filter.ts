/**
 * A Bloom filter of SHA-256 digests (hex): about 10 bits and 7 probes a digest, so that ~1% of
 * the digests never added answer true. Garbage collection marks live chunks in one: a false
 * positive keeps a garbage chunk until a later collection (each filter has its own salt, so
 * the same chunk is unlikely to be kept twice), and a digest added is never missed. Its memory
 * is ~1.2 bytes a digest: 20 MB for the 16 million chunks of a terabyte.
 *
 * A digest is uniform already, so the probes come from its own bits (double hashing over two
 * 48-bit slices), shifted by the salt; no hash is computed.
 */
import { randomInt } from 'node:crypto';

const BITS_PER_DIGEST = 10;
const PROBES = 7;
const SLICE = 2 ** 48;

export class DigestFilter {
  private readonly bits: Uint8Array;
  private readonly size: number;
  private readonly salt = [randomInt(2 ** 47), randomInt(2 ** 47)] as const;

  /** A filter sized for `expected` digests (more may be added, at a higher false-positive rate). */
  constructor(expected: number) {
    this.size = Math.max(1024, Math.ceil(expected * BITS_PER_DIGEST));
    this.bits = new Uint8Array(Math.ceil(this.size / 8));
  }

  add(digest: string): void {
    for (const bit of this.probes(digest)) this.bits[bit >>> 3]! |= 1 << (bit & 7);
  }

  /** False when `digest` was never added; true when it was (or, rarely, when it was not). */
  has(digest: string): boolean {
    for (const bit of this.probes(digest)) if ((this.bits[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
    return true;
  }

  private *probes(digest: string): Generator<number> {
    const first = (parseInt(digest.slice(0, 12), 16) + this.salt[0]) % SLICE;
    const slice = (parseInt(digest.slice(12, 24), 16) + this.salt[1]) % SLICE;
    // Odd, so that the probes of one digest differ (beyond 32 bits, so no `| 1`).
    const step = slice % 2 === 0 ? slice + 1 : slice;
    for (let i = 0; i < PROBES; i++) yield (first + i * step) % this.size;
  }
}
