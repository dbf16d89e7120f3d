/**
 * The ChunkStore contract on the store several servers share, composed as src/main.ts composes
 * it: packs in an S3 bucket (a fresh key prefix per test) located by the PostgreSQL chunk index
 * (a database of this file's own, emptied between tests). Skipped, saying why, unless both are
 * configured (test/support/postgres.ts, test/support/s3.ts).
 */
import { afterAll } from 'vitest';
import { S3BlobBackend } from '../../src/store/blobs/s3.js';
import { openPackChunkStore } from '../../src/store/packs/pack-store.js';
import { PostgresChunkIndex } from '../../src/store/postgres/chunk-index.js';
import { createTestDatabase, emptyTables, POSTGRES_SKIP_REASON, postgresUrl, type TestDatabase } from '../support/postgres.js';
import { emptyPrefix, freshPrefix, rawClient, s3Config, S3_SKIP_REASON } from '../support/s3.js';
import { chunkStoreContract } from './chunk-store.contract.js';

/** This file's database, created on first use: a skipped suite creates none. */
let database: Promise<TestDatabase> | undefined;
afterAll(async () => {
  await (await database)?.drop();
});

const skip = postgresUrl === undefined ? POSTGRES_SKIP_REASON : s3Config === undefined ? S3_SKIP_REASON : undefined;

chunkStoreContract(
  'S3 packs, PostgreSQL index',
  async () => {
    database ??= createTestDatabase(postgresUrl!);
    const { url } = await database;
    const prefix = freshPrefix(s3Config!, 'shared-chunk-store');
    const store = await openPackChunkStore(new S3BlobBackend({ ...s3Config!, prefix }), await PostgresChunkIndex.open(url));
    return {
      store,
      cleanup: async () => {
        await store.close();
        await emptyPrefix(rawClient(s3Config!), s3Config!.bucket, prefix);
        await emptyTables(url);
      },
    };
  },
  skip,
);
