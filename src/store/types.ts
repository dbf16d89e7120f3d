/**
 * Storage contracts. The domain talks to storage only through these interfaces; implementations
 * live in src/store/sql (metadata, through Kysely, on SQLite or PostgreSQL) and src/store/packs
 * (chunks, in packs over a blob backend of src/store/blobs). Every implementation MUST pass the
 * shared suites in test/contract/.
 *
 * Errors: implementations throw DomainError (src/domain/errors.ts) and never a driver error:
 * a UNIQUE violation becomes `conflict`, ENOSPC becomes `insufficient_storage`, a chunk whose
 * bytes no longer hash to its digest becomes `corrupt`.
 */
import type { Readable } from 'node:stream';
import type { ChunkCodec, EncodedChunk } from '../lib/chunk-codec.js';
import type {
  AdminJob,
  ChunkRef,
  Commit,
  EntryHead,
  Manifest,
  ManifestSummary,
  Namespace,
  NamespaceQuota,
  Page,
  PageOf,
  QuotaLimits,
  Repository,
  Role,
  StoredEntry,
  Tag,
  Visibility,
  Vm,
  VmState,
} from '../domain/model.js';

// ---------------------------------------------------------------------------------------------
// Chunks

export interface ChunkStat {
  digest: string;
  /** Uncompressed length. */
  size: number;
  /** Bytes the chunk occupies on disk (compressed, or raw when zstd did not shrink it). */
  storedSize: number;
  compression: 'zstd' | 'none';
}

export interface PutResult {
  digest: string;
  size: number;
  /** False when the store already held the chunk: nothing was written. */
  created: boolean;
  /** Bytes written to disk for this chunk (0 when it was already there). */
  storedSize: number;
}

/** A stored chunk whose bytes fail their check (ChunkStore.verify). */
export interface ChunkDamage {
  digest: string;
  /** The pack that holds the chunk, for a store that keeps chunks in packs. */
  pack?: string;
  /** What is wrong, e.g. "its bytes do not hash to its digest". */
  reason: string;
}

export interface PutOptions {
  /**
   * The caller gives `data` up: it neither reads nor changes it once put() is called, so the
   * store may hand it to another thread (leaving it empty) instead of copying it there.
   */
  transfer?: boolean;
}

/**
 * Collects chunks for one logical write (a push). Chunks put through a writer are durable and
 * visible to readers only after commit() resolves; abort() (or a crash) discards them, never
 * leaving a half-written chunk readable. A writer is used by one caller at a time, which may keep
 * several put()s in flight (a store may then look their digests up in one index call) and calls
 * commit() or abort() once they have settled.
 */
export interface ChunkWriter {
  /**
   * Stores `chunk` unless a chunk with the same digest is already stored or already put through
   * this writer. `digest`, when given, MUST equal the SHA-256 of the bytes; the store checks it
   * and throws `unprocessable` on a mismatch. Several puts in flight may settle in any order.
   *
   * `chunk` is the bytes, or an EncodedChunk that this store's `codec` made (ChunkStore.codec):
   * the store takes its digest and its zstd block as they are, without hashing or compressing
   * again (they never come from a client), and does what the codec was not asked to do.
   */
  put(chunk: Buffer | EncodedChunk, digest?: string, options?: PutOptions): Promise<PutResult>;
  /** Makes every chunk put so far durable (fsynced) and visible. Idempotent. */
  commit(): Promise<void>;
  /** Discards uncommitted chunks. Safe to call after commit() (then it does nothing). */
  abort(): Promise<void>;
}

/** A stored chunk as garbage collection weighs it. */
export interface StoredChunk {
  digest: string;
  storedSize: number;
  /**
   * When its pack was written (ms since the epoch; 0 for packs older than that record): a chunk
   * is at least that old, so a writer that has not yet committed what refers to it is younger.
   */
  storedAt: number;
}

/** What ChunkStore.repack() did. */
export interface Repacked {
  /** Packs rewritten (and deleted). */
  packs: number;
  /** Bytes of pack files freed: the old packs' size less the new ones'. */
  bytes: number;
}

/** What ChunkStore.deleteMany() freed. */
export interface ChunkRemoval {
  chunks: number;
  /** Stored (compressed) bytes of the chunks removed. */
  bytes: number;
  /** Pack files deleted because no live chunk was left in them. */
  packs: number;
}

/** What a chunk store holds, summed (ChunkStore.totals). */
export interface ChunkTotals {
  /** Chunks stored. */
  chunks: number;
  /** Their stored (compressed) bytes. */
  storedBytes: number;
  /** Pack files holding at least one of them. */
  packs: number;
  /** Bytes of those pack files, deleted chunks' entries included: storedBytes is what repacking would leave. */
  packBytes: number;
}

export interface ChunkStore {
  /**
   * Hashes and compresses as this store's writers do, on the threads they use (and cuts streams
   * into chunks there: ChunkCodec.cut). A caller that encodes its chunks with it puts them as
   * EncodedChunks (ChunkWriter.put), sparing the store a second trip to those threads. Owned by
   * the store: closed with it.
   */
  readonly codec: ChunkCodec;
  /** True when the chunk is stored and committed. */
  has(digest: string): Promise<boolean>;
  /** The subset of `digests` that is not stored, in input order, without duplicates. */
  missing(digests: readonly string[]): Promise<string[]>;
  /** Starts a batch of writes; see ChunkWriter. */
  writer(): ChunkWriter;
  /** put() through a writer of one chunk, committed before it resolves. */
  put(data: Buffer, digest?: string): Promise<PutResult>;
  /**
   * The uncompressed bytes of a chunk, verified against its digest. Throws `not_found` when the
   * chunk is not stored and `corrupt` when the stored bytes do not match the digest.
   */
  get(digest: string): Promise<Buffer>;
  /**
   * Streams the concatenated bytes of `chunks` in order, verifying each, reading ahead a few
   * chunks at most (memory stays bounded whatever the total). `skip` bytes of the first chunk
   * are dropped and the stream ends after `length` bytes when given (HTTP Range support).
   */
  stream(chunks: Iterable<string>, options?: { skip?: number; length?: number }): Readable;
  /**
   * Reads back each of `digests` that is stored and checks it as get() does, without answering
   * its bytes (what fsck's read_data does): answers the damaged ones, in input order, once each.
   * Digests not stored are left out (missing() names those). Reads a few chunks at a time, so
   * memory stays bounded whatever the number asked. Rejects only when the store cannot be read
   * at all (a backend that does not answer), never for a damaged chunk.
   */
  verify(digests: readonly string[]): Promise<ChunkDamage[]>;
  /** Size and storage facts of a chunk, or undefined when it is not stored. */
  stat(digest: string): Promise<ChunkStat | undefined>;
  /**
   * stat() of many chunks in a few index calls (a commit's 70,000 chunks are not 70,000 round
   * trips): the facts of each of `digests` that is stored, keyed by digest; absent ones are left out.
   */
  statMany(digests: readonly string[]): Promise<Map<string, ChunkStat>>;
  /** Removes a chunk; true when it was there. Space is reclaimed when its pack holds no live chunk. */
  delete(digest: string): Promise<boolean>;
  /** delete() of many chunks at once (a few index calls); absent ones are skipped. */
  deleteMany(digests: readonly string[]): Promise<ChunkRemoval>;
  /**
   * Rewrites packs whose live chunks hold less than `maxLiveFraction` of them into new packs of
   * their live chunks only, at most `limit` packs, and deletes the old ones: the space deleted
   * chunks left in packs. Reads going on meanwhile find the chunks where they moved.
   */
  repack(maxLiveFraction: number, limit: number): Promise<Repacked>;
  /**
   * Discards pack writes started before `startedBefore` and never committed (a crashed server's
   * temp files or multipart uploads); answers how many. Writes under way are younger.
   */
  abandonWrites(startedBefore: Date): Promise<number>;
  /**
   * Stored chunks whose digests sort after `after`, in digest order, at most `limit`, each with
   * its stored size and when it was stored: what garbage collection pages through.
   */
  entries(after: string, limit: number): Promise<StoredChunk[]>;
  /** Every stored digest, in no particular order. */
  list(): AsyncIterable<string>;
  /** How many chunks are stored. */
  count(): Promise<number>;
  /**
   * Counts and bytes of what is stored, in one aggregate query of the index: its cost grows with
   * the index's rows (a scan in the database), its memory does not.
   */
  totals(): Promise<ChunkTotals>;
  /**
   * Resolves when the store answers a cheap lookup (readiness probes call it often): its cost
   * does not grow with what is stored. Rejects when the store cannot answer, e.g. once closed.
   */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Metadata

export interface NewRepository {
  namespaceId: number;
  name: string;
  /** Defaults to `name`. */
  displayName?: string;
  visibility: Visibility;
  description: string;
  defaultTag?: string | null;
  /**
   * The source of a fork made by the fork operation, which the new repository inherits the data
   * of (it becomes both `forkedFromRepoId` and `inheritsFromRepoId`).
   */
  forkedFromRepoId?: number | null;
  forkedFromCommitId?: string | null;
}

/** The name fields of a repository that must each be unique among the live ones of a namespace. */
export type RepositoryNameField = 'name' | 'displayName';

export interface RepositoryPatch {
  description?: string;
  visibility?: Visibility;
  archived?: boolean;
  defaultTag?: string | null;
  name?: string;
  displayName?: string;
}

/**
 * Which rows a viewer may see: those whose visibility is listed, plus every row owned by one of
 * `namespaceIds` (the viewer's own namespace and organizations). `all` sees everything.
 */
export type ViewerFilter = 'all' | { visibilities: readonly Visibility[]; namespaceIds: readonly number[] };

/**
 * Where chunk reachability is looked up from: every live repository a viewer may see (what a
 * push may deduplicate against), or one repository (what a pull through it may read).
 */
export type ChunkReach = ViewerFilter | { repositoryId: number };

export type ForkOrder = 'id' | 'name' | 'path' | 'created_at' | 'updated_at' | 'star_count' | 'last_activity_at';

export interface ForkQuery extends Page {
  viewer: ViewerFilter;
  archived?: boolean;
  visibility?: Visibility;
  /** Case-insensitive substring of the name or the namespace's name. */
  search?: string;
  /** Only forks owned by these namespaces (GitLab's `owned` and `membership`). */
  namespaceIds?: readonly number[];
  updatedAfter?: string;
  updatedBefore?: string;
  /** Default `created_at`; `star_count` sorts like `created_at` (there are no stars yet). */
  orderBy?: ForkOrder;
  /** Default `desc`. Ties break on id in the same direction. */
  sort?: 'asc' | 'desc';
}

/** A tag pointing at a commit made in another repository than the tag's own (Vers tags any readable commit). */
export interface ForeignTag {
  tagName: string;
  /** The repository the commit was made in, live or deleted. */
  sourceRepositoryId: number;
}

export interface CommitPatch {
  isPublic?: boolean;
  title?: string | null;
  description?: string;
}

/** An HTTP answer kept for an idempotency key, replayed byte for byte to a retry. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export type IdempotencyReservation =
  | { state: 'new' }
  | { state: 'in_progress' }
  /** `bodyDigest`: what the request that completed the claim sent, to compare a retry with. */
  | { state: 'done'; bodyDigest: string; response: StoredResponse };

export interface TagLogEntry {
  tagName: string;
  /** Null when the tag was created. */
  oldCommitId: string | null;
  /** Null when the tag was deleted. */
  newCommitId: string | null;
  actor: string;
  at: string;
}

/** Users, organizations and memberships. */
export interface NamespaceStore {
  /** Returns the user named `login`, creating it on first use. Idempotent. */
  ensureUser(login: string): Promise<Namespace>;
  /** Creates an organization; `conflict` when any namespace has that name. */
  createOrg(name: string): Promise<Namespace>;
  getNamespace(name: string): Promise<Namespace | undefined>;
  getNamespaceById(id: number): Promise<Namespace | undefined>;
  /** Sets (inserting or replacing) a user's role in an organization. */
  setRole(orgId: number, userId: number, role: Role): Promise<void>;
  /** The user's role in the organization, or undefined when the user is not a member. */
  getRole(orgId: number, userId: number): Promise<Role | undefined>;
  /** The organizations a user belongs to, by name. */
  listMemberships(userId: number): Promise<{ org: Namespace; role: Role }[]>;
  /** The members of an organization, by login. */
  listMembers(orgId: number): Promise<{ user: Namespace; role: Role }[]>;
}

/** Repositories, their names and their fork network. Reads never return soft-deleted rows. */
export interface RepositoryStore {
  /**
   * `conflict` when the namespace already has a live repository of that name (ignoring case) or
   * that display name (exactly).
   */
  createRepository(repo: NewRepository): Promise<Repository>;
  getRepository(namespace: string, name: string): Promise<Repository | undefined>;
  getRepositoryById(id: number): Promise<Repository | undefined>;
  /**
   * A repository by id, live or soft-deleted, with when it was deleted (null while live): for
   * what outlives a repository, its commits and the data its forks inherit.
   */
  getRepositoryRecord(id: number): Promise<{ repository: Repository; deletedAt: string | null } | undefined>;
  /**
   * Which of `names` a live repository of the namespace other than `exceptId` already holds
   * (`name` ignoring case, `displayName` exactly), in the order name, displayName. Read in the
   * caller's transaction, it tells a writer which fields clash before the unique indexes would.
   */
  takenNames(namespaceId: number, names: { name?: string; displayName?: string }, exceptId?: number): Promise<RepositoryNameField[]>;
  /**
   * Live repositories of a namespace, by name; only those of the given visibilities when
   * `visibilities` is set (so that paging and totals count only what the caller may see).
   */
  listRepositories(
    namespaceId: number,
    page: Page,
    visibilities?: readonly Visibility[],
  ): Promise<PageOf<Repository>>;
  /** `conflict` on a rename onto a taken name or display name; `not_found` when the repository is gone. */
  updateRepository(id: number, patch: RepositoryPatch): Promise<Repository>;
  /**
   * Soft delete, with its tags (each deletion logged by `actor`): the row stays (its commits may
   * be parents of forks) and is never read again as a repository, until restored or purged.
   */
  deleteRepository(id: number, actor: string): Promise<void>;
  /** The repository of that name in the namespace deleted last and not purged yet, if any. */
  findRestorableRepository(namespaceId: number, name: string): Promise<number | undefined>;
  /**
   * Undoes deleteRepository for a repository not purged yet: live again, with the tags its
   * deletion removed (except those whose commit is gone). not_found when it is not deleted or
   * was purged; conflict when a live repository holds its name now.
   */
  restoreRepository(id: number, actor: string): Promise<Repository>;
  /**
   * Live repositories of any namespace that `viewer` may see, newest first (catalogues); with
   * `search`, only those whose name or namespace's name contains it, ignoring case.
   */
  listAllRepositories(viewer: ViewerFilter, page: Page, search?: string): Promise<PageOf<Repository>>;
  /** Live direct forks of a repository, filtered, ordered and paged as `query` says. */
  listForks(repositoryId: number, query: ForkQuery): Promise<PageOf<Repository>>;
  /** How many live direct forks of a repository `viewer` may see. */
  countForks(repositoryId: number, viewer: ViewerFilter): Promise<number>;
  /**
   * Sets (or with null, removes) the fork relationship clients see (`forkedFromRepoId`) after
   * the fact. It changes neither `inheritsFromRepoId` nor `forkedFromCommitId`: a link grants
   * no data, and an unlinked fork keeps the data it was made with. `not_found` when either
   * repository is not live.
   */
  setForkParent(repositoryId: number, parentId: number | null): Promise<Repository>;
}

/** Commits and their history. */
export interface CommitStore {
  createCommit(commit: Commit): Promise<void>;
  getCommit(id: string): Promise<Commit | undefined>;
  /** The commit and its first-parent ancestors, newest first. */
  listHistory(commitId: string, page: Page): Promise<Commit[]>;
  /**
   * Commits made in the namespace's repositories, newest first, those of deleted repositories
   * included: commits outlive their repository.
   */
  listNamespaceCommits(namespaceId: number, page: Page): Promise<PageOf<Commit>>;
  /** Public commits, newest first, those of deleted repositories included. */
  listPublicCommits(page: Page): Promise<PageOf<Commit>>;
  /** `not_found` when the commit does not exist. */
  updateCommit(id: string, patch: CommitPatch): Promise<Commit>;
  /**
   * Deletes a commit row (its manifest stays for the garbage collector), leaving a tombstone: a
   * commit naming it as a parent has a history that ends there (missingCommits does not list
   * it). `conflict` while a tag or a VM refers to it; `not_found` when it does not exist.
   */
  deleteCommit(id: string): Promise<void>;
}

/** Tags, their moves and who else tags a commit. */
export interface TagStore {
  getTag(repositoryId: number, name: string): Promise<Tag | undefined>;
  listTags(repositoryId: number): Promise<Tag[]>;
  /**
   * Points a tag at a commit, creating it when absent, and appends the move to the tag log.
   * When `expectedCommitId` is given (null: the tag must not exist) and the tag points elsewhere,
   * throws `conflict` and changes nothing.
   */
  setTag(
    repositoryId: number,
    name: string,
    commitId: string,
    actor: string,
    expectedCommitId?: string | null,
  ): Promise<Tag>;
  /** Whether a tag of the repository points at the commit. */
  isTagged(repositoryId: number, commitId: string): Promise<boolean>;
  /**
   * The tags of `repositoryId` that point at a non-public commit made in another repository, one
   * per such source repository (the first by tag name), by source id: what bounds how visible
   * the repository may be. One query, whatever the tagged snapshots hold.
   */
  foreignPrivateTags(repositoryId: number): Promise<ForeignTag[]>;
  /**
   * The live repositories, other than the one the commit was made in, with a tag pointing at
   * `commitId`, by id, each with the first such tag by name.
   */
  foreignTaggers(commitId: string): Promise<{ repository: Repository; tagName: string }[]>;
  /**
   * The tags named `name` in the namespace's live repositories, each with its repository, by
   * repository name, at most `limit` of them (Vers names a tag without its repository).
   */
  tagsNamed(namespaceId: number, name: string, limit: number): Promise<{ repository: Repository; tag: Tag }[]>;
  /** Changes a tag's description; `not_found` when the tag does not exist. */
  setTagDescription(repositoryId: number, name: string, description: string): Promise<Tag>;
  /** Removes a tag (logged); false when it did not exist. */
  deleteTag(repositoryId: number, name: string, actor: string): Promise<boolean>;
  /** The tag log of a repository, newest first. */
  tagLog(repositoryId: number, tagName?: string): Promise<TagLogEntry[]>;
  /**
   * When the newest commit that a tag of the repository points at was made; null when the
   * repository has no tag. One read, whatever the number of tags (listings call it per row).
   */
  newestTaggedCommitAt(repositoryId: number): Promise<string | null>;
}

/** Trees of files, content-addressed. */
export interface ManifestStore {
  /** Stores a manifest under its digest. Idempotent: an existing digest is left as it is. */
  putManifest(manifest: Manifest): Promise<void>;
  getManifest(digest: string): Promise<Manifest | undefined>;
  /**
   * The counts stored with a manifest, read without its entries: a constant cost whatever the
   * manifest's size (listings call it per row). Undefined when the manifest is not stored.
   */
  getManifestSummary(digest: string): Promise<ManifestSummary | undefined>;
  /**
   * The entry at exactly `path` of the stored manifest `digest`; undefined when the manifest
   * holds no such path or is not stored. One indexed read whatever the manifest's size: a file
   * read never loads the manifest.
   */
  getManifestEntry(digest: string, path: string): Promise<StoredEntry | undefined>;
  /**
   * The entries that stand for the children of the directory `dir` ('' for the root) in the
   * stored manifest `digest`, in byte order of their UTF-8 paths (the canonical order): each
   * entry directly below `dir`, and of each subtree deeper down only its first entry, the one
   * that implies its child. From the start, or after `after`, a path below `dir` (just after it,
   * or past its child's whole subtree when it lies deeper; `invalid` when not below `dir`); at
   * most `limit`, without chunk lists; [] when there are none or the manifest is not stored. One
   * statement whatever the subtrees hold, so a listing costs reads in proportion to its page
   * and pages through a directory of any size in bounded memory.
   */
  listChildEntries(digest: string, range: { dir: string; after?: string; limit: number }): Promise<EntryHead[]>;
}

/** Which chunks a reader may reach (the tenant check the global ChunkStore.has() cannot make), and the grace of uploaded chunks. */
export interface ReachabilityStore {
  /**
   * Records that a commit of `repositoryId` references `digests` (duplicates allowed), with the
   * store's clock as the time a chunk first became part of the repository. Idempotent. Called in
   * the transaction that writes the commit, so the rows land with it or not at all. Forks record
   * nothing: they reach their ancestors' chunks through `inheritsFromRepoId`.
   */
  recordRepositoryChunks(repositoryId: number, digests: readonly string[]): Promise<void>;
  /**
   * Records that the manifest `manifestDigest` references `digests` (duplicates allowed), for
   * reachableChunks through tags. Idempotent. Called in the transaction that points a tag at a
   * commit made in another repository, so that a delta pull through the tagging repository
   * reaches exactly what the tag makes readable.
   */
  recordManifestChunks(manifestDigest: string, digests: readonly string[]): Promise<void>;
  /**
   * The subset of `digests` (any number) referenced by a starting repository (every live one
   * `from` may see, or the live repository `from.repositoryId`) or by an ancestor of one through
   * `inheritsFromRepoId` (never through a link), deleted or not. An ancestor counts only with
   * the chunks it had recorded when its fork was created, so an old fork never reaches what its
   * source received later. A starting repository also reaches the chunks recorded by
   * recordManifestChunks for the manifest of any commit one of its tags points at now: a tag
   * moved or deleted takes that reach with it.
   */
  reachableChunks(from: ChunkReach, digests: readonly string[]): Promise<Set<string>>;
  /**
   * Records that the user sent these chunks (PUT or pack), refreshing the time of ones sent
   * before. Idempotent. Rows older than the upload grace period mean nothing and may be purged.
   */
  recordUploads(userId: number, digests: readonly string[]): Promise<void>;
  /** The subset of `digests` the user sent at or after `notBefore`. */
  uploadedChunks(userId: number, digests: readonly string[], notBefore: string): Promise<Set<string>>;
}

/** Where a manifest entry stands in the order fsck pages them: by manifest digest, then position. */
export interface ManifestEntryKey {
  manifestDigest: string;
  /** The entry's position in its manifest. */
  seq: number;
}

/** The chunks one file of a manifest references, in order. */
export interface FileChunks extends ManifestEntryKey {
  path: string;
  chunks: ChunkRef[];
}

/**
 * What an integrity check (fsck) reads of the metadata: every commit and every file's chunk list,
 * in pages by key, so that memory stays bounded by a page whatever the store holds. Pages are
 * read outside any transaction: a row written meanwhile may be seen or not, none is seen twice.
 */
export interface IntegrityStore {
  /** Commits whose id sorts after `after` ('' for the first page), by id, at most `limit`. */
  listCommitsAfter(after: string, limit: number): Promise<Commit[]>;
  /** Those of `ids` (any number) that name no commit and no commit deleted on purpose (deleteCommit), distinct, in input order. */
  missingCommits(ids: readonly string[]): Promise<string[]>;
  /** Those of `digests` (any number) that name no stored manifest, distinct, in input order. */
  missingManifests(digests: readonly string[]): Promise<string[]>;
  /** How many manifests are stored. */
  countManifests(): Promise<number>;
  /**
   * The file entries of every manifest that come after `after` (null for the first page) in
   * (manifest digest, position) order, at most `limit`, each with its chunk list. Directories
   * and links, which reference no chunk, are left out.
   */
  listFileChunksAfter(after: ManifestEntryKey | null, limit: number): Promise<FileChunks[]>;
}

/** VM records. */
export interface VmStore {
  /** `conflict` when the id is taken; `not_found` when the commit, repository or namespace is missing. */
  createVm(vm: Vm): Promise<void>;
  /** A VM by id, deleted ones included (their `deletedAt` set). */
  getVm(id: string): Promise<Vm | undefined>;
  /** The namespace's VMs that are not deleted, oldest first (ties by id). */
  listVms(namespaceId: number): Promise<Vm[]>;
  /** Records a VM's state; false (and nothing changed) when no VM of that id is live. */
  setVmState(id: string, state: VmState): Promise<boolean>;
  /**
   * Soft-deletes a VM: `deletedAt` becomes the store's clock and its state `dead`. False (and
   * nothing changed) when no VM of that id is live, so a second delete changes nothing.
   */
  deleteVm(id: string): Promise<boolean>;
  /**
   * Marks `dead` every live VM of `host` (or of no host) recorded as booting, running or paused,
   * and returns their ids: called at start, when no VM of this server runs yet, so that such
   * rows, left by its previous process, say what is true. Sleeping and dead VMs, and other
   * servers' VMs, are left as they are.
   */
  markRunningVmsDead(host: string): Promise<string[]>;
  /**
   * Records the live sleeping VM `id` booting on `host`; false (nothing changed) when it is not
   * live and sleeping, e.g. because another server claimed it first. Atomic.
   */
  claimSleepingVm(id: string, host: string): Promise<boolean>;
}

/** Claims of idempotency keys and the answers they replay. */
export interface IdempotencyStore {
  /**
   * Claims `key` within `scope` (who asks, for which route). `new`: the caller must act and then
   * complete or release the claim; `in_progress`: another request holds it; `done`: the claim
   * was completed, with the body digest of that request and its answer, which the caller
   * compares and replays. Claims created before `notBefore` are forgotten and may be claimed
   * anew. Atomic: of concurrent reservations of one key exactly one gets `new`.
   */
  reserveIdempotencyKey(scope: string, key: string, notBefore: string): Promise<IdempotencyReservation>;
  /**
   * Stores the body digest of the request that holds the claim and its answer. Only a claim in
   * progress is completed: a released or expired one stays gone, a completed one keeps its first
   * answer.
   */
  completeIdempotencyKey(scope: string, key: string, bodyDigest: string, response: StoredResponse): Promise<void>;
  /** Drops a claim, whatever its state, so that a retry acts again. No-op for an unknown key. */
  releaseIdempotencyKey(scope: string, key: string): Promise<void>;
}

/** What deleting the commits no live commit reaches removes (CollectionStore.unreachable). */
export interface Unreachable {
  commits: number;
  manifests: number;
}

/**
 * What garbage collection (src/domain/gc.service.ts) reads and deletes. Live commits: those tags
 * point at, those a deleted repository's tags pointed at (until it is purged), fork points, the base
 * commits of VMs not deleted, commits made from VMs (kept until deleted, tagged or not), commits
 * made at or after `since` (just answered to a client, not yet tagged), and their ancestors.
 */
export interface CollectionStore {
  /** The digests of the manifests of every live commit. */
  liveManifests(since: string): Promise<string[]>;
  /** The digests of the chunks a manifest lists, a page at a time (duplicates kept). */
  manifestChunkDigests(manifestDigest: string): AsyncIterable<string[]>;
  /**
   * The commits that are not live and the manifests only they hold: counted, or with `remove`
   * deleted (with the rows of deleted VMs made from them). Run a removal inside a transaction.
   */
  unreachable(since: string, options: { remove: boolean }): Promise<Unreachable>;
  /**
   * Purges the repositories deleted before `deletedBefore` (every deleted one when null): they
   * can no longer be restored, and what their tags held is kept for them no more; their rows
   * stay as forks' ancestors. Answers how many were purged.
   */
  purgeRepositories(deletedBefore: string | null): Promise<number>;
  /** Those of `digests` that any user sent (recordUploads) at or after `since`. */
  uploadedSince(digests: readonly string[], since: string): Promise<Set<string>>;
  /** Forgets chunks no longer stored: no repository or manifest reaches them any more. */
  forgetChunks(digests: readonly string[]): Promise<void>;
  /** Deletes upload records older than `before`; answers how many. */
  pruneUploads(before: string): Promise<number>;
}

/** What the metadata holds, summed (AccountingStore.metadataTotals). */
export interface MetadataTotals {
  /** Live repositories. */
  repositories: number;
  commits: number;
  manifests: number;
  /**
   * For every live repository, the file bytes (total sizes) of the distinct manifests its tags
   * point at, summed over repositories: what the store would hold without deduplication.
   */
  logicalBytes: number;
}

/** What storage accounting (src/domain/storage-stats.service.ts) reads beside CollectionStore. */
export interface AccountingStore {
  /**
   * The manifest digest of each tag of the repository (one per tag, by tag name): one indexed
   * query, whatever the manifests hold.
   */
  tagManifests(repositoryId: number): Promise<string[]>;
  /** How many entries of the manifest are files, counted by the database; 0 when it is not stored. */
  countManifestFiles(manifestDigest: string): Promise<number>;
  /** Counts and logical bytes of the whole metadata, in one aggregate query (no rows come back). */
  metadataTotals(): Promise<MetadataTotals>;
}

/** Garbage collections and fsck runs in the background, as every server of the database sees them. */
export interface AdminJobStore {
  /** `conflict` when the id is taken. */
  createJob(job: AdminJob): Promise<void>;
  /** Records a running job's outcome: its report, or why it failed. A finished job stays as it is. */
  finishJob(id: string, outcome: { result: unknown } | { error: string }): Promise<void>;
  getJob(id: string): Promise<AdminJob | undefined>;
  /** The newest `limit` jobs, newest first. */
  listJobs(limit: number): Promise<AdminJob[]>;
  /** Fails the jobs `host` left running (a server that crashed or was killed); answers how many. */
  abandonJobs(host: string): Promise<number>;
}

/** The token signing key every server of one database shares. */
export interface SigningKeyStore {
  /**
   * The token signing key (a private JWK as JSON) that every server of this database uses:
   * `candidate` is stored when none is yet, and the one stored first is answered. Idempotent.
   */
  ensureSigningKey(candidate: string): Promise<string>;
}

export interface TransactionOptions {
  /**
   * Garbage collection's sweep: no other transaction runs meanwhile, so none is between reading
   * that a chunk is stored and committing what refers to it while chunks are deleted. Every
   * other transaction excludes it in turn.
   */
  exclusive?: boolean;
}

/**
 * The metadata of snapfork, every aggregate's store in one database with transactions across
 * them. A service that needs no transaction depends on the aggregates it uses only.
 */
/**
 * Quotas per namespace and what counts against them. A stored chunk is charged once, to the
 * namespace whose commit first referenced it, at its size (uncompressed): forks and data another
 * namespace stored already cost nothing. Its charge is released when garbage collection removes
 * the chunk (forgetChunks).
 */
export interface QuotaStore {
  /** The limits set for the namespace; undefined when none was ever set. */
  getQuota(namespaceId: number): Promise<NamespaceQuota | undefined>;
  /** Sets the limits present in `limits` (null: back to the server's default), keeping the others. */
  setQuota(namespaceId: number, limits: Partial<QuotaLimits>): Promise<NamespaceQuota>;
  /** The bytes charged to the namespace. */
  storedBytes(namespaceId: number): Promise<number>;
  /**
   * Charges to the namespace those of `sizes` (digest -> size) charged to no one yet, and
   * returns the namespace's stored bytes after. Called in the transaction that records a commit,
   * so that a commit refused for its quota charges nothing.
   */
  chargeChunks(namespaceId: number, sizes: ReadonlyMap<string, number>): Promise<number>;
  /**
   * The namespace's live repositories. With `lock`, inside a transaction, concurrent callers
   * with `lock` queue until it ends, so that a count checked against a quota stays true until
   * the repository created after the check is committed.
   */
  countRepositories(namespaceId: number, lock?: boolean): Promise<number>;
  /** The namespace's VMs booting, running or paused, on every server. */
  countActiveVms(namespaceId: number): Promise<number>;
}

export interface MetadataStore
  extends NamespaceStore,
    RepositoryStore,
    CommitStore,
    TagStore,
    ManifestStore,
    ReachabilityStore,
    IntegrityStore,
    VmStore,
    IdempotencyStore,
    SigningKeyStore,
    CollectionStore,
    AccountingStore,
    QuotaStore,
    AdminJobStore {
  /**
   * Runs `work` in one transaction: all of its writes land together or none does. Calls on the
   * store passed to `work` join the transaction. Writes acknowledged after it resolves survive a
   * crash or power loss.
   */
  transaction<T>(work: (tx: MetadataStore) => Promise<T>, options?: TransactionOptions): Promise<T>;

  /**
   * Resolves when the database answers a trivial query (readiness probes call it often).
   * Rejects when it cannot, e.g. once closed or unreachable.
   */
  ping(): Promise<void>;

  close(): Promise<void>;
}
