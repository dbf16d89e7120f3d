/**
 * Two real servers over one PostgreSQL database (metadata and chunk index) and one S3 prefix
 * (packs), each with a data directory of its own, driven over HTTP: whatever one writes the
 * other reads at once, and nothing that must be shared lives in a process or on its local disk
 * (signing key, tags, chunk index, upload grace, idempotency records). Skipped, saying why,
 * unless both a PostgreSQL server (test/support/postgres.ts) and an S3 store
 * (test/support/s3.ts) are configured.
 */
import { randomBytes } from 'node:crypto';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileEntry, sha256 } from '../support/delta.js';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrl, type TestDatabase } from '../support/postgres.js';
import { emptyPrefix, freshPrefix, rawClient, s3Config, s3Env, S3_SKIP_REASON } from '../support/s3.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOf, tempDir, untar } from '../support/trees.js';

const skip = postgresUrl === undefined ? POSTGRES_SKIP_REASON : s3Config === undefined ? S3_SKIP_REASON : undefined;
if (skip !== undefined) console.warn(`two-server tests skipped: ${skip}`);

describe.skipIf(skip !== undefined)(`two servers over one PostgreSQL and one bucket${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let database: TestDatabase;
  let prefix: string;
  let a: TestServer;
  let b: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl!);
    prefix = freshPrefix(s3Config!, 'two-servers');
    const env = { SNAPFORK_DATABASE_URL: database.url, ...s3Env(s3Config!, prefix) };
    a = await startTestServer(env);
    b = await startTestServer(env);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (prefix !== undefined) await emptyPrefix(rawClient(s3Config!), s3Config!.bucket, prefix);
    await database?.drop();
  });

  /** The bytes of `path` at `owner/repo:tag`, read through `server`. */
  const readFileThrough = async (server: TestServer, token: string, fullName: string, tag: string, path: string) => {
    const res = await server.api(`/api/v1/repos/${fullName}/tags/${tag}/files/${path}`, { token });
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  };

  /** Uploads one chunk of `data` through `server`, then commits a tree of it as `path` through `committer` with `parent`. */
  const deltaPush = async (server: TestServer, committer: TestServer, token: string, fullName: string, tag: string, parent: string | null | undefined, data: Buffer) => {
    const digest = sha256(data);
    const put = await server.api(`/api/v1/repos/${fullName}/chunks/${digest}`, { method: 'PUT', token, body: data, headers: { 'content-type': 'application/octet-stream' } });
    expect([200, 201]).toContain(put.status);
    return committer.api(`/api/v1/repos/${fullName}/commits`, {
      method: 'POST',
      token,
      json: { tag, ...(parent !== undefined && { parent }), manifest: { entries: [fileEntry('data.bin', [{ digest, size: data.length }])] } },
    });
  };

  /** The tag's history through `server`, newest first, as ids and parents. */
  const history = async (server: TestServer, token: string, fullName: string, tag: string) => {
    const commits: { id: string; parent_ids: string[] }[] = [];
    for (let page = 1; ; page++) {
      const res = await server.api(`/api/v1/repos/${fullName}/commits?tag=${tag}&per_page=100&page=${page}`, { token });
      expect(res.status).toBe(200);
      const got = (await res.json()) as { id: string; parent_ids: string[] }[];
      commits.push(...got);
      if (got.length < 100) return commits;
    }
  };

  /** True when `commits` (newest first) is one chain: each the only parent of the one before. */
  const isChain = (commits: { id: string; parent_ids: string[] }[]) =>
    commits.every((c, i) => (i === commits.length - 1 ? c.parent_ids.length === 0 : c.parent_ids.length === 1 && c.parent_ids[0] === commits[i + 1]!.id));

  it('accepts on each server the tokens the other mints, and keeps no store on either local disk', async () => {
    const fromA = await a.token('alice');
    const fromB = await b.token('bob');
    expect(await (await b.api('/api/v1/user', { token: fromA })).json()).toMatchObject({ login: 'alice' });
    expect(await (await a.api('/api/v1/user', { token: fromB })).json()).toMatchObject({ login: 'bob' });
    for (const server of [a, b]) {
      for (const local of ['snapfork.db', 'chunks']) await expect(access(join(server.dataDir, local))).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });

  it('reads through one server, byte for byte and at once, what a tar push through the other stored', async () => {
    const alice = await a.token('alice');
    await b.createRepo(alice, 'pushed');
    const big = randomBytes(3 * 1024 * 1024 + 5);
    const small = Buffer.from('written through B\n');
    await b.pushFiles(alice, 'alice/pushed', 'v1', { 'big.bin': big, 'dir/small.txt': small });

    const archive = await a.api('/api/v1/repos/alice/pushed/tags/v1/archive', { token: alice });
    expect(archive.status).toBe(200);
    const dir = await tempDir();
    await untar(Buffer.from(await archive.arrayBuffer()), dir);
    expect((await readFile(join(dir, 'big.bin'))).equals(big)).toBe(true);
    expect(await readFile(join(dir, 'dir/small.txt'))).toEqual(small);
    expect((await readFileThrough(a, alice, 'alice/pushed', 'v1', 'big.bin')).equals(big)).toBe(true);

    // The other way round: chunks A stores, B locates and reads with nothing cached.
    const other = randomBytes(1024 * 1024);
    await a.pushFiles(alice, 'alice/pushed', 'v2', { 'other.bin': other });
    expect((await readFileThrough(b, alice, 'alice/pushed', 'v2', 'other.bin')).equals(other)).toBe(true);
  });

  it('forks through A a tag pushed through B, and reads the fork through B', async () => {
    const alice = await b.token('alice');
    const bob = await a.token('bob');
    await b.createRepo(alice, 'source', 'public');
    const content = randomBytes(300_000);
    const pushed = await b.pushFiles(alice, 'alice/source', 'v1', { 'weights.bin': content });

    const fork = await a.api('/api/v1/repositories/fork', { method: 'POST', token: bob, json: { source_org: 'alice', source_repo: 'source', source_tag: 'v1' } });
    expect(fork.status).toBe(201);
    const repo = await (await b.api('/api/v1/repos/bob/source', { token: bob })).json();
    expect(repo).toMatchObject({ fork: true, parent: { full_name: 'alice/source' }, forked_from_commit_id: pushed.commit_id });
    expect((await readFileThrough(b, bob, 'bob/source', 'v1', 'weights.bin')).equals(content)).toBe(true);
  });

  it('gives one linear history, losing no acknowledged push, to pushes through both servers at once', async () => {
    const alice = await a.token('alice');
    await a.createRepo(alice, 'race');
    const acknowledged: string[] = [];
    let conflicts = 0;

    // Delta pushes naming the parent they saw: each pusher reads the tag, then commits on top
    // of it, and on 409 (the other moved it first) reads again.
    const pusher = async (server: TestServer, pushes: number) => {
      for (let done = 0; done < pushes; ) {
        const tag = await server.api('/api/v1/repos/alice/race/tags/main', { token: alice });
        const parent = tag.status === 404 ? null : ((await tag.json()) as { commit_id: string }).commit_id;
        const res = await deltaPush(server, server, alice, 'alice/race', 'main', parent, randomBytes(1000));
        if (res.status === 409) {
          conflicts++;
          continue;
        }
        expect(res.status).toBe(201);
        acknowledged.push(((await res.json()) as { commit_id: string }).commit_id);
        done++;
      }
    };
    await Promise.all([pusher(a, 8), pusher(b, 8)]);
    // Tar pushes name no parent: each goes on top of whatever the tag holds, none refused.
    const tars = await Promise.all([0, 1, 2, 3].map((i) => tarOfOne(`tar push ${i}`)));
    const tarPushes = await Promise.all(
      [a, b, a, b].map((server, i) =>
        server.api('/api/v1/repos/alice/race/tags/main/archive', {
          method: 'PUT',
          token: alice,
          body: tars[i],
          headers: { 'content-type': 'application/x-tar' },
        }),
      ),
    );
    for (const res of tarPushes) {
      expect(res.status).toBe(201);
      acknowledged.push(((await res.json()) as { commit_id: string }).commit_id);
    }

    for (const server of [a, b]) {
      const commits = await history(server, alice, 'alice/race', 'main');
      expect(isChain(commits)).toBe(true);
      expect(commits.map((c) => c.id).sort()).toEqual([...acknowledged].sort());
    }
    console.info(`two servers: ${acknowledged.length} pushes acknowledged, ${conflicts} delta pushes answered 409 and retried`);
  });

  it('finishes on B a delta push started on A: the upload grace is in the database', async () => {
    const alice = await a.token('alice');
    await a.createRepo(alice, 'delta');
    const data = randomBytes(200_000);
    const digest = sha256(data);
    const missing = (server: TestServer) =>
      server.api('/api/v1/repos/alice/delta/chunks/missing', { method: 'POST', token: alice, json: { digests: [digest] } }).then((r) => r.json());
    expect(await missing(a)).toEqual({ missing: [digest] });

    const commit = await deltaPush(a, b, alice, 'alice/delta', 'main', null, data);
    expect(commit.status).toBe(201);
    expect(await missing(b)).toEqual({ missing: [] });
    expect((await readFileThrough(a, alice, 'alice/delta', 'main', 'data.bin')).equals(data)).toBe(true);

    // A chunk nobody uploaded is refused by B all the same: the grace, not B's ignorance, let the first through.
    const unsent = randomBytes(20_000);
    const refused = await b.api('/api/v1/repos/alice/delta/commits', {
      method: 'POST',
      token: alice,
      json: { tag: 'other', manifest: { entries: [fileEntry('x.bin', [{ digest: sha256(unsent), size: unsent.length }])] } },
    });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toMatchObject({ details: { missing: [sha256(unsent)] } });
  });

  it('answers an idempotency key replayed on the other server with the first answer', async () => {
    const alice = await a.token('alice');
    const create = (server: TestServer, headers: Record<string, string> = {}) =>
      server.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'once', visibility: 'private' }, headers });
    const first = await create(a, { 'idempotency-key': 'create-once' });
    expect(first.status).toBe(201);
    const body = await first.text();
    const replay = await create(b, { 'idempotency-key': 'create-once' });
    expect(replay.status).toBe(201);
    expect(await replay.text()).toBe(body);
    // Without the key the same request is a new one, which the name now conflicts with.
    expect((await create(b)).status).toBe(409);
  });

  it('collects garbage through one server while the other pushes and deletes, losing no acknowledged push', async () => {
    const admin = await a.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
    const alice = await b.token('alice');
    expect((await b.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'collected', visibility: 'private' } })).status).toBe(201);
    const collect = async () => {
      const res = await a.api('/api/v1/admin/gc', { method: 'POST', token: admin, json: { grace_seconds: 0 } });
      expect(res.status).toBe(200);
      return (await res.json()) as { chunks: number };
    };
    // Each content twice: to a tag deleted at once (garbage), then to a tag kept, whose push
    // dedupes against that garbage while server A's collections delete it.
    const kept: { tag: string; text: string }[] = [];
    let pushing = true;
    const pushes = (async () => {
      try {
        for (let i = 0; i < 12; i++) {
          const text = `content ${i >> 1} `.repeat(40_000);
          const tag = `t${i}`;
          const res = await b.api(`/api/v1/repos/alice/collected/tags/${tag}/archive`, {
            method: 'PUT',
            token: alice,
            body: await tarOfOne(text),
            headers: { 'content-type': 'application/x-tar' },
          });
          if (res.status !== 201) expect(res.status).toBe(422); // what a collection took meanwhile: pushed again, not lost
          else if (i % 2 === 0) expect((await b.api(`/api/v1/repos/alice/collected/tags/${tag}`, { method: 'DELETE', token: alice })).status).toBe(204);
          else kept.push({ tag, text });
        }
      } finally {
        pushing = false;
      }
    })();
    let freed = 0;
    while (pushing) freed += (await collect()).chunks;
    await pushes;
    freed += (await collect()).chunks;
    expect(freed).toBeGreaterThan(0);
    expect(kept.length).toBeGreaterThan(3);
    for (const { tag, text } of kept) expect((await readFileThrough(a, alice, 'alice/collected', tag, 'data.bin')).toString()).toBe(text);
  });
});

/** A tar of one file `data.bin` holding `text`. */
async function tarOfOne(text: string): Promise<Buffer> {
  const dir = await tempDir();
  try {
    await writeFile(join(dir, 'data.bin'), text);
    return await tarOf(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
