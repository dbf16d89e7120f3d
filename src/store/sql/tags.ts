/** Tags, their log of moves, and the questions asked of them across repositories. */
import type { Selectable } from 'kysely';
import { v4 as uuidv4 } from 'uuid';
import { conflict, notFound } from '../../domain/errors.js';
import type { Repository, Tag } from '../../domain/model.js';
import type { ForeignTag, TagLogEntry } from '../types.js';
import type { SqlDialect } from './dialect.js';
import { liveRepositories, toRepository } from './repositories.js';
import type { Executor, TagLogTable, TagTable } from './schema.js';

export async function getTag(db: Executor, repositoryId: number, name: string): Promise<Tag | undefined> {
  const row = await db
    .selectFrom('tags')
    .selectAll()
    .where('repository_id', '=', repositoryId)
    .where('name', '=', name)
    .executeTakeFirst();
  return row && toTag(row);
}

export async function listTags(db: Executor, repositoryId: number): Promise<Tag[]> {
  const rows = await db.selectFrom('tags').selectAll().where('repository_id', '=', repositoryId).orderBy('name').execute();
  return rows.map(toTag);
}

/** How often setTag reads again after a concurrent writer moved the tag under it. */
const SET_TAG_ATTEMPTS = 5;

/**
 * Setting a tag to the commit it already points at changes and logs nothing. A compare-and-set
 * that holds on any engine without a global lock: the write only lands if the tag still points
 * where it was read to point (UPDATE ... WHERE commit_id = read one, checked by rows affected;
 * INSERT ... ON CONFLICT DO NOTHING when it was absent). A writer that lost the race reads again:
 * with an expectation, it then fails it (conflict); without, it retries, a bounded number of
 * times. Several statements: run it inside a transaction, so that the log lands with the move.
 */
export async function setTag(
  db: Executor,
  repositoryId: number,
  name: string,
  commitId: string,
  actor: string,
  expectedCommitId: string | null | undefined,
  now: () => string,
): Promise<Tag> {
  for (let attempt = 1; ; attempt++) {
    const current = await getTag(db, repositoryId, name);
    if (expectedCommitId !== undefined && (current?.commitId ?? null) !== expectedCommitId) {
      throw conflict(`tag "${name}" points at ${current?.commitId ?? 'nothing'}, not ${expectedCommitId ?? 'nothing'}`);
    }
    if (current?.commitId === commitId) return current;
    const at = now();
    const tag: Tag = current
      ? { ...current, commitId, updatedAt: at }
      : { id: uuidv4(), repositoryId, name, commitId, description: '', createdAt: at, updatedAt: at };
    const written = current
      ? (
          await db
            .updateTable('tags')
            .set({ commit_id: commitId, updated_at: at })
            .where('id', '=', current.id)
            .where('commit_id', '=', current.commitId)
            .executeTakeFirstOrThrow()
        ).numUpdatedRows
      : (
          await db
            .insertInto('tags')
            .values(fromTag(tag))
            .onConflict((oc) => oc.columns(['repository_id', 'name']).doNothing())
            .executeTakeFirstOrThrow()
        ).numInsertedOrUpdatedRows;
    if (written === 1n) {
      await logTagMove(db, repositoryId, name, current?.commitId ?? null, commitId, actor, at);
      return tag;
    }
    if (attempt === SET_TAG_ATTEMPTS) throw conflict(`tag "${name}" keeps being moved by others; try again`);
  }
}

export async function isTagged(db: Executor, repositoryId: number, commitId: string): Promise<boolean> {
  const row = await db
    .selectFrom('tags')
    .select('id')
    .where('repository_id', '=', repositoryId)
    .where('commit_id', '=', commitId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function foreignPrivateTags(db: Executor, dialect: SqlDialect, repositoryId: number): Promise<ForeignTag[]> {
  const rows = await db
    .selectFrom('tags')
    .innerJoin('commits', 'commits.id', 'tags.commit_id')
    .select((eb) => [eb.fn.min('tags.name').as('tag_name'), 'commits.repository_id as source_id'])
    .where('tags.repository_id', '=', repositoryId)
    .where('commits.repository_id', '!=', repositoryId)
    .where('commits.is_public', '=', dialect.flag(false))
    .groupBy('commits.repository_id')
    .orderBy('commits.repository_id')
    .execute();
  return rows.map((r) => ({ tagName: r.tag_name, sourceRepositoryId: r.source_id }));
}

export async function foreignTaggers(
  db: Executor,
  commitId: string,
): Promise<{ repository: Repository; tagName: string }[]> {
  const rows = await liveRepositories(db)
    .innerJoin('tags', 'tags.repository_id', 'repositories.id')
    .innerJoin('commits', 'commits.id', 'tags.commit_id')
    .select((eb) => eb.fn.min('tags.name').as('tag_name'))
    .where('tags.commit_id', '=', commitId)
    .whereRef('repositories.id', '!=', 'commits.repository_id')
    // namespaces.name too: PostgreSQL takes only the grouped table's own columns as determined by its key.
    .groupBy(['repositories.id', 'namespaces.name'])
    .orderBy('repositories.id')
    .execute();
  return rows.map((r) => ({ repository: toRepository(r), tagName: r.tag_name }));
}

export async function tagsNamed(
  db: Executor,
  namespaceId: number,
  name: string,
  limit: number,
): Promise<{ repository: Repository; tag: Tag }[]> {
  const rows = await liveRepositories(db)
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

export async function setTagDescription(
  db: Executor,
  repositoryId: number,
  name: string,
  description: string,
  now: () => string,
): Promise<Tag> {
  const row = await db
    .updateTable('tags')
    .set({ description, updated_at: now() })
    .where('repository_id', '=', repositoryId)
    .where('name', '=', name)
    .returningAll()
    .executeTakeFirst();
  if (!row) throw notFound(`tag "${name}" does not exist`);
  return toTag(row);
}

/**
 * The delete returns the commit it removed, so the log names the commit the tag really pointed
 * at, whatever moved it meanwhile. Two statements: run it inside a transaction.
 */
export async function deleteTag(
  db: Executor,
  repositoryId: number,
  name: string,
  actor: string,
  now: () => string,
): Promise<boolean> {
  const deleted = await db
    .deleteFrom('tags')
    .where('repository_id', '=', repositoryId)
    .where('name', '=', name)
    .returning('commit_id')
    .executeTakeFirst();
  if (!deleted) return false;
  await logTagMove(db, repositoryId, name, deleted.commit_id, null, actor, now());
  return true;
}

/**
 * The tags of repository `id` whose last log entry is a deletion at `at` (a repository's
 * deletion removes its tags at its own time), with the commits they held, where those remain.
 */
export async function tagsDeletedAt(db: Executor, repositoryId: number, at: string): Promise<{ name: string; commitId: string }[]> {
  const rows = await db
    .selectFrom('tag_log as l')
    .innerJoin('commits as c', 'c.id', 'l.old_commit_id')
    .select(['l.tag_name', 'c.id'])
    .where('l.repository_id', '=', repositoryId)
    .where('l.at', '=', at)
    .where('l.new_commit_id', 'is', null)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb.selectFrom('tag_log as later').select('later.id').where('later.repository_id', '=', repositoryId).whereRef('later.tag_name', '=', 'l.tag_name').whereRef('later.id', '>', 'l.id'),
        ),
      ),
    )
    .execute();
  return rows.map((r) => ({ name: r.tag_name, commitId: r.id }));
}

export async function tagLog(db: Executor, repositoryId: number, tagName?: string): Promise<TagLogEntry[]> {
  let query = db.selectFrom('tag_log').selectAll().where('repository_id', '=', repositoryId);
  if (tagName !== undefined) query = query.where('tag_name', '=', tagName);
  // Ids grow with each move; timestamps alone can tie within a millisecond.
  const rows = await query.orderBy('id', 'desc').execute();
  return rows.map(toTagLogEntry);
}

export async function newestTaggedCommitAt(db: Executor, repositoryId: number): Promise<string | null> {
  const row = await db
    .selectFrom('tags')
    .innerJoin('commits', 'commits.id', 'tags.commit_id')
    .select((eb) => eb.fn.max<string | null>('commits.created_at').as('at'))
    .where('tags.repository_id', '=', repositoryId)
    .executeTakeFirst();
  return row?.at ?? null;
}

async function logTagMove(
  db: Executor,
  repositoryId: number,
  tagName: string,
  oldCommitId: string | null,
  newCommitId: string | null,
  actor: string,
  at: string,
): Promise<void> {
  await db
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
