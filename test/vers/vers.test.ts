/**
 * The Vers dialect (seed 001 and issue 6): the documented requests replayed against the real
 * server, every listed status, the public catalogue, commits, and the fork seen natively.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectVersError } from '../support/vers.js';
import { startTestServer, type TestServer } from '../support/server.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

let s: TestServer;
/** alice acting in the organization `labs`, which her first call creates with her as owner. */
let labs: string;
/** bob acting in his own namespace. */
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  labs = await s.token('alice', { org: 'labs' });
  bob = await s.token('bob');
});
afterAll(() => s.stop());

/** Reads one of the server's SQLite files without disturbing it. */
function query<T>(file: string, sql: string, ...args: unknown[]): T {
  const db = new Database(join(s.dataDir, file), { readonly: true });
  try {
    return db.prepare(sql).get(...args) as T;
  } finally {
    db.close();
  }
}


const post = (path: string, token: string | undefined, json: unknown, headers: Record<string, string> = {}) =>
  s.api(`/api/v1${path}`, { method: 'POST', token, json, headers });
const patch = (path: string, token: string | undefined, json: unknown) => s.api(`/api/v1${path}`, { method: 'PATCH', token, json });
const del = (path: string, token: string | undefined) => s.api(`/api/v1${path}`, { method: 'DELETE', token });
const get = (path: string, token?: string) => s.api(`/api/v1${path}`, { token });

/** Pushes a one-file snapshot through the native API; returns the new commit's id. */
const push = async (token: string, fullName: string, tag: string, content: string) =>
  (await s.pushFiles(token, fullName, tag, { 'state.txt': content })).commit_id;

async function createRepo(token: string, name: string, description?: string) {
  const res = await post('/repositories', token, { name, description });
  expect(res.status).toBe(201);
  return res.json();
}

describe('repositories of the token organization', () => {
  it('creates a private repository and answers {repo_id, name}; 409 on a taken name, 400 on a bad one', async () => {
    const res = await post('/repositories', labs, { name: 'bases', description: 'warm bases' });
    expect(res.status).toBe(201);
    const created = await res.json();
    expect(Object.keys(created).sort()).toEqual(['name', 'repo_id']);
    expect(created.name).toBe('bases');
    expect(created.repo_id).toMatch(UUID);

    await expectVersError(await post('/repositories', labs, { name: 'bases' }), 409, /already exists/);
    await expectVersError(await post('/repositories', labs, { name: 'two words' }), 400);
    await expectVersError(await post('/repositories', labs, { name: 'x'.repeat(65) }), 400);
    await expectVersError(await post('/repositories', labs, { description: 'no name' }), 400);
    await expectVersError(await post('/repositories', undefined, { name: 'anonymous' }), 401);

    // Created in the token's organization, private: the native API sees the same row.
    const native = await (await get('/repos/labs/bases', labs)).json();
    expect(native).toMatchObject({ uuid: created.repo_id, visibility: 'private', description: 'warm bases' });
  });

  it('lists and gets the full record; another organization sees none of it', async () => {
    const listed = await (await get('/repositories', labs)).json();
    const bases = listed.repositories.find((r: { name: string }) => r.name === 'bases');
    expect(bases).toEqual({ repo_id: expect.stringMatching(UUID), name: 'bases', description: 'warm bases', is_public: false, created_at: expect.stringMatching(ISO) });
    const one = await get('/repositories/bases', labs);
    expect(one.status).toBe(200);
    expect(await one.json()).toEqual(bases);

    expect((await (await get('/repositories', bob)).json()).repositories).toEqual([]);
    await expectVersError(await get('/repositories/bases', bob), 404, /^repository not found$/);
    await expectVersError(await get('/repositories/nope', labs), 404, /^repository not found$/);
    await expectVersError(await get('/repositories'), 401);
  });

  it('answers an unset description as null', async () => {
    await createRepo(labs, 'plain');
    expect(await (await get('/repositories/plain', labs)).json()).toMatchObject({ name: 'plain', description: null });
  });

  it('flips visibility with PATCH .../visibility (204), is_public true being our public', async () => {
    expect((await patch('/repositories/plain/visibility', labs, { is_public: true })).status).toBe(204);
    expect((await (await get('/repositories/plain', labs)).json()).is_public).toBe(true);
    expect((await (await get('/repos/labs/plain', labs)).json()).visibility).toBe('public');
    expect((await patch('/repositories/plain/visibility', labs, { is_public: false })).status).toBe(204);
    expect((await (await get('/repos/labs/plain', labs)).json()).visibility).toBe('private');

    await expectVersError(await patch('/repositories/plain/visibility', labs, {}), 400);
    await expectVersError(await patch('/repositories/plain/visibility', labs, { is_public: 'yes' }), 400);
    await expectVersError(await patch('/repositories/nope/visibility', labs, { is_public: true }), 404);
  });

  it('deletes with 204; the repository disappears from reads and listings', async () => {
    await createRepo(labs, 'doomed');
    expect((await del('/repositories/doomed', labs)).status).toBe(204);
    await expectVersError(await get('/repositories/doomed', labs), 404);
    await expectVersError(await del('/repositories/doomed', labs), 404);
    const names = (await (await get('/repositories', labs)).json()).repositories.map((r: { name: string }) => r.name);
    expect(names).toEqual(['bases', 'plain']);
  });

  it('pages the list with limit and offset and reports the total in X-Total-Count', async () => {
    const first = await get('/repositories?limit=1', labs);
    expect(first.headers.get('x-total-count')).toBe('2');
    const second = await get('/repositories?limit=1&offset=1', labs);
    const names = [...(await first.json()).repositories, ...(await second.json()).repositories].map((r: { name: string }) => r.name);
    expect(names).toEqual(['bases', 'plain']);
    await expectVersError(await get('/repositories?limit=0', labs), 400);
  });
});

describe('tags of a repository', () => {
  let c1: string;
  let c2: string;

  beforeAll(async () => {
    c1 = await push(labs, 'labs/bases', 'v1', 'one');
    c2 = await push(labs, 'labs/bases', 'v1', 'two');
  });

  it('lists {repository, tags} with the full tag record', async () => {
    const res = await get('/repositories/bases/tags', labs);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      repository: 'bases',
      tags: [
        {
          tag_id: expect.stringMatching(UUID),
          tag_name: 'v1',
          commit_id: c2,
          reference: 'bases:v1',
          description: null,
          created_at: expect.stringMatching(ISO),
          updated_at: expect.stringMatching(ISO),
        },
      ],
    });
    await expectVersError(await get('/repositories/nope/tags', labs), 404);
  });

  it('creates a tag on a commit (201 {tag_id, commit_id, reference}); 409 when it exists, 404 for an unknown commit', async () => {
    const res = await post('/repositories/bases/tags', labs, { tag_name: 'warm-v1', commit_id: c1, description: 'first state' });
    expect(res.status).toBe(201);
    const created = await res.json();
    expect(created).toEqual({ tag_id: expect.stringMatching(UUID), commit_id: c1, reference: 'bases:warm-v1' });

    const one = await get('/repositories/bases/tags/warm-v1', labs);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ tag_id: created.tag_id, tag_name: 'warm-v1', commit_id: c1, description: 'first state' });

    await expectVersError(await post('/repositories/bases/tags', labs, { tag_name: 'warm-v1', commit_id: c2 }), 409);
    await expectVersError(await post('/repositories/bases/tags', labs, { tag_name: 'ghost', commit_id: '00000000-0000-4000-8000-000000000000' }), 404);
    await expectVersError(await post('/repositories/bases/tags', labs, { tag_name: 'bad name', commit_id: c1 }), 400);
    await expectVersError(await post('/repositories/bases/tags', labs, { tag_name: 'x', commit_id: 'not-a-uuid' }), 400);
    await expectVersError(await post('/repositories/nope/tags', labs, { tag_name: 'x', commit_id: c1 }), 404);
    await expectVersError(await get('/repositories/bases/tags/nope', labs), 404);
  });

  it('moves a tag with PATCH (204), logged in the tag log, and clears its description with null', async () => {
    const before = await (await get('/repositories/bases/tags/warm-v1', labs)).json();
    expect((await patch('/repositories/bases/tags/warm-v1', labs, { commit_id: c2 })).status).toBe(204);
    const moved = await (await get('/repositories/bases/tags/warm-v1', labs)).json();
    expect(moved).toMatchObject({ tag_id: before.tag_id, commit_id: c2, description: 'first state' });
    const log = query<{ n: number }>('snapfork.db', "SELECT count(*) AS n FROM tag_log WHERE tag_name = 'warm-v1' AND old_commit_id = ? AND new_commit_id = ?", c1, c2);
    expect(log.n).toBe(1);

    expect((await patch('/repositories/bases/tags/warm-v1', labs, { description: null })).status).toBe(204);
    expect(await (await get('/repositories/bases/tags/warm-v1', labs)).json()).toMatchObject({ commit_id: c2, description: null });

    await expectVersError(await patch('/repositories/bases/tags/nope', labs, { description: 'x' }), 404);
    await expectVersError(await patch('/repositories/bases/tags/warm-v1', labs, { commit_id: 'zzz' }), 400);
  });

  it('deletes a tag (204); the commit stays', async () => {
    expect((await del('/repositories/bases/tags/warm-v1', labs)).status).toBe(204);
    await expectVersError(await get('/repositories/bases/tags/warm-v1', labs), 404);
    await expectVersError(await del('/repositories/bases/tags/warm-v1', labs), 404);
    expect((await get(`/repos/labs/bases/commits/${c2}`, labs)).status).toBe(200);
  });
});

describe('the public catalogue', () => {
  it('shows public repositories only, to anyone, in the PublicRepositoryInfo shape', async () => {
    const hidden = await (await get('/public/repositories')).json();
    expect(hidden.repositories.map((r: { full_name: string }) => r.full_name)).not.toContain('labs/bases');
    await expectVersError(await get('/public/repositories/labs/bases'), 404);
    await expectVersError(await get('/public/repositories/labs/bases/tags'), 404);

    expect((await patch('/repositories/bases/visibility', labs, { is_public: true })).status).toBe(204);
    const listed = await (await get('/public/repositories')).json();
    const entry = listed.repositories.find((r: { full_name: string }) => r.full_name === 'labs/bases');
    const repoId = (await (await get('/repositories/bases', labs)).json()).repo_id;
    expect(entry).toEqual({ repo_id: repoId, org_name: 'labs', name: 'bases', full_name: 'labs/bases', description: 'warm bases', created_at: expect.stringMatching(ISO) });
    expect(await (await get('/public/repositories/labs/bases')).json()).toEqual(entry);
  });

  it('resolves tags of a public repository without a token', async () => {
    const tags = await (await get('/public/repositories/labs/bases/tags')).json();
    const v1 = await (await get('/repositories/bases/tags/v1', labs)).json();
    expect(tags).toEqual({ repository: 'bases', tags: [v1] });
    const one = await get('/public/repositories/labs/bases/tags/v1');
    expect(one.status).toBe(200);
    expect(await one.json()).toEqual(v1);
    await expectVersError(await get('/public/repositories/labs/bases/tags/nope'), 404);
    await expectVersError(await get('/public/repositories/labs/nope'), 404);
  });

  it('never shows internal or private repositories, even to a signed-in member', async () => {
    const res = await s.api('/api/v1/orgs/labs/repos', { method: 'POST', token: labs, json: { name: 'insiders', visibility: 'internal' } });
    expect(res.status).toBe(201);
    const names = (await (await get('/public/repositories?limit=1000', labs)).json()).repositories.map((r: { full_name: string }) => r.full_name);
    expect(names).toContain('labs/bases');
    expect(names).not.toContain('labs/insiders');
    expect(names).not.toContain('labs/plain');
    await expectVersError(await get('/public/repositories/labs/insiders', labs), 404);
  });

  it('pages with limit and offset, newest first', async () => {
    for (const name of ['cat-a', 'cat-b', 'cat-c']) {
      await createRepo(bob, name);
      expect((await patch(`/repositories/${name}/visibility`, bob, { is_public: true })).status).toBe(204);
    }
    const first = await get('/public/repositories?limit=2');
    const total = Number(first.headers.get('x-total-count'));
    expect(total).toBe(4);
    const rest = await get('/public/repositories?limit=2&offset=2');
    const names = [...(await first.json()).repositories, ...(await rest.json()).repositories].map((r: { full_name: string }) => r.full_name);
    expect(names).toEqual(['bob/cat-c', 'bob/cat-b', 'bob/cat-a', 'labs/bases']);
  });
});

describe('commits of the token organization', () => {
  let labsId: string;
  let c1: string;
  let c2: string;

  beforeAll(async () => {
    const me = await (await get('/user', labs)).json();
    labsId = String(me.orgs.find((o: { name: string }) => o.name === 'labs').id);
    await createRepo(labs, 'lineage');
    c1 = await push(labs, 'labs/lineage', 'main', 'first');
    c2 = await push(labs, 'labs/lineage', 'main', 'second');
  });

  it('lists {commits, total, limit, offset}, newest first, in the CommitInfo shape', async () => {
    const res = await get('/commits', labs);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ limit: 50, offset: 0 });
    expect(body.total).toBe(4); // two in bases, two in lineage
    expect(body.commits).toHaveLength(4);
    const [newest, previous] = body.commits;
    expect(newest).toEqual({
      commit_id: c2,
      name: '',
      owner_id: labsId,
      is_public: false,
      created_at: expect.stringMatching(ISO),
      description: null,
      parent_vm_id: null,
      grandparent_commit_id: c1,
    });
    expect(previous).toMatchObject({ commit_id: c1 });
    expect(body.commits[3].grandparent_commit_id).toBeNull();

    expect((await (await get('/commits', bob)).json()).commits).toEqual([]);
    await expectVersError(await get('/commits'), 401);
  });

  it('pages with limit and offset', async () => {
    const body = await (await get('/commits?limit=1&offset=1', labs)).json();
    expect(body).toMatchObject({ total: 4, limit: 1, offset: 1 });
    expect(body.commits.map((c: { commit_id: string }) => c.commit_id)).toEqual([c1]);
    await expectVersError(await get('/commits?offset=-1', labs), 400);
  });

  it('publishes a commit with PATCH (200 CommitInfo): then anyone may read it by id', async () => {
    await createRepo(bob, 'borrowed');
    // Private, the commit is invisible to bob: as missing when he tags it or edits it.
    await expectVersError(await post('/repositories/borrowed/tags', bob, { tag_name: 'base', commit_id: c1 }), 404);
    await expectVersError(await patch(`/commits/${c1}`, bob, { is_public: true }), 404);
    expect((await (await get('/commits/public', bob)).json()).commits).toEqual([]);

    const res = await patch(`/commits/${c1}`, labs, { is_public: true, name: 'warm-base-v1', description: 'rsync+curl baseline' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      commit_id: c1,
      name: 'warm-base-v1',
      owner_id: labsId,
      is_public: true,
      created_at: expect.stringMatching(ISO),
      description: 'rsync+curl baseline',
      parent_vm_id: null,
      grandparent_commit_id: null,
    });

    const pub = await (await get('/commits/public', bob)).json();
    expect(pub).toMatchObject({ total: 1, limit: 50, offset: 0 });
    expect(pub.commits.map((c: { commit_id: string }) => c.commit_id)).toEqual([c1]);
    expect((await post('/repositories/borrowed/tags', bob, { tag_name: 'base', commit_id: c1 })).status).toBe(201);
    // Readable is not writable.
    await expectVersError(await patch(`/commits/${c1}`, bob, { is_public: false }), 403);
    await expectVersError(await get('/commits/public'), 401);
  });

  it('rejects a malformed or unknown commit edit', async () => {
    await expectVersError(await patch(`/commits/${c1}`, labs, { name: 'no flag' }), 400);
    await expectVersError(await patch('/commits/not-a-uuid', labs, { is_public: true }), 400);
    await expectVersError(await patch('/commits/00000000-0000-4000-8000-000000000000', labs, { is_public: true }), 404);
  });

  it('deletes a commit (204), but 409 while a tag refers to it; deleting a repository drops its tags', async () => {
    // c1 is no longer tagged in lineage, but bob's `borrowed:base` points at it.
    await expectVersError(await del(`/commits/${c1}`, labs), 409);
    expect((await del('/repositories/borrowed', bob)).status).toBe(204);
    expect((await del(`/commits/${c1}`, labs)).status).toBe(204);
    await expectVersError(await del(`/commits/${c1}`, labs), 404);
    // c2 is what `lineage:main` points at.
    await expectVersError(await del(`/commits/${c2}`, labs), 409, /tagged/);
  });
});

describe('the fork, seen through the other APIs', () => {
  it('forks a tag into the caller org (201, five fields), writes no chunk, and the native API sees the parent', async () => {
    const source = await (await get('/repositories/bases/tags/v1', labs)).json();
    const chunksBefore = s.chunkCount();
    const res = await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'bases', source_tag: 'v1' });
    expect(res.status).toBe(201);
    const fork = await res.json();
    expect(Object.keys(fork).sort()).toEqual(['commit_id', 'reference', 'repo_name', 'tag_name', 'vm_id']);
    expect(fork).toMatchObject({ repo_name: 'bases', tag_name: 'v1', reference: 'bases:v1', commit_id: expect.stringMatching(UUID) });
    expect(s.chunkCount()).toBe(chunksBefore);

    const native = await (await get('/repos/bob/bases', bob)).json();
    expect(native).toMatchObject({ fork: true, parent: { full_name: 'labs/bases' }, visibility: 'private', forked_from_commit_id: source.commit_id });
    expect(await (await get('/repositories/bases', bob)).json()).toMatchObject({ is_public: false });

    // The fork's commit descends from the source commit and is held by its VM and tag.
    const mine = (await (await get('/commits', bob)).json()).commits.find((c: { commit_id: string }) => c.commit_id === fork.commit_id);
    expect(mine).toMatchObject({ grandparent_commit_id: source.commit_id, is_public: false });
    await expectVersError(await del(`/commits/${fork.commit_id}`, bob), 409);
  });

  it('409 on a taken name and on a fork onto itself; 404 for unknown or invisible sources; 401 without token', async () => {
    await expectVersError(await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'bases', source_tag: 'v1' }), 409, /already exists/);
    await expectVersError(await post('/repositories/fork', labs, { source_org: 'labs', source_repo: 'bases', source_tag: 'v1' }), 409);
    await expectVersError(await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'bases', source_tag: 'nope', repo_name: 'b2' }), 404);
    await expectVersError(await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'nope', source_tag: 'v1' }), 404);
    // `lineage` is private to labs: bob cannot tell it from a missing repository.
    await expectVersError(await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'lineage', source_tag: 'main' }), 404);
    await expectVersError(await post('/repositories/fork', undefined, { source_org: 'labs', source_repo: 'bases', source_tag: 'v1' }), 401);
    await expectVersError(await post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'bases' }), 400);
  });

  it('renames with repo_name and tag_name, and replays a retried fork with the same idempotency key', async () => {
    const headers = { 'idempotency-key': 'fork-once' };
    const body = { source_org: 'labs', source_repo: 'bases', source_tag: 'v1', repo_name: 'my-bases', tag_name: 'latest' };
    const first = await post('/repositories/fork', bob, body, headers);
    expect(first.status).toBe(201);
    const answer = await first.json();
    expect(answer).toMatchObject({ repo_name: 'my-bases', tag_name: 'latest', reference: 'my-bases:latest' });
    const retry = await post('/repositories/fork', bob, body, headers);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(answer);
    expect((await (await get('/repositories/my-bases/tags', bob)).json()).tags.map((t: { tag_name: string }) => t.tag_name)).toEqual(['latest']);
  });

  it('keeps a fork no more visible than its source', async () => {
    expect((await patch('/repositories/bases/visibility', bob, { is_public: true })).status).toBe(204);
    expect((await patch('/repositories/bases/visibility', bob, { is_public: false })).status).toBe(204);
    expect((await patch('/repositories/bases/visibility', labs, { is_public: false })).status).toBe(204);
    await expectVersError(await patch('/repositories/bases/visibility', bob, { is_public: true }), 422);
  });
});

describe('deleting a repository keeps its commits (issue 11)', () => {
  let kept: string;
  let last: string;

  beforeAll(async () => {
    await createRepo(labs, 'ephemeral');
    kept = await push(labs, 'labs/ephemeral', 'main', 'kept one');
    last = await push(labs, 'labs/ephemeral', 'main', 'kept two');
    expect((await del('/repositories/ephemeral', labs)).status).toBe(204);
  });

  const listed = async (token: string) =>
    (await (await get('/commits?limit=1000', token)).json()).commits.map((c: { commit_id: string }) => c.commit_id) as string[];

  it('drops the tags, and still lists the commits to the organization only', async () => {
    await expectVersError(await get('/repositories/ephemeral/tags', labs), 404);
    expect(await listed(labs)).toEqual(expect.arrayContaining([kept, last]));
    const mine = (await (await get('/commits?limit=1000', labs)).json()).commits.find((c: { commit_id: string }) => c.commit_id === last);
    expect(mine).toMatchObject({ grandparent_commit_id: kept, is_public: false });
    expect(await listed(bob)).not.toContain(last);
  });

  it('tags a kept commit into another repository of the organization, whose files then read it back', async () => {
    await createRepo(labs, 'revived');
    expect((await post('/repositories/revived/tags', labs, { tag_name: 'back', commit_id: last })).status).toBe(201);
    const file = await get('/repos/labs/revived/tags/back/files/state.txt', labs);
    expect(await file.text()).toBe('kept two');
    // Outside the organization the commit is as missing as its repository.
    await createRepo(bob, 'grabbed');
    await expectVersError(await post('/repositories/grabbed/tags', bob, { tag_name: 'x', commit_id: kept }), 404);
    await expectVersError(await patch(`/commits/${kept}`, bob, { is_public: true }), 404);
  });

  it('publishes a kept commit for anyone, and deletes kept commits once no tag holds them', async () => {
    expect((await patch(`/commits/${kept}`, labs, { is_public: true, name: 'still here' })).status).toBe(200);
    const pub = (await (await get('/commits/public?limit=1000', bob)).json()).commits.map((c: { commit_id: string }) => c.commit_id);
    expect(pub).toContain(kept);
    expect((await post('/repositories/grabbed/tags', bob, { tag_name: 'x', commit_id: kept })).status).toBe(201);

    await expectVersError(await del(`/commits/${kept}`, labs), 409, /tagged/);
    expect((await del('/repositories/grabbed/tags/x', bob)).status).toBe(204);
    expect((await del(`/commits/${kept}`, labs)).status).toBe(204);
    await expectVersError(await del(`/commits/${last}`, labs), 409, /tagged/);
    expect((await del('/repositories/revived/tags/back', labs)).status).toBe(204);
    expect((await del(`/commits/${last}`, labs)).status).toBe(204);
    expect(await listed(labs)).not.toContain(last);
  });
});

describe('a tag never makes data more visible than its source allows (issue 10)', () => {
  /** dave acting in `intranet`, whose internal repository `secret` holds `cs`. */
  let intranet: string;
  let carol: string;
  let cs: string;
  let digest: string;

  const nativePatch = (path: string, token: string, json: unknown) => s.api(`/api/v1/repos/${path}`, { method: 'PATCH', token, json });
  const fetchChunks = (fullName: string, token: string | undefined, digests: string[]) => post(`/repos/${fullName}/chunks/fetch`, token, { digests });
  const secretFile = (fullName: string, tag: string, token?: string) => get(`/repos/${fullName}/tags/${tag}/files/state.txt`, token);

  beforeAll(async () => {
    intranet = await s.token('dave', { org: 'intranet' });
    carol = await s.token('carol');
    await createRepo(intranet, 'secret');
    expect((await nativePatch('intranet/secret', intranet, { visibility: 'internal' })).status).toBe(200);
    cs = await push(intranet, 'intranet/secret', 'main', 'dave secret');
    const manifest = await (await get(`/repos/intranet/secret/commits/${cs}/manifest`, intranet)).json();
    digest = manifest.entries[0].chunks[0].digest;
    // carol (signed in, so she may read the internal commit) owns a public and an internal repository.
    await createRepo(carol, 'pub');
    expect((await patch('/repositories/pub/visibility', carol, { is_public: true })).status).toBe(204);
    await push(carol, 'carol/pub', 'own', 'carol data');
    await createRepo(carol, 'inner');
    expect((await nativePatch('carol/inner', carol, { visibility: 'internal' })).status).toBe(200);
  });

  it("refuses to tag an internal commit of another repository into a public one (422), so no anonymous read gets it", async () => {
    await expectVersError(await post('/repositories/pub/tags', carol, { tag_name: 'x', commit_id: cs }), 422, /public repository cannot tag commit .* at most internal/);
    await expectVersError(await secretFile('carol/pub', 'x'), 404);
    // Moving a tag there is the same: the tag stays where it was.
    await expectVersError(await patch('/repositories/pub/tags/own', carol, { commit_id: cs }), 422, /at most internal/);
    const own = await (await get('/repositories/pub/tags/own', carol)).json();
    expect(own.commit_id).not.toBe(cs);
    expect(await (await secretFile('carol/pub', 'own')).text()).toBe('carol data');
  });

  it('tags it into a repository no wider than its source; pulls through that tag read the snapshot, and only while tagged', async () => {
    const bob = await s.token('bob');
    expect((await post('/repositories/inner/tags', carol, { tag_name: 'borrowed', commit_id: cs })).status).toBe(201);
    expect(await (await secretFile('carol/inner', 'borrowed', bob)).text()).toBe('dave secret');
    // A delta pull through carol/inner answers as the tag does: the manifest and its chunks.
    const manifest = await get(`/repos/carol/inner/commits/${cs}/manifest`, bob);
    expect(manifest.status).toBe(200);
    expect((await manifest.json()).entries[0].chunks[0].digest).toBe(digest);
    const one = await get(`/repos/carol/inner/chunks/${digest}`, bob);
    expect(one.status).toBe(200);
    expect(Buffer.from(await one.arrayBuffer()).toString()).toBe('dave secret');
    const pack = await fetchChunks('carol/inner', bob, [digest]);
    expect(pack.status).toBe(200);
    expect(Buffer.from(await pack.arrayBuffer()).subarray(36).toString()).toBe('dave secret');

    // A reach the tag gave goes with it.
    expect((await del('/repositories/inner/tags/borrowed', carol)).status).toBe(204);
    await expectVersError(await get(`/repos/carol/inner/commits/${cs}/manifest`, bob), 404);
    await expectVersError(await get(`/repos/carol/inner/chunks/${digest}`, bob), 404);
    await expectVersError(await fetchChunks('carol/inner', bob, [digest]), 404);
  });

  it('refuses to widen a repository past the data its tags point at, in every dialect that changes visibility', async () => {
    expect((await post('/repositories/inner/tags', carol, { tag_name: 'borrowed', commit_id: cs })).status).toBe(201);
    await expectVersError(await patch('/repositories/inner/visibility', carol, { is_public: true }), 422, /wider than internal.* tag borrowed/);
    const native = await nativePatch('carol/inner', carol, { visibility: 'public' });
    expect(native.status).toBe(422);
    expect(await native.json()).toMatchObject({ success: false, details: { field: 'visibility', visibility: 'public', limit: 'internal', tag: 'borrowed' } });
    expect((await (await get('/repos/carol/inner', carol)).json()).visibility).toBe('internal');
    await expectVersError(await secretFile('carol/inner', 'borrowed'), 404);
    // A fork of it is held to the same limit: its commit holds the same data.
    await expectVersError(await post('/repos/carol/inner/forks', carol, { name: 'inner-pub', visibility: 'public' }), 422, /wider than internal/);
    const fork = await post('/repos/carol/inner/forks', carol, { name: 'inner-fork' });
    expect(fork.status).toBe(201);
    expect((await (await get('/repos/carol/inner-fork', carol)).json()).visibility).toBe('internal');

    // Narrowing is always allowed; once the tag is gone, so is widening.
    expect((await patch('/repositories/inner/visibility', carol, { is_public: false })).status).toBe(204);
    expect((await del('/repositories/inner/tags/borrowed', carol)).status).toBe(204);
    expect((await patch('/repositories/inner/visibility', carol, { is_public: true })).status).toBe(204);
  });

  it('tags a public commit into any repository, and keeps it public while a wider repository tags it', async () => {
    expect((await patch(`/commits/${cs}`, intranet, { is_public: true })).status).toBe(200);
    expect((await post('/repositories/pub/tags', carol, { tag_name: 'shared', commit_id: cs })).status).toBe(201);
    expect(await (await secretFile('carol/pub', 'shared')).text()).toBe('dave secret');
    expect((await fetchChunks('carol/pub', undefined, [digest])).status).toBe(200);

    const refused = await patch(`/commits/${cs}`, intranet, { is_public: false });
    await expectVersError(refused, 422, /must stay public while carol\/pub:shared, a public repository/);
    const listed = (await (await get('/commits?limit=1000', intranet)).json()).commits.find((c: { commit_id: string }) => c.commit_id === cs);
    expect(listed).toMatchObject({ is_public: true });

    expect((await del('/repositories/pub/tags/shared', carol)).status).toBe(204);
    expect((await patch(`/commits/${cs}`, intranet, { is_public: false })).status).toBe(200);
    await expectVersError(await post('/repositories/pub/tags', carol, { tag_name: 'shared', commit_id: cs }), 422);
    await expectVersError(await fetchChunks('carol/pub', undefined, [digest]), 404);
  });
});
