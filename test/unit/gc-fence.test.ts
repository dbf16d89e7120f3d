/**
 * The protocol between garbage collection and a writer, with the interleaving forced rather than
 * hoped for: a push dedupes a chunk against the store, a collection then deletes that chunk (no
 * commit refers to it yet), and the push's commit must refuse to land (422, send it again)
 * rather than refer to a chunk that is gone. Real stores (SQLite, packs in a directory); the
 * chunk store is wrapped only to tell the test when the push has deduplicated.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AccessPolicy } from '../../src/domain/access-policy.js';
import { GcService } from '../../src/domain/gc.service.js';
import { noTelemetry } from '../../src/domain/ports/telemetry.js';
import type { UserPrincipal } from '../../src/domain/principal.js';
import { QuotaService } from '../../src/domain/quota.service.js';
import { RepositoryService } from '../../src/domain/repository.service.js';
import { SnapshotService } from '../../src/domain/snapshot.service.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';
import type { ChunkStore, ChunkWriter, MetadataStore } from '../../src/store/types.js';
import { expectDomainError } from '../support/domain-errors.js';
import { tarOfEntries } from '../support/trees.js';

let dir: string;
let store: MetadataStore;
let chunks: ChunkStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapfork-gc-fence-'));
  store = await openSqliteMetadataStore(join(dir, 'snapfork.db'));
  chunks = await openFsChunkStore(join(dir, 'chunks'));
});
afterEach(async () => {
  await Promise.allSettled([store.close(), chunks.close()]);
  await rm(dir, { recursive: true, force: true });
});

/** `chunks`, telling through `deduplicated` when a writer first finds a chunk stored already. */
function observed(inner: ChunkStore): { store: ChunkStore; deduplicated: Promise<void> } {
  let found!: () => void;
  const deduplicated = new Promise<void>((resolve) => (found = resolve));
  const writer = (): ChunkWriter => {
    const w = inner.writer();
    return {
      put: async (data, digest) => {
        const result = await w.put(data, digest);
        if (!result.created) found();
        return result;
      },
      commit: () => w.commit(),
      abort: () => w.abort(),
    };
  };
  return { store: new Proxy(inner, { get: (target, key) => (key === 'writer' ? writer : Reflect.get(target, key)) }), deduplicated };
}

it('refuses the commit of a push whose deduplicated chunk a collection deleted meanwhile', async () => {
  const { store: watched, deduplicated } = observed(chunks);
  const policy = new AccessPolicy(store);
  const quotas = new QuotaService(store, policy, { bytes: null, repositories: null, runningVms: null });
  const repositories = new RepositoryService(store, policy, quotas);
  const now = () => new Date().toISOString();
  const snapshots = new SnapshotService(store, watched, policy, repositories, quotas, now);
  const gc = new GcService(store, chunks, policy, noTelemetry, { graceMs: 0, deletedRetentionMs: 0 });
  const alice = await store.ensureUser('alice');
  const user: UserPrincipal = { kind: 'user', userId: alice.id, login: 'alice', scopes: new Set(['repo:read', 'repo:write', 'admin']) };
  await repositories.create(user, 'alice', { name: 'data', visibility: 'private' });

  // A chunk made garbage: pushed, its tag deleted.
  const pooled = randomBytes(64 * 1024);
  const first = new PassThrough();
  first.end(tarOfEntries([{ path: 'pooled.bin', body: pooled }]));
  await snapshots.push(user, 'alice', 'data', 'gone', first);
  await snapshots.deleteTag(user, 'alice', 'data', 'gone');

  // A second push of the same bytes: it dedupes against the garbage chunk, then waits for the
  // rest of its body while a collection deletes that chunk.
  const tar = tarOfEntries([
    { path: 'pooled.bin', body: pooled },
    { path: 'own.bin', body: randomBytes(64 * 1024) },
  ]);
  const body = new PassThrough();
  const pushed = snapshots.push(user, 'alice', 'data', 'kept', body);
  pushed.catch(() => undefined);
  body.write(tar.subarray(0, 512 + pooled.length + 512));
  await deduplicated;
  expect((await gc.collect(user)).chunks).toBeGreaterThan(0);
  body.end(tar.subarray(512 + pooled.length + 512));

  await expectDomainError(pushed, 'unprocessable');
  expect(await store.getTag((await repositories.get(user, 'alice', 'data')).id, 'kept')).toBeUndefined();
  // Pushed again, the chunk is written anew and the commit lands.
  const again = new PassThrough();
  again.end(tar);
  const { commit } = await snapshots.push(user, 'alice', 'data', 'kept', again);
  const manifest = await store.getManifest(commit.manifestDigest);
  expect(await chunks.missing(manifest!.entries.flatMap((e) => e.chunks.map((c) => c.digest)))).toEqual([]);
});
