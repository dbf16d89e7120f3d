/**
 * Chunk reachability: which chunks a repository recorded, which chunks a manifest holds, and
 * which chunks a user uploaded recently, so that a push need not resend what its target reaches.
 */
import { type SqlBool, sql } from 'kysely';
import { invalid } from '../../domain/errors.js';
import type { ChunkReach } from '../types.js';
import type { SqlDialect } from './dialect.js';
import { SHA256_HEX } from './manifests.js';
import { visibleSql } from './repositories.js';
import type { Executor } from './schema.js';

// Digests per statement of the chunk tables: 3 values a row stay far below SQLite's 32,766 bound
// parameters, and a 1 GiB snapshot's ~16K chunk rows take 4 statements.
const DIGEST_BATCH = 4000;

/** Later than any timestamp: a starting repository reaches all of its own chunks. */
const NO_CUTOFF = '9999-12-31T23:59:59.999Z';

/** One statement per batch: run it inside a transaction. */
export async function recordRepositoryChunks(
  db: Executor,
  repositoryId: number,
  digests: readonly string[],
  at: string,
): Promise<void> {
  for (const batch of batches(unique(digests))) {
    await db
      .insertInto('repository_chunks')
      .values(batch.map((d) => ({ digest: digestBytes(d), repository_id: repositoryId, recorded_at: at })))
      .onConflict((oc) => oc.columns(['digest', 'repository_id']).doNothing())
      .execute();
  }
}

/** One statement per batch: run it inside a transaction. */
export async function recordManifestChunks(db: Executor, manifestDigest: string, digests: readonly string[]): Promise<void> {
  for (const batch of batches(unique(digests))) {
    await db
      .insertInto('manifest_chunks')
      .values(batch.map((d) => ({ digest: digestBytes(d), manifest_digest: manifestDigest })))
      .onConflict((oc) => oc.columns(['digest', 'manifest_digest']).doNothing())
      .execute();
  }
}

export async function reachableChunks(
  db: Executor,
  dialect: SqlDialect,
  from: ChunkReach,
  digests: readonly string[],
): Promise<Set<string>> {
  const start =
    typeof from === 'object' && 'repositoryId' in from ? sql<SqlBool>`r.id = ${from.repositoryId}` : visibleSql(from);
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
        SELECT r.id, ${dialect.timestamp(NO_CUTOFF)} FROM repositories r WHERE r.deleted_at IS NULL AND ${start}
        UNION
        SELECT r.inherits_from_repo_id, ${dialect.earlier(sql`reach.cutoff`, sql`r.created_at`)}
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
       WHERE mc.digest IN (${wanted})`.execute(db);
    for (const row of rows) found.add(row.digest.toString('hex'));
  }
  return found;
}

/** One statement per batch: run it inside a transaction. */
export async function recordUploads(db: Executor, userId: number, digests: readonly string[], at: string): Promise<void> {
  for (const batch of batches(unique(digests))) {
    await db
      .insertInto('chunk_uploads')
      .values(batch.map((d) => ({ user_id: userId, digest: digestBytes(d), created_at: at })))
      .onConflict((oc) => oc.columns(['user_id', 'digest']).doUpdateSet({ created_at: at }))
      .execute();
  }
}

export async function uploadedChunks(
  db: Executor,
  userId: number,
  digests: readonly string[],
  notBefore: string,
): Promise<Set<string>> {
  const found = new Set<string>();
  for (const batch of batches(unique(digests))) {
    const rows = await db
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

/**
 * Without duplicates, and sorted: concurrent writers of overlapping sets then take the index
 * entries' locks in one order (PostgreSQL), so they queue rather than deadlock.
 */
export const unique = (digests: readonly string[]) => [...new Set(digests)].sort();

export function batches<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += DIGEST_BATCH) out.push(items.slice(i, i + DIGEST_BATCH));
  return out;
}

/** A digest as the 32 raw bytes the chunk tables key on; anything but 64 lower-case hex is refused. */
export function digestBytes(digest: string): Buffer {
  // Buffer.from(…, 'hex') stops silently at the first non-hex character: check first.
  if (!SHA256_HEX.test(digest)) throw invalid(`"${digest}" is not a lower-case SHA-256 hex digest`);
  return Buffer.from(digest, 'hex');
}
