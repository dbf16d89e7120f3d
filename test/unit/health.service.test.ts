/**
 * Readiness over real stores (SQLite metadata, packs in a directory): a store that no longer
 * answers fails its own check, named, and only its own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { HealthService } from '../../src/domain/health.service.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';
import type { ChunkStore, MetadataStore } from '../../src/store/types.js';

let dir: string;
let store: MetadataStore;
let chunks: ChunkStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapfork-health-'));
  store = await openSqliteMetadataStore(join(dir, 'snapfork.db'));
  chunks = await openFsChunkStore(join(dir, 'chunks'));
});
afterEach(async () => {
  await Promise.allSettled([store.close(), chunks.close()]);
  await rm(dir, { recursive: true, force: true });
});

it('is ready while both stores answer', async () => {
  expect(await new HealthService(store, chunks).readiness()).toEqual({ ready: true, checks: { database: 'ok', chunks: 'ok' } });
});

it('names the database when the metadata store no longer answers', async () => {
  await store.close();
  expect(await new HealthService(store, chunks).readiness()).toEqual({ ready: false, checks: { database: 'failed', chunks: 'ok' } });
});

it('names the chunk store when it no longer answers', async () => {
  await chunks.close();
  expect(await new HealthService(store, chunks).readiness()).toEqual({ ready: false, checks: { database: 'ok', chunks: 'failed' } });
});
