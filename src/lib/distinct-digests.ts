/**
 * Counts distinct SHA-256 digests (hex) exactly up to a bound, and within bounded memory beyond
 * it. Up to `limit` digests they are kept in a Set (~100 bytes each: 50 MB for 500,000, the
 * chunks of ~32 GB); past it, the Set gives way to a Bloom filter (DigestFilter, ~1.2 bytes a
 * digest) sized for `expected` digests, and the set is no longer exact: a digest never added
 * answers "seen" about 1% of the time (more when far more than `expected` are added), so counts
 * taken through add() run low by about that much, and has() answers true for that many strangers.
 */
import { DigestFilter } from './digest-filter.js';

export class DistinctDigests {
  private members: Set<string> | undefined = new Set();
  private filter: DigestFilter | undefined;

  /**
   * `limit`: the most digests held exactly; `expected`: what the filter that takes over is
   * sized for (its memory is ~1.2 bytes each, whatever is added).
   */
  constructor(
    private readonly limit: number,
    private readonly expected: number,
  ) {}

  /** True while every answer is exact: no more than `limit` distinct digests were added. */
  get exact(): boolean {
    return this.filter === undefined;
  }

  /** Adds `digest`; true when it was not in the set yet (see the class comment past the limit). */
  add(digest: string): boolean {
    if (this.members) {
      if (this.members.has(digest)) return false;
      if (this.members.size < this.limit) {
        this.members.add(digest);
        return true;
      }
      this.filter = new DigestFilter(Math.max(this.expected, 2 * this.limit));
      for (const member of this.members) this.filter.add(member);
      this.members = undefined;
    }
    if (this.filter!.has(digest)) return false;
    this.filter!.add(digest);
    return true;
  }

  /** Whether `digest` was added (past the limit, rarely true for one that was not). */
  has(digest: string): boolean {
    return this.members ? this.members.has(digest) : this.filter!.has(digest);
  }
}
