/**
 * The ChunkIndex in PostgreSQL, for several servers over one bucket: the metadata's database
 * (SNAPFORK_DATABASE_URL) holds it too, in tables of its own that it creates at open. They are
 * not part of the metadata schema and its migrations: the embedded setup keeps its index in
 * chunks/index.db, and this one versions itself (chunk_index_version, as the SQLite file's
 * user_version).
 *
 *   chunk_packs      (id, live, size)                 one row per pack with a live chunk
 *   chunk_locations  (digest → pack, offset, sizes)   one row per indexed chunk
 *
 * Digests are bytea (32 bytes): half the size of their hex text in the table and its primary key
 * (which a 1 TiB dataset fills with ~16 million entries), and ordered bytewise whatever the
 * database's collation, which is the order of their lowercase hex, as page() promises.
 *
 * Every call is a fixed number of round trips, whatever its size: digests go as one array
 * parameter (`= ANY($1)`, `unnest`), never one statement per chunk.
 */
import pg from 'pg';
import { DomainError } from '../../domain/errors.js';
import type { ChunkTotals } from '../types.js';
import type { ChunkIndex, ChunkLocation, IndexedChunk, IndexedPack, Removal, SparsePack } from '../packs/chunk-index.js';
import { ENTRY_HEADER_SIZE, PACK_HEADER_SIZE, type Compression } from '../packs/pack-format.js';

/** 2: chunk_packs.created_at (garbage collection sweeps only chunks of packs older than its grace). */
const INDEX_VERSION = 2;
const DIGEST = /^[0-9a-f]{64}$/;
/** Serializes the CREATE TABLEs of servers opening the index at once (IF NOT EXISTS alone races). */
const SCHEMA_LOCK = 0x736e_6368_756e; // "snchun", an arbitrary key of this index's own

interface LocationRow {
  digest: string;
  pack: string;
  entry_offset: string;
  stored_size: string;
  size: string;
  compression: Compression;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS chunk_index_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version   INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS chunk_packs (
    id   TEXT PRIMARY KEY,
    live BIGINT NOT NULL CHECK (live >= 0),
    size BIGINT NOT NULL
  );
  -- Format 2. Packs of format 1 count as old (0), which is what they are.
  ALTER TABLE chunk_packs ADD COLUMN IF NOT EXISTS created_at BIGINT NOT NULL DEFAULT 0;
  -- The pack's row is written after its chunks, with their count (publish), so the reference
  -- is checked at commit.
  CREATE TABLE IF NOT EXISTS chunk_locations (
    digest       BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    pack         TEXT NOT NULL REFERENCES chunk_packs (id) DEFERRABLE INITIALLY DEFERRED,
    entry_offset BIGINT NOT NULL,
    stored_size  BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    compression  TEXT NOT NULL CHECK (compression IN ('zstd', 'none'))
  );
  CREATE INDEX IF NOT EXISTS chunk_locations_pack ON chunk_locations (pack);
`;

export class PostgresChunkIndex implements ChunkIndex {
  private constructor(private readonly pool: pg.Pool) {}

  /**
   * Connects to `url` (postgres://...), creates the index's tables when missing, and refuses an
   * index format newer than this code reads.
   */
  static async open(url: string): Promise<PostgresChunkIndex> {
    const pool = new pg.Pool({ connectionString: url });
    // An idle connection the server drops is an 'error' event, which would otherwise end the process.
    pool.on('error', () => undefined);
    try {
      await transaction(pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await client.query(SCHEMA);
        await client.query('INSERT INTO chunk_index_version (version) VALUES ($1) ON CONFLICT DO NOTHING', [INDEX_VERSION]);
        await client.query('UPDATE chunk_index_version SET version = $1 WHERE version < $1', [INDEX_VERSION]);
        const { rows } = await client.query<{ version: number }>('SELECT version FROM chunk_index_version');
        const version = rows[0]!.version;
        if (version > INDEX_VERSION) throw new Error(`the chunk index in PostgreSQL has format ${version}; this snapfork reads ${INDEX_VERSION}`);
      });
      return new PostgresChunkIndex(pool);
    } catch (e) {
      await pool.end();
      throw e;
    }
  }

  async locate(digests: readonly string[]): Promise<Map<string, ChunkLocation>> {
    // Anything but a lowercase SHA-256 hex digest is indexed under no key, so it is absent.
    const wanted = [...new Set(digests.filter((d) => DIGEST.test(d)))];
    if (wanted.length === 0) return new Map();
    const { rows } = await this.pool.query<LocationRow>(
      `SELECT encode(digest, 'hex') AS digest, pack, entry_offset, stored_size, size, compression
         FROM chunk_locations WHERE digest = ANY($1::bytea[])`,
      [wanted.map(bytesOf)],
    );
    return new Map(rows.map((r) => [r.digest, locationOf(r)]));
  }

  /**
   * One transaction: the chunks of every pack in one INSERT, then the packs that got any, with
   * their counts. Chunks go in digest order, so two servers publishing overlapping packs lock
   * their common digests in the same order and wait for each other rather than deadlock; the
   * second then finds them indexed (ON CONFLICT DO NOTHING) and does not count them.
   */
  async publish(packs: readonly IndexedPack[]): Promise<string[]> {
    // A digest in two packs of one call keeps its first pack's location, as in separate calls.
    const entries = new Map<string, ChunkLocation>();
    for (const pack of packs) {
      for (const e of pack.entries) {
        if (!DIGEST.test(e.digest)) throw new Error(`not a SHA-256 hex digest: ${e.digest}`);
        if (!entries.has(e.digest)) entries.set(e.digest, { ...e, pack: pack.id });
      }
    }
    const rows = [...entries.values()];
    const live = await guard(() =>
      transaction(this.pool, async (client) => {
        const inserted = await client.query<{ pack: string; live: string }>(
          `WITH inserted AS (
             INSERT INTO chunk_locations (digest, pack, entry_offset, stored_size, size, compression)
             SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) ORDER BY 1
             ON CONFLICT (digest) DO NOTHING
             RETURNING pack)
           SELECT pack, count(*) AS live FROM inserted GROUP BY pack`,
          [
            rows.map((e) => bytesOf(e.digest)),
            rows.map((e) => e.pack),
            rows.map((e) => e.offset),
            rows.map((e) => e.storedSize),
            rows.map((e) => e.size),
            rows.map((e) => e.compression),
          ],
        );
        const live = new Map(inserted.rows.map((r) => [r.pack, Number(r.live)]));
        const kept = packs.filter((p) => live.has(p.id));
        if (kept.length > 0) {
          await client.query(
            'INSERT INTO chunk_packs (id, live, size, created_at) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])',
            [kept.map((p) => p.id), kept.map((p) => live.get(p.id)), kept.map((p) => p.size), kept.map((p) => p.createdAt)],
          );
        }
        return live;
      }),
    );
    return packs.filter((p) => !live.has(p.id)).map((p) => p.id);
  }

  /**
   * One transaction: the chunks' rows go and their packs' counts drop in one statement, whose
   * UPDATE holds the packs' row locks until commit, so that of concurrent removals from one pack
   * exactly one sees its count reach 0 and deletes it.
   */
  async removeMany(digests: readonly string[]): Promise<Removal> {
    const wanted = [...new Set(digests.filter((d) => DIGEST.test(d)))].sort();
    if (wanted.length === 0) return { chunks: 0, storedBytes: 0, emptiedPacks: [] };
    return guard(() =>
      transaction(this.pool, async (client) => {
        const { rows } = await client.query<{ pack: string; live: string; chunks: string; stored_bytes: string }>(
          `WITH gone AS (DELETE FROM chunk_locations WHERE digest = ANY($1::bytea[]) RETURNING pack, stored_size),
                counts AS (SELECT pack, count(*) AS chunks, sum(stored_size) AS stored_bytes FROM gone GROUP BY pack)
           UPDATE chunk_packs SET live = live - counts.chunks FROM counts WHERE chunk_packs.id = counts.pack
           RETURNING chunk_packs.id AS pack, chunk_packs.live, counts.chunks, counts.stored_bytes`,
          [wanted.map(bytesOf)],
        );
        const emptiedPacks = rows.filter((r) => Number(r.live) === 0).map((r) => r.pack);
        if (emptiedPacks.length > 0) await client.query('DELETE FROM chunk_packs WHERE id = ANY($1::text[])', [emptiedPacks]);
        return {
          chunks: rows.reduce((n, r) => n + Number(r.chunks), 0),
          storedBytes: rows.reduce((n, r) => n + Number(r.stored_bytes), 0),
          emptiedPacks,
        };
      }),
    );
  }

  async sparsePacks(maxLiveFraction: number, limit: number): Promise<SparsePack[]> {
    const { rows } = await this.pool.query<{ id: string; size: string; live_bytes: string }>(
      `SELECT id, size, live_bytes FROM (
         SELECT p.id, p.size, ${PACK_HEADER_SIZE} + coalesce(sum(c.stored_size + ${ENTRY_HEADER_SIZE}), 0) AS live_bytes
           FROM chunk_packs p LEFT JOIN chunk_locations c ON c.pack = p.id GROUP BY p.id, p.size) AS packs
        WHERE live_bytes < $1::float8 * size ORDER BY live_bytes::float8 / size LIMIT $2`,
      [maxLiveFraction, limit],
    );
    return rows.map((r) => ({ id: r.id, size: Number(r.size), liveBytes: Number(r.live_bytes) }));
  }

  async packEntries(id: string): Promise<ChunkLocation[]> {
    const { rows } = await this.pool.query<LocationRow>(
      `SELECT encode(digest, 'hex') AS digest, pack, entry_offset, stored_size, size, compression
         FROM chunk_locations WHERE pack = $1 ORDER BY entry_offset`,
      [id],
    );
    return rows.map(locationOf);
  }

  /** One transaction; the packs' counts change by one statement each, as in removeMany(). */
  async relocate(from: string, to: IndexedPack): Promise<{ moved: number; emptied: boolean }> {
    return guard(() =>
      transaction(this.pool, async (client) => {
        await client.query('INSERT INTO chunk_packs (id, live, size, created_at) VALUES ($1, 0, $2, $3)', [to.id, to.size, to.createdAt]);
        const { rows } = await client.query<{ moved: string }>(
          `WITH moved AS (
             UPDATE chunk_locations c SET pack = $1, entry_offset = m.entry_offset
               FROM unnest($2::bytea[], $3::bigint[]) AS m(digest, entry_offset)
              WHERE c.digest = m.digest AND c.pack = $4
             RETURNING 1)
           SELECT count(*) AS moved FROM moved`,
          [to.id, to.entries.map((e) => bytesOf(e.digest)), to.entries.map((e) => e.offset), from],
        );
        const moved = Number(rows[0]!.moved);
        if (moved > 0) await client.query('UPDATE chunk_packs SET live = live + $1 WHERE id = $2', [moved, to.id]);
        else await client.query('DELETE FROM chunk_packs WHERE id = $1', [to.id]);
        const left = await client.query<{ live: string }>('UPDATE chunk_packs SET live = live - $1 WHERE id = $2 RETURNING live', [moved, from]);
        const emptied = left.rows.length === 0 || Number(left.rows[0]!.live) === 0;
        if (emptied) await client.query('DELETE FROM chunk_packs WHERE id = $1', [from]);
        return { moved, emptied };
      }),
    );
  }

  async packIds(): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ id: string }>('SELECT id FROM chunk_packs');
    return new Set(rows.map((r) => r.id));
  }

  async page(after: string, limit: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ digest: string }>(
      `SELECT encode(digest, 'hex') AS digest FROM chunk_locations WHERE digest > $1 ORDER BY digest LIMIT $2`,
      [bytesOf(after), limit],
    );
    return rows.map((r) => r.digest);
  }

  async entries(after: string, limit: number): Promise<IndexedChunk[]> {
    const { rows } = await this.pool.query<{ digest: string; stored_size: string; created_at: string }>(
      `SELECT encode(c.digest, 'hex') AS digest, c.stored_size, p.created_at
         FROM chunk_locations c JOIN chunk_packs p ON p.id = c.pack
        WHERE c.digest > $1 ORDER BY c.digest LIMIT $2`,
      [bytesOf(after), limit],
    );
    return rows.map((r) => ({ digest: r.digest, storedSize: Number(r.stored_size), packCreatedAt: Number(r.created_at) }));
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT count(*)::float8 AS n FROM chunk_locations');
    return rows[0]!.n;
  }

  async totals(): Promise<ChunkTotals> {
    const { rows } = await this.pool.query<ChunkTotals>(
      `SELECT (SELECT count(*) FROM chunk_locations)::float8 AS "chunks",
              (SELECT coalesce(sum(stored_size), 0) FROM chunk_locations)::float8 AS "storedBytes",
              (SELECT count(*) FROM chunk_packs)::float8 AS "packs",
              (SELECT coalesce(sum(size), 0) FROM chunk_packs)::float8 AS "packBytes"`,
    );
    return rows[0]!;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

const bytesOf = (hex: string) => Buffer.from(hex, 'hex');

function locationOf(r: LocationRow): ChunkLocation {
  return { digest: r.digest, pack: r.pack, offset: Number(r.entry_offset), storedSize: Number(r.stored_size), size: Number(r.size), compression: r.compression };
}

/** Runs `work` in a transaction on one connection of `pool`: committed when it resolves, rolled back when it throws. */
async function transaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** A full disk (SQLSTATE 53100) is insufficient_storage; other errors pass unchanged. */
async function guard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if ((e as { code?: unknown } | null)?.code === '53100') {
      throw new DomainError('insufficient_storage', 'no space left in the chunk index database');
    }
    throw e;
  }
}
