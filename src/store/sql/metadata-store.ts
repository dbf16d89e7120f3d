/**
 * MetadataStore over SQL through Kysely, on SQLite or PostgreSQL: a thin facade over one module
 * per aggregate (namespaces.ts, repositories.ts, commits.ts, tags.ts, manifests.ts,
 * reachability.ts, vms.ts, idempotency.ts) and the integrity checks' reads (integrity.ts), each
 * a set of functions taking the database or an open transaction, with its tables' row mappers
 * beside them. The facade owns transactions and
 * the translation of driver errors; what differs between the engines is asked of a SqlDialect
 * (dialect.ts). Openers: src/store/sqlite/database.ts, src/store/postgres/database.ts.
 *
 * Concurrency: no method relies on an engine's global write lock (SQLite has one, PostgreSQL
 * does not). Transactions run at the engine's default isolation (SQLite: serializable, by its
 * lock; PostgreSQL: read committed), and every read-check-write is made atomic by its statements:
 * unique indexes decide between concurrent creators, compare-and-set updates are checked by the
 * rows they changed (setTag), single statements replace read-then-write pairs (updateCommit,
 * deleteCommit, deleteTag), and a row that a check relies on is locked where the engine has row
 * locks (setForkParent). Deadlocks, which PostgreSQL breaks by aborting one transaction, are
 * retried a bounded number of times (transaction()).
 */
import { sql, type Kysely } from 'kysely';
import { conflict, type DomainError } from '../../domain/errors.js';
import type {
  AdminJob,
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
} from '../../domain/model.js';
import type {
  ChunkReach,
  CommitPatch,
  FileChunks,
  ForeignTag,
  ForkQuery,
  IdempotencyReservation,
  ManifestEntryKey,
  MetadataStore,
  MetadataTotals,
  NewRepository,
  RepositoryNameField,
  RepositoryPatch,
  StoredResponse,
  TagLogEntry,
  TransactionOptions,
  Unreachable,
  ViewerFilter,
} from '../types.js';
import * as accounting from './accounting.js';
import * as adminJobs from './admin-jobs.js';
import * as collection from './collection.js';
import * as commits from './commits.js';
import { type DriverFault, type SqlDialect, toDomainError } from './dialect.js';
import * as idempotency from './idempotency.js';
import * as integrity from './integrity.js';
import * as manifests from './manifests.js';
import { migrateToLatest } from './migrations.js';
import * as namespaces from './namespaces.js';
import * as quotas from './quotas.js';
import * as reachability from './reachability.js';
import * as repositories from './repositories.js';
import type { Database } from './schema.js';
import * as tags from './tags.js';
import * as vms from './vms.js';

export interface SqlMetadataStoreOptions {
  /** The clock for created/updated timestamps; ISO-8601 UTC with milliseconds. */
  now?: () => string;
}

/**
 * Brings the schema of `db` up to date and returns the store over it; the store owns `db` and
 * closes it (so does a failed migration).
 */
export async function openSqlMetadataStore(
  db: Kysely<Database>,
  dialect: SqlDialect,
  options: SqlMetadataStoreOptions = {},
): Promise<MetadataStore> {
  try {
    await migrateToLatest(db, dialect);
  } catch (e) {
    await db.destroy();
    throw toDomainError(dialect, e, 'the metadata schema');
  }
  return new SqlMetadataStore(db, dialect, options.now ?? (() => new Date().toISOString()));
}

/** How many times a transaction that the engine aborted to break a deadlock is run. */
const TRANSACTION_ATTEMPTS = 5;

/**
 * A pause of random length before running an aborted transaction again: run at once, it can
 * take its first lock before the transaction that won the last round takes the one it waits
 * for, and the two deadlock anew.
 */
const pauseBeforeRetry = (attempt: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));

export class SqlMetadataStore implements MetadataStore {
  /** `db` is the root instance, or the transaction this store is bound to. */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: SqlDialect,
    private readonly now: () => string,
  ) {}

  /**
   * Nested calls join the enclosing transaction. Inside `work`, use `tx` only: the root store
   * may wait for the connection the transaction holds (SQLite has one). When the engine aborts
   * the transaction for a deadlock or serialization failure, `work` runs again, up to
   * TRANSACTION_ATTEMPTS times in all.
   */
  async transaction<T>(work: (tx: SqlMetadataStore) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.db.isTransaction) return work(this);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(work, options.exclusive === true);
      } catch (e) {
        if (attempt === TRANSACTION_ATTEMPTS || this.dialect.fault(e)?.kind !== 'retry') {
          throw toDomainError(this.dialect, e, 'the changes');
        }
      }
      await pauseBeforeRetry(attempt);
    }
  }

  /**
   * One run of `work` in a transaction, rolled back when it throws. It runs on a connection of
   * its own, released before this returns: on SQLite, releasing a connection waits for what it
   * wrote to be durable (group commit: src/store/sqlite/group-commit.ts), with the connection
   * free for the next transaction meanwhile.
   */
  private attempt<T>(work: (tx: SqlMetadataStore) => Promise<T>, exclusive: boolean): Promise<T> {
    return this.db.connection().execute(async (connection) => {
      // A controlled transaction rather than db.transaction().execute(): SQLite rolls back by
      // itself on some errors (SQLITE_FULL among them), Kysely's ROLLBACK then fails with "no
      // transaction is active", and that error would replace the one that matters.
      const trx = await connection.startTransaction().execute();
      try {
        await this.dialect.collectorFence(exclusive ? 'exclusive' : 'shared')?.execute(trx);
        const result = await work(new SqlMetadataStore(trx, this.dialect, this.now));
        await trx.commit().execute();
        return result;
      } catch (e) {
        // Releases the connection even when the rollback itself fails.
        await trx.rollback().execute().catch(() => undefined);
        throw e;
      }
    });
  }

  // Namespaces -------------------------------------------------------------------------------

  async ensureUser(login: string): Promise<Namespace> {
    await this.guard(`user "${login}"`, () => namespaces.insertUserIfAbsent(this.db, login, this.now));
    const namespace = await this.getNamespace(login);
    if (namespace?.kind !== 'user') throw conflict(`"${login}" is the name of an organization`);
    return namespace;
  }

  async createOrg(name: string): Promise<Namespace> {
    return this.guard(`namespace "${name}"`, () => namespaces.insertOrg(this.db, name, this.now));
  }

  async getNamespace(name: string): Promise<Namespace | undefined> {
    return namespaces.getNamespace(this.db, name);
  }

  async getNamespaceById(id: number): Promise<Namespace | undefined> {
    return namespaces.getNamespaceById(this.db, id);
  }

  async setRole(orgId: number, userId: number, role: Role): Promise<void> {
    await this.guard(`membership of ${userId} in ${orgId}`, () => namespaces.setRole(this.db, orgId, userId, role));
  }

  async getRole(orgId: number, userId: number): Promise<Role | undefined> {
    return namespaces.getRole(this.db, orgId, userId);
  }

  async listMemberships(userId: number): Promise<{ org: Namespace; role: Role }[]> {
    return namespaces.listMemberships(this.db, userId);
  }

  async listMembers(orgId: number): Promise<{ user: Namespace; role: Role }[]> {
    return namespaces.listMembers(this.db, orgId);
  }

  // Repositories -----------------------------------------------------------------------------

  async createRepository(repo: NewRepository): Promise<Repository> {
    const id = await this.guard(
      `repository "${repo.name}"`,
      () => repositories.insertRepository(this.db, this.dialect, repo, this.now),
      repositories.nameClash,
    );
    return repositories.requireRepository(this.db, id);
  }

  async getRepository(namespace: string, name: string): Promise<Repository | undefined> {
    return repositories.getRepository(this.db, namespace, name);
  }

  async getRepositoryById(id: number): Promise<Repository | undefined> {
    return repositories.getRepositoryById(this.db, id);
  }

  async getRepositoryRecord(id: number): Promise<{ repository: Repository; deletedAt: string | null } | undefined> {
    return repositories.getRepositoryRecord(this.db, id);
  }

  async takenNames(
    namespaceId: number,
    names: { name?: string; displayName?: string },
    exceptId?: number,
  ): Promise<RepositoryNameField[]> {
    return repositories.takenNames(this.db, namespaceId, names, exceptId);
  }

  async listRepositories(
    namespaceId: number,
    page: Page,
    visibilities?: readonly Visibility[],
  ): Promise<PageOf<Repository>> {
    return repositories.listRepositories(this.db, namespaceId, page, visibilities);
  }

  async updateRepository(id: number, patch: RepositoryPatch): Promise<Repository> {
    await this.guard(
      `repository "${patch.name ?? id}"`,
      () => repositories.updateRepository(this.db, this.dialect, id, patch, this.now),
      repositories.nameClash,
    );
    return repositories.requireRepository(this.db, id);
  }

  deleteRepository(id: number, actor: string): Promise<void> {
    return this.transaction((tx) =>
      tx.guard(`repository ${id}`, async () => {
        const at = tx.now();
        await repositories.deleteRepository(tx.db, id, at);
        for (const tag of await tags.listTags(tx.db, id)) await tags.deleteTag(tx.db, id, tag.name, actor, () => at);
      }),
    );
  }

  findRestorableRepository(namespaceId: number, name: string): Promise<number | undefined> {
    return repositories.findRestorable(this.db, namespaceId, name);
  }

  restoreRepository(id: number, actor: string): Promise<Repository> {
    return this.transaction((tx) =>
      tx.guard(
        `repository ${id}`,
        async () => {
          const deletedAt = await repositories.undeleteRepository(tx.db, id, tx.now);
          for (const tag of await tags.tagsDeletedAt(tx.db, id, deletedAt)) await tags.setTag(tx.db, id, tag.name, tag.commitId, actor, null, tx.now);
          return repositories.requireRepository(tx.db, id);
        },
        repositories.nameClash,
      ),
    );
  }

  async listAllRepositories(viewer: ViewerFilter, page: Page, search?: string): Promise<PageOf<Repository>> {
    return repositories.listAllRepositories(this.db, viewer, page, search);
  }

  async listForks(repositoryId: number, query: ForkQuery): Promise<PageOf<Repository>> {
    return repositories.listForks(this.db, this.dialect, repositoryId, query);
  }

  async countForks(repositoryId: number, viewer: ViewerFilter): Promise<number> {
    return repositories.countForks(this.db, repositoryId, viewer);
  }

  async setForkParent(repositoryId: number, parentId: number | null): Promise<Repository> {
    return this.transaction(async (tx) => {
      await tx.guard(`fork parent of repository ${repositoryId}`, () =>
        repositories.setForkParent(tx.db, tx.dialect, repositoryId, parentId, tx.now),
      );
      return repositories.requireRepository(tx.db, repositoryId);
    });
  }

  // Commits ----------------------------------------------------------------------------------

  async createCommit(commit: Commit): Promise<void> {
    await this.guard(`commit ${commit.id}`, () => commits.insertCommit(this.db, this.dialect, commit));
  }

  async getCommit(id: string): Promise<Commit | undefined> {
    return commits.getCommit(this.db, id);
  }

  async listHistory(commitId: string, page: Page): Promise<Commit[]> {
    return commits.listHistory(this.db, this.dialect, commitId, page);
  }

  async listNamespaceCommits(namespaceId: number, page: Page): Promise<PageOf<Commit>> {
    return commits.listNamespaceCommits(this.db, namespaceId, page);
  }

  async listPublicCommits(page: Page): Promise<PageOf<Commit>> {
    return commits.listPublicCommits(this.db, this.dialect, page);
  }

  async updateCommit(id: string, patch: CommitPatch): Promise<Commit> {
    return this.guard(`commit ${id}`, () => commits.updateCommit(this.db, this.dialect, id, patch));
  }

  async deleteCommit(id: string): Promise<void> {
    await this.transaction((tx) => tx.guard(`commit ${id}`, () => commits.deleteCommit(tx.db, id, this.now()), commits.stillReferred(id)));
  }

  // Tags -------------------------------------------------------------------------------------

  async getTag(repositoryId: number, name: string): Promise<Tag | undefined> {
    return tags.getTag(this.db, repositoryId, name);
  }

  async listTags(repositoryId: number): Promise<Tag[]> {
    return tags.listTags(this.db, repositoryId);
  }

  async setTag(
    repositoryId: number,
    name: string,
    commitId: string,
    actor: string,
    expectedCommitId?: string | null,
  ): Promise<Tag> {
    return this.transaction((tx) =>
      tx.guard(`tag "${name}"`, () =>
        tags.setTag(tx.db, repositoryId, name, commitId, actor, expectedCommitId, tx.now),
      ),
    );
  }

  async isTagged(repositoryId: number, commitId: string): Promise<boolean> {
    return tags.isTagged(this.db, repositoryId, commitId);
  }

  async foreignPrivateTags(repositoryId: number): Promise<ForeignTag[]> {
    return tags.foreignPrivateTags(this.db, this.dialect, repositoryId);
  }

  async foreignTaggers(commitId: string): Promise<{ repository: Repository; tagName: string }[]> {
    return tags.foreignTaggers(this.db, commitId);
  }

  async tagsNamed(namespaceId: number, name: string, limit: number): Promise<{ repository: Repository; tag: Tag }[]> {
    return tags.tagsNamed(this.db, namespaceId, name, limit);
  }

  async setTagDescription(repositoryId: number, name: string, description: string): Promise<Tag> {
    return tags.setTagDescription(this.db, repositoryId, name, description, this.now);
  }

  async deleteTag(repositoryId: number, name: string, actor: string): Promise<boolean> {
    return this.transaction((tx) => tags.deleteTag(tx.db, repositoryId, name, actor, tx.now));
  }

  async tagLog(repositoryId: number, tagName?: string): Promise<TagLogEntry[]> {
    return tags.tagLog(this.db, repositoryId, tagName);
  }

  async newestTaggedCommitAt(repositoryId: number): Promise<string | null> {
    return tags.newestTaggedCommitAt(this.db, repositoryId);
  }

  // Manifests --------------------------------------------------------------------------------

  async putManifest(manifest: Manifest): Promise<void> {
    await this.transaction((tx) =>
      tx.guard(`manifest ${manifest.digest}`, () => manifests.putManifest(tx.db, manifest, tx.now)),
    );
  }

  async getManifest(digest: string): Promise<Manifest | undefined> {
    return this.transaction((tx) => manifests.getManifest(tx.db, digest));
  }

  async getManifestSummary(digest: string): Promise<ManifestSummary | undefined> {
    return manifests.getManifestSummary(this.db, digest);
  }

  async getManifestEntry(digest: string, path: string): Promise<StoredEntry | undefined> {
    return manifests.getManifestEntry(this.db, digest, path);
  }

  async listChildEntries(digest: string, range: { dir: string; after?: string; limit: number }): Promise<EntryHead[]> {
    return manifests.listChildEntries(this.db, this.dialect, digest, range);
  }

  // Chunk reachability -----------------------------------------------------------------------

  async recordRepositoryChunks(repositoryId: number, digests: readonly string[]): Promise<void> {
    const at = this.now();
    await this.transaction((tx) =>
      tx.guard(`chunks of repository ${repositoryId}`, () =>
        reachability.recordRepositoryChunks(tx.db, repositoryId, digests, at),
      ),
    );
  }

  async recordManifestChunks(manifestDigest: string, digests: readonly string[]): Promise<void> {
    await this.transaction((tx) =>
      tx.guard(`chunks of manifest ${manifestDigest}`, () =>
        reachability.recordManifestChunks(tx.db, manifestDigest, digests),
      ),
    );
  }

  async createJob(job: AdminJob): Promise<void> {
    await this.guard(`job ${job.id}`, () => adminJobs.insertJob(this.db, job));
  }

  async finishJob(id: string, outcome: { result: unknown } | { error: string }): Promise<void> {
    await adminJobs.finishJob(this.db, id, outcome, this.now());
  }

  async getJob(id: string): Promise<AdminJob | undefined> {
    return adminJobs.getJob(this.db, id);
  }

  async listJobs(limit: number): Promise<AdminJob[]> {
    return adminJobs.listJobs(this.db, limit);
  }

  async abandonJobs(host: string): Promise<number> {
    return adminJobs.abandonJobs(this.db, host, this.now());
  }

  async getQuota(namespaceId: number): Promise<NamespaceQuota | undefined> {
    return quotas.getQuota(this.db, namespaceId);
  }

  async setQuota(namespaceId: number, limits: Partial<QuotaLimits>): Promise<NamespaceQuota> {
    return this.guard(`quota of namespace ${namespaceId}`, () => quotas.setQuota(this.db, namespaceId, limits, this.now));
  }

  async storedBytes(namespaceId: number): Promise<number> {
    return quotas.storedBytes(this.db, namespaceId);
  }

  async chargeChunks(namespaceId: number, sizes: ReadonlyMap<string, number>): Promise<number> {
    return this.transaction((tx) => tx.guard('chunk charges', () => quotas.chargeChunks(tx.db, namespaceId, sizes)));
  }

  async countRepositories(namespaceId: number, lock = false): Promise<number> {
    return quotas.countRepositories(this.db, this.dialect, namespaceId, lock);
  }

  async countActiveVms(namespaceId: number): Promise<number> {
    return quotas.countActiveVms(this.db, namespaceId);
  }

  async reachableChunks(from: ChunkReach, digests: readonly string[]): Promise<Set<string>> {
    return reachability.reachableChunks(this.db, this.dialect, from, digests);
  }

  async recordUploads(userId: number, digests: readonly string[]): Promise<void> {
    const at = this.now();
    await this.transaction((tx) =>
      tx.guard(`uploads of user ${userId}`, () => reachability.recordUploads(tx.db, userId, digests, at)),
    );
  }

  async uploadedChunks(userId: number, digests: readonly string[], notBefore: string): Promise<Set<string>> {
    return reachability.uploadedChunks(this.db, userId, digests, notBefore);
  }

  // Integrity checks -------------------------------------------------------------------------

  async listCommitsAfter(after: string, limit: number): Promise<Commit[]> {
    return integrity.listCommitsAfter(this.db, after, limit);
  }

  async missingCommits(ids: readonly string[]): Promise<string[]> {
    return integrity.missingCommits(this.db, ids);
  }

  async missingManifests(digests: readonly string[]): Promise<string[]> {
    return integrity.missingManifests(this.db, digests);
  }

  async countManifests(): Promise<number> {
    return integrity.countManifests(this.db);
  }

  async listFileChunksAfter(after: ManifestEntryKey | null, limit: number): Promise<FileChunks[]> {
    return integrity.listFileChunksAfter(this.db, after, limit);
  }

  // VMs --------------------------------------------------------------------------------------

  async createVm(vm: Vm): Promise<void> {
    await this.guard(`vm ${vm.id}`, () => vms.insertVm(this.db, vm));
  }

  async getVm(id: string): Promise<Vm | undefined> {
    return vms.getVm(this.db, id);
  }

  async listVms(namespaceId: number): Promise<Vm[]> {
    return vms.listVms(this.db, namespaceId);
  }

  async setVmState(id: string, state: VmState): Promise<boolean> {
    return this.guard(`vm ${id}`, () => vms.setVmState(this.db, id, state));
  }

  async deleteVm(id: string): Promise<boolean> {
    return this.guard(`vm ${id}`, () => vms.deleteVm(this.db, id, this.now));
  }

  async markRunningVmsDead(host: string): Promise<string[]> {
    return this.guard('vms', () => vms.markRunningVmsDead(this.db, host));
  }

  async claimSleepingVm(id: string, host: string): Promise<boolean> {
    return this.guard(`vm ${id}`, () => vms.claimSleepingVm(this.db, id, host));
  }

  // Idempotency keys ---------------------------------------------------------------------------

  async reserveIdempotencyKey(scope: string, key: string, notBefore: string): Promise<IdempotencyReservation> {
    return this.transaction((tx) =>
      tx.guard(`idempotency key "${key}"`, () => idempotency.reserveIdempotencyKey(tx.db, scope, key, notBefore, tx.now)),
    );
  }

  async completeIdempotencyKey(scope: string, key: string, bodyDigest: string, response: StoredResponse): Promise<void> {
    await this.guard(`idempotency key "${key}"`, () =>
      idempotency.completeIdempotencyKey(this.db, scope, key, bodyDigest, response),
    );
  }

  async releaseIdempotencyKey(scope: string, key: string): Promise<void> {
    await this.guard(`idempotency key "${key}"`, () => idempotency.releaseIdempotencyKey(this.db, scope, key));
  }

  // Signing key ------------------------------------------------------------------------------

  async ensureSigningKey(candidate: string): Promise<string> {
    return this.guard('signing key', async () => {
      await this.db.insertInto('signing_keys').values({ id: 1, jwk: candidate, created_at: this.now() }).onConflict((oc) => oc.column('id').doNothing()).execute();
      const { jwk } = await this.db.selectFrom('signing_keys').select('jwk').where('id', '=', 1).executeTakeFirstOrThrow();
      return jwk;
    });
  }

  // Garbage collection ---------------------------------------------------------------------

  liveManifests(since: string): Promise<string[]> {
    return collection.liveManifests(this.db, this.dialect, since);
  }

  manifestChunkDigests(manifestDigest: string): AsyncIterable<string[]> {
    return collection.manifestChunkDigests(this.db, manifestDigest);
  }

  unreachable(since: string, options: { remove: boolean }): Promise<Unreachable> {
    return options.remove
      ? this.guard('the unreachable commits', () => collection.deleteUnreachable(this.db, this.dialect, since))
      : collection.countUnreachable(this.db, this.dialect, since);
  }

  purgeRepositories(deletedBefore: string | null): Promise<number> {
    return this.guard('the deleted repositories', () => collection.purgeRepositories(this.db, deletedBefore, this.now()));
  }

  uploadedSince(digests: readonly string[], since: string): Promise<Set<string>> {
    return collection.uploadedSince(this.db, digests, since);
  }

  forgetChunks(digests: readonly string[]): Promise<void> {
    return this.guard('the chunks forgotten', () => collection.forgetChunks(this.db, digests));
  }

  pruneUploads(before: string): Promise<number> {
    return this.guard('the upload records', () => collection.pruneUploads(this.db, before));
  }

  // Storage accounting -----------------------------------------------------------------------

  tagManifests(repositoryId: number): Promise<string[]> {
    return accounting.tagManifests(this.db, repositoryId);
  }

  countManifestFiles(manifestDigest: string): Promise<number> {
    return accounting.countManifestFiles(this.db, manifestDigest);
  }

  metadataTotals(): Promise<MetadataTotals> {
    return accounting.metadataTotals(this.db);
  }

  async ping(): Promise<void> {
    await sql`SELECT 1`.execute(this.db);
  }

  /** Closes the database; a transaction-bound store does not own it and leaves it open. */
  async close(): Promise<void> {
    if (!this.db.isTransaction) await this.db.destroy();
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Runs a write, translating driver errors about `subject` into DomainErrors; `refine` may say
   * what a fault means to this write in particular (a clash of names, a row still referred to).
   */
  private async guard<T>(
    subject: string,
    work: () => Promise<T>,
    refine?: (fault: DriverFault) => DomainError | undefined,
  ): Promise<T> {
    try {
      return await work();
    } catch (e) {
      const fault = refine && this.dialect.fault(e);
      throw (fault && refine(fault)) || toDomainError(this.dialect, e, subject);
    }
  }
}
