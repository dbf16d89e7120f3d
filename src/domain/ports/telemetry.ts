/**
 * What the domain reports for operators to count (forks, chunk writes, fsck runs), without
 * knowing how it is counted: src/http/metrics.ts turns these events into Prometheus metrics.
 * Calls are cheap and never throw; a report is made once what it reports is durable.
 */

/** The chunks of one committed write. */
export interface ChunksStored {
  /** Chunks written, new to the store. */
  created: number;
  /** Chunks the store already held (or that the same write put twice): nothing was written. */
  deduplicated: number;
  /** Bytes the created chunks occupy in the store (compressed where that helped). */
  storedBytes: number;
}

/** What one garbage collection freed (a dry run reports what it would have, and counts as a run). */
export interface Collected {
  dryRun: boolean;
  chunks: number;
  bytes: number;
  packs: number;
  commits: number;
  seconds: number;
}

/** What one fsck run found (src/domain/fsck.service.ts). */
export interface FsckResult {
  /** Things the metadata refers to that the store does not hold. */
  missing: number;
  /** Stored things that are not what the metadata says, or whose bytes fail their check. */
  corrupt: number;
}

export interface Telemetry {
  /** A fork was committed. */
  forked(): void;
  /** The chunks of one write became durable and visible. */
  chunksStored(chunks: ChunksStored): void;
  /** A garbage collection ended. */
  collected(report: Collected): void;
  /** An fsck run finished. */
  fsckFinished(result: FsckResult): void;
}

/** Reports nowhere: the default when nothing counts. */
export const noTelemetry: Telemetry = {
  forked: () => undefined,
  chunksStored: () => undefined,
  collected: () => undefined,
  fsckFinished: () => undefined,
};
