/**
 * The ChunkIndex in a SQLite file beside local packs: `chunks/index.db`, whose schema is part of
 * the storage format (storage/README.md, "Index"). better-sqlite3 is synchronous and in-process,
 * so a batch is a loop of prepared statements inside one call, not a round trip per digest.
 */
import BetterSqlite3 from 'better-sqlite3';
import { DomainError } from '../../domain/errors.js';
import { WAL_SIZE_LIMIT } from '../sqlite/wal-size.js';
import type { ChunkTotals } from '../types.js';
import type { ChunkIndex, ChunkLocation, IndexedChunk, IndexedPack, Removal, SparsePack } from './chunk-index.js';
import { ENTRY_HEADER_SIZE, PACK_HEADER_SIZE, type Compression } from './pack-format.js';

/** 2: packs have a created_at (garbage collection sweeps only chunks of packs older than its grace). */
const INDEX_VERSION = 2;

interface ChunkRow {
  pack: string;
  offset: number;
  stored_size: number;
  size: number;
  compression: Compression;
}

export class SqliteChunkIndex implements ChunkIndex {
  private readonly statements;

  private constructor(private readonly db: BetterSqlite3.Database) {
    this.statements = {
      get: db.prepare<[string], ChunkRow>('SELECT pack, offset, stored_size, size, compression FROM chunks WHERE digest = ?'),
      page: db.prepare<[string, number], { digest: string }>('SELECT digest FROM chunks WHERE digest > ? ORDER BY digest LIMIT ?'),
      entries: db.prepare<[string, number], { digest: string; stored_size: number; created_at: number }>(
        'SELECT c.digest, c.stored_size, p.created_at FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.digest > ? ORDER BY c.digest LIMIT ?',
      ),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM chunks'),
      totals: db.prepare<[], ChunkTotals>(
        `SELECT (SELECT count(*) FROM chunks) AS chunks, (SELECT coalesce(sum(stored_size), 0) FROM chunks) AS storedBytes,
                (SELECT count(*) FROM packs) AS packs, (SELECT coalesce(sum(size), 0) FROM packs) AS packBytes`,
      ),
      packIds: db.prepare<[], { id: string }>('SELECT id FROM packs'),
      insertPack: db.prepare<[string, number, number]>('INSERT INTO packs (id, live, size, created_at) VALUES (?, 0, ?, ?)'),
      insertChunk: db.prepare<[string, string, number, number, number, Compression]>(
        'INSERT OR IGNORE INTO chunks (digest, pack, offset, stored_size, size, compression) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      addLive: db.prepare<[number, string]>('UPDATE packs SET live = live + ? WHERE id = ?'),
      deleteChunk: db.prepare<[string]>('DELETE FROM chunks WHERE digest = ?'),
      live: db.prepare<[string], { live: number }>('SELECT live FROM packs WHERE id = ?'),
      deletePack: db.prepare<[string]>('DELETE FROM packs WHERE id = ?'),
      sparse: db.prepare<[number, number], { id: string; size: number; live_bytes: number }>(
        `SELECT id, size, live_bytes FROM (
           SELECT p.id, p.size, ${PACK_HEADER_SIZE} + coalesce(sum(c.stored_size + ${ENTRY_HEADER_SIZE}), 0) AS live_bytes
             FROM packs p LEFT JOIN chunks c ON c.pack = p.id GROUP BY p.id, p.size)
          WHERE live_bytes < ? * size ORDER BY live_bytes * 1.0 / size LIMIT ?`,
      ),
      packEntries: db.prepare<[string], ChunkRow & { digest: string }>(
        'SELECT digest, pack, offset, stored_size, size, compression FROM chunks WHERE pack = ? ORDER BY offset',
      ),
      move: db.prepare<[string, number, string, string]>('UPDATE chunks SET pack = ?, offset = ? WHERE digest = ? AND pack = ?'),
    };
  }

  /** Opens (creating) the index file; refuses an index format newer than this code reads. */
  static open(file: string): SqliteChunkIndex {
    const db = new BetterSqlite3(file);
    try {
      const mode: unknown = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`SQLite refused WAL mode for ${file} (got ${String(mode)})`);
      // FULL syncs the WAL on every commit: a committed chunk stays indexed after a power loss.
      db.pragma('synchronous = FULL');
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      db.pragma('busy_timeout = 5000');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > INDEX_VERSION) throw new Error(`${file} has index format ${version}; this snapfork reads ${INDEX_VERSION}`);
      // Format 1 had no packs.created_at: its packs count as old (0), which is what they are.
      if (version === 1) db.exec('ALTER TABLE packs ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0');
      db.exec(`
        CREATE TABLE IF NOT EXISTS packs (
          id         TEXT PRIMARY KEY,
          live       INTEGER NOT NULL,
          size       INTEGER NOT NULL,
          created_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS chunks (
          digest      TEXT PRIMARY KEY,
          pack        TEXT NOT NULL REFERENCES packs (id),
          offset      INTEGER NOT NULL,
          stored_size INTEGER NOT NULL,
          size        INTEGER NOT NULL,
          compression TEXT NOT NULL CHECK (compression IN ('zstd', 'none'))
        ) WITHOUT ROWID;
        PRAGMA user_version = ${INDEX_VERSION};
      `);
      return new SqliteChunkIndex(db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  async locate(digests: readonly string[]): Promise<Map<string, ChunkLocation>> {
    const found = new Map<string, ChunkLocation>();
    for (const digest of digests) {
      const row = this.statements.get.get(digest);
      if (row) {
        found.set(digest, { digest, pack: row.pack, offset: row.offset, storedSize: row.stored_size, size: row.size, compression: row.compression });
      }
    }
    return found;
  }

  async publish(packs: readonly IndexedPack[]): Promise<string[]> {
    const { insertPack, insertChunk, addLive, deletePack } = this.statements;
    const record = this.db.transaction(() => {
      const unused: string[] = [];
      for (const pack of packs) {
        insertPack.run(pack.id, pack.size, pack.createdAt);
        let live = 0;
        for (const e of pack.entries) {
          live += insertChunk.run(e.digest, pack.id, e.offset, e.storedSize, e.size, e.compression).changes;
        }
        if (live > 0) addLive.run(live, pack.id);
        else {
          deletePack.run(pack.id);
          unused.push(pack.id);
        }
      }
      return unused;
    });
    return guard(() => record.immediate());
  }

  async removeMany(digests: readonly string[]): Promise<Removal> {
    const { get, deleteChunk, addLive, live, deletePack } = this.statements;
    const removed = this.db.transaction((): Removal => {
      const removal: Removal = { chunks: 0, storedBytes: 0, emptiedPacks: [] };
      const touched = new Map<string, number>();
      for (const digest of new Set(digests)) {
        const row = get.get(digest);
        if (!row) continue;
        deleteChunk.run(digest);
        removal.chunks++;
        removal.storedBytes += row.stored_size;
        touched.set(row.pack, (touched.get(row.pack) ?? 0) + 1);
      }
      for (const [pack, gone] of touched) {
        addLive.run(-gone, pack);
        if ((live.get(pack)?.live ?? 0) > 0) continue;
        deletePack.run(pack);
        removal.emptiedPacks.push(pack);
      }
      return removal;
    });
    return guard(() => removed.immediate());
  }

  async sparsePacks(maxLiveFraction: number, limit: number): Promise<SparsePack[]> {
    return this.statements.sparse.all(maxLiveFraction, limit).map((r) => ({ id: r.id, size: r.size, liveBytes: r.live_bytes }));
  }

  async packEntries(id: string): Promise<ChunkLocation[]> {
    return this.statements.packEntries
      .all(id)
      .map((r) => ({ digest: r.digest, pack: r.pack, offset: r.offset, storedSize: r.stored_size, size: r.size, compression: r.compression }));
  }

  async relocate(from: string, to: IndexedPack): Promise<{ moved: number; emptied: boolean }> {
    const { insertPack, move, addLive, live, deletePack } = this.statements;
    const relocated = this.db.transaction(() => {
      insertPack.run(to.id, to.size, to.createdAt);
      let moved = 0;
      for (const e of to.entries) moved += move.run(to.id, e.offset, e.digest, from).changes;
      if (moved > 0) addLive.run(moved, to.id);
      else deletePack.run(to.id);
      addLive.run(-moved, from);
      const emptied = (live.get(from)?.live ?? 0) === 0;
      if (emptied) deletePack.run(from);
      return { moved, emptied };
    });
    return guard(() => relocated.immediate());
  }

  async packIds(): Promise<Set<string>> {
    return new Set(this.statements.packIds.all().map((p) => p.id));
  }

  async page(after: string, limit: number): Promise<string[]> {
    return this.statements.page.all(after, limit).map((r) => r.digest);
  }

  async entries(after: string, limit: number): Promise<IndexedChunk[]> {
    return this.statements.entries.all(after, limit).map((r) => ({ digest: r.digest, storedSize: r.stored_size, packCreatedAt: r.created_at }));
  }

  async count(): Promise<number> {
    return this.statements.count.get()?.n ?? 0;
  }

  async totals(): Promise<ChunkTotals> {
    return this.statements.totals.get()!;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

/** A full disk (SQLITE_FULL) is insufficient_storage; other errors pass unchanged. */
function guard<T>(run: () => T): T {
  try {
    return run();
  } catch (e) {
    if ((e as { code?: unknown } | null)?.code === 'SQLITE_FULL') {
      throw new DomainError('insufficient_storage', 'no space left on the chunk store');
    }
    throw e;
  }
}
