/**
 * What storage accounting asks of the metadata (src/domain/storage-stats.service.ts): which
 * manifests a repository's tags point at, how many files a manifest holds, and totals over the
 * whole store. Each is one statement that answers a row or a list as long as the tags, never a
 * manifest's entries.
 */
import { sql } from 'kysely';
import type { MetadataTotals } from '../types.js';
import type { Executor } from './schema.js';

/** The manifest digest of each tag of the repository, by tag name. */
export async function tagManifests(db: Executor, repositoryId: number): Promise<string[]> {
  const rows = await db
    .selectFrom('tags')
    .innerJoin('commits', 'commits.id', 'tags.commit_id')
    .select('commits.manifest_digest')
    .where('tags.repository_id', '=', repositoryId)
    .orderBy('tags.name')
    .execute();
  return rows.map((r) => r.manifest_digest);
}

/** The file entries of a manifest, counted in the database (its entries never come back). */
export async function countManifestFiles(db: Executor, manifestDigest: string): Promise<number> {
  const row = await db
    .selectFrom('manifest_entries')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('manifest_digest', '=', manifestDigest)
    .where('type', '=', 'file')
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/**
 * Counts of live repositories, commits and manifests, and the logical bytes: per live
 * repository, the total sizes of the distinct manifests its tags point at, summed.
 */
export async function metadataTotals(db: Executor): Promise<MetadataTotals> {
  const { rows } = await sql<Record<keyof MetadataTotals, number | string>>`
    SELECT
      (SELECT count(*) FROM repositories WHERE deleted_at IS NULL) AS "repositories",
      (SELECT count(*) FROM commits) AS "commits",
      (SELECT count(*) FROM manifests) AS "manifests",
      (SELECT coalesce(sum(m.total_size), 0)
         FROM (SELECT DISTINCT t.repository_id, c.manifest_digest
                 FROM tags t JOIN commits c ON c.id = t.commit_id JOIN repositories r ON r.id = t.repository_id
                WHERE r.deleted_at IS NULL) AS tagged
         JOIN manifests m ON m.digest = tagged.manifest_digest) AS "logicalBytes"`.execute(db);
  const row = rows[0]!;
  return { repositories: Number(row.repositories), commits: Number(row.commits), manifests: Number(row.manifests), logicalBytes: Number(row.logicalBytes) };
}
