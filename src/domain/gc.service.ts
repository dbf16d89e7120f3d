/**
 * Garbage collection: frees the chunks no live commit lists (see CollectionStore for what
 * lives), the commits nothing reaches any more, and the repositories deleted longer ago than
 * their retention.
 *
 * Mark, then sweep under a fence:
 * 1. Purge the repositories due (their tags go, so what only they held becomes garbage).
 * 2. Mark, with no lock held: every chunk the manifests of live commits list goes into a Bloom
 *    filter (src/lib/digest-filter.ts; memory ~1.2 bytes a chunk, whatever the store holds).
 * 3. Page through the stored chunks; a candidate is one not in the filter and stored before the
 *    grace (`storedAt`, its pack's time): a writer's chunks not yet referred to by its commit
 *    are younger than that, and so are the uploads a delta push sends before its commit.
 * 4. Sweep the candidates, at most SWEEP_BATCH at a time, each batch in one transaction that
 *    excludes every other (TransactionOptions.exclusive): it adds to the filter the manifests
 *    that became live since the mark (commits made, tags moved meanwhile), deletes the commits
 *    nothing reaches (in a transaction before the first batch, so that a crash never leaves a
 *    commit whose chunks are gone), drops the candidates some user uploaded within the grace,
 *    and deletes the rest from the chunk store. A writer verifies inside its own transaction
 *    that every chunk its commit lists is stored (SnapshotService), so that a commit either
 *    lands before a sweep (and the sweep sees it) or after (and sees what the sweep deleted,
 *    answering which chunks to send again): a chunk a commit refers to is never deleted.
 * 5. Rewrite the packs that are mostly garbage (ChunkStore.repack): readers find their chunks
 *    where they moved.
 *
 * One collection at a time per server; servers sharing a database serialize their sweeps on
 * the fence.
 */
import type { ChunkStore, MetadataStore, StoredChunk } from '../store/types.js';
import { DigestFilter } from '../lib/digest-filter.js';
import type { AccessPolicy } from './access-policy.js';
import { conflict } from './errors.js';
import type { Principal } from './principal.js';
import type { Telemetry } from './ports/telemetry.js';

/** Candidates deleted per exclusive transaction: bounds both its memory (~100 B each) and how long writers wait. */
const SWEEP_BATCH = 50_000;
/** A pack whose live chunks hold less than this part of it is rewritten without the rest. */
const REPACK_BELOW = 0.5;
/** Packs rewritten per collection (~64 MiB each at most): a collection's copying stays bounded. */
const REPACK_PACKS = 32;
/** Chunk entries read per page while looking for candidates. */
const ENTRY_PAGE = 2000;

export interface GcOptions {
  /** Report what would go; delete nothing. Deleted repositories are not purged either. */
  dryRun?: boolean;
  /** Purge every deleted repository now, whatever its retention. */
  purgeDeleted?: boolean;
  /** Overrides the grace (GcSettings.graceMs). */
  graceMs?: number;
}

export interface GcReport {
  dryRun: boolean;
  repositoriesPurged: number;
  /** Commits nothing reaches any more, and the manifests only they held. */
  commits: number;
  manifests: number;
  chunks: number;
  /** Stored (compressed) bytes of those chunks. */
  bytes: number;
  /** Pack files deleted (none in a dry run: a pack goes once its last chunk does). */
  packs: number;
  /** Upload records past the grace, deleted. */
  uploadsPruned: number;
  /** Pack writes a crashed server left unfinished, older than the grace, discarded (none in a dry run). */
  writesAbandoned: number;
  /** Packs mostly garbage, rewritten with their live chunks only (none in a dry run), and the bytes that freed. */
  repackedPacks: number;
  repackedBytes: number;
  seconds: number;
}

export interface GcSettings {
  /**
   * How recent a commit, an upload or a stored chunk protects itself: a push or VM commit in
   * flight is younger than this. At least the upload grace (UPLOAD_GRACE_MS) by default.
   */
  graceMs: number;
  /** How long a deleted repository stays restorable before a collection purges it. */
  deletedRetentionMs: number;
}

export class GcService {
  private running = false;

  constructor(
    private readonly store: MetadataStore,
    private readonly chunks: ChunkStore,
    private readonly policy: AccessPolicy,
    private readonly telemetry: Telemetry,
    private readonly settings: GcSettings,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Site administrators only; `conflict` while this server runs another collection. */
  async collect(principal: Principal, options: GcOptions = {}): Promise<GcReport> {
    return this.begin(principal, options)();
  }

  /**
   * Checks the caller and claims this server's collection at once (throwing as collect does),
   * and answers the collection to run: a job starts it after recording itself.
   */
  begin(principal: Principal, options: GcOptions = {}): () => Promise<GcReport> {
    this.policy.requireScope(principal, 'admin');
    if (this.running) throw conflict('a garbage collection is running on this server already');
    this.running = true;
    return async () => {
      try {
        const report = await this.run(options);
        this.telemetry.collected(report);
        return report;
      } finally {
        this.running = false;
      }
    };
  }

  private async run({ dryRun = false, purgeDeleted = false, graceMs = this.settings.graceMs }: GcOptions): Promise<GcReport> {
    const started = this.clock();
    const since = new Date(started - graceMs).toISOString();
    const repositoriesPurged = dryRun
      ? 0
      : await this.store.purgeRepositories(purgeDeleted ? null : new Date(started - this.settings.deletedRetentionMs).toISOString());

    const marked = new Set<string>();
    const filter = new DigestFilter(await this.chunks.count());
    await this.mark(this.store, since, marked, filter);

    // The commits nothing reaches go first, in a transaction of their own: the chunks only they
    // held go in later ones, so a crash at any point leaves no commit whose chunks are gone.
    const unreachable = dryRun
      ? await this.store.unreachable(since, { remove: false })
      : await this.store.transaction((tx) => tx.unreachable(since, { remove: true }), { exclusive: true });
    const report = { dryRun, repositoriesPurged, ...unreachable, chunks: 0, bytes: 0, packs: 0, uploadsPruned: 0, writesAbandoned: 0, repackedPacks: 0, repackedBytes: 0, seconds: 0 };
    let after = '';
    for (let exhausted = false; !exhausted; ) {
      const candidates: StoredChunk[] = [];
      while (!exhausted && candidates.length < SWEEP_BATCH) {
        const page = await this.chunks.entries(after, ENTRY_PAGE);
        exhausted = page.length < ENTRY_PAGE;
        after = page.at(-1)?.digest ?? after;
        for (const chunk of page) if (chunk.storedAt < started - graceMs && !filter.has(chunk.digest)) candidates.push(chunk);
      }
      const swept = await this.store.transaction(
        async (tx) => {
          await this.mark(tx, since, marked, filter);
          const unmarked = candidates.filter((c) => !filter.has(c.digest));
          const uploaded = await tx.uploadedSince(unmarked.map((c) => c.digest), since);
          const garbage = unmarked.filter((c) => !uploaded.has(c.digest));
          if (dryRun) return { chunks: garbage.length, bytes: garbage.reduce((n, c) => n + c.storedSize, 0), packs: 0 };
          const digests = garbage.map((c) => c.digest);
          const removal = await this.chunks.deleteMany(digests);
          await tx.forgetChunks(digests);
          return removal;
        },
        { exclusive: true },
      );
      report.chunks += swept.chunks;
      report.bytes += swept.bytes;
      report.packs += swept.packs;
    }
    if (!dryRun) {
      report.uploadsPruned = await this.store.pruneUploads(since);
      report.writesAbandoned = await this.chunks.abandonWrites(new Date(started - graceMs));
      const repacked = await this.chunks.repack(REPACK_BELOW, REPACK_PACKS);
      report.repackedPacks = repacked.packs;
      report.repackedBytes = repacked.bytes;
    }
    report.seconds = (this.clock() - started) / 1000;
    return report;
  }

  /** Adds to `filter` the chunks of the live manifests not in `marked` yet, and marks them. */
  private async mark(store: MetadataStore, since: string, marked: Set<string>, filter: DigestFilter): Promise<void> {
    for (const manifest of await store.liveManifests(since)) {
      if (marked.has(manifest)) continue;
      marked.add(manifest);
      for await (const digests of store.manifestChunkDigests(manifest)) for (const digest of digests) filter.add(digest);
    }
  }
}
