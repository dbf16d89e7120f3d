/**
 * What fsck reads of the metadata: commits and the chunk lists of manifests' files, paged by key
 * (never by offset, whose cost grows with the page number), and existence checks in batches.
 * Plain Kysely: the same statements run on SQLite and PostgreSQL.
 */
import type { Commit } from '../../domain/model.js';
import type { FileChunks, ManifestEntryKey } from '../types.js';
import { toCommit } from './commits.js';
import { unpackChunks } from './manifests.js';
import { countOf } from './paging.js';
import type { Executor } from './schema.js';

/** Keys per IN list: far below SQLite's 32,766 bound parameters. */
const KEY_BATCH = 1000;

export async function listCommitsAfter(db: Executor, after: string, limit: number): Promise<Commit[]> {
  const rows = await db.selectFrom('commits').selectAll().where('id', '>', after).orderBy('id').limit(limit).execute();
  return rows.map(toCommit);
}

export async function missingCommits(db: Executor, ids: readonly string[]): Promise<string[]> {
  return absent(ids, async (batch) => {
    const [live, deleted] = await Promise.all([
      db.selectFrom('commits').select('id').where('id', 'in', batch).execute(),
      db.selectFrom('deleted_commits').select('id').where('id', 'in', batch).execute(),
    ]);
    return [...live, ...deleted].map((r) => r.id);
  });
}

export async function missingManifests(db: Executor, digests: readonly string[]): Promise<string[]> {
  return absent(digests, async (batch) => {
    const rows = await db.selectFrom('manifests').select('digest').where('digest', 'in', batch).execute();
    return rows.map((r) => r.digest);
  });
}

export async function countManifests(db: Executor): Promise<number> {
  return countOf(db.selectFrom('manifests').select('digest'));
}

/** Walks the primary key (manifest_digest, seq) from `after`: each page is one range of the index. */
export async function listFileChunksAfter(db: Executor, after: ManifestEntryKey | null, limit: number): Promise<FileChunks[]> {
  let query = db
    .selectFrom('manifest_entries')
    .select(['manifest_digest', 'seq', 'path', 'chunks'])
    .where('type', '=', 'file')
    .orderBy('manifest_digest')
    .orderBy('seq')
    .limit(limit);
  // A row-value comparison, which both engines seek on in the key; the equivalent OR of two
  // conditions makes SQLite scan each manifest from its first entry for every page.
  if (after) query = query.where((eb) => eb(eb.refTuple('manifest_digest', 'seq'), '>', eb.tuple(after.manifestDigest, after.seq)));
  const rows = await query.execute();
  return rows.map((r) => ({ manifestDigest: r.manifest_digest, seq: r.seq, path: r.path, chunks: unpackChunks(r.chunks) }));
}

/** Those of `keys` that `present` (asked in batches) does not answer, distinct, in input order. */
async function absent(keys: readonly string[], present: (batch: string[]) => Promise<string[]>): Promise<string[]> {
  const unique = [...new Set(keys)];
  const found = new Set<string>();
  for (let start = 0; start < unique.length; start += KEY_BATCH) {
    for (const key of await present(unique.slice(start, start + KEY_BATCH))) found.add(key);
  }
  return unique.filter((key) => !found.has(key));
}
