/**
 * Storage accounting over real HTTP on a real store: a repository's figures (what deduplication
 * saves, what a fork shares with its source and what only it holds), who may see them, and the
 * store's totals as pushes and garbage collection change them. Random bytes do not compress, so
 * their stored size is their size, to the byte.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let admin: string;
let alice: string;
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  admin = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
  alice = await s.token('alice');
  bob = await s.token('bob');
});
afterAll(() => s.stop());

/** Random bytes: chunks no other file shares, stored uncompressed. */
const unique = (kib: number) => randomBytes(kib * 1024);

async function statsOf(fullName: string, token = alice) {
  const res = await s.api(`/api/v1/repos/${fullName}/stats`, { token });
  expect(res.status).toBe(200);
  return res.json();
}

async function storage() {
  const res = await s.api('/api/v1/admin/storage', { token: admin });
  expect(res.status).toBe(200);
  return res.json();
}

async function fork(source: string, name: string) {
  const res = await s.api(`/api/v1/repos/${source}/forks`, { method: 'POST', token: alice, json: { name } });
  expect(res.status).toBe(201);
}

describe('GET /api/v1/repos/{owner}/{repo}/stats', () => {
  it('counts a file stored six times once: dedup_ratio 6', async () => {
    await s.createRepo(alice, 'stats-dup');
    const data = unique(300);
    await s.pushFiles(alice, 'alice/stats-dup', 'v1', { 'a.bin': data, 'b.bin': data, 'c.bin': data });
    // The same bytes again under a second tag and other names: another manifest, no more chunks.
    await s.pushFiles(alice, 'alice/stats-dup', 'v2', { 'd.bin': data, 'e.bin': data, 'f.bin': data });

    const stats = await statsOf('alice/stats-dup');
    expect(stats).toEqual({
      logical_bytes: 6 * data.length,
      stored_bytes: data.length,
      dedup_ratio: 6,
      chunks: expect.any(Number),
      files: 6,
      tags: 2,
      exact: true,
    });
    expect(stats.chunks).toBeGreaterThanOrEqual(2); // 300 KiB is more than one 256 KiB chunk
  });

  it('answers an empty repository with zeros and no ratio', async () => {
    await s.createRepo(alice, 'stats-empty');
    expect(await statsOf('alice/stats-empty')).toEqual({ logical_bytes: 0, stored_bytes: 0, dedup_ratio: null, chunks: 0, files: 0, tags: 0, exact: true });
  });

  it('shows a fork sharing everything when made, then owning what is pushed to it only', async () => {
    await s.createRepo(alice, 'stats-src');
    const shared = unique(400);
    await s.pushFiles(alice, 'alice/stats-src', 'main', { 'shared.bin': shared });
    await fork('alice/stats-src', 'stats-fork');

    const made = await statsOf('alice/stats-fork');
    expect(made).toMatchObject({ source: 'alice/stats-src', stored_bytes: shared.length, shared_bytes: shared.length, own_bytes: 0, logical_bytes: shared.length, files: 1, tags: 1 });
    expect(await statsOf('alice/stats-src')).not.toHaveProperty('source');

    const own = unique(250);
    await s.pushFiles(alice, 'alice/stats-fork', 'main', { 'shared.bin': shared, 'own.bin': own });
    expect(await statsOf('alice/stats-fork')).toMatchObject({
      source: 'alice/stats-src',
      stored_bytes: shared.length + own.length,
      shared_bytes: shared.length,
      own_bytes: own.length,
      logical_bytes: shared.length + own.length,
      dedup_ratio: 1,
      files: 2,
      tags: 1,
    });
  });

  it('is 404 for whoever may not read the repository, as the repository is; a fork whose source is gone names none', async () => {
    await s.createRepo(alice, 'stats-private');
    await s.pushFiles(alice, 'alice/stats-private', 'main', { 'secret.bin': unique(64) });
    await fork('alice/stats-private', 'stats-private-fork');
    for (const token of [bob, undefined]) {
      const res = await s.api('/api/v1/repos/alice/stats-private-fork/stats', { token });
      expect(res.status).toBe(404);
      const repo = await s.api('/api/v1/repos/alice/stats-private-fork', { token });
      expect(repo.status).toBe(404);
    }
    expect((await s.api('/api/v1/repos/alice/no-such-repo/stats', { token: alice })).status).toBe(404);

    expect((await s.api('/api/v1/repos/alice/stats-private', { method: 'DELETE', token: alice })).status).toBe(204);
    expect(await statsOf('alice/stats-private-fork')).toMatchObject({ source: null, shared_bytes: null, own_bytes: null, stored_bytes: 64 * 1024 });
  });
});

describe('GET /api/v1/admin/storage', () => {
  it('is for administrators: 401 without a token, 403 without the admin scope', async () => {
    expect((await s.api('/api/v1/admin/storage')).status).toBe(401);
    expect((await s.api('/api/v1/admin/storage', { token: alice })).status).toBe(403);
  });

  it('grows by what a push stores and shrinks by what a collection frees', async () => {
    /** Everything unreferenced goes, deleted repositories too. */
    const collectAll = async () =>
      expect((await s.api('/api/v1/admin/gc', { method: 'POST', token: admin, json: { grace_seconds: 0, purge_deleted: true } })).status).toBe(200);
    await collectAll();
    const before = await storage();
    expect(before.dedup_ratio).toBeCloseTo(before.logical_bytes / before.stored_bytes);
    expect(before.pack_bytes).toBeGreaterThanOrEqual(before.stored_bytes);

    await s.createRepo(alice, 'stats-totals');
    const data = unique(500);
    await s.pushFiles(alice, 'alice/stats-totals', 'main', { 'data.bin': data });
    await fork('alice/stats-totals', 'stats-totals-fork');
    const pushed = await storage();
    expect(pushed).toMatchObject({
      repositories: before.repositories + 2,
      // The fork's commit shares the pushed one's manifest.
      commits: before.commits + 2,
      manifests: before.manifests + 1,
      // The fork counts in full, without storing a byte more.
      logical_bytes: before.logical_bytes + 2 * data.length,
      stored_bytes: before.stored_bytes + data.length,
      packs: before.packs + 1,
    });
    expect(pushed.chunks).toBeGreaterThan(before.chunks);
    expect(pushed.pack_bytes).toBeGreaterThan(before.pack_bytes + data.length);

    for (const name of ['stats-totals-fork', 'stats-totals']) {
      expect((await s.api(`/api/v1/repos/alice/${name}`, { method: 'DELETE', token: alice })).status).toBe(204);
    }
    // Deleted: counted no more, but stored until collected.
    expect(await storage()).toMatchObject({ repositories: before.repositories, logical_bytes: before.logical_bytes, stored_bytes: pushed.stored_bytes });
    await collectAll();
    expect(await storage()).toEqual(before);
  });
});
