/**
 * The chunk index of the pack store: where each committed chunk lives (pack, offset, sizes) and
 * how many live chunks each pack holds. Batch calls take and answer many digests at once, so that
 * a commit of 70,000 chunks is a few round trips to a remote database, not 70,000.
 *
 * Implementations: a SQLite file beside local packs (the embedded default) and the shared SQL
 * database (PostgreSQL) when several servers share one bucket. Held to one contract suite.
 */
import type { Compression } from './pack-format.js';

export interface ChunkLocation {
  digest: string;
  pack: string;
  /** Offset of the chunk's entry header in its pack. */
  offset: number;
  storedSize: number;
  size: number;
  compression: Compression;
}

export interface IndexedPack {
  id: string;
  /** Bytes of the pack blob. */
  size: number;
  entries: readonly ChunkLocation[];
}

export interface ChunkIndex {
  /** The locations of those of `digests` that are indexed (absent ones are left out). */
  locate(digests: readonly string[]): Promise<Map<string, ChunkLocation>>;
  /**
   * Records durable packs and their chunks in one transaction. A chunk already indexed (another
   * writer committed it meanwhile) keeps its first location. Answers the ids of packs that ended
   * up with no live chunk (all duplicates), which the caller deletes again.
   */
  publish(packs: readonly IndexedPack[]): Promise<string[]>;
  /**
   * Removes a chunk from the index; answers its pack when that pack has no live chunk left (the
   * caller deletes the blob), null when it still has some, undefined when the chunk was absent.
   */
  remove(digest: string): Promise<string | null | undefined>;
  /** Every indexed pack id. */
  packIds(): Promise<Set<string>>;
  /** Indexed digests greater than `after`, in order, at most `limit` of them. */
  page(after: string, limit: number): Promise<string[]>;
  count(): Promise<number>;
  close(): Promise<void>;
}
