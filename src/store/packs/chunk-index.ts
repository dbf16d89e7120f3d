/**
 * The chunk index of the pack store: where each committed chunk lives (pack, offset, sizes) and
 * how many live chunks each pack holds. Batch calls take and answer many digests at once, so that
 * a commit of 70,000 chunks is a few round trips to a remote database, not 70,000.
 *
 * Implementations: a SQLite file beside local packs (the embedded default) and the shared SQL
 * database (PostgreSQL) when several servers share one bucket. Held to one contract suite.
 */
import type { ChunkTotals } from '../types.js';
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
  /** When the pack was published, in ms since the epoch: its chunks are that old at least. */
  createdAt: number;
  entries: readonly ChunkLocation[];
}

/** An indexed chunk as garbage collection sees it. */
export interface IndexedChunk {
  digest: string;
  storedSize: number;
  /** The createdAt of its pack (0 for packs published before packs had one). */
  packCreatedAt: number;
}

/** A pack whose live chunks hold little of it (sparsePacks). */
export interface SparsePack {
  id: string;
  /** Bytes of the pack blob. */
  size: number;
  /** Bytes its live chunks take in it, entry headers and the pack header included: what a rewrite keeps. */
  liveBytes: number;
}

/** What removeMany() took out of the index. */
export interface Removal {
  /** Chunks that were indexed and no longer are. */
  chunks: number;
  /** Their stored bytes (pack entry headers left out). */
  storedBytes: number;
  /** Packs left with no live chunk, gone from the index: the caller deletes their blobs. */
  emptiedPacks: string[];
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
   * Removes chunks from the index in one transaction (absent ones are skipped), and the packs
   * left with no live chunk, which it names for the caller to delete their blobs.
   */
  removeMany(digests: readonly string[]): Promise<Removal>;
  /**
   * Packs whose live bytes (SparsePack.liveBytes) are less than `maxLiveFraction` of their size,
   * the emptiest first, at most `limit`: what repacking rewrites.
   */
  sparsePacks(maxLiveFraction: number, limit: number): Promise<SparsePack[]>;
  /** The live chunks of pack `id`, by offset. */
  packEntries(id: string): Promise<ChunkLocation[]>;
  /**
   * Moves the chunks of pack `from` that `to` holds (its entries, at their new offsets) to `to`,
   * in one transaction, recording `to` (a durable blob); a chunk no longer in `from` (removed
   * meanwhile) is not moved. Answers how many moved, and whether `from` was left with no live
   * chunk (then gone from the index: the caller deletes its blob; likewise `to`'s when none moved).
   */
  relocate(from: string, to: IndexedPack): Promise<{ moved: number; emptied: boolean }>;
  /** Every indexed pack id. */
  packIds(): Promise<Set<string>>;
  /** Indexed digests greater than `after`, in order, at most `limit` of them. */
  page(after: string, limit: number): Promise<string[]>;
  /** page() with what garbage collection weighs: each chunk's stored size and its pack's age. */
  entries(after: string, limit: number): Promise<IndexedChunk[]>;
  count(): Promise<number>;
  /** Indexed chunks and their stored bytes, and indexed packs and their sizes: one aggregate query. */
  totals(): Promise<ChunkTotals>;
  close(): Promise<void>;
}
