import { MAX_CHUNK_SIZE } from './chunker.js';
import { invalid, notFound, tooLarge, unprocessable } from './errors.js';
import { checkedManifest } from './manifest.js';
import type { Commit, Manifest, ManifestEntry } from './model.js';
import { assertTagName } from './names.js';
import { PutPipeline } from './put-pipeline.js';
import type { AccessPolicy } from './access-policy.js';
import type { Principal, UserPrincipal } from './principal.js';
import type { QuotaService } from './quota.service.js';
import type { RepositoryService } from './repository.service.js';
import type { PushResult, SnapshotService } from './snapshot.service.js';
import { readAhead } from '../lib/read-ahead.js';
import type { ChunkStore, ReachabilityStore } from '../store/types.js';

/**
 * Digests one `missing` or batch read call may name: ~670 KB of JSON, one round trip per 640
 * MiB.
 */
export const MAX_MISSING_QUERY = 10_000;
/** Chunks a batch read loads ahead of its consumer: hides read latency, holds ~1 MiB at most. */
const READ_AHEAD = 4;
/**
 * How long chunks a user sent count as present for that user without a commit referencing them,
 * so that a push cut off overnight resumes without resending them. The garbage collector must
 * keep an unreferenced chunk at least this long after its last upload (storage/README.md).
 */
export const UPLOAD_GRACE_MS = 24 * 60 * 60 * 1000;

export interface ChunkPut {
  digest: string;
  size: number;
  /** False when the chunk was already present for the caller (see TransferService). */
  created: boolean;
}

export interface PackPut {
  /** Records received. */
  stored: number;
  /** Distinct chunks among them that were not present for the caller. */
  created: number;
  /** Chunk bytes received (framing excluded). */
  bytes: number;
}

export interface CommitInput {
  tag: string;
  /** The commit the tag must still point at; null: the tag must not exist; absent: no check. */
  parent?: string | null;
  message?: string;
  entries: ManifestEntry[];
  /** The digest the client expects the entries to have (one read from a manifest); checked. */
  digest?: string;
}

/** `invalid` for an empty chunk (no chunker cuts one), `too_large` past MAX_CHUNK_SIZE. */
function assertChunkLength(length: number): void {
  if (length === 0) throw invalid('a chunk holds at least 1 byte');
  if (length > MAX_CHUNK_SIZE) throw tooLarge(`a chunk of ${length} bytes exceeds the limit of ${MAX_CHUNK_SIZE}`);
}

/**
 * Delta transfer: a client asks which chunks of a snapshot it must send, sends only those, and
 * commits a manifest naming them; a puller reads a commit's manifest and fetches only the chunks
 * it lacks.
 *
 * No dedup oracle: the chunk store is shared by every tenant, but a chunk counts as *present for
 * a caller* only when it is stored and either reachable from a repository the caller may read
 * (ReachabilityStore.reachableChunks) or sent by the caller within UPLOAD_GRACE_MS. Every answer
 * (`missing`, `created`, a commit's 422) is computed from that view alone, so guessing the digest
 * of another tenant's private chunk tells nothing: it is missing until its bytes are sent.
 */
export class TransferService {
  constructor(
    private readonly store: ReachabilityStore,
    private readonly chunks: ChunkStore,
    private readonly policy: AccessPolicy,
    private readonly repositories: RepositoryService,
    private readonly snapshots: SnapshotService,
    private readonly quotas: QuotaService,
    private readonly now: () => string,
  ) {}

  /** The distinct digests the caller must send before a commit may name them, in input order. */
  async missing(principal: Principal, owner: string, repoName: string, digests: readonly string[]): Promise<string[]> {
    if (digests.length > MAX_MISSING_QUERY) throw tooLarge(`at most ${MAX_MISSING_QUERY} digests per call, got ${digests.length}`);
    await this.repositories.getWritable(principal, owner, repoName);
    const present = await this.presentFor(this.policy.requireUser(principal), digests);
    return [...new Set(digests)].filter((d) => !present.has(d));
  }

  /**
   * Stores one chunk after checking `data` hashes to `digest` (`unprocessable` otherwise).
   * Idempotent; `created` is false when the chunk was already present for the caller.
   */
  async putChunk(principal: Principal, owner: string, repoName: string, digest: string, data: Buffer): Promise<ChunkPut> {
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const user = this.policy.requireUser(principal);
    assertChunkLength(data.length);
    await this.quotas.storageRoom(repository);
    const present = await this.presentFor(user, [digest]);
    const put = await this.chunks.put(data, digest);
    await this.store.recordUploads(user.userId, [digest]);
    return { digest: put.digest, size: put.size, created: !present.has(digest) };
  }

  /**
   * Stores a stream of chunk records (a pack), each checked against its digest, committed
   * together: when any record fails, none of the pack's new chunks becomes visible. Holds the
   * distinct digests only; the caller bounds the records of one pack.
   */
  async putPack(principal: Principal, owner: string, repoName: string, records: AsyncIterable<{ digest: string; data: Buffer }>): Promise<PackPut> {
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const user = this.policy.requireUser(principal);
    const writer = this.quotas.limitWriter(this.chunks.writer(), repository, await this.quotas.storageRoom(repository));
    const puts = new PutPipeline(writer);
    const digests = new Set<string>();
    let stored = 0;
    let bytes = 0;
    try {
      for await (const { digest, data } of records) {
        assertChunkLength(data.length);
        bytes += data.length; // read first: the pipeline takes `data` over
        stored += 1;
        digests.add(digest);
        await puts.put(data, digest);
      }
      await puts.drain();
      await writer.commit();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    const distinct = [...digests];
    // Read before the uploads are recorded: what the caller could not count as present before.
    const present = await this.presentFor(user, distinct);
    await this.store.recordUploads(user.userId, distinct);
    return { stored, created: distinct.filter((d) => !present.has(d)).length, bytes };
  }

  /** The bytes of a chunk that the repository (or one of its ancestors) references. */
  async getChunk(principal: Principal, owner: string, repoName: string, digest: string): Promise<Buffer> {
    await this.assertReadable(principal, owner, repoName, [digest]);
    return this.chunks.get(digest);
  }

  /**
   * The chunks named by `digests` (at most MAX_MISSING_QUERY, `too_large` beyond), in request
   * order, a duplicate served each time. Every digest is checked before the first byte is read
   * (`not_found` naming the first unreachable one), so a caller never receives part of an answer
   * that includes chunks it may not read. Chunks are read READ_AHEAD ahead of the consumer and
   * verified by the chunk store; a corrupt one fails the iteration where it stands.
   */
  async readChunks(principal: Principal, owner: string, repoName: string, digests: readonly string[]): Promise<AsyncIterable<{ digest: string; data: Buffer }>> {
    if (digests.length > MAX_MISSING_QUERY) throw tooLarge(`at most ${MAX_MISSING_QUERY} digests per call, got ${digests.length}`);
    await this.assertReadable(principal, owner, repoName, digests);
    return readAhead(digests, READ_AHEAD, async (digest) => ({ digest, data: await this.chunks.get(digest) }));
  }

  /**
   * Commits a manifest the client built: checked like a tar push's (checkedManifest), its digest
   * computed here (a client's is never trusted: `unprocessable` when `input.digest` differs
   * from it), every chunk present for the caller with the size it is stored with.
   * `unprocessable` with `details.missing` (the digests to send) when chunks are not present for
   * the caller; `conflict` when `parent` no longer holds.
   */
  async commitManifest(principal: Principal, owner: string, repoName: string, input: CommitInput): Promise<PushResult> {
    assertTagName(input.tag);
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const manifest = checkedManifest(input.entries);
    if (input.digest !== undefined && input.digest !== manifest.digest) {
      throw unprocessable(`the manifest's entries have digest ${manifest.digest}, not ${input.digest}`);
    }
    const sizes = new Map<string, number>();
    for (const entry of manifest.entries) {
      for (const chunk of entry.chunks) {
        const seen = sizes.get(chunk.digest);
        if (seen !== undefined && seen !== chunk.size) {
          throw unprocessable(`chunk ${chunk.digest} is listed with sizes ${seen} and ${chunk.size}`);
        }
        sizes.set(chunk.digest, chunk.size);
      }
    }
    const present = await this.presentFor(this.policy.requireUser(principal), [...sizes.keys()]);
    const missing = [...sizes.keys()].filter((d) => !present.has(d));
    if (missing.length > 0) {
      throw unprocessable(`${missing.length} chunk(s) of the manifest must be sent first`, { missing });
    }
    const stored = await this.chunks.statMany([...sizes.keys()]);
    for (const [digest, size] of sizes) {
      const storedSize = stored.get(digest)?.size;
      if (storedSize !== size) throw unprocessable(`chunk ${digest} is ${storedSize} bytes, not ${size}`);
    }
    return this.snapshots.commitSnapshot(principal, repository, input.tag, manifest, {
      message: input.message,
      expectedParent: input.parent,
    });
  }

  /** A commit reachable from the repository, with its manifest: what a pull plans from. */
  async getManifest(principal: Principal, owner: string, repoName: string, commitId: string): Promise<{ commit: Commit; manifest: Manifest }> {
    const commit = await this.snapshots.getCommit(principal, owner, repoName, commitId);
    return { commit, manifest: await this.snapshots.manifestOf(commit) };
  }

  /**
   * `not_found` naming the first of `digests` that the repository (or an ancestor) does not
   * reference: what makes a chunk readable through it, whoever else stored the same bytes.
   */
  private async assertReadable(principal: Principal, owner: string, repoName: string, digests: readonly string[]): Promise<void> {
    const repository = await this.repositories.get(principal, owner, repoName);
    const reachable = await this.store.reachableChunks({ repositoryId: repository.id }, [...new Set(digests)]);
    const unreachable = digests.find((d) => !reachable.has(d));
    if (unreachable !== undefined) throw notFound(`chunk ${unreachable} not found`);
  }

  /** The digests (of `digests`) present for the caller: stored, and reachable or sent in grace. */
  private async presentFor(user: UserPrincipal, digests: readonly string[]): Promise<Set<string>> {
    const unique = [...new Set(digests)];
    const absent = new Set(await this.chunks.missing(unique));
    const stored = unique.filter((d) => !absent.has(d));
    const present = await this.store.reachableChunks(await this.policy.viewerFilter(user), stored);
    const notBefore = new Date(Date.parse(this.now()) - UPLOAD_GRACE_MS).toISOString();
    for (const d of await this.store.uploadedChunks(user.userId, stored.filter((d) => !present.has(d)), notBefore)) present.add(d);
    return present;
  }
}
