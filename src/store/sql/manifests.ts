/** Manifests: content-addressed file lists, each entry's chunk list packed into one blob. */
import { sql, type RawBuilder, type Selectable } from 'kysely';
import { invalid } from '../../domain/errors.js';
import type { ChunkList, ChunkRef, EntryHead, Manifest, ManifestEntry, ManifestSummary, StoredEntry } from '../../domain/model.js';
import { sha256 } from '../../lib/sha256.js';
import type { SqlDialect } from './dialect.js';
import type { Executor, ManifestEntryTable } from './schema.js';

// Rows of 9 values: 500 of them stay far below SQLite's 32,766 bound parameters per statement
// while making a 20,000-entry manifest 40 statements.
const ENTRY_BATCH = 500;

/** Several statements: run it inside a transaction. */
export async function putManifest(db: Executor, manifest: Manifest, now: () => string): Promise<void> {
  const { digest, entries } = manifest;
  const { numInsertedOrUpdatedRows } = await db
    .insertInto('manifests')
    .values({
      digest,
      entry_count: entries.length,
      total_size: entries.reduce((n, e) => n + e.size, 0),
      created_at: now(),
    })
    .onConflict((oc) => oc.column('digest').doNothing())
    .executeTakeFirstOrThrow();
  // The digest names the content, so a stored manifest is already complete.
  if (numInsertedOrUpdatedRows === 0n) return;
  for (let start = 0; start < entries.length; start += ENTRY_BATCH) {
    const rows = entries.slice(start, start + ENTRY_BATCH).map((e, i) => fromManifestEntry(digest, start + i, e));
    await db.insertInto('manifest_entries').values(rows).execute();
  }
}

/** Two reads that must see one state: run it inside a transaction. */
export async function getManifest(db: Executor, digest: string): Promise<Manifest | undefined> {
  const found = await db.selectFrom('manifests').select('digest').where('digest', '=', digest).executeTakeFirst();
  if (!found) return undefined;
  const rows = await db
    .selectFrom('manifest_entries')
    .selectAll()
    .where('manifest_digest', '=', digest)
    .orderBy('seq')
    .execute();
  return { digest, entries: rows.map(toManifestEntry) };
}

export async function getManifestSummary(db: Executor, digest: string): Promise<ManifestSummary | undefined> {
  const row = await db
    .selectFrom('manifests')
    .select(['entry_count', 'total_size'])
    .where('digest', '=', digest)
    .executeTakeFirst();
  return row && { digest, entryCount: row.entry_count, totalSize: row.total_size };
}

/**
 * The entry at `path`: its key from the index on (manifest_digest, path) (0012), then its row by
 * that key. Asked for both columns at once, SQLite (without ANALYZE statistics) walks the
 * primary key's every row of the manifest instead, 2.4 ms for 20,000 entries against 0.03 ms.
 */
export async function getManifestEntry(db: Executor, digest: string, path: string): Promise<StoredEntry | undefined> {
  const row = await db
    .selectFrom('manifest_entries')
    .select([...HEAD_COLUMNS, 'chunks'])
    .where('manifest_digest', '=', digest)
    .where('seq', 'in', db.selectFrom('manifest_entries').select('seq').where('manifest_digest', '=', digest).where('path', '=', path))
    .executeTakeFirst();
  return row && { ...toEntryHead(row), chunks: new PackedChunkList(row.chunks) };
}

/**
 * Two reads of the index on (manifest_digest, path) at most. `path` compares by bytes on both
 * engines (BINARY in SQLite, COLLATE "C" in PostgreSQL since 0012), and every path below `dir`
 * lies between `dir/` and `dir0`. First a plain range, the cheapest read of a run of entries
 * directly below `dir`; when it spent rows on subtrees, the rest comes from skipScan, which
 * seeks once per child instead of reading what lies below (measured in SQLite for 200
 * children: 0.7 ms for a range, 2.7 ms for a skip scan; the root of 100 directories of 200
 * files: 3.3 ms for a skip scan, its 20,000 paths for a range).
 */
export async function listChildEntries(
  db: Executor,
  dialect: SqlDialect,
  digest: string,
  range: { dir: string; after?: string; limit: number },
): Promise<EntryHead[]> {
  const prefix = range.dir === '' ? '' : `${range.dir}/`;
  if (range.after !== undefined && !range.after.startsWith(prefix)) throw invalid(`"${range.after}" is not below "${range.dir}"`);
  const scan = { digest, dir: range.dir, start: range.after === undefined ? prefix : successorOf(prefix, range.after) };
  let query = db.selectFrom('manifest_entries as e').select(HEAD_COLUMNS).where('e.manifest_digest', '=', digest).where('e.path', '>=', scan.start);
  if (range.dir !== '') query = query.where('e.path', '<', `${range.dir}0`);
  const rows = await query.orderBy('e.path').limit(range.limit).execute();
  const children: EntryHead[] = [];
  let subtree: string | undefined;
  for (const row of rows) {
    if (subtree !== undefined && row.path.startsWith(subtree)) continue;
    const slash = row.path.indexOf('/', prefix.length);
    subtree = slash < 0 ? undefined : row.path.slice(0, slash + 1);
    children.push(toEntryHead(row));
  }
  // A short range read everything there is; a full one may have spent rows on a subtree.
  if (rows.length < range.limit || children.length === range.limit) return children;
  const rest = await skipScan(db, dialect, { ...scan, start: successorOf(prefix, rows.at(-1)!.path) }, range.limit - children.length);
  return [...children, ...rest];
}

/**
 * A skip scan in one statement: each step seeks the first path at or after the previous one's
 * successor (successorOf, in SQL), from `start`, `limit` steps at most.
 */
async function skipScan(db: Executor, dialect: SqlDialect, scan: { digest: string; dir: string; start: string }, limit: number): Promise<EntryHead[]> {
  const { digest, dir, start } = scan;
  // Characters, as substr and instr count them (a JS length counts UTF-16 units).
  const prefixLength = dir === '' ? 0 : [...dir].length + 1;
  const below = dir === '' ? sql`` : sql`AND e.path < ${`${dir}0`}`;
  const first = (bound: RawBuilder<string>) =>
    sql<string>`(SELECT e.path FROM manifest_entries e WHERE e.manifest_digest = ${digest} AND e.path >= ${bound} ${below} ORDER BY e.path LIMIT 1)`;
  const slash = dialect.position(sql<string>`substr(w.path, ${prefixLength + 1})`, '/');
  const successor = sql<string>`CASE WHEN ${slash} = 0 THEN w.path || ${JUST_AFTER} ELSE substr(w.path, 1, ${prefixLength} + ${slash} - 1) || '0' END`;
  // The entries are fetched by IN, not by a join, which SQLite would drive from the manifest's
  // every entry; the paths the scan yields rise, so path order is the scan's order.
  const { rows } = await sql<Pick<Selectable<ManifestEntryTable>, (typeof HEAD_COLUMNS)[number]>>`
    WITH RECURSIVE w (n, path) AS (
      SELECT 1, ${first(sql<string>`${start}`)}
      UNION ALL
      SELECT w.n + 1, ${first(successor)} FROM w WHERE w.path IS NOT NULL AND w.n < ${limit}
    )
    SELECT e.path, e.type, e.mode, e.size, e.mtime, e.link_target FROM manifest_entries e
    WHERE e.manifest_digest = ${digest} AND e.path IN (SELECT w.path FROM w)
    ORDER BY e.path`.execute(db);
  return rows.map(toEntryHead);
}

/** Where a listing goes on after `path` (below `prefix`): just after it, or past its child's subtree ('0' is the byte after '/'). */
function successorOf(prefix: string, path: string): string {
  const slash = path.indexOf('/', prefix.length);
  return slash < 0 ? path + JUST_AFTER : `${path.slice(0, slash)}0`;
}

/**
 * The successor of a path among paths: they hold no NUL (normalizeEntryPath; PostgreSQL's text
 * cannot either), so every path after `p` is at or after `p` + U+0001.
 */
const JUST_AFTER = '\u0001';

const HEAD_COLUMNS = ['path', 'type', 'mode', 'size', 'mtime', 'link_target'] as const;

const toEntryHead = (r: Pick<Selectable<ManifestEntryTable>, (typeof HEAD_COLUMNS)[number]>): EntryHead => ({
  path: r.path,
  type: r.type,
  mode: r.mode,
  size: r.size,
  mtime: r.mtime,
  linkTarget: r.link_target,
});

const toManifestEntry = (r: Selectable<ManifestEntryTable>): ManifestEntry => ({ ...toEntryHead(r), chunks: unpackChunks(r.chunks) });

const fromManifestEntry = (digest: string, seq: number, e: ManifestEntry): Selectable<ManifestEntryTable> => ({
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

// Chunk lists ----------------------------------------------------------------------------------
// A chunk list is stored as one blob of fixed 36-byte records: the 32 raw bytes of the chunk's
// SHA-256, then its size as a big-endian uint32. Half the bytes of hex, and no row per chunk.

const CHUNK_RECORD_BYTES = 36;
export const SHA256_HEX = /^[0-9a-f]{64}$/;

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

export function unpackChunks(packed: Buffer): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  for (let at = 0; at < packed.length; at += CHUNK_RECORD_BYTES) {
    chunks.push({ digest: packed.toString('hex', at, at + 32), size: packed.readUInt32BE(at + 32) });
  }
  return chunks;
}

/**
 * A packed list read in place: locating a byte scans the 4-byte sizes (~20 µs for the ~1,000
 * chunks of 64 MiB, ~0.2 ms for a 1 GiB file), which measured too little to be worth storing
 * cumulative offsets; digests are turned to hex only for the chunks a read touches.
 */
class PackedChunkList implements ChunkList {
  readonly count: number;

  constructor(private readonly packed: Buffer) {
    this.count = packed.length / CHUNK_RECORD_BYTES;
  }

  covering(start: number, end: number): { offset: number; digests: Iterable<string> } {
    const { packed } = this;
    let at = 0;
    let offset = 0;
    for (; at < packed.length; at += CHUNK_RECORD_BYTES) {
      const size = packed.readUInt32BE(at + 32);
      if (offset + size > start) break;
      offset += size;
    }
    const first = at;
    for (let reached = offset; at < packed.length && reached <= end; at += CHUNK_RECORD_BYTES) reached += packed.readUInt32BE(at + 32);
    const last = end < start ? first : at;
    function* digests() {
      for (let i = first; i < last; i += CHUNK_RECORD_BYTES) yield packed.toString('hex', i, i + 32);
    }
    return { offset, digests: digests() };
  }

  digest(): string {
    return sha256(this.packed);
  }
}
