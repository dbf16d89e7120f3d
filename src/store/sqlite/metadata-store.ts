/**
 * MetadataStore over SQLite through Kysely. SQL rows stay in this file: each table has one
 * mapper to its domain type. SQLite-only SQL is limited to listHistory (json_extract and a LIMIT
 * inside a recursive CTE) and reachableChunks (two-argument min(), PostgreSQL's LEAST); the rest
 * is portable Kysely, so a PostgreSQL store can reuse it.
 */
import {
  type ExpressionBuilder,
  type Kysely,
  type Selectable,
  type SelectQueryBuilder,
  type SqlBool,
  sql,
} from 'kysely';
import { v4 as uuidv4 } from 'uuid';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import type {
  ChunkRef,
  Commit,
  Manifest,
  ManifestEntry,
  ManifestSummary,
  Namespace,
  Page,
  PageOf,
  Repository,
  Role,
  Tag,
  Visibility,
  Vm,
  VmState,
} from '../../domain/model.js';
import type {
  ChunkReach,
  CommitPatch,
  ForeignTag,
  ForkOrder,
  ForkQuery,
  IdempotencyReservation,
  MetadataStore,
  NewRepository,
  RepositoryNameField,
  RepositoryPatch,
  StoredResponse,
  TagLogEntry,
  ViewerFilter,
} from '../types.js';
import { openSqliteDatabase, toDomainError } from './database.js';
import { migrateToLatest } from './migrations.js';
import type {
  CommitTable,
  Database,
  IdempotencyKeyTable,
  ManifestEntryTable,
  NamespaceTable,
  RepositoryTable,
  TagLogTable,
  TagTable,
  VmTable,
} from './schema.js';

export interface SqliteMetadataStoreOptions {
  /** The clock for created/updated timestamps; ISO-8601 UTC with milliseconds. */
  now?: () => string;
}

/** Opens `file` (creating it when absent), brings its schema up to date and returns the store. */
export async function openSqliteMetadataStore(
  file: string,
  options: SqliteMetadataStoreOptions = {},
): Promise<MetadataStore> {
  const db = openSqliteDatabase(file);
  try {
    await migrateToLatest(db);
  } catch (e) {
    await db.destroy();
    throw toDomainError(e, 'the metadata schema');
  }
  return new SqliteMetadataStore(db, options.now ?? (() => new Date().toISOString()));
}

// Digests per statement of the chunk tables: 3 values a row stay far below SQLite's 32,766 bound
// parameters, and a 1 GiB snapshot's ~16K chunk rows take 4 statements.
const DIGEST_BATCH = 4000;

/** Later than any timestamp: a starting repository reaches all of its own chunks. */
const NO_CUTOFF = '9999-12-31T23:59:59.999Z';

// Rows of 9 values: 500 of them stay far below SQLite's 32,766 bound parameters per statement
// while making a 20,000-entry manifest 40 statements.
const ENTRY_BATCH = 500;

export class SqliteMetadataStore implements MetadataStore {
  /** `db` is the root instance, or the transaction this store is bound to. */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => string,
  ) {}

  /**
   * Nested calls join the enclosing transaction. Inside `work`, use `tx` only: the root store
   * waits for the connection the transaction holds.
   */
  async transaction<T>(work: (tx: SqliteMetadataStore) => Promise<T>): Promise<T> {
    if (this.db.isTransaction) return work(this);
    // A controlled transaction rather than db.transaction().execute(): SQLite rolls back by
    // itself on some errors (SQLITE_FULL among them), Kysely's ROLLBACK then fails with "no
    // transaction is active", and that error would replace the one that matters.
    const trx = await this.guard('the changes', () => this.db.startTransaction().execute());
    try {
      const result = await work(new SqliteMetadataStore(trx, this.now));
      await trx.commit().execute();
      return result;
    } catch (e) {
      // Releases the connection even when the rollback itself fails.
      await trx.rollback().execute().catch(() => undefined);
      throw toDomainError(e, 'the changes');
    }
  }

  // Namespaces -------------------------------------------------------------------------------

  async ensureUser(login: string): Promise<Namespace> {
    await this.guard(`user "${login}"`, () =>
      this.db
        .insertInto('namespaces')
        .values({ name: login, kind: 'user', display_name: login, created_at: this.now() })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute(),
    );
    const namespace = await this.getNamespace(login);
    if (namespace?.kind !== 'user') throw conflict(`"${login}" is the name of an organization`);
    return namespace;
  }

  async createOrg(name: string): Promise<Namespace> {
    const row = await this.guard(`namespace "${name}"`, () =>
      this.db
        .insertInto('namespaces')
        .values({ name, kind: 'org', display_name: name, created_at: this.now() })
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return toNamespace(row);
  }

  async getNamespace(name: string): Promise<Namespace | undefined> {
    const row = await this.db
      .selectFrom('namespaces')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return row && toNamespace(row);
  }

  async getNamespaceById(id: number): Promise<Namespace | undefined> {
    const row = await this.db.selectFrom('namespaces').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toNamespace(row);
  }

  async setRole(orgId: number, userId: number, role: Role): Promise<void> {
    await this.guard(`membership of ${userId} in ${orgId}`, () =>
      this.db
        .insertInto('memberships')
        .values({ org_id: orgId, user_id: userId, role })
        .onConflict((oc) => oc.columns(['org_id', 'user_id']).doUpdateSet({ role }))
        .execute(),
    );
  }

  async getRole(orgId: number, userId: number): Promise<Role | undefined> {
    const row = await this.db
      .selectFrom('memberships')
      .select('role')
      .where('org_id', '=', orgId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return row?.role;
  }

  async listMemberships(userId: number): Promise<{ org: Namespace; role: Role }[]> {
    const rows = await this.membershipsOf('user_id', userId);
    return rows.map(({ namespace, role }) => ({ org: namespace, role }));
  }

  async listMembers(orgId: number): Promise<{ user: Namespace; role: Role }[]> {
    const rows = await this.membershipsOf('org_id', orgId);
    return rows.map(({ namespace, role }) => ({ user: namespace, role }));
  }

  // Repositories -----------------------------------------------------------------------------

  async createRepository(repo: NewRepository): Promise<Repository> {
    const at = this.now();
    const { id } = await this.guard(`repository "${repo.name}"`, () =>
      this.db
        .insertInto('repositories')
        .values({
          uuid: uuidv4(),
          namespace_id: repo.namespaceId,
          name: repo.name,
          display_name: repo.displayName ?? repo.name,
          visibility: repo.visibility,
          description: repo.description,
          default_tag: repo.defaultTag ?? null,
          forked_from_repo_id: repo.forkedFromRepoId ?? null,
          inherits_from_repo_id: repo.forkedFromRepoId ?? null,
          forked_from_commit_id: repo.forkedFromCommitId ?? null,
          archived: 0,
          created_at: at,
          updated_at: at,
        })
        .returning('id')
        .executeTakeFirstOrThrow(),
    );
    return this.requireRepository(id);
  }

  async getRepository(namespace: string, name: string): Promise<Repository | undefined> {
    // Both name columns are COLLATE NOCASE, so this lookup ignores case like the unique indexes.
    const row = await this.liveRepositories()
      .where('namespaces.name', '=', namespace)
      .where('repositories.name', '=', name)
      .executeTakeFirst();
    return row && toRepository(row);
  }

  async getRepositoryById(id: number): Promise<Repository | undefined> {
    const row = await this.liveRepositories().where('repositories.id', '=', id).executeTakeFirst();
    return row && toRepository(row);
  }

  async getRepositoryRecord(id: number): Promise<{ repository: Repository; deletedAt: string | null } | undefined> {
    const row = await this.db
      .selectFrom('repositories')
      .innerJoin('namespaces', 'namespaces.id', 'repositories.namespace_id')
      .selectAll('repositories')
      .select('namespaces.name as namespace')
      .where('repositories.id', '=', id)
      .executeTakeFirst();
    return row && { repository: toRepository(row), deletedAt: row.deleted_at };
  }

  async takenNames(
    namespaceId: number,
    names: { name?: string; displayName?: string },
    exceptId?: number,
  ): Promise<RepositoryNameField[]> {
    const clashes = (field: 'name' | 'display_name', value: string | undefined) =>
      value === undefined
        ? Promise.resolve(false)
        : this.db
            .selectFrom('repositories')
            .select('id')
            .where('namespace_id', '=', namespaceId)
            // `name` is COLLATE NOCASE and `display_name` binary, as their unique indexes compare.
            .where(field, '=', value)
            .where('deleted_at', 'is', null)
            .$if(exceptId !== undefined, (q) => q.where('id', '!=', exceptId!))
            .executeTakeFirst()
            .then((row) => row !== undefined);
    const [name, displayName] = await Promise.all([clashes('name', names.name), clashes('display_name', names.displayName)]);
    return [...(name ? ['name' as const] : []), ...(displayName ? ['displayName' as const] : [])];
  }

  async listRepositories(
    namespaceId: number,
    page: Page,
    visibilities?: readonly Visibility[],
  ): Promise<PageOf<Repository>> {
    const listed = this.liveRepositories()
      .where('repositories.namespace_id', '=', namespaceId)
      .where(visibleTo(visibilities ? { visibilities, namespaceIds: [] } : 'all'))
      .orderBy('repositories.name');
    return pageOf(listed, page, toRepository);
  }

  async updateRepository(id: number, patch: RepositoryPatch): Promise<Repository> {
    await this.guard(`repository "${patch.name ?? id}"`, () =>
      this.db
        .updateTable('repositories')
        .set({
          ...(patch.name !== undefined && { name: patch.name }),
          ...(patch.displayName !== undefined && { display_name: patch.displayName }),
          ...(patch.description !== undefined && { description: patch.description }),
          ...(patch.visibility !== undefined && { visibility: patch.visibility }),
          ...(patch.archived !== undefined && { archived: patch.archived ? 1 : 0 }),
          ...(patch.defaultTag !== undefined && { default_tag: patch.defaultTag }),
          updated_at: this.now(),
        })
        .where('id', '=', id)
        .where('deleted_at', 'is', null)
        .execute(),
    );
    return this.requireRepository(id);
  }

  async deleteRepository(id: number): Promise<void> {
    const at = this.now();
    const { numUpdatedRows } = await this.guard(`repository ${id}`, () =>
      this.db
        .updateTable('repositories')
        .set({ deleted_at: at, updated_at: at })
        .where('id', '=', id)
        .where('deleted_at', 'is', null)
        .executeTakeFirstOrThrow(),
    );
    if (numUpdatedRows === 0n) throw notFound(`repository ${id} does not exist`);
  }

  async listAllRepositories(viewer: ViewerFilter, page: Page): Promise<PageOf<Repository>> {
    const listed = this.liveRepositories()
      .where(visibleTo(viewer))
      .orderBy('repositories.created_at', 'desc')
      .orderBy('repositories.id', 'desc');
    return pageOf(listed, page, toRepository);
  }

  async listForks(repositoryId: number, query: ForkQuery): Promise<PageOf<Repository>> {
    const sort = query.sort ?? 'desc';
    let listed = this.liveForks(repositoryId, query.viewer);
    if (query.archived !== undefined) listed = listed.where('repositories.archived', '=', query.archived ? 1 : 0);
    if (query.visibility !== undefined) listed = listed.where('repositories.visibility', '=', query.visibility);
    if (query.search !== undefined) {
      const needle = query.search;
      listed = listed.where((eb) =>
        eb.or([
          containsIgnoringCase(eb, 'repositories.name', needle),
          containsIgnoringCase(eb, 'namespaces.name', needle),
        ]),
      );
    }
    // Owning namespaces filter exactly like a viewer who sees only what those namespaces own.
    if (query.namespaceIds !== undefined) {
      listed = listed.where(visibleTo({ visibilities: [], namespaceIds: query.namespaceIds }));
    }
    // Timestamps are ISO-8601 UTC strings of one width, so string order is time order.
    if (query.updatedAfter !== undefined) listed = listed.where('repositories.updated_at', '>', query.updatedAfter);
    if (query.updatedBefore !== undefined) listed = listed.where('repositories.updated_at', '<', query.updatedBefore);
    const ordered = listed
      .orderBy(FORK_ORDER_COLUMN[query.orderBy ?? 'created_at'], sort)
      .orderBy('repositories.id', sort);
    return pageOf(ordered, query, toRepository);
  }

  async countForks(repositoryId: number, viewer: ViewerFilter): Promise<number> {
    return countOf(this.liveForks(repositoryId, viewer));
  }

  async setForkParent(repositoryId: number, parentId: number | null): Promise<Repository> {
    if (parentId !== null) await this.requireRepository(parentId);
    await this.guard(`fork parent of repository ${repositoryId}`, () =>
      this.db
        .updateTable('repositories')
        .set({ forked_from_repo_id: parentId, updated_at: this.now() })
        .where('id', '=', repositoryId)
        .where('deleted_at', 'is', null)
        .execute(),
    );
    return this.requireRepository(repositoryId);
  }

  // Commits ----------------------------------------------------------------------------------

  async createCommit(commit: Commit): Promise<void> {
    await this.guard(`commit ${commit.id}`, () =>
      this.db
        .insertInto('commits')
        .values(fromCommit(commit))
        .execute(),
    );
  }

  async getCommit(id: string): Promise<Commit | undefined> {
    const row = await this.db.selectFrom('commits').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toCommit(row);
  }

  async listHistory(commitId: string, page: Page): Promise<Commit[]> {
    // The walk stops after offset + limit steps: paging a long history costs what it returns,
    // and a parent cycle (which ids from the domain cannot form) could not loop forever.
    const { rows } = await sql<Selectable<CommitTable>>`
      WITH RECURSIVE history(id, depth) AS (
        SELECT ${commitId}, 0
        UNION ALL
        SELECT json_extract(c.parent_ids, '$[0]'), h.depth + 1
          FROM history h JOIN commits c ON c.id = h.id
         WHERE json_extract(c.parent_ids, '$[0]') IS NOT NULL
         LIMIT ${page.offset + page.limit}
      )
      SELECT c.* FROM history h JOIN commits c ON c.id = h.id
       ORDER BY h.depth
       LIMIT ${page.limit} OFFSET ${page.offset}`.execute(this.db);
    return rows.map(toCommit);
  }

  async listNamespaceCommits(namespaceId: number, page: Page): Promise<PageOf<Commit>> {
    const made = this.newestCommits()
      .innerJoin('repositories', 'repositories.id', 'commits.repository_id')
      .where('repositories.namespace_id', '=', namespaceId);
    return pageOf(made, page, toCommit);
  }

  async listPublicCommits(page: Page): Promise<PageOf<Commit>> {
    return pageOf(this.newestCommits().where('commits.is_public', '=', 1), page, toCommit);
  }

  async updateCommit(id: string, patch: CommitPatch): Promise<Commit> {
    return this.transaction((tx) =>
      tx.guard(`commit ${id}`, async () => {
        const current = await tx.getCommit(id);
        if (!current) throw notFound(`commit ${id} does not exist`);
        const updated: Commit = {
          ...current,
          isPublic: patch.isPublic ?? current.isPublic,
          title: patch.title !== undefined ? patch.title : current.title,
          description: patch.description ?? current.description,
        };
        const { is_public, title, description } = fromCommit(updated);
        await tx.db.updateTable('commits').set({ is_public, title, description }).where('id', '=', id).execute();
        return updated;
      }),
    );
  }

  async deleteCommit(id: string): Promise<void> {
    await this.transaction((tx) =>
      tx.guard(`commit ${id}`, async () => {
        // Checked here rather than left to the foreign keys, whose violation reads as not_found.
        const [tag, vm] = await Promise.all([
          tx.db.selectFrom('tags').select('name').where('commit_id', '=', id).executeTakeFirst(),
          tx.db.selectFrom('vms').select('id').where('commit_id', '=', id).executeTakeFirst(),
        ]);
        if (tag) throw conflict(`commit ${id} is tagged "${tag.name}"`);
        if (vm) throw conflict(`commit ${id} is the snapshot of VM ${vm.id}`);
        const { numDeletedRows } = await tx.db.deleteFrom('commits').where('id', '=', id).executeTakeFirstOrThrow();
        if (numDeletedRows === 0n) throw notFound(`commit ${id} does not exist`);
      }),
    );
  }

  // Tags -------------------------------------------------------------------------------------

  async getTag(repositoryId: number, name: string): Promise<Tag | undefined> {
    const row = await this.db
      .selectFrom('tags')
      .selectAll()
      .where('repository_id', '=', repositoryId)
      .where('name', '=', name)
      .executeTakeFirst();
    return row && toTag(row);
  }

  async listTags(repositoryId: number): Promise<Tag[]> {
    const rows = await this.db
      .selectFrom('tags')
      .selectAll()
      .where('repository_id', '=', repositoryId)
      .orderBy('name')
      .execute();
    return rows.map(toTag);
  }

  /** Setting a tag to the commit it already points at changes and logs nothing. */
  async setTag(
    repositoryId: number,
    name: string,
    commitId: string,
    actor: string,
    expectedCommitId?: string | null,
  ): Promise<Tag> {
    return this.transaction((tx) =>
      tx.guard(`tag "${name}"`, async () => {
        const current = await tx.getTag(repositoryId, name);
        if (expectedCommitId !== undefined && (current?.commitId ?? null) !== expectedCommitId) {
          throw conflict(
            `tag "${name}" points at ${current?.commitId ?? 'nothing'}, not ${expectedCommitId ?? 'nothing'}`,
          );
        }
        if (current?.commitId === commitId) return current;
        const at = tx.now();
        let tag: Tag;
        if (current) {
          tag = { ...current, commitId, updatedAt: at };
          await tx.db
            .updateTable('tags')
            .set({ commit_id: commitId, updated_at: at })
            .where('id', '=', tag.id)
            .execute();
        } else {
          tag = { id: uuidv4(), repositoryId, name, commitId, description: '', createdAt: at, updatedAt: at };
          await tx.db.insertInto('tags').values(fromTag(tag)).execute();
        }
        await tx.logTagMove(repositoryId, name, current?.commitId ?? null, commitId, actor, at);
        return tag;
      }),
    );
  }

  async isTagged(repositoryId: number, commitId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('tags')
      .select('id')
      .where('repository_id', '=', repositoryId)
      .where('commit_id', '=', commitId)
      .executeTakeFirst();
    return row !== undefined;
  }

  async foreignPrivateTags(repositoryId: number): Promise<ForeignTag[]> {
    const rows = await this.db
      .selectFrom('tags')
      .innerJoin('commits', 'commits.id', 'tags.commit_id')
      .select((eb) => [eb.fn.min('tags.name').as('tag_name'), 'commits.repository_id as source_id'])
      .where('tags.repository_id', '=', repositoryId)
      .where('commits.repository_id', '!=', repositoryId)
      .where('commits.is_public', '=', 0)
      .groupBy('commits.repository_id')
      .orderBy('commits.repository_id')
      .execute();
    return rows.map((r) => ({ tagName: r.tag_name, sourceRepositoryId: r.source_id }));
  }

  async foreignTaggers(commitId: string): Promise<{ repository: Repository; tagName: string }[]> {
    const rows = await this.liveRepositories()
      .innerJoin('tags', 'tags.repository_id', 'repositories.id')
      .innerJoin('commits', 'commits.id', 'tags.commit_id')
      .select((eb) => eb.fn.min('tags.name').as('tag_name'))
      .where('tags.commit_id', '=', commitId)
      .whereRef('repositories.id', '!=', 'commits.repository_id')
      .groupBy('repositories.id')
      .orderBy('repositories.id')
      .execute();
    return rows.map((r) => ({ repository: toRepository(r), tagName: r.tag_name }));
  }

  async tagsNamed(namespaceId: number, name: string, limit: number): Promise<{ repository: Repository; tag: Tag }[]> {
    const rows = await this.liveRepositories()
      .innerJoin('tags', 'tags.repository_id', 'repositories.id')
      .select(['tags.id as tag_id', 'tags.name as tag_name', 'tags.commit_id as tag_commit_id', 'tags.description as tag_description'])
      .select(['tags.created_at as tag_created_at', 'tags.updated_at as tag_updated_at'])
      .where('repositories.namespace_id', '=', namespaceId)
      .where('tags.name', '=', name)
      .orderBy('repositories.name')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      repository: toRepository(r),
      tag: toTag({
        id: r.tag_id,
        repository_id: r.id,
        name: r.tag_name,
        commit_id: r.tag_commit_id,
        description: r.tag_description,
        created_at: r.tag_created_at,
        updated_at: r.tag_updated_at,
      }),
    }));
  }

  async setTagDescription(repositoryId: number, name: string, description: string): Promise<Tag> {
    return this.transaction(async (tx) => {
      const { numUpdatedRows } = await tx.db
        .updateTable('tags')
        .set({ description, updated_at: tx.now() })
        .where('repository_id', '=', repositoryId)
        .where('name', '=', name)
        .executeTakeFirstOrThrow();
      const tag = numUpdatedRows > 0n ? await tx.getTag(repositoryId, name) : undefined;
      if (!tag) throw notFound(`tag "${name}" does not exist`);
      return tag;
    });
  }

  async deleteTag(repositoryId: number, name: string, actor: string): Promise<boolean> {
    return this.transaction(async (tx) => {
      const current = await tx.getTag(repositoryId, name);
      if (!current) return false;
      await tx.db.deleteFrom('tags').where('id', '=', current.id).execute();
      await tx.logTagMove(repositoryId, name, current.commitId, null, actor, tx.now());
      return true;
    });
  }

  async tagLog(repositoryId: number, tagName?: string): Promise<TagLogEntry[]> {
    let query = this.db.selectFrom('tag_log').selectAll().where('repository_id', '=', repositoryId);
    if (tagName !== undefined) query = query.where('tag_name', '=', tagName);
    // Ids grow with each move; timestamps alone can tie within a millisecond.
    const rows = await query.orderBy('id', 'desc').execute();
    return rows.map(toTagLogEntry);
  }

  async newestTaggedCommitAt(repositoryId: number): Promise<string | null> {
    const row = await this.db
      .selectFrom('tags')
      .innerJoin('commits', 'commits.id', 'tags.commit_id')
      .select((eb) => eb.fn.max<string | null>('commits.created_at').as('at'))
      .where('tags.repository_id', '=', repositoryId)
      .executeTakeFirst();
    return row?.at ?? null;
  }

  private async logTagMove(
    repositoryId: number,
    tagName: string,
    oldCommitId: string | null,
    newCommitId: string | null,
    actor: string,
    at: string,
  ): Promise<void> {
    await this.db
      .insertInto('tag_log')
      .values({
        repository_id: repositoryId,
        tag_name: tagName,
        old_commit_id: oldCommitId,
        new_commit_id: newCommitId,
        actor,
        at,
      })
      .execute();
  }

  // Manifests --------------------------------------------------------------------------------

  async putManifest(manifest: Manifest): Promise<void> {
    const { digest, entries } = manifest;
    await this.transaction((tx) =>
      tx.guard(`manifest ${digest}`, async () => {
        const { numInsertedOrUpdatedRows } = await tx.db
          .insertInto('manifests')
          .values({
            digest,
            entry_count: entries.length,
            total_size: entries.reduce((n, e) => n + e.size, 0),
            created_at: tx.now(),
          })
          .onConflict((oc) => oc.column('digest').doNothing())
          .executeTakeFirstOrThrow();
        // The digest names the content, so a stored manifest is already complete.
        if (numInsertedOrUpdatedRows === 0n) return;
        for (let start = 0; start < entries.length; start += ENTRY_BATCH) {
          const rows = entries
            .slice(start, start + ENTRY_BATCH)
            .map((e, i) => fromManifestEntry(digest, start + i, e));
          await tx.db.insertInto('manifest_entries').values(rows).execute();
        }
      }),
    );
  }

  async getManifest(digest: string): Promise<Manifest | undefined> {
    return this.transaction(async (tx) => {
      const found = await tx.db
        .selectFrom('manifests')
        .select('digest')
        .where('digest', '=', digest)
        .executeTakeFirst();
      if (!found) return undefined;
      const rows = await tx.db
        .selectFrom('manifest_entries')
        .selectAll()
        .where('manifest_digest', '=', digest)
        .orderBy('seq')
        .execute();
      return { digest, entries: rows.map(toManifestEntry) };
    });
  }

  async getManifestSummary(digest: string): Promise<ManifestSummary | undefined> {
    const row = await this.db
      .selectFrom('manifests')
      .select(['entry_count', 'total_size'])
      .where('digest', '=', digest)
      .executeTakeFirst();
    return row && { digest, entryCount: row.entry_count, totalSize: row.total_size };
  }

  // Chunk reachability -----------------------------------------------------------------------

  async recordRepositoryChunks(repositoryId: number, digests: readonly string[]): Promise<void> {
    const at = this.now();
    await this.transaction((tx) =>
      tx.guard(`chunks of repository ${repositoryId}`, async () => {
        for (const batch of batches(unique(digests))) {
          await tx.db
            .insertInto('repository_chunks')
            .values(batch.map((d) => ({ digest: digestBytes(d), repository_id: repositoryId, recorded_at: at })))
            .onConflict((oc) => oc.columns(['digest', 'repository_id']).doNothing())
            .execute();
        }
      }),
    );
  }

  async recordManifestChunks(manifestDigest: string, digests: readonly string[]): Promise<void> {
    await this.transaction((tx) =>
      tx.guard(`chunks of manifest ${manifestDigest}`, async () => {
        for (const batch of batches(unique(digests))) {
          await tx.db
            .insertInto('manifest_chunks')
            .values(batch.map((d) => ({ digest: digestBytes(d), manifest_digest: manifestDigest })))
            .onConflict((oc) => oc.columns(['digest', 'manifest_digest']).doNothing())
            .execute();
        }
      }),
    );
  }

  async reachableChunks(from: ChunkReach, digests: readonly string[]): Promise<Set<string>> {
    const start =
      typeof from === 'object' && 'repositoryId' in from
        ? sql<SqlBool>`r.id = ${from.repositoryId}`
        : visibleSql(from);
    const found = new Set<string>();
    for (const batch of batches(unique(digests))) {
      // The walk goes up inherits_from_repo_id from every starting repository, carrying the
      // earliest fork time on the path: an ancestor reaches only chunks recorded by then.
      // Ancestors may be soft-deleted (their commits still make up their forks' snapshots).
      // Beside that, a starting repository reaches the manifest chunks of the commits its tags
      // point at now (commits made elsewhere and tagged here; forks do not walk these).
      const wanted = sql.join(batch.map(digestBytes));
      const { rows } = await sql<{ digest: Buffer }>`
        WITH RECURSIVE reach(id, cutoff) AS (
          SELECT r.id, ${NO_CUTOFF} FROM repositories r WHERE r.deleted_at IS NULL AND ${start}
          UNION
          SELECT r.inherits_from_repo_id, min(reach.cutoff, r.created_at)
            FROM reach JOIN repositories r ON r.id = reach.id
           WHERE r.inherits_from_repo_id IS NOT NULL
        )
        SELECT rc.digest FROM repository_chunks rc
          JOIN reach ON reach.id = rc.repository_id AND rc.recorded_at <= reach.cutoff
         WHERE rc.digest IN (${wanted})
        UNION
        SELECT mc.digest FROM manifest_chunks mc
          JOIN commits c ON c.manifest_digest = mc.manifest_digest
          JOIN tags t ON t.commit_id = c.id
          JOIN repositories r ON r.id = t.repository_id AND r.deleted_at IS NULL AND ${start}
         WHERE mc.digest IN (${wanted})`.execute(this.db);
      for (const row of rows) found.add(row.digest.toString('hex'));
    }
    return found;
  }

  async recordUploads(userId: number, digests: readonly string[]): Promise<void> {
    const at = this.now();
    await this.transaction((tx) =>
      tx.guard(`uploads of user ${userId}`, async () => {
        for (const batch of batches(unique(digests))) {
          await tx.db
            .insertInto('chunk_uploads')
            .values(batch.map((d) => ({ user_id: userId, digest: digestBytes(d), created_at: at })))
            .onConflict((oc) => oc.columns(['user_id', 'digest']).doUpdateSet({ created_at: at }))
            .execute();
        }
      }),
    );
  }

  async uploadedChunks(userId: number, digests: readonly string[], notBefore: string): Promise<Set<string>> {
    const found = new Set<string>();
    for (const batch of batches(unique(digests))) {
      const rows = await this.db
        .selectFrom('chunk_uploads')
        .select('digest')
        .where('user_id', '=', userId)
        .where('created_at', '>=', notBefore)
        .where('digest', 'in', batch.map(digestBytes))
        .execute();
      for (const row of rows) found.add(row.digest.toString('hex'));
    }
    return found;
  }

  // VMs --------------------------------------------------------------------------------------

  async createVm(vm: Vm): Promise<void> {
    await this.guard(`vm ${vm.id}`, () => this.db.insertInto('vms').values(fromVm(vm)).execute());
  }

  async getVm(id: string): Promise<Vm | undefined> {
    const row = await this.db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toVm(row);
  }

  async listVms(namespaceId: number): Promise<Vm[]> {
    const rows = await this.db
      .selectFrom('vms')
      .selectAll()
      .where('namespace_id', '=', namespaceId)
      .where('deleted_at', 'is', null)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toVm);
  }

  async setVmState(id: string, state: VmState): Promise<boolean> {
    const { numUpdatedRows } = await this.guard(`vm ${id}`, () =>
      this.db.updateTable('vms').set({ state }).where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirstOrThrow(),
    );
    return numUpdatedRows > 0n;
  }

  async deleteVm(id: string): Promise<boolean> {
    const { numUpdatedRows } = await this.guard(`vm ${id}`, () =>
      this.db
        .updateTable('vms')
        .set({ state: 'dead', deleted_at: this.now() })
        .where('id', '=', id)
        .where('deleted_at', 'is', null)
        .executeTakeFirstOrThrow(),
    );
    return numUpdatedRows > 0n;
  }

  async markRunningVmsDead(): Promise<string[]> {
    const rows = await this.guard('vms', () =>
      this.db
        .updateTable('vms')
        .set({ state: 'dead' })
        .where('state', 'in', ['booting', 'running', 'paused'])
        .where('deleted_at', 'is', null)
        .returning('id')
        .execute(),
    );
    return rows.map((r) => r.id);
  }

  // Idempotency keys ---------------------------------------------------------------------------

  async reserveIdempotencyKey(scope: string, key: string, notBefore: string): Promise<IdempotencyReservation> {
    return this.transaction((tx) =>
      tx.guard(`idempotency key "${key}"`, async () => {
        // Forgetting every expired claim here keeps the table bounded by the keys of one expiry
        // window, and frees this key when its own claim has expired. Each row is deleted once,
        // through the created_at index, so the cost is spread over the reservations.
        await tx.db.deleteFrom('idempotency_keys').where('created_at', '<', notBefore).execute();
        const { numInsertedOrUpdatedRows } = await tx.db
          .insertInto('idempotency_keys')
          .values({
            scope,
            key,
            body_digest: null,
            status: null,
            headers: null,
            body: null,
            created_at: tx.now(),
          })
          .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
          .executeTakeFirstOrThrow();
        if (numInsertedOrUpdatedRows === 1n) return { state: 'new' };
        const row = await tx.db
          .selectFrom('idempotency_keys')
          .selectAll()
          .where('scope', '=', scope)
          .where('key', '=', key)
          .executeTakeFirstOrThrow();
        return toReservation(row);
      }),
    );
  }

  async completeIdempotencyKey(scope: string, key: string, bodyDigest: string, response: StoredResponse): Promise<void> {
    await this.guard(`idempotency key "${key}"`, () =>
      this.db
        .updateTable('idempotency_keys')
        .set({ body_digest: bodyDigest, status: response.status, headers: JSON.stringify(response.headers), body: response.body })
        .where('scope', '=', scope)
        .where('key', '=', key)
        .where('status', 'is', null)
        .execute(),
    );
  }

  async releaseIdempotencyKey(scope: string, key: string): Promise<void> {
    await this.guard(`idempotency key "${key}"`, () =>
      this.db.deleteFrom('idempotency_keys').where('scope', '=', scope).where('key', '=', key).execute(),
    );
  }

  /** Closes the database; a transaction-bound store does not own it and leaves it open. */
  async close(): Promise<void> {
    if (!this.db.isTransaction) await this.db.destroy();
  }

  // -------------------------------------------------------------------------------------------

  /** Runs a write, translating driver errors about `subject` into DomainErrors. */
  private async guard<T>(subject: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw toDomainError(e, subject);
    }
  }

  /** The memberships whose `side` is `id`, each with the namespace at the other end, by name. */
  private async membershipsOf(
    side: 'org_id' | 'user_id',
    id: number,
  ): Promise<{ namespace: Namespace; role: Role }[]> {
    const other = side === 'org_id' ? 'memberships.user_id' : 'memberships.org_id';
    const rows = await this.db
      .selectFrom('memberships')
      .innerJoin('namespaces', 'namespaces.id', other)
      .selectAll('namespaces')
      .select('memberships.role')
      .where(`memberships.${side}`, '=', id)
      .orderBy('namespaces.name')
      .execute();
    return rows.map((r) => ({ namespace: toNamespace(r), role: r.role }));
  }

  private liveRepositories() {
    return this.db
      .selectFrom('repositories')
      .innerJoin('namespaces', 'namespaces.id', 'repositories.namespace_id')
      .selectAll('repositories')
      .select('namespaces.name as namespace')
      .where('repositories.deleted_at', 'is', null);
  }

  /** Live direct forks of a repository that `viewer` may see. */
  private liveForks(repositoryId: number, viewer: ViewerFilter) {
    return this.liveRepositories()
      .where('repositories.forked_from_repo_id', '=', repositoryId)
      .where(visibleTo(viewer));
  }

  /** Commits newest first (ids are time-ordered and break ties). */
  private newestCommits() {
    return this.db
      .selectFrom('commits')
      .selectAll('commits')
      .orderBy('commits.created_at', 'desc')
      .orderBy('commits.id', 'desc');
  }

  private async requireRepository(id: number): Promise<Repository> {
    const repo = await this.getRepositoryById(id);
    if (!repo) throw notFound(`repository ${id} does not exist`);
    return repo;
  }
}

// Query helpers -----------------------------------------------------------------------------------

/**
 * The filter of what `viewer` may see, for any query over `repositories`. Empty lists match
 * nothing (Kysely turns an empty `or` into `1 = 0`) instead of emitting `IN ()`.
 */
function visibleTo(viewer: ViewerFilter) {
  return (eb: ExpressionBuilder<Database, 'repositories'>) => {
    if (viewer === 'all') return eb.and([]);
    const { visibilities, namespaceIds } = viewer;
    return eb.or([
      ...(visibilities.length > 0 ? [eb('repositories.visibility', 'in', visibilities)] : []),
      ...(namespaceIds.length > 0 ? [eb('repositories.namespace_id', 'in', namespaceIds)] : []),
    ]);
  };
}

/** visibleTo() as a raw SQL condition on `repositories r`, for the recursive CTE. */
function visibleSql(viewer: ViewerFilter) {
  if (viewer === 'all') return sql<SqlBool>`1 = 1`;
  const { visibilities, namespaceIds } = viewer;
  const terms = [
    ...(visibilities.length > 0 ? [sql<SqlBool>`r.visibility IN (${sql.join(visibilities)})`] : []),
    ...(namespaceIds.length > 0 ? [sql<SqlBool>`r.namespace_id IN (${sql.join(namespaceIds)})`] : []),
  ];
  return terms.length === 0 ? sql<SqlBool>`1 = 0` : sql<SqlBool>`(${sql.join(terms, sql` OR `)})`;
}

const unique = (digests: readonly string[]) => [...new Set(digests)];

function batches<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += DIGEST_BATCH) out.push(items.slice(i, i + DIGEST_BATCH));
  return out;
}

/** A digest as the 32 raw bytes the chunk tables key on; anything but 64 lower-case hex is refused. */
function digestBytes(digest: string): Buffer {
  // Buffer.from(…, 'hex') stops silently at the first non-hex character: check first.
  if (!SHA256_HEX.test(digest)) throw invalid(`"${digest}" is not a lower-case SHA-256 hex digest`);
  return Buffer.from(digest, 'hex');
}

/**
 * `column` contains `needle`, ignoring case: lower() on both sides rather than SQLite's LIKE
 * folding, so that PostgreSQL answers the same. The needle's `%`, `_` and `\` are escaped so
 * that they match themselves.
 */
function containsIgnoringCase(
  eb: ExpressionBuilder<Database, 'repositories' | 'namespaces'>,
  column: 'repositories.name' | 'namespaces.name',
  needle: string,
) {
  const pattern = `%${needle.replace(/[\\%_]/g, '\\$&')}%`;
  return sql<SqlBool>`lower(${eb.ref(column)}) LIKE lower(${pattern}) ESCAPE '\\'`;
}

/** The columns listForks sorts by; there are no stars or activity records yet. */
const FORK_ORDER_COLUMN = {
  id: 'repositories.id',
  name: 'repositories.name',
  path: 'repositories.name',
  created_at: 'repositories.created_at',
  star_count: 'repositories.created_at',
  updated_at: 'repositories.updated_at',
  last_activity_at: 'repositories.updated_at',
} as const satisfies Record<ForkOrder, string>;

/** One page of an ordered query, mapped by `map`, and the number of rows the query matches. */
async function pageOf<TB extends keyof Database, O, T>(
  query: SelectQueryBuilder<Database, TB, O>,
  page: Page,
  map: (row: O) => T,
): Promise<PageOf<T>> {
  const rows = await query.limit(page.limit).offset(page.offset).execute();
  return { items: rows.map(map), total: await countOf(query) };
}

/** How many rows `query` matches. */
async function countOf<TB extends keyof Database, O>(query: SelectQueryBuilder<Database, TB, O>): Promise<number> {
  const { total } = await query
    .clearSelect()
    .clearOrderBy()
    .select((eb) => eb.fn.countAll<number>().as('total'))
    .executeTakeFirstOrThrow();
  return total;
}

// Row mappers: one per table, each direction written once ---------------------------------------

const toNamespace = (r: Selectable<NamespaceTable>): Namespace => ({
  id: r.id,
  name: r.name,
  kind: r.kind,
  displayName: r.display_name,
  createdAt: r.created_at,
});

const toRepository = (r: Selectable<RepositoryTable> & { namespace: string }): Repository => ({
  id: r.id,
  uuid: r.uuid,
  namespaceId: r.namespace_id,
  namespace: r.namespace,
  name: r.name,
  displayName: r.display_name,
  visibility: r.visibility,
  description: r.description,
  defaultTag: r.default_tag,
  forkedFromRepoId: r.forked_from_repo_id,
  inheritsFromRepoId: r.inherits_from_repo_id,
  forkedFromCommitId: r.forked_from_commit_id,
  archived: r.archived === 1,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toCommit = (r: Selectable<CommitTable>): Commit => ({
  id: r.id,
  repositoryId: r.repository_id,
  parentIds: JSON.parse(r.parent_ids) as string[],
  manifestDigest: r.manifest_digest,
  message: r.message,
  author: r.author,
  createdAt: r.created_at,
  isPublic: r.is_public === 1,
  title: r.title,
  description: r.description,
  // Present on commits made from a VM only, so that every other commit reads back as written.
  ...(r.parent_vm_id !== null && { parentVmId: r.parent_vm_id }),
});

const fromCommit = (c: Commit): Selectable<CommitTable> => ({
  id: c.id,
  repository_id: c.repositoryId,
  parent_ids: JSON.stringify(c.parentIds),
  manifest_digest: c.manifestDigest,
  message: c.message,
  author: c.author,
  created_at: c.createdAt,
  is_public: c.isPublic ? 1 : 0,
  title: c.title,
  description: c.description,
  parent_vm_id: c.parentVmId ?? null,
});

const toTag = (r: Selectable<TagTable>): Tag => ({
  id: r.id,
  repositoryId: r.repository_id,
  name: r.name,
  commitId: r.commit_id,
  description: r.description,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const fromTag = (t: Tag): Selectable<TagTable> => ({
  id: t.id,
  repository_id: t.repositoryId,
  name: t.name,
  commit_id: t.commitId,
  description: t.description,
  created_at: t.createdAt,
  updated_at: t.updatedAt,
});

const toTagLogEntry = (r: Selectable<TagLogTable>): TagLogEntry => ({
  tagName: r.tag_name,
  oldCommitId: r.old_commit_id,
  newCommitId: r.new_commit_id,
  actor: r.actor,
  at: r.at,
});

const toManifestEntry = (r: Selectable<ManifestEntryTable>): ManifestEntry => ({
  path: r.path,
  type: r.type,
  mode: r.mode,
  size: r.size,
  mtime: r.mtime,
  linkTarget: r.link_target,
  chunks: unpackChunks(r.chunks),
});

const fromManifestEntry = (
  digest: string,
  seq: number,
  e: ManifestEntry,
): Selectable<ManifestEntryTable> => ({
  manifest_digest: digest,
  seq,
  path: e.path,
  type: e.type,
  mode: e.mode,
  size: e.size,
  mtime: e.mtime,
  link_target: e.linkTarget,
  chunks: packChunks(e.path, e.chunks),
});

const toVm = (r: Selectable<VmTable>): Vm => ({
  id: r.id,
  commitId: r.commit_id,
  repositoryId: r.repository_id,
  namespaceId: r.namespace_id,
  state: r.state,
  labels: JSON.parse(r.labels) as Record<string, string>,
  vcpuCount: r.vcpu_count,
  memSizeMib: r.mem_size_mib,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

const fromVm = (v: Vm): Selectable<VmTable> => ({
  id: v.id,
  commit_id: v.commitId,
  repository_id: v.repositoryId,
  namespace_id: v.namespaceId,
  state: v.state,
  labels: JSON.stringify(v.labels),
  vcpu_count: v.vcpuCount,
  mem_size_mib: v.memSizeMib,
  created_at: v.createdAt,
  deleted_at: v.deletedAt,
});

/** What a reservation that found the key already claimed means. */
const toReservation = (r: Selectable<IdempotencyKeyTable>): IdempotencyReservation => {
  // The table's CHECK sets status, digest, headers and body together.
  if (r.status === null || r.body_digest === null || r.body === null) return { state: 'in_progress' };
  return {
    state: 'done',
    bodyDigest: r.body_digest,
    response: { status: r.status, headers: JSON.parse(r.headers ?? '{}') as Record<string, string>, body: r.body },
  };
};

// Chunk lists ----------------------------------------------------------------------------------
// A chunk list is stored as one blob of fixed 36-byte records: the 32 raw bytes of the chunk's
// SHA-256, then its size as a big-endian uint32. Half the bytes of hex, and no row per chunk.

const CHUNK_RECORD_BYTES = 36;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function packChunks(path: string, chunks: readonly ChunkRef[]): Buffer {
  const packed = Buffer.alloc(chunks.length * CHUNK_RECORD_BYTES);
  chunks.forEach((chunk, i) => {
    // Buffer.write stops silently at the first non-hex character: check before packing.
    const sizeFits = Number.isInteger(chunk.size) && chunk.size >= 0 && chunk.size <= 0xffffffff;
    if (!SHA256_HEX.test(chunk.digest) || !sizeFits) {
      throw invalid(`chunk ${i} of "${path}" needs a lower-case SHA-256 hex digest and a size below 4 GiB`);
    }
    const at = i * CHUNK_RECORD_BYTES;
    packed.write(chunk.digest, at, 32, 'hex');
    packed.writeUInt32BE(chunk.size, at + 32);
  });
  return packed;
}

function unpackChunks(packed: Buffer): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  for (let at = 0; at < packed.length; at += CHUNK_RECORD_BYTES) {
    chunks.push({ digest: packed.toString('hex', at, at + 32), size: packed.readUInt32BE(at + 32) });
  }
  return chunks;
}
