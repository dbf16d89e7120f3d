/** Commits: immutable snapshots but for their publication fields, and the history walk. */
import { type Selectable, sql } from 'kysely';
import { conflict, type DomainError, notFound } from '../../domain/errors.js';
import type { Commit, Page, PageOf } from '../../domain/model.js';
import type { CommitPatch } from '../types.js';
import type { DriverFault, SqlDialect } from './dialect.js';
import { pageOf } from './paging.js';
import type { CommitTable, Executor, Timestamp } from './schema.js';

export async function insertCommit(db: Executor, dialect: SqlDialect, commit: Commit): Promise<void> {
  await db.insertInto('commits').values(fromCommit(dialect, commit)).execute();
}

export async function getCommit(db: Executor, id: string): Promise<Commit | undefined> {
  const row = await db.selectFrom('commits').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toCommit(row);
}

export async function listHistory(db: Executor, dialect: SqlDialect, commitId: string, page: Page): Promise<Commit[]> {
  // The walk stops after offset + limit steps: paging a long history costs what it returns,
  // and a parent cycle (which ids from the domain cannot form) could not loop forever. A depth
  // bound rather than a LIMIT inside the CTE, which PostgreSQL does not implement.
  const firstParent = dialect.firstJsonElement(sql`c.parent_ids`);
  const { rows } = await sql<Selectable<CommitTable>>`
    WITH RECURSIVE history(id, depth) AS (
      SELECT CAST(${commitId} AS TEXT), 0
      UNION ALL
      SELECT ${firstParent}, h.depth + 1
        FROM history h JOIN commits c ON c.id = h.id
       WHERE ${firstParent} IS NOT NULL
         AND h.depth + 1 < ${page.offset + page.limit}
    )
    SELECT c.* FROM history h JOIN commits c ON c.id = h.id
     ORDER BY h.depth
     LIMIT ${page.limit} OFFSET ${page.offset}`.execute(db);
  return rows.map(toCommit);
}

export async function listNamespaceCommits(db: Executor, namespaceId: number, page: Page): Promise<PageOf<Commit>> {
  const made = newestCommits(db)
    .innerJoin('repositories', 'repositories.id', 'commits.repository_id')
    .where('repositories.namespace_id', '=', namespaceId);
  return pageOf(made, page, toCommit);
}

export async function listPublicCommits(db: Executor, dialect: SqlDialect, page: Page): Promise<PageOf<Commit>> {
  return pageOf(newestCommits(db).where('commits.is_public', '=', dialect.flag(true)), page, toCommit);
}

/** One statement: the fields the patch names change together, the others stay as they are. */
export async function updateCommit(db: Executor, dialect: SqlDialect, id: string, patch: CommitPatch): Promise<Commit> {
  const changes = {
    ...(patch.isPublic !== undefined && { is_public: dialect.flag(patch.isPublic) }),
    ...(patch.title !== undefined && { title: patch.title }),
    ...(patch.description !== undefined && { description: patch.description }),
  };
  const row =
    Object.keys(changes).length === 0
      ? await db.selectFrom('commits').selectAll().where('id', '=', id).executeTakeFirst()
      : await db.updateTable('commits').set(changes).where('id', '=', id).returningAll().executeTakeFirst();
  if (!row) throw notFound(`commit ${id} does not exist`);
  return toCommit(row);
}

/**
 * One statement that deletes only while no tag or VM refers to the commit; when it deletes
 * nothing, reads say why. A tag or VM that a concurrent transaction adds meanwhile makes the
 * engine's foreign key check fail the delete instead (see stillReferred).
 */
/** Run it inside a transaction: the commit goes and its tombstone lands together. */
export async function deleteCommit(db: Executor, id: string, at: Timestamp): Promise<void> {
  const { numDeletedRows } = await db
    .deleteFrom('commits')
    .where('id', '=', id)
    .where((eb) => eb.not(eb.exists(eb.selectFrom('tags').select('id').where('commit_id', '=', id))))
    .where((eb) => eb.not(eb.exists(eb.selectFrom('vms').select('id').where('commit_id', '=', id))))
    .executeTakeFirstOrThrow();
  if (numDeletedRows > 0n) {
    await db.insertInto('deleted_commits').values({ id, deleted_at: at }).onConflict((oc) => oc.column('id').doNothing()).execute();
    return;
  }
  const [tag, vm] = await Promise.all([
    db.selectFrom('tags').select('name').where('commit_id', '=', id).executeTakeFirst(),
    db.selectFrom('vms').select('id').where('commit_id', '=', id).executeTakeFirst(),
  ]);
  if (tag) throw conflict(`commit ${id} is tagged "${tag.name}"`);
  if (vm) throw conflict(`commit ${id} is the snapshot of VM ${vm.id}`);
  throw notFound(`commit ${id} does not exist`);
}

/** A foreign key violation of deleteCommit: a tag or VM came to refer to the commit meanwhile. */
export function stillReferred(id: string) {
  return (fault: DriverFault): DomainError | undefined =>
    fault.kind === 'foreign_key' ? conflict(`commit ${id} is tagged or the snapshot of a VM`) : undefined;
}

/** Commits newest first (ids are time-ordered and break ties). */
function newestCommits(db: Executor) {
  return db.selectFrom('commits').selectAll('commits').orderBy('commits.created_at', 'desc').orderBy('commits.id', 'desc');
}

export const toCommit = (r: Selectable<CommitTable>): Commit => ({
  id: r.id,
  repositoryId: r.repository_id,
  parentIds: JSON.parse(r.parent_ids) as string[],
  manifestDigest: r.manifest_digest,
  message: r.message,
  author: r.author,
  createdAt: r.created_at,
  isPublic: Boolean(r.is_public),
  title: r.title,
  description: r.description,
  // Present on commits made from a VM only, so that every other commit reads back as written.
  ...(r.parent_vm_id !== null && { parentVmId: r.parent_vm_id }),
});

const fromCommit = (dialect: SqlDialect, c: Commit): Selectable<CommitTable> => ({
  id: c.id,
  repository_id: c.repositoryId,
  parent_ids: JSON.stringify(c.parentIds),
  manifest_digest: c.manifestDigest,
  message: c.message,
  author: c.author,
  created_at: c.createdAt,
  is_public: dialect.flag(c.isPublic),
  title: c.title,
  description: c.description,
  parent_vm_id: c.parentVmId ?? null,
});
