/**
 * The ChunkIndex contract on every engine, as the metadata store's: the SQLite file always,
 * PostgreSQL when a server is configured (test/support/postgres.ts), in a database of this
 * file's own whose tables each test finds empty.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChunkIndex } from '../../src/store/packs/chunk-index.js';
import { SqliteChunkIndex } from '../../src/store/packs/sqlite-chunk-index.js';
import { PostgresChunkIndex } from '../../src/store/postgres/chunk-index.js';
import { createTestDatabase, emptyTables, POSTGRES_SKIP_REASON, postgresUrl, type TestDatabase } from '../support/postgres.js';
import { chunkIndexContract, type ChunkIndexEngine, type OpenChunkIndex } from './chunk-index.contract.js';

/** Opens handles with `openOne`, and closes all it opened on `closeAll`. */
function handles(openOne: () => Promise<ChunkIndex>) {
  const opened: ChunkIndex[] = [];
  return {
    open: async () => {
      const index = await openOne();
      opened.push(index);
      return index;
    },
    closeAll: () => Promise.all(opened.map((index) => index.close())),
  };
}

const openSqlite: OpenChunkIndex = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'snapfork-index-'));
  const { open, closeAll } = handles(async () => SqliteChunkIndex.open(join(dir, 'index.db')));
  return {
    index: await open(),
    another: open,
    cleanup: async () => {
      await closeAll();
      await rm(dir, { recursive: true, force: true });
    },
  };
};

/** This file's database, created on first use: a skipped engine creates none. */
let database: Promise<TestDatabase> | undefined;
afterAll(async () => {
  await (await database)?.drop();
});

const openPostgres: OpenChunkIndex = async () => {
  database ??= createTestDatabase(postgresUrl!);
  const { url } = await database;
  const { open, closeAll } = handles(() => PostgresChunkIndex.open(url));
  return {
    index: await open(),
    another: open,
    cleanup: async () => {
      await closeAll();
      await emptyTables(url);
    },
  };
};

const engines: ChunkIndexEngine[] = [
  { name: 'SQLite file', open: openSqlite },
  { name: 'PostgreSQL', open: openPostgres, ...(postgresUrl === undefined && { skip: POSTGRES_SKIP_REASON }) },
];
for (const engine of engines) chunkIndexContract(engine);

describe.skipIf(postgresUrl === undefined)(`PostgreSQL chunk index${postgresUrl === undefined ? ` (skipped: ${POSTGRES_SKIP_REASON})` : ''}`, () => {
  it('is created by servers opening an empty database at once, and refuses a newer format', async () => {
    const fresh = await createTestDatabase(postgresUrl!);
    try {
      const opened = await Promise.all(Array.from({ length: 4 }, () => PostgresChunkIndex.open(fresh.url)));
      expect(await opened[0]!.count()).toBe(0);
      await Promise.all(opened.map((index) => index.close()));

      const client = new pg.Client({ connectionString: fresh.url });
      await client.connect();
      try {
        expect((await client.query('SELECT version FROM chunk_index_version')).rows).toEqual([{ version: 2 }]);
        await client.query('UPDATE chunk_index_version SET version = 3');
      } finally {
        await client.end();
      }
      await expect(PostgresChunkIndex.open(fresh.url)).rejects.toThrow('the chunk index in PostgreSQL has format 3; this snapfork reads 2');
    } finally {
      await fresh.drop();
    }
  });

  it('upgrades an index of format 1 in place: its packs count as old', async () => {
    const fresh = await createTestDatabase(postgresUrl!);
    try {
      const client = new pg.Client({ connectionString: fresh.url });
      await client.connect();
      const digest = 'ab'.repeat(32);
      try {
        // Format 1 as released: no chunk_packs.created_at.
        await client.query(`
          CREATE TABLE chunk_index_version (singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton), version INTEGER NOT NULL);
          INSERT INTO chunk_index_version (version) VALUES (1);
          CREATE TABLE chunk_packs (id TEXT PRIMARY KEY, live BIGINT NOT NULL CHECK (live >= 0), size BIGINT NOT NULL);
          CREATE TABLE chunk_locations (
            digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
            pack TEXT NOT NULL REFERENCES chunk_packs (id) DEFERRABLE INITIALLY DEFERRED,
            entry_offset BIGINT NOT NULL, stored_size BIGINT NOT NULL, size BIGINT NOT NULL,
            compression TEXT NOT NULL CHECK (compression IN ('zstd', 'none')));
          CREATE INDEX chunk_locations_pack ON chunk_locations (pack);
          INSERT INTO chunk_packs VALUES ('${'0'.repeat(32)}', 1, 100);
          INSERT INTO chunk_locations VALUES ('\\x${digest}', '${'0'.repeat(32)}', 16, 50, 60, 'none');`);
      } finally {
        await client.end();
      }
      const index = await PostgresChunkIndex.open(fresh.url);
      try {
        expect(await index.entries('', 10)).toEqual([{ digest, storedSize: 50, packCreatedAt: 0 }]);
      } finally {
        await index.close();
      }
    } finally {
      await fresh.drop();
    }
  });
});
