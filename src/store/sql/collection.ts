/**
 * What garbage collection asks of the metadata (src/domain/gc.service.ts): which commits are
 * live, the chunks their manifests list, and the deletions of a sweep. The walk of the commit
 * graph runs in the database (a recursive query), so its size costs the server no memory.
 *
 * Live commits: those tags point at, those the tags of a deleted repository pointed at when it
 * was deleted (until it is purged: restoreRepository brings them back), repositories' fork points, the base commits of VMs not deleted, commits made from VMs (Vers
 * keeps them until they are deleted, tagged or not), commits made since `since` (a commit a
 * client has just been answered, not yet tagged), and every ancestor of one of these.
 */
import { type RawBuilder, sql } from 'kysely';
import type { SqlDialect } from './dialect.js';
import { unpackChunks } from './manifests.js';
import { releaseCharges } from './quotas.js';
import type { Unreachable } from '../types.js';
import type { Executor, Timestamp } from './schema.js';

/** Digests per statement: 2 values a row stay far below SQLite's bound parameters. */
const DIGEST_BATCH = 4000;
/** Manifest entries read per statement while listing a manifest's chunks. */
const ENTRY_PAGE = 1000;

/** A query of the ids of every live commit, to use as a subquery. */
function liveCommits(dialect: SqlDialect, since: Timestamp): RawBuilder<{ id: string }> {
  return sql<{ id: string }>`
    WITH RECURSIVE live(id) AS (
      SELECT id FROM (
        SELECT t.commit_id AS id FROM tags t
        UNION SELECT l.old_commit_id FROM tag_log l JOIN repositories r ON r.id = l.repository_id
               WHERE r.deleted_at IS NOT NULL AND r.purged_at IS NULL AND l.at = r.deleted_at AND l.new_commit_id IS NULL
        UNION SELECT r.forked_from_commit_id FROM repositories r WHERE r.forked_from_commit_id IS NOT NULL AND r.purged_at IS NULL
        UNION SELECT v.commit_id FROM vms v WHERE v.deleted_at IS NULL
        UNION SELECT c.id FROM commits c JOIN repositories r ON r.id = c.repository_id
               WHERE r.purged_at IS NULL AND (c.parent_vm_id IS NOT NULL OR c.created_at >= ${dialect.timestamp(since)})
      ) AS roots
      UNION
      SELECT p.value FROM live JOIN commits c ON c.id = live.id CROSS JOIN ${dialect.jsonElements(sql`c.parent_ids`, 'p')}
    )
    SELECT id FROM live`;
}

/** The digests of the manifests of every live commit. */
export async function liveManifests(db: Executor, dialect: SqlDialect, since: Timestamp): Promise<string[]> {
  const { rows } = await sql<{ manifest_digest: string }>`
    SELECT DISTINCT c.manifest_digest FROM commits c WHERE c.id IN (${liveCommits(dialect, since)})`.execute(db);
  return rows.map((r) => r.manifest_digest);
}

/** The digests of the chunks a manifest lists, a page of its entries at a time (duplicates kept). */
export async function* manifestChunkDigests(db: Executor, manifestDigest: string): AsyncGenerator<string[]> {
  for (let after = -1; ; ) {
    const rows = await db
      .selectFrom('manifest_entries')
      .select(['seq', 'chunks'])
      .where('manifest_digest', '=', manifestDigest)
      .where('seq', '>', after)
      .orderBy('seq')
      .limit(ENTRY_PAGE)
      .execute();
    if (rows.length === 0) return;
    yield rows.flatMap((r) => unpackChunks(r.chunks).map((c) => c.digest));
    after = rows.at(-1)!.seq;
  }
}

/** Counts the commits that are not live and the manifests only they hold. */
export async function countUnreachable(db: Executor, dialect: SqlDialect, since: Timestamp): Promise<Unreachable> {
  const live = liveCommits(dialect, since);
  const { rows } = await sql<{ commits: number | string; manifests: number | string }>`
    SELECT
      (SELECT count(*) FROM commits WHERE id NOT IN (${live})) AS commits,
      (SELECT count(*) FROM manifests m WHERE NOT EXISTS (
         SELECT 1 FROM commits c WHERE c.manifest_digest = m.digest AND c.id IN (${live}))) AS manifests`.execute(db);
  return { commits: Number(rows[0]!.commits), manifests: Number(rows[0]!.manifests) };
}

/**
 * Deletes the commits that are not live, the rows of deleted VMs made from them, and the
 * manifests no commit holds any more. Several statements: run it inside a transaction.
 */
export async function deleteUnreachable(db: Executor, dialect: SqlDialect, since: Timestamp): Promise<Unreachable> {
  const live = liveCommits(dialect, since);
  await sql`DELETE FROM vms WHERE deleted_at IS NOT NULL AND commit_id NOT IN (${live})`.execute(db);
  const commits = await sql`DELETE FROM commits WHERE id NOT IN (${live})`.execute(db);
  const orphan = sql`SELECT m.digest FROM manifests m WHERE NOT EXISTS (SELECT 1 FROM commits c WHERE c.manifest_digest = m.digest)`;
  await sql`DELETE FROM manifest_chunks WHERE manifest_digest IN (${orphan})`.execute(db);
  await sql`DELETE FROM manifest_entries WHERE manifest_digest IN (${orphan})`.execute(db);
  const manifests = await sql`DELETE FROM manifests WHERE digest IN (${orphan})`.execute(db);
  return { commits: Number(commits.numAffectedRows ?? 0n), manifests: Number(manifests.numAffectedRows ?? 0n) };
}

/**
 * Purges the repositories deleted before `deletedBefore` (every deleted one when null): they can
 * no longer be restored, so what their tags held is no longer kept for them. Their rows stay, as
 * forks' ancestors. Answers how many were purged.
 */
export async function purgeRepositories(db: Executor, deletedBefore: Timestamp | null, now: Timestamp): Promise<number> {
  let purge = db.updateTable('repositories').set({ purged_at: now }).where('deleted_at', 'is not', null).where('purged_at', 'is', null);
  if (deletedBefore !== null) purge = purge.where('deleted_at', '<', deletedBefore);
  const { numUpdatedRows } = await purge.executeTakeFirst();
  return Number(numUpdatedRows);
}

/** Those of `digests` some user sent at or after `since` (ChunkUploadTable), whoever it was. */
export async function uploadedSince(db: Executor, digests: readonly string[], since: Timestamp): Promise<Set<string>> {
  const found = new Set<string>();
  for (let i = 0; i < digests.length; i += DIGEST_BATCH) {
    const rows = await db
      .selectFrom('chunk_uploads')
      .select('digest')
      .distinct()
      .where('created_at', '>=', since)
      .where('digest', 'in', digests.slice(i, i + DIGEST_BATCH).map((d) => Buffer.from(d, 'hex')))
      .execute();
    for (const row of rows) found.add(row.digest.toString('hex'));
  }
  return found;
}

/**
 * Forgets chunks that are no longer stored: the repositories and manifests that recorded them
 * no longer reach them, so a push sends them again rather than skip them, and the namespaces
 * they were charged to get their bytes back.
 */
export async function forgetChunks(db: Executor, digests: readonly string[]): Promise<void> {
  for (let i = 0; i < digests.length; i += DIGEST_BATCH) {
    const batch = digests.slice(i, i + DIGEST_BATCH).map((d) => Buffer.from(d, 'hex'));
    await db.deleteFrom('repository_chunks').where('digest', 'in', batch).execute();
    await db.deleteFrom('manifest_chunks').where('digest', 'in', batch).execute();
    await releaseCharges(db, batch);
  }
}

/** Deletes the upload records older than `before`, which count for nothing any more. */
export async function pruneUploads(db: Executor, before: Timestamp): Promise<number> {
  const { numDeletedRows } = await db.deleteFrom('chunk_uploads').where('created_at', '<', before).executeTakeFirst();
  return Number(numDeletedRows);
}
