/**
 * Repositories: live and soft-deleted records, name clashes, listings and the fork tree, with
 * the visibility filters the other aggregates reuse.
 */
import { type ExpressionBuilder, type Selectable, type SqlBool, sql } from 'kysely';
import { v4 as uuidv4 } from 'uuid';
import { conflict, type DomainError, notFound } from '../../domain/errors.js';
import type { Page, PageOf, Repository, Visibility } from '../../domain/model.js';
import type {
  ForkOrder,
  ForkQuery,
  NewRepository,
  RepositoryNameField,
  RepositoryPatch,
  ViewerFilter,
} from '../types.js';
import type { DriverFault, SqlDialect } from './dialect.js';
import { countOf, pageOf } from './paging.js';
import type { Database, Executor, RepositoryTable } from './schema.js';

/**
 * Inserts a repository and returns its id. The unique indexes on live names decide between
 * concurrent creators of one name (see nameClash), whatever a caller checked before.
 */
export async function insertRepository(db: Executor, dialect: SqlDialect, repo: NewRepository, now: () => string): Promise<number> {
  const at = now();
  const { id } = await db
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
      archived: dialect.flag(false),
      created_at: at,
      updated_at: at,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return id;
}

export async function getRepository(db: Executor, namespace: string, name: string): Promise<Repository | undefined> {
  // Both name columns ignore case (COLLATE NOCASE, citext), so this lookup does, like the unique indexes.
  const row = await liveRepositories(db)
    .where('namespaces.name', '=', namespace)
    .where('repositories.name', '=', name)
    .executeTakeFirst();
  return row && toRepository(row);
}

export async function getRepositoryById(db: Executor, id: number): Promise<Repository | undefined> {
  const row = await liveRepositories(db).where('repositories.id', '=', id).executeTakeFirst();
  return row && toRepository(row);
}

/** The live repository `id`; not_found when it does not exist or is deleted. */
export async function requireRepository(db: Executor, id: number): Promise<Repository> {
  const repo = await getRepositoryById(db, id);
  if (!repo) throw notFound(`repository ${id} does not exist`);
  return repo;
}

export async function getRepositoryRecord(
  db: Executor,
  id: number,
): Promise<{ repository: Repository; deletedAt: string | null } | undefined> {
  const row = await db
    .selectFrom('repositories')
    .innerJoin('namespaces', 'namespaces.id', 'repositories.namespace_id')
    .selectAll('repositories')
    .select('namespaces.name as namespace')
    .where('repositories.id', '=', id)
    .executeTakeFirst();
  return row && { repository: toRepository(row), deletedAt: row.deleted_at };
}

export async function takenNames(
  db: Executor,
  namespaceId: number,
  names: { name?: string; displayName?: string },
  exceptId?: number,
): Promise<RepositoryNameField[]> {
  const clashes = (field: 'name' | 'display_name', value: string | undefined) =>
    value === undefined
      ? Promise.resolve(false)
      : db
          .selectFrom('repositories')
          .select('id')
          .where('namespace_id', '=', namespaceId)
          // `name` ignores case and `display_name` does not, as their unique indexes compare.
          .where(field, '=', value)
          .where('deleted_at', 'is', null)
          .$if(exceptId !== undefined, (q) => q.where('id', '!=', exceptId!))
          .executeTakeFirst()
          .then((row) => row !== undefined);
  const [name, displayName] = await Promise.all([clashes('name', names.name), clashes('display_name', names.displayName)]);
  return [...(name ? ['name' as const] : []), ...(displayName ? ['displayName' as const] : [])];
}

export async function listRepositories(
  db: Executor,
  namespaceId: number,
  page: Page,
  visibilities?: readonly Visibility[],
): Promise<PageOf<Repository>> {
  const listed = liveRepositories(db)
    .where('repositories.namespace_id', '=', namespaceId)
    .where(visibleTo(visibilities ? { visibilities, namespaceIds: [] } : 'all'))
    .orderBy('repositories.name');
  return pageOf(listed, page, toRepository);
}

/** Applies `patch` to the live repository `id`; a deleted or absent one is left as it is. */
export async function updateRepository(
  db: Executor,
  dialect: SqlDialect,
  id: number,
  patch: RepositoryPatch,
  now: () => string,
): Promise<void> {
  await db
    .updateTable('repositories')
    .set({
      ...(patch.name !== undefined && { name: patch.name }),
      ...(patch.displayName !== undefined && { display_name: patch.displayName }),
      ...(patch.description !== undefined && { description: patch.description }),
      ...(patch.visibility !== undefined && { visibility: patch.visibility }),
      ...(patch.archived !== undefined && { archived: dialect.flag(patch.archived) }),
      ...(patch.defaultTag !== undefined && { default_tag: patch.defaultTag }),
      updated_at: now(),
    })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .execute();
}

/** Soft-deletes the live repository `id` as of `at`; not_found when there is none. */
export async function deleteRepository(db: Executor, id: number, at: string): Promise<void> {
  const { numUpdatedRows } = await db
    .updateTable('repositories')
    .set({ deleted_at: at, updated_at: at })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  if (numUpdatedRows === 0n) throw notFound(`repository ${id} does not exist`);
}

/** The id of the repository named `name` in the namespace deleted last and not purged yet. */
export async function findRestorable(db: Executor, namespaceId: number, name: string): Promise<number | undefined> {
  const row = await db
    .selectFrom('repositories')
    .select('id')
    .where('namespace_id', '=', namespaceId)
    .where('name', '=', name)
    .where('deleted_at', 'is not', null)
    .where('purged_at', 'is', null)
    .orderBy('deleted_at', 'desc')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  return row?.id;
}

/**
 * Makes the deleted, unpurged repository `id` live again; answers when it had been deleted.
 * not_found when there is no such repository; a live one of the same name makes the unique
 * index refuse (nameClash). Two statements: run it inside a transaction.
 */
export async function undeleteRepository(db: Executor, id: number, now: () => string): Promise<string> {
  const row = await db.selectFrom('repositories').select('deleted_at').where('id', '=', id).where('purged_at', 'is', null).executeTakeFirst();
  const deletedAt = row?.deleted_at;
  // Checked by the update too: of two concurrent restores one changes the row, the other nothing.
  const { numUpdatedRows } = deletedAt
    ? await db.updateTable('repositories').set({ deleted_at: null, updated_at: now() }).where('id', '=', id).where('deleted_at', '=', deletedAt).where('purged_at', 'is', null).executeTakeFirstOrThrow()
    : { numUpdatedRows: 0n };
  if (!deletedAt || numUpdatedRows === 0n) throw notFound(`repository ${id} is not deleted, or was purged`);
  return deletedAt;
}

export async function listAllRepositories(db: Executor, viewer: ViewerFilter, page: Page, search?: string): Promise<PageOf<Repository>> {
  const listed = liveRepositories(db)
    .where(visibleTo(viewer))
    .$if(search !== undefined, (q) => q.where(nameContains(search ?? '')))
    .orderBy('repositories.created_at', 'desc')
    .orderBy('repositories.id', 'desc');
  return pageOf(listed, page, toRepository);
}

export async function listForks(
  db: Executor,
  dialect: SqlDialect,
  repositoryId: number,
  query: ForkQuery,
): Promise<PageOf<Repository>> {
  const sort = query.sort ?? 'desc';
  let listed = liveForks(db, repositoryId, query.viewer);
  if (query.archived !== undefined) listed = listed.where('repositories.archived', '=', dialect.flag(query.archived));
  if (query.visibility !== undefined) listed = listed.where('repositories.visibility', '=', query.visibility);
  if (query.search !== undefined) listed = listed.where(nameContains(query.search));
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

export async function countForks(db: Executor, repositoryId: number, viewer: ViewerFilter): Promise<number> {
  return countOf(liveForks(db, repositoryId, viewer));
}

/**
 * Points the live repository's fork parent at the live `parentId` (or at nothing); its
 * inheritance stays. `not_found` when either is not live. Checks, then writes: run it inside a
 * transaction. The parent's row is locked (FOR SHARE) where the engine has row locks, so that a
 * concurrent delete of the parent waits for this link, or this link sees the delete.
 */
export async function setForkParent(
  db: Executor,
  dialect: SqlDialect,
  repositoryId: number,
  parentId: number | null,
  now: () => string,
): Promise<void> {
  if (parentId !== null) {
    const parent = await db
      .selectFrom('repositories')
      .select('id')
      .where('id', '=', parentId)
      .where('deleted_at', 'is', null)
      .$if(dialect.rowLocks, (q) => q.forShare())
      .executeTakeFirst();
    if (!parent) throw notFound(`repository ${parentId} does not exist`);
  }
  const { numUpdatedRows } = await db
    .updateTable('repositories')
    .set({ forked_from_repo_id: parentId, updated_at: now() })
    .where('id', '=', repositoryId)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  if (numUpdatedRows === 0n) throw notFound(`repository ${repositoryId} does not exist`);
}

/**
 * The `conflict` of a unique violation on a live name, saying which field clashes as
 * MetadataStore.takenNames does (`details.taken`): what a caller that checked the names
 * beforehand still meets when a concurrent writer took the name in between.
 */
export function nameClash(fault: DriverFault): DomainError | undefined {
  if (fault.kind !== 'unique') return undefined;
  // PostgreSQL names the index (repositories_live_display_name), SQLite its columns.
  const field: RepositoryNameField = fault.detail.includes('display_name') ? 'displayName' : 'name';
  return conflict(`the ${field === 'name' ? 'name' : 'title'} of the repository is taken`, { taken: [field] });
}

/** Live repositories, each row with its namespace's name as `namespace`; see toRepository. */
export function liveRepositories(db: Executor) {
  return db
    .selectFrom('repositories')
    .innerJoin('namespaces', 'namespaces.id', 'repositories.namespace_id')
    .selectAll('repositories')
    .select('namespaces.name as namespace')
    .where('repositories.deleted_at', 'is', null);
}

/** Live direct forks of a repository that `viewer` may see. */
function liveForks(db: Executor, repositoryId: number, viewer: ViewerFilter) {
  return liveRepositories(db).where('repositories.forked_from_repo_id', '=', repositoryId).where(visibleTo(viewer));
}

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

/** visibleTo() as a raw SQL condition on `repositories r`, for a recursive CTE. */
export function visibleSql(viewer: ViewerFilter) {
  if (viewer === 'all') return sql<SqlBool>`1 = 1`;
  const { visibilities, namespaceIds } = viewer;
  const terms = [
    ...(visibilities.length > 0 ? [sql<SqlBool>`r.visibility IN (${sql.join(visibilities)})`] : []),
    ...(namespaceIds.length > 0 ? [sql<SqlBool>`r.namespace_id IN (${sql.join(namespaceIds)})`] : []),
  ];
  return terms.length === 0 ? sql<SqlBool>`1 = 0` : sql<SqlBool>`(${sql.join(terms, sql` OR `)})`;
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

/** The repository's name or its namespace's name contains `needle`, ignoring case. */
function nameContains(needle: string) {
  return (eb: ExpressionBuilder<Database, 'repositories' | 'namespaces'>) =>
    eb.or([containsIgnoringCase(eb, 'repositories.name', needle), containsIgnoringCase(eb, 'namespaces.name', needle)]);
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

export const toRepository = (r: Selectable<RepositoryTable> & { namespace: string }): Repository => ({
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
  archived: Boolean(r.archived),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});
