/** Commits: immutable snapshots but for their publication fields, and the history walk. */
import { type Selectable, sql } from 'kysely';
import { conflict, notFound } from '../../domain/errors.js';
import type { Commit, Page, PageOf } from '../../domain/model.js';
import type { CommitPatch } from '../types.js';
import { pageOf } from './paging.js';
import type { CommitTable, Executor } from './schema.js';

export async function insertCommit(db: Executor, commit: Commit): Promise<void> {
  await db.insertInto('commits').values(fromCommit(commit)).execute();
}

export async function getCommit(db: Executor, id: string): Promise<Commit | undefined> {
  const row = await db.selectFrom('commits').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toCommit(row);
}

export async function listHistory(db: Executor, commitId: string, page: Page): Promise<Commit[]> {
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
     LIMIT ${page.limit} OFFSET ${page.offset}`.execute(db);
  return rows.map(toCommit);
}

export async function listNamespaceCommits(db: Executor, namespaceId: number, page: Page): Promise<PageOf<Commit>> {
  const made = newestCommits(db)
    .innerJoin('repositories', 'repositories.id', 'commits.repository_id')
    .where('repositories.namespace_id', '=', namespaceId);
  return pageOf(made, page, toCommit);
}

export async function listPublicCommits(db: Executor, page: Page): Promise<PageOf<Commit>> {
  return pageOf(newestCommits(db).where('commits.is_public', '=', 1), page, toCommit);
}

/** Read, then write: run it inside a transaction. */
export async function updateCommit(db: Executor, id: string, patch: CommitPatch): Promise<Commit> {
  const current = await getCommit(db, id);
  if (!current) throw notFound(`commit ${id} does not exist`);
  const updated: Commit = {
    ...current,
    isPublic: patch.isPublic ?? current.isPublic,
    title: patch.title !== undefined ? patch.title : current.title,
    description: patch.description ?? current.description,
  };
  const { is_public, title, description } = fromCommit(updated);
  await db.updateTable('commits').set({ is_public, title, description }).where('id', '=', id).execute();
  return updated;
}

/** Checks, then deletes: run it inside a transaction. */
export async function deleteCommit(db: Executor, id: string): Promise<void> {
  // Checked here rather than left to the foreign keys, whose violation reads as not_found.
  const [tag, vm] = await Promise.all([
    db.selectFrom('tags').select('name').where('commit_id', '=', id).executeTakeFirst(),
    db.selectFrom('vms').select('id').where('commit_id', '=', id).executeTakeFirst(),
  ]);
  if (tag) throw conflict(`commit ${id} is tagged "${tag.name}"`);
  if (vm) throw conflict(`commit ${id} is the snapshot of VM ${vm.id}`);
  const { numDeletedRows } = await db.deleteFrom('commits').where('id', '=', id).executeTakeFirstOrThrow();
  if (numDeletedRows === 0n) throw notFound(`commit ${id} does not exist`);
}

/** Commits newest first (ids are time-ordered and break ties). */
function newestCommits(db: Executor) {
  return db.selectFrom('commits').selectAll('commits').orderBy('commits.created_at', 'desc').orderBy('commits.id', 'desc');
}

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
