/**
 * Storage accounting: what the whole store holds (for site administrators), and what one
 * repository holds and, for a fork, how much of it its source holds too (for anyone who may read
 * the repository).
 *
 * A repository's figures are defined over the distinct chunks of the distinct manifests its tags
 * point at now. Computing them reads every chunk reference of those manifests, so the cost of a
 * request a reader can send is bounded on every side:
 * - memory: distinct chunks are counted in a DistinctDigests (exact up to EXACT_DIGESTS, then a
 *   Bloom filter of at most FILTER_DIGESTS entries' size, answering `exact: false`); manifests are
 *   read a page of entries at a time (CollectionStore.manifestChunkDigests) and stored sizes asked
 *   STAT_BATCH digests at a time;
 * - time and repetition: an answer is kept by what it depends on (the digests of the manifests
 *   compared; their chunks and stored sizes never change), so asking again costs one query;
 *   concurrent askers of one key share one computation, at most `concurrency` computations run
 *   at once, at most `queue` wait, and beyond that the caller is told to retry (`unavailable`).
 */
import { AVG_CHUNK_SIZE } from './chunker.js';
import { unavailable } from './errors.js';
import type { AccessPolicy } from './access-policy.js';
import type { Repository } from './model.js';
import type { Principal } from './principal.js';
import type { RepositoryService } from './repository.service.js';
import { DistinctDigests } from '../lib/distinct-digests.js';
import { SharedResults } from '../lib/shared-results.js';
import { sha256 } from '../lib/sha256.js';
import { WorkGate } from '../lib/work-gate.js';
import type { AccountingStore, ChunkStore, CollectionStore, ManifestStore, RepositoryStore } from '../store/types.js';

/** Distinct chunks counted exactly per set (~100 bytes each: ~50 MB, the chunks of ~32 GB). */
const EXACT_DIGESTS = 500_000;
/** The most digests a Bloom filter past the exact bound is sized for: ~40 MB, ~2 TB of distinct chunks. */
const FILTER_DIGESTS = 32_000_000;
/** Digests per ChunkStore.statMany call. */
const STAT_BATCH = 4000;

export interface StatsSettings {
  /** Repository computations running at once, at most. */
  concurrency: number;
  /** Computations waiting for a turn, at most; beyond, `unavailable`. */
  queue: number;
  /** Answers kept (each a few numbers, by a key of 64 characters). */
  cached: number;
  /** What a caller turned away is told to wait before asking again. */
  retryAfterSeconds: number;
}

export const DEFAULT_STATS_SETTINGS: StatsSettings = { concurrency: 2, queue: 8, cached: 1000, retryAfterSeconds: 5 };

/** The whole store (GET /api/v1/admin/storage). */
export interface StorageReport {
  /** Live repositories. */
  repositories: number;
  commits: number;
  manifests: number;
  /** Stored chunks. */
  chunks: number;
  packs: number;
  /** For every live repository, the file bytes of the distinct manifests its tags point at, summed. */
  logicalBytes: number;
  /** Stored (compressed) bytes of every stored chunk. */
  storedBytes: number;
  /** Bytes of the pack files, deleted chunks' entries included. */
  packBytes: number;
  /** logicalBytes / storedBytes; null when nothing is stored. */
  dedupRatio: number | null;
}

/** What a fork holds in common with its source. */
export interface ForkShare {
  /** The source (forkedFromRepoId, else inheritsFromRepoId); null when it is gone or the caller may not read it. */
  source: Repository | null;
  /** Stored bytes of the fork's chunks that its source's tags list too; null when `source` is. */
  sharedBytes: number | null;
  /** Stored bytes of the fork's chunks its source's tags do not list; null when `source` is. */
  ownBytes: number | null;
}

/** One repository (GET /api/v1/repos/{owner}/{repo}/stats), over the distinct manifests its tags point at. */
export interface RepositoryStats {
  /** File bytes of those manifests, summed. */
  logicalBytes: number;
  /** Stored bytes of their distinct chunks. */
  storedBytes: number;
  /** logicalBytes / storedBytes; null when nothing is stored. */
  dedupRatio: number | null;
  /** Their distinct chunks. */
  chunks: number;
  /** Their file entries, summed (a file in two of them counts twice). */
  files: number;
  tags: number;
  /** False once the distinct chunks exceeded the exact bound: the chunk figures are estimates then. */
  exact: boolean;
  /** Present for a fork only. */
  fork?: ForkShare;
}

/** The figures of a set of manifests, compared with another's when given: what is kept by key. */
interface Counted {
  logicalBytes: number;
  storedBytes: number;
  chunks: number;
  files: number;
  exact: boolean;
  sharedBytes: number;
}

type StatsStore = Pick<AccountingStore, 'tagManifests' | 'countManifestFiles' | 'metadataTotals'> &
  Pick<CollectionStore, 'manifestChunkDigests'> &
  Pick<ManifestStore, 'getManifestSummary'> &
  Pick<RepositoryStore, 'getRepositoryById'>;

const ratio = (logical: number, stored: number) => (stored === 0 ? null : logical / stored);
const distinctSorted = (digests: readonly string[]) => [...new Set(digests)].sort();

export class StorageStatsService {
  private readonly results: SharedResults<Counted>;
  private readonly gate: WorkGate;

  constructor(
    private readonly store: StatsStore,
    private readonly chunks: Pick<ChunkStore, 'statMany' | 'totals'>,
    private readonly policy: AccessPolicy,
    private readonly repositories: RepositoryService,
    private readonly settings: StatsSettings = DEFAULT_STATS_SETTINGS,
  ) {
    this.results = new SharedResults(settings.cached);
    this.gate = new WorkGate(settings.concurrency, settings.queue);
  }

  /** Site administrators only (401 without a token, 403 without the `admin` scope). Two aggregate queries. */
  async storage(principal: Principal): Promise<StorageReport> {
    this.policy.requireScope(principal, 'admin');
    const [metadata, stored] = await Promise.all([this.store.metadataTotals(), this.chunks.totals()]);
    return {
      repositories: metadata.repositories,
      commits: metadata.commits,
      manifests: metadata.manifests,
      chunks: stored.chunks,
      packs: stored.packs,
      logicalBytes: metadata.logicalBytes,
      storedBytes: stored.storedBytes,
      packBytes: stored.packBytes,
      dedupRatio: ratio(metadata.logicalBytes, stored.storedBytes),
    };
  }

  /**
   * Anyone who may read the repository; `not_found` as for the repository itself otherwise.
   * `unavailable` (with a retry delay) when too many computations run and wait already.
   */
  async repository(principal: Principal, owner: string, name: string): Promise<RepositoryStats> {
    const repo = await this.repositories.get(principal, owner, name);
    const tagged = await this.store.tagManifests(repo.id);
    const sourceId = repo.forkedFromRepoId ?? repo.inheritsFromRepoId;
    let source: Repository | null = null;
    if (sourceId !== null) {
      const found = await this.store.getRepositoryById(sourceId);
      if (found && (await this.policy.canRead(principal, found))) source = found;
    }
    const manifests = distinctSorted(tagged);
    const sourceManifests = source && distinctSorted(await this.store.tagManifests(source.id));
    const key = sha256(JSON.stringify([manifests, sourceManifests]));
    const counted = await this.results.get(key, () => {
      const turn = this.gate.run(() => this.count(manifests, sourceManifests));
      if (!turn) throw unavailable('too many storage statistics are being computed; try again shortly', this.settings.retryAfterSeconds);
      return turn;
    });
    const stats: RepositoryStats = {
      logicalBytes: counted.logicalBytes,
      storedBytes: counted.storedBytes,
      dedupRatio: ratio(counted.logicalBytes, counted.storedBytes),
      chunks: counted.chunks,
      files: counted.files,
      tags: tagged.length,
      exact: counted.exact,
    };
    if (sourceId === null) return stats;
    const share = source ? { sharedBytes: counted.sharedBytes, ownBytes: counted.storedBytes - counted.sharedBytes } : { sharedBytes: null, ownBytes: null };
    return { ...stats, fork: { source, ...share } };
  }

  /** The figures of `manifests`, with the stored bytes of their chunks that `compared`'s list too (0 without). */
  private async count(manifests: readonly string[], compared: readonly string[] | null): Promise<Counted> {
    const logicalBytes = await this.logicalBytes(manifests);
    const theirs = compared && (await this.chunksOf(compared, await this.logicalBytes(compared)));
    const ours = new DistinctDigests(EXACT_DIGESTS, expectedChunks(logicalBytes));
    const counted: Counted = { logicalBytes, storedBytes: 0, chunks: 0, files: 0, exact: true, sharedBytes: 0 };
    let batch: string[] = [];
    const stat = async () => {
      for (const [digest, { storedSize }] of await this.chunks.statMany(batch)) {
        counted.storedBytes += storedSize;
        if (theirs?.has(digest)) counted.sharedBytes += storedSize;
      }
      batch = [];
    };
    for (const manifest of manifests) {
      counted.files += await this.store.countManifestFiles(manifest);
      for await (const page of this.store.manifestChunkDigests(manifest)) {
        for (const digest of page) {
          if (!ours.add(digest)) continue;
          counted.chunks++;
          batch.push(digest);
          if (batch.length >= STAT_BATCH) await stat();
        }
      }
    }
    await stat();
    counted.exact = ours.exact && (theirs?.exact ?? true);
    return counted;
  }

  /** The file bytes of `manifests`, summed from their stored summaries. */
  private async logicalBytes(manifests: readonly string[]): Promise<number> {
    let total = 0;
    for (const manifest of manifests) total += (await this.store.getManifestSummary(manifest))?.totalSize ?? 0;
    return total;
  }

  /** The distinct chunks `manifests` list. */
  private async chunksOf(manifests: readonly string[], logicalBytes: number): Promise<DistinctDigests> {
    const digests = new DistinctDigests(EXACT_DIGESTS, expectedChunks(logicalBytes));
    for (const manifest of manifests) {
      for await (const page of this.store.manifestChunkDigests(manifest)) for (const digest of page) digests.add(digest);
    }
    return digests;
  }
}

/**
 * What a Bloom filter past the exact bound is sized for: the chunks of `logicalBytes` at the
 * average chunk size, twice over for small files' short chunks, capped so that its memory is.
 */
const expectedChunks = (logicalBytes: number) => Math.min(FILTER_DIGESTS, Math.ceil((2 * logicalBytes) / AVG_CHUNK_SIZE));
