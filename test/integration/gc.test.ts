/**
 * Garbage collection over real HTTP on a real store: what nothing live reaches goes, what a tag,
 * a fork, a deleted repository within its retention or a recent upload holds stays, byte for
 * byte, and pushes running through collections lose nothing they were answered 2xx for.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileEntry, sha256 } from '../support/delta.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries } from '../support/trees.js';

let s: TestServer;
let admin: string;
let alice: string;

beforeAll(async () => {
  s = await startTestServer();
  admin = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
  alice = await s.token('alice');
});
afterAll(() => s.stop());

/** Random bytes: chunks no other file shares. */
const unique = (kib: number) => randomBytes(kib * 1024);

/** POST /api/v1/admin/gc as the administrator, with no grace unless told: everything unreferenced is old enough. */
async function gc(body: Record<string, unknown> = {}) {
  const res = await s.api('/api/v1/admin/gc', { method: 'POST', token: admin, json: { grace_seconds: 0, ...body } });
  expect(res.status).toBe(200);
  return res.json();
}

/** A tar push as `fullName:tag`, its answer whatever it is. */
const pushTar = (fullName: string, tag: string, tar: Buffer) =>
  s.api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, { method: 'PUT', token: alice, body: tar, headers: { 'content-type': 'application/x-tar' } });

async function fileOf(fullName: string, tag: string, path: string): Promise<Buffer> {
  const res = await s.api(`/api/v1/repos/${fullName}/tags/${tag}/files/${path}`, { token: alice });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

describe('POST /api/v1/admin/gc', () => {
  it('is for administrators: 401 without a token, 403 without the admin scope', async () => {
    expect((await s.api('/api/v1/admin/gc', { method: 'POST', json: {} })).status).toBe(401);
    const refused = await s.api('/api/v1/admin/gc', { method: 'POST', token: alice, json: {} });
    expect(refused.status).toBe(403);
    expect((await s.api('/api/v1/admin/gc', { method: 'POST', token: admin, json: { grace_seconds: -1 } })).status).toBe(400);
  });

  it('frees the chunks and the commit of a deleted tag; the dry run reports them first', async () => {
    await s.createRepo(alice, 'gc-tags');
    const kept = unique(200);
    const dropped = unique(300);
    await s.pushFiles(alice, 'alice/gc-tags', 'keep', { 'kept.bin': kept });
    // Pushed to a tag of its own, so that its commit is no ancestor of `keep`.
    const scratch = await s.pushFiles(alice, 'alice/gc-tags', 'scratch', { 'kept.bin': kept, 'dropped.bin': dropped });
    await gc();
    const before = s.chunkCount();
    expect((await s.api('/api/v1/repos/alice/gc-tags/tags/scratch', { method: 'DELETE', token: alice })).status).toBe(204);

    const dry = await gc({ dry_run: true });
    expect(dry).toMatchObject({ dry_run: true, commits: 1, manifests: 1, packs: 0 });
    expect(dry.chunks).toBeGreaterThan(0);
    expect(dry.bytes).toBeGreaterThan(250 * 1024); // random bytes do not compress
    expect(s.chunkCount()).toBe(before);

    const done = await gc();
    expect(done).toMatchObject({ dry_run: false, commits: 1, manifests: 1, chunks: dry.chunks, bytes: dry.bytes });
    expect(s.chunkCount()).toBe(before - dry.chunks);
    expect((await s.api(`/api/v1/repos/alice/gc-tags/commits/${scratch.commit_id}`, { token: alice })).status).toBe(404);
    expect((await fileOf('alice/gc-tags', 'keep', 'kept.bin')).equals(kept)).toBe(true);
    // Nothing left to free.
    expect(await gc()).toMatchObject({ chunks: 0, commits: 0 });
  });

  it('rewrites a pack that is mostly garbage with its live chunks only', async () => {
    await s.createRepo(alice, 'gc-repack');
    const kept = unique(200);
    // One push, one pack: the kept file and more garbage-to-be beside it.
    await s.pushFiles(alice, 'alice/gc-repack', 'both', { 'kept.bin': kept, 'dropped.bin': unique(400) });
    await s.pushFiles(alice, 'alice/gc-repack', 'kept', { 'kept.bin': kept });
    await gc();
    expect((await s.api('/api/v1/repos/alice/gc-repack/tags/both', { method: 'DELETE', token: alice })).status).toBe(204);
    const done = await gc();
    expect(done.repacked_packs).toBeGreaterThanOrEqual(1);
    expect(done.repacked_bytes).toBeGreaterThan(300 * 1024);
    expect((await fileOf('alice/gc-repack', 'kept', 'kept.bin')).equals(kept)).toBe(true);
    expect((await gc()).repacked_packs).toBe(0);
    const fsck = await s.api('/api/v1/admin/fsck', { method: 'POST', token: admin, json: { read_data: true } });
    expect(await fsck.json()).toMatchObject({ ok: true });
  });

  it('keeps a tag\'s history and a fork\'s data when the source repository is deleted and purged', async () => {
    await s.createRepo(alice, 'gc-source');
    const first = unique(200);
    const second = unique(200);
    await s.pushFiles(alice, 'alice/gc-source', 'v', { 'data.bin': first });
    await s.pushFiles(alice, 'alice/gc-source', 'v', { 'data.bin': second });
    const fork = await s.api('/api/v1/repos/alice/gc-source/forks', { method: 'POST', token: alice, json: { name: 'gc-fork' } });
    expect(fork.status).toBe(201);
    expect((await s.api('/api/v1/repos/alice/gc-source', { method: 'DELETE', token: alice })).status).toBe(204);
    await gc({ purge_deleted: true });

    expect((await fileOf('alice/gc-fork', 'v', 'data.bin')).equals(second)).toBe(true);
    // The first push is the parent of the second: history stays readable through the fork.
    const history = await (await s.api('/api/v1/repos/alice/gc-fork/commits?tag=v', { token: alice })).json();
    expect(history.length).toBeGreaterThanOrEqual(2);
    const oldest = history.at(-1);
    const manifest = await s.api(`/api/v1/repos/alice/gc-fork/commits/${oldest.id}/manifest`, { token: alice });
    expect(manifest.status).toBe(200);
    const digests = (await manifest.json()).entries.flatMap((e: { chunks: { digest: string }[] }) => e.chunks.map((c) => c.digest));
    const missing = await s.api('/api/v1/repos/alice/gc-fork/chunks/missing', { method: 'POST', token: alice, json: { digests } });
    expect((await missing.json()).missing).toEqual([]);
  });

  it('keeps a deleted repository restorable until it is purged, then frees what only it held', async () => {
    await s.createRepo(alice, 'gc-deleted');
    const data = unique(300);
    await s.pushFiles(alice, 'alice/gc-deleted', 'v1', { 'data.bin': data });
    await gc();
    const withIt = s.chunkCount();
    expect((await s.api('/api/v1/repos/alice/gc-deleted', { method: 'DELETE', token: alice })).status).toBe(204);
    expect(await gc()).toMatchObject({ chunks: 0, repositories_purged: 0 });

    // Outsiders learn nothing: the same 404 as for a repository never deleted.
    const bob = await s.token('bob');
    expect((await s.api('/api/v1/repos/alice/gc-deleted/restore', { method: 'POST', token: bob })).status).toBe(404);
    const restored = await s.api('/api/v1/repos/alice/gc-deleted/restore', { method: 'POST', token: alice });
    expect(restored.status).toBe(200);
    expect((await restored.json()).full_name).toBe('alice/gc-deleted');
    expect((await fileOf('alice/gc-deleted', 'v1', 'data.bin')).equals(data)).toBe(true);

    expect((await s.api('/api/v1/repos/alice/gc-deleted', { method: 'DELETE', token: alice })).status).toBe(204);
    const purged = await gc({ purge_deleted: true });
    expect(purged.repositories_purged).toBe(1);
    expect(purged.chunks).toBeGreaterThan(0);
    expect(s.chunkCount()).toBeLessThan(withIt);
    expect((await s.api('/api/v1/repos/alice/gc-deleted/restore', { method: 'POST', token: alice })).status).toBe(404);
  });

  it('refuses to restore over a live repository of the same name', async () => {
    await s.createRepo(alice, 'gc-clash');
    expect((await s.api('/api/v1/repos/alice/gc-clash', { method: 'DELETE', token: alice })).status).toBe(204);
    await s.createRepo(alice, 'gc-clash');
    expect((await s.api('/api/v1/repos/alice/gc-clash/restore', { method: 'POST', token: alice })).status).toBe(409);
  });

  it('keeps chunks uploaded within the grace, frees them after; a commit then asks for them again', async () => {
    await s.createRepo(alice, 'gc-uploads');
    const chunk = unique(20);
    const digest = sha256(chunk);
    const put = await s.api(`/api/v1/repos/alice/gc-uploads/chunks/${digest}`, {
      method: 'PUT',
      token: alice,
      body: chunk,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status).toBe(201);
    expect((await gc({ grace_seconds: 3600 })).chunks).toBe(0);
    expect((await gc()).chunks).toBe(1);

    const commit = () =>
      s.api('/api/v1/repos/alice/gc-uploads/commits', {
        method: 'POST',
        token: alice,
        json: { tag: 'v1', manifest: { entries: [fileEntry('chunk.bin', [{ digest, size: chunk.length }])] } },
      });
    const refused = await commit();
    expect(refused.status).toBe(422);
    expect(JSON.stringify(await refused.json())).toContain(digest);
    await s.api(`/api/v1/repos/alice/gc-uploads/chunks/${digest}`, { method: 'PUT', token: alice, body: chunk, headers: { 'content-type': 'application/octet-stream' } });
    expect((await commit()).status).toBe(201);
    expect((await fileOf('alice/gc-uploads', 'v1', 'chunk.bin')).equals(chunk)).toBe(true);
  });

  it('loses nothing a push was answered 2xx for while collections run through a stream of pushes', async () => {
    await s.createRepo(alice, 'gc-stream');
    // Each content of the pool is pushed twice: first to a tag deleted at once (its chunks become
    // garbage for the next collection), then at once to a tag that stays, whose push dedupes
    // against those garbage chunks first (the pooled file leads its tar) while collections
    // delete them, and then takes a while with its own data.
    const pool = Array.from({ length: 12 }, () => unique(256));
    const pushesOf = await Promise.all(
      Array.from({ length: 2 * pool.length }, async (_, i) => {
        const files = { 'a-pooled.bin': pool[i >> 1]!, 'b-own.bin': unique(i % 2 === 0 ? 32 : 1024) };
        return { tag: `t${i}`, files, tar: tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body }))) };
      }),
    );
    const acknowledged: { tag: string; files: Record<string, Buffer> }[] = [];
    let refused = 0;
    let pushing = true;
    const pushes = (async () => {
      try {
        for (const [i, { tag, files, tar }] of pushesOf.entries()) {
          const res = await pushTar('alice/gc-stream', tag, tar);
          if (res.status !== 201) {
            expect(res.status).toBe(422); // chunks a collection removed meanwhile: to push again, not lost
            refused++;
          } else if (i % 2 === 0) {
            expect((await s.api(`/api/v1/repos/alice/gc-stream/tags/${tag}`, { method: 'DELETE', token: alice })).status).toBe(204);
          } else {
            acknowledged.push({ tag, files });
          }
        }
      } finally {
        pushing = false;
      }
    })();
    let collections = 0;
    let freed = 0;
    while (pushing) {
      freed += (await gc()).chunks;
      collections++;
    }
    await pushes;
    await gc();
    expect(collections).toBeGreaterThan(1);
    expect(freed).toBeGreaterThan(0);
    expect(acknowledged.length + refused).toBeGreaterThan(8);
    for (const { tag, files } of acknowledged) {
      for (const [path, bytes] of Object.entries(files)) expect((await fileOf('alice/gc-stream', tag, path)).equals(bytes)).toBe(true);
    }
  });
});
