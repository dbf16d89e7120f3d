/**
 * The MetadataStore contract on every engine, as Kysely's own tests loop over its dialects:
 * SQLite always, PostgreSQL when a server is configured (test/support/postgres.ts), in a database
 * of this file's own that each test finds empty.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildManifest } from '../../src/domain/manifest.js';
import type { Tag } from '../../src/domain/model.js';
import { openPostgresMetadataStore } from '../../src/store/postgres/database.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';
import { createTestDatabase, emptyTables, POSTGRES_SKIP_REASON, postgresUrl, type TestDatabase } from '../support/postgres.js';
import { metadataStoreContract, type OpenStore, type StoreEngine } from './metadata-store.contract.js';

const openSqlite: OpenStore = async (now) => {
  const dir = await mkdtemp(join(tmpdir(), 'snapfork-sqlite-'));
  const store = await openSqliteMetadataStore(join(dir, 'snapfork.db'), { now });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
};

/** This file's database, created on first use: a skipped engine creates none. */
let database: Promise<TestDatabase> | undefined;
afterAll(async () => {
  await (await database)?.drop();
});

const openPostgres: OpenStore = async (now) => {
  database ??= createTestDatabase(postgresUrl!);
  const { url } = await database;
  const store = await openPostgresMetadataStore(url, { now });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await emptyTables(url);
    },
  };
};

const engines: StoreEngine[] = [
  { name: 'SQLite', open: openSqlite },
  { name: 'PostgreSQL', open: openPostgres, ...(postgresUrl === undefined && { skip: POSTGRES_SKIP_REASON }) },
];
for (const engine of engines) metadataStoreContract(engine);

describe.skipIf(postgresUrl === undefined)(`PostgreSQL metadata store${postgresUrl === undefined ? ` (skipped: ${POSTGRES_SKIP_REASON})` : ''}`, () => {
  it('runs a transaction again when PostgreSQL aborts it to break a deadlock', async () => {
    const { store, cleanup } = await openPostgres(() => new Date().toISOString());
    try {
      const alice = await store.ensureUser('alice');
      const repo = await store.createRepository({ namespaceId: alice.id, name: 'data', visibility: 'public', description: '' });
      const manifest = buildManifest([]);
      await store.putManifest(manifest);
      const commit = { id: 'c-1', repositoryId: repo.id, parentIds: [], manifestDigest: manifest.digest, message: '', author: 'alice', createdAt: new Date().toISOString(), isPublic: false, title: null, description: '' };
      await store.createCommit(commit);
      for (const name of ['a', 'b']) await store.setTag(repo.id, name, commit.id, 'alice');

      // Each transaction locks one tag, waits until the other holds its own, then asks for the
      // other's: a lock cycle that PostgreSQL breaks by aborting one of them. Run again, the
      // aborted one waits for the other to finish, so that the two cannot meet again.
      let attempts = 0;
      let arrived = 0;
      let arrive!: () => void;
      const bothHoldOne = new Promise<void>((resolve) => (arrive = () => void (++arrived === 2 && resolve())));
      const finished: Record<string, Promise<Tag>> = {};
      const crossing = (first: string, second: string) => {
        let runs = 0;
        return store.transaction(async (tx): Promise<Tag> => {
          attempts++;
          if (++runs > 1) await finished[second]?.catch(() => undefined);
          await tx.setTagDescription(repo.id, first, `by ${first}`);
          arrive();
          await bothHoldOne;
          return tx.setTagDescription(repo.id, second, `by ${first}`);
        });
      };
      finished.a = crossing('a', 'b');
      finished.b = crossing('b', 'a');
      const [ab, ba] = await Promise.all([finished.a, finished.b]);
      expect([ab.description, ba.description]).toEqual(['by a', 'by b']);
      expect(attempts).toBe(3);
    } finally {
      await cleanup();
    }
  });
});
