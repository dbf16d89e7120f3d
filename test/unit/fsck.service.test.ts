/**
 * FsckService over real stores (SQLite metadata, packs in a directory), at sizes the HTTP tests
 * do not reach: problem lists stay capped while the totals count everything, references are
 * looked up a page at a time, and a chunk many manifests share is read once. And the subset
 * selection of read_data_subset, which is pure.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AccessPolicy } from '../../src/domain/access-policy.js';
import { FsckService, PROBLEMS_LISTED, subsetFilter } from '../../src/domain/fsck.service.js';
import { buildManifest } from '../../src/domain/manifest.js';
import type { ChunkRef, ManifestEntry } from '../../src/domain/model.js';
import type { UserPrincipal } from '../../src/domain/principal.js';
import { noTelemetry } from '../../src/domain/ports/telemetry.js';
import { sha256 } from '../../src/lib/sha256.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { PackChunkStore } from '../../src/store/packs/pack-store.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';
import type { MetadataStore } from '../../src/store/types.js';

const admin: UserPrincipal = { kind: 'user', userId: 1, login: 'root', scopes: new Set(['admin']) };
const digestOf = (n: number) => sha256(Buffer.from(`chunk ${n}`));
const file = (path: string, chunks: ChunkRef[]): ManifestEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  size: chunks.reduce((n, c) => n + c.size, 0),
  mtime: 0,
  linkTarget: null,
  chunks,
});

describe('subsetFilter', () => {
  const digests = Array.from({ length: 10_000 }, (_, i) => digestOf(i));

  it('splits the chunks into m disjoint parts that together cover each once', () => {
    const parts = [1, 2, 3].map((n) => digests.filter(subsetFilter(`${n}/3`)));
    expect(parts.reduce((n, p) => n + p.length, 0)).toBe(digests.length);
    expect(new Set(parts.flat()).size).toBe(digests.length);
    for (const part of parts) expect(part.length).toBeGreaterThan(3000);
  });

  it('picks about p percent, the same ones each time, a smaller percentage inside a larger one', () => {
    const ten = digests.filter(subsetFilter('10%'));
    expect(ten.length).toBeGreaterThan(800);
    expect(ten.length).toBeLessThan(1200);
    expect(digests.filter(subsetFilter('10%'))).toEqual(ten);
    const twenty = new Set(digests.filter(subsetFilter('20.5%')));
    expect(ten.every((d) => twenty.has(d))).toBe(true);
    expect(digests.filter(subsetFilter('100%'))).toHaveLength(digests.length);
  });

  it('refuses anything else as invalid', () => {
    for (const bad of ['0/3', '4/3', '1/0', '0%', '100.1%', '-5%', '1/3/4', '10', 'all']) {
      expect(() => subsetFilter(bad), bad).toThrow(expect.objectContaining({ kind: 'invalid' }));
    }
  });
});

describe('FsckService on real stores', () => {
  let dir: string;
  let store: MetadataStore;
  let chunks: PackChunkStore;
  /** Digests the service asked the chunk index about, call by call. */
  let statCalls: number[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapfork-fsck-'));
    store = await openSqliteMetadataStore(join(dir, 'snapfork.db'));
    chunks = await openFsChunkStore(join(dir, 'chunks'));
    statCalls = [];
  });
  afterEach(async () => {
    await Promise.allSettled([store.close(), chunks.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  const service = () => {
    const counted = {
      statMany: (digests: readonly string[]) => (statCalls.push(digests.length), chunks.statMany(digests)),
      verify: (digests: readonly string[]) => chunks.verify(digests),
      list: () => chunks.list(),
    };
    return new FsckService(store, counted, new AccessPolicy(store), noTelemetry, () => '2030-01-01T00:00:00.000Z');
  };

  it('lists the first PROBLEMS_LISTED problems, counts them all, and looks references up a page at a time', async () => {
    const shared = await chunks.put(Buffer.from('in every file'));
    // 2,600 files, each with a chunk never stored and the one chunk every file shares.
    const entries = Array.from({ length: 2600 }, (_, i) =>
      file(`f${String(i).padStart(5, '0')}`, [{ digest: digestOf(i), size: 7 }, { digest: shared.digest, size: shared.size }]),
    );
    await store.putManifest(buildManifest(entries));

    const report = await service().run(admin);
    expect(report).toMatchObject({ ok: false, manifestsChecked: 1, referencesChecked: 5200, missingTotal: 2600, corruptTotal: 0, chunksChecked: 0 });
    expect(report.missing).toHaveLength(PROBLEMS_LISTED);
    expect(report.missing[0]).toEqual({ kind: 'chunk', digest: digestOf(0), manifest: expect.any(String), path: 'f00000' });
    // 256 files a page: 11 index calls for 5,200 references; the shared chunk, once found, is
    // not asked again (missing ones are, should another file list them).
    expect(statCalls).toHaveLength(11);
    expect(statCalls.reduce((n, c) => n + c, 0)).toBe(2600 + 1);
  });

  it('drops what a garbage collection deleted while the pass ran: an unreachable commit, its manifest and its chunk', async () => {
    const alice = await store.ensureUser('alice');
    const repo = await store.createRepository({ namespaceId: alice.id, name: 'data', visibility: 'private', description: '' });
    const chunk = await chunks.put(Buffer.from('only the dropped commit holds this'));
    const manifest = buildManifest([file('dropped', [{ digest: chunk.digest, size: chunk.size }])]);
    await store.putManifest(manifest);
    const commit = { id: '01900000-0000-7000-8000-000000000001', repositoryId: repo.id, parentIds: [], manifestDigest: manifest.digest, message: '', author: 'alice', createdAt: '2020-01-01T00:00:00.000Z', isPublic: false, title: null, description: '' };
    await store.createCommit(commit);
    let swept = false;
    const sweeping = {
      // The collection lands between the pass's read of the manifest and its lookup of the chunk.
      statMany: async (digests: readonly string[]) => {
        if (!swept) {
          swept = true;
          await store.transaction(async (tx) => {
            await tx.unreachable('2030-01-01T00:00:00.000Z', { remove: true });
            await chunks.deleteMany([chunk.digest]);
          }, { exclusive: true });
        }
        return chunks.statMany(digests);
      },
      verify: (digests: readonly string[]) => chunks.verify(digests),
      list: () => chunks.list(),
    };
    const report = await new FsckService(store, sweeping, new AccessPolicy(store), noTelemetry, () => '2030-01-01T00:00:00.000Z').run(admin);
    expect(swept).toBe(true);
    expect(report).toMatchObject({ ok: true, missingTotal: 0, missing: [], referencesChecked: 1 });
  });

  it('reads a chunk that many manifests share once', async () => {
    const stored = await Promise.all(['a', 'b', 'c'].map((text) => chunks.put(Buffer.from(text.repeat(1000)))));
    const refs = stored.map(({ digest, size }) => ({ digest, size }));
    for (let i = 0; i < 50; i++) await store.putManifest(buildManifest([file(`copy-${i}`, refs)]));

    const report = await service().run(admin, { readData: true });
    expect(report).toMatchObject({ ok: true, readData: 'all', manifestsChecked: 50, referencesChecked: 150, chunksChecked: 3 });
  });

  it('refuses a caller without the admin scope', async () => {
    const user: UserPrincipal = { ...admin, scopes: new Set(['repo:read', 'repo:write']) };
    await expect(service().run(user)).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(service().run({ kind: 'anonymous' })).rejects.toMatchObject({ kind: 'unauthorized' });
  });
});
