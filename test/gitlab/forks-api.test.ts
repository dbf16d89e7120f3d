/**
 * The GitLab dialect (seed 003) over HTTP, written from the seed: its example request, every
 * status it lists, the visibility rule, the conflicts, GitLab's paging headers, and a fork seen
 * through the native API. Responses are checked against openapi/ by the test server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiInit, type TestServer } from '../support/server.js';

let s: TestServer;
let alice: string;
let aliceInLabs: string;
let bob: string;
let carol: string;
let dataset: { id: number };

/** A request the way GitLab clients authenticate: `PRIVATE-TOKEN`, not `Authorization`. */
const gl = (path: string, token: string | undefined, init: Omit<ApiInit, 'token'> = {}) =>
  s.api(`/api/v4${path}`, { ...init, headers: { ...(token ? { 'private-token': token } : {}), ...init.headers } });

const fork = (id: string | number, token: string | undefined, json: Record<string, unknown> = {}) =>
  gl(`/projects/${id}/fork`, token, { method: 'POST', json });

async function createRepo(token: string, name: string, visibility: string, org?: string) {
  const res = await s.api(org ? `/api/v1/orgs/${org}/repos` : '/api/v1/user/repos', { method: 'POST', token, json: { name, visibility } });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: number };
}

const push = (token: string, fullName: string, tag: string) =>
  s.pushFiles(token, fullName, tag, { 'weights.bin': `${fullName}:${tag}\n`.repeat(1000) });


beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  aliceInLabs = await s.token('alice', { org: 'labs' });
  bob = await s.token('bob');
  carol = await s.token('carol');
  await s.api('/api/v1/user', { token: aliceInLabs });
  await s.api('/api/v1/user', { token: carol });
  dataset = await createRepo(alice, 'dataset', 'public');
  await push(alice, 'alice/dataset', 'v1');
  await push(alice, 'alice/dataset', 'v2');
});
afterAll(() => s.stop());

describe('POST /projects/:id/fork', () => {
  it('forks into the caller\'s namespace: 201 with the project, finished, forked_from_project, no chunk written', async () => {
    const chunks = s.chunkCount();
    const res = await fork(dataset.id, bob);
    expect(res.status).toBe(201);
    const p = await res.json();
    expect(s.chunkCount()).toBe(chunks);
    expect(p).toMatchObject({
      path: 'dataset',
      name: 'dataset',
      path_with_namespace: 'bob/dataset',
      visibility: 'public',
      default_branch: 'v1',
      import_status: 'finished',
      forks_count: 0,
      archived: false,
      namespace: { name: 'bob', path: 'bob', kind: 'user', full_path: 'bob' },
      forked_from_project: { id: dataset.id, path_with_namespace: 'alice/dataset', forks_count: 1 },
      issues_enabled: false,
      merge_requests_enabled: false,
    });
    expect(p.id).not.toBe(dataset.id);

    // Polling the fork says it is done; every URL in it answers on this server.
    const polled = await (await gl(`/projects/${p.id}`, bob)).json();
    expect(polled).toMatchObject({ id: p.id, import_status: 'finished' });
    for (const url of [p._links.self, p.web_url, p.http_url_to_repo, p._links.repo_branches, p.namespace.web_url]) {
      expect(url.startsWith(s.url)).toBe(true);
      expect((await fetch(url, { headers: { authorization: `Bearer ${bob}` } })).status).toBe(200);
    }
    expect(await (await fetch(p._links.self)).json()).toMatchObject({ id: p.id });

    // The native API sees the same fork and parent.
    const native = await (await s.api('/api/v1/repos/bob/dataset', { token: bob })).json();
    expect(native).toMatchObject({ id: p.id, fork: true, parent: { full_name: 'alice/dataset' } });
  });

  it('takes the project as a URL-encoded path, and every attribute of the seed', async () => {
    const labs = await (await gl('/projects/alice%2Fdataset', alice)).json();
    expect(labs.id).toBe(dataset.id);

    const res = await fork('alice%2Fdataset', aliceInLabs, {
      namespace_path: 'labs',
      path: 'subset',
      name: 'Dataset subset',
      description: 'only v2',
      branches: 'v2',
      visibility: 'internal',
      mr_default_target_self: true,
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({
      path_with_namespace: 'labs/subset',
      name: 'Dataset subset',
      name_with_namespace: 'labs / Dataset subset',
      description: 'only v2',
      visibility: 'internal',
      default_branch: 'v2',
      namespace: { kind: 'group', full_path: 'labs' },
    });
    const tags = await (await s.api('/api/v1/repos/labs/subset/tags', { token: alice })).json();
    expect(tags.map((t: { name: string }) => t.name)).toEqual(['v2']);
  });

  it('names the target namespace by namespace_id, by the deprecated namespace (id or path), in a form body', async () => {
    const labsId = (await (await gl('/projects/labs%2Fsubset', alice)).json()).namespace.id as number;
    const byId = await fork(dataset.id, alice, { namespace_id: labsId, path: 'by-id', name: 'by id' });
    expect(await byId.json()).toMatchObject({ path_with_namespace: 'labs/by-id', namespace: { id: labsId } });
    const byDeprecatedId = await fork(dataset.id, alice, { namespace: String(labsId), path: 'by-old-id', name: 'by old id' });
    expect((await byDeprecatedId.json()).path_with_namespace).toBe('labs/by-old-id');
    const form = await gl(`/projects/${dataset.id}/fork`, alice, {
      method: 'POST',
      body: 'namespace=labs&path=by-form&name=by+form&visibility=private&mr_default_target_self=False',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(201);
    expect(await form.json()).toMatchObject({ path_with_namespace: 'labs/by-form', visibility: 'private' });
  });

  it('keeps the source path when only name is given, as GitLab\'s ForkService does', async () => {
    const res = await fork(dataset.id, carol, { name: 'Carol Copy' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ path: 'dataset', name: 'Carol Copy', path_with_namespace: 'carol/dataset' });
  });

  it('answers GitLab\'s errors: 401, 404 project/namespace/branch, 409 taken name and self-fork, 403, 400', async () => {
    const cases: [Promise<Response>, number, unknown][] = [
      [fork(dataset.id, undefined), 401, { message: '401 Unauthorized' }],
      [fork(999_999, bob), 404, { message: '404 Project Not Found' }],
      [fork('nobody%2Fnothing', bob), 404, { message: '404 Project Not Found' }],
      [fork(dataset.id, bob, { namespace_path: 'ghosts' }), 404, { message: '404 Namespace Not Found' }],
      [fork(dataset.id, bob, { namespace_id: 999_999 }), 404, { message: '404 Namespace Not Found' }],
      [fork(dataset.id, bob, { path: 'b', branches: 'v1,nope' }), 404, { message: '404 Source Branch Not Found' }],
      [fork(dataset.id, bob), 409, { message: { name: ['has already been taken'], path: ['has already been taken'] } }],
      [fork(dataset.id, alice), 409, { message: { name: ['has already been taken'], path: ['has already been taken'] } }],
      [fork(dataset.id, bob, { namespace_path: 'labs', path: 'x' }), 403, { message: expect.stringMatching(/^403 Forbidden/) }],
      [fork(dataset.id, bob, { visibility: 'secret' }), 400, { error: expect.stringContaining('visibility') }],
      [fork(dataset.id, bob, { namespace_id: 'abc' }), 400, { error: expect.stringContaining('namespace_id') }],
      [gl(`/projects/${dataset.id}/fork`, 'not-a-jwt', { method: 'POST', json: {} }), 401, { message: '401 Unauthorized' }],
      [gl('/projects/1/nothing-here', bob), 404, { message: '404 Not Found' }],
    ];
    for (const [pending, status, body] of cases) {
      const res = await pending;
      expect({ status: res.status, body: await errorBodyOf(res) }).toEqual({ status, body });
    }
  });

  it('keeps a fork no more visible than its source, and hides private sources (404)', async () => {
    const secret = await createRepo(alice, 'secret', 'private');
    await push(alice, 'alice/secret', 'v1');
    expect((await fork(secret.id, bob)).status).toBe(404);
    // GitLab's fork API answers a failed model validation 409 with the errors hash.
    const wider = await fork(secret.id, aliceInLabs, { namespace_path: 'labs', visibility: 'public' });
    expect({ status: wider.status, body: await errorBodyOf(wider) }).toEqual({
      status: 409,
      body: { message: { visibility_level: ['public is not allowed since the fork source project has lower visibility.'] } },
    });
    const pinned = await fork(secret.id, aliceInLabs, { namespace_path: 'labs' });
    expect(await pinned.json()).toMatchObject({ visibility: 'private', path_with_namespace: 'labs/secret' });
    // Outsiders see neither the private fork nor, in another's fork, its private source.
    expect((await gl('/projects/labs%2Fsecret', bob)).status).toBe(404);
  });

  it('keeps name and path each unique in the namespace: 409 names the field that clashes (issue 11)', async () => {
    await createRepo(alice, 'titled', 'public');
    await push(alice, 'alice/titled', 'v1');
    expect((await fork('alice%2Ftitled', bob, { path: 'titled-1', name: 'Titled' })).status).toBe(201);
    const cases: [Record<string, unknown>, Record<string, string[]>][] = [
      [{ path: 'titled-2', name: 'Titled' }, { name: ['has already been taken'] }],
      [{ path: 'TITLED-1', name: 'Another title' }, { path: ['has already been taken'] }],
      [{ path: 'titled-1', name: 'Titled' }, { name: ['has already been taken'], path: ['has already been taken'] }],
    ];
    const refuse = async (body: Record<string, unknown>, message: Record<string, string[]>) => {
      const res = await fork('alice%2Ftitled', bob, body);
      expect({ body, status: res.status, answer: await errorBodyOf(res) }).toEqual({ body, status: 409, answer: { message } });
    };
    for (const [body, message] of cases) await refuse(body, message);
    // Names compare exactly, paths ignoring case, as GitLab's indexes do; other namespaces are free.
    expect((await fork('alice%2Ftitled', bob, { path: 'titled-2' })).status).toBe(201);
    // The name defaults to the source's ("titled"), which the fork above took.
    await refuse({ path: 'titled-3' }, { name: ['has already been taken'] });
    expect((await fork('alice%2Ftitled', carol, { path: 'titled-1', name: 'Titled' })).status).toBe(201);
    const listed = await (await s.api('/api/v1/users/bob/repos?per_page=100', { token: bob })).json();
    expect(listed.filter((r: { name: string }) => r.name.startsWith('titled')).map((r: { name: string }) => r.name)).toEqual(['titled-1', 'titled-2']);
  });

  it('bounds a fork by every repository whose data it inherits, even after a source narrows or is deleted', async () => {
    await createRepo(alice, 'base', 'public');
    await push(alice, 'alice/base', 'v1');
    expect((await fork('alice%2Fbase', bob, { path: 'base-bob', name: 'base-bob' })).status).toBe(201);
    expect((await s.api('/api/v1/repos/alice/base', { method: 'PATCH', token: alice, json: { visibility: 'private' } })).status).toBe(200);
    // bob's fork is still public and readable, but may not hand alice's data on any wider than she now does.
    const wider = await fork('bob%2Fbase-bob', carol, { visibility: 'public' });
    expect({ status: wider.status, body: await errorBodyOf(wider) }).toEqual({
      status: 409,
      body: { message: { visibility_level: ['public is not allowed since the fork source project has lower visibility.'] } },
    });
    const pinned = await fork('bob%2Fbase-bob', carol, { path: 'base-carol', name: 'base-carol' });
    expect(await pinned.json()).toMatchObject({ visibility: 'private' });

    await createRepo(alice, 'gone', 'private');
    await push(alice, 'alice/gone', 'v1');
    expect((await fork('alice%2Fgone', aliceInLabs, { namespace_path: 'labs', path: 'gone-copy', name: 'gone-copy' })).status).toBe(201);
    expect((await s.api('/api/v1/repos/alice/gone', { method: 'DELETE', token: alice })).status).toBe(204);
    const widened = await s.api('/api/v1/repos/labs/gone-copy', { method: 'PATCH', token: aliceInLabs, json: { visibility: 'public' } });
    expect(widened.status).toBe(422);
    expect(await widened.json()).toMatchObject({ details: { field: 'visibility', visibility: 'public', limit: 'private' } });
  });

  it('refuses an archived source with 409 and a plain message', async () => {
    await createRepo(alice, 'old', 'public');
    await push(alice, 'alice/old', 'v1');
    await s.api('/api/v1/repos/alice/old', { method: 'PATCH', token: alice, json: { archived: true } });
    const res = await fork('alice%2Fold', bob);
    expect(res.status).toBe(409);
    expect((await res.json()).message).toContain('archived');
  });

  it('replays a retried fork with the same Idempotency-Key instead of forking twice', async () => {
    const headers = { 'idempotency-key': 'gl-retry-1' };
    const first = await gl(`/projects/${dataset.id}/fork`, bob, { method: 'POST', json: { path: 'retried', name: 'retried' }, headers });
    const again = await gl(`/projects/${dataset.id}/fork`, bob, { method: 'POST', json: { path: 'retried', name: 'retried' }, headers });
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await again.json()).id).toBe((await first.json()).id);
  });
});

describe('GET /projects/:id/forks', () => {
  let source: { id: number };

  beforeAll(async () => {
    source = await createRepo(alice, 'catalog', 'public');
    await push(alice, 'alice/catalog', 'v1');
    for (const path of ['c1', 'c2', 'c3', 'c4', 'c5']) expect((await fork(source.id, bob, { path, name: path })).status).toBe(201);
    expect((await fork(source.id, carol, { path: 'hidden', visibility: 'private' })).status).toBe(201);
    expect((await fork(source.id, aliceInLabs, { namespace_path: 'labs', path: 'catalog-labs' })).status).toBe(201);
  });

  /** One page of forks as `token` sees it; null lists anonymously. */
  const list = async (query: string, token: string | null = bob) => {
    const res = await gl(`/projects/${source.id}/forks${query}`, token ?? undefined);
    expect(res.status).toBe(200);
    return { res, paths: ((await res.json()) as { path_with_namespace: string }[]).map((p) => p.path_with_namespace) };
  };

  it('replays the seed\'s example: PRIVATE-TOKEN, visible forks only, GitLab\'s default order (created_at desc)', async () => {
    const { res, paths } = await list('');
    expect(paths).toEqual(['labs/catalog-labs', 'bob/c5', 'bob/c4', 'bob/c3', 'bob/c2', 'bob/c1']);
    expect(res.headers.get('x-total')).toBe('6');
    expect(res.headers.get('x-per-page')).toBe('20');
    expect((await list('', carol)).paths).toContain('carol/hidden');
    expect((await list('', null)).paths).toEqual(['labs/catalog-labs', 'bob/c5', 'bob/c4', 'bob/c3', 'bob/c2', 'bob/c1']);
    // forks_count counts what the caller may see.
    expect((await (await gl(`/projects/${source.id}`, carol)).json()).forks_count).toBe(7);
    expect((await (await gl(`/projects/${source.id}`, bob)).json()).forks_count).toBe(6);
  });

  it('pages with X-Total, X-Total-Pages, X-Page, X-Per-Page, X-Next-Page, X-Prev-Page and an absolute Link', async () => {
    const first = (await list('?per_page=4&order_by=path&sort=asc')).res;
    expect(Object.fromEntries(['x-total', 'x-total-pages', 'x-page', 'x-per-page', 'x-next-page', 'x-prev-page'].map((h) => [h, first.headers.get(h)]))).toEqual({
      'x-total': '6',
      'x-total-pages': '2',
      'x-page': '1',
      'x-per-page': '4',
      'x-next-page': '2',
      'x-prev-page': '',
    });
    const link = first.headers.get('link')!;
    const next = /<([^>]+)>; rel="next"/.exec(link)![1]!;
    expect(next.startsWith(`${s.url}/api/v4/projects/${source.id}/forks?`)).toBe(true);
    expect(link).toContain('rel="first"');
    expect(link).toContain('rel="last"');
    const second = await fetch(next, { headers: { 'private-token': bob } });
    expect(second.headers.get('x-next-page')).toBe('');
    expect(second.headers.get('x-prev-page')).toBe('1');
    expect(((await second.json()) as { path: string }[]).map((p) => p.path)).toEqual(['c5', 'catalog-labs']);
  });

  it('filters by visibility, search, owned, membership, min_access_level, archived and updated_*', async () => {
    expect((await list('?visibility=private', carol)).paths).toEqual(['carol/hidden']);
    expect((await list('?search=labs')).paths).toEqual(['labs/catalog-labs']);
    expect((await list('?owned=True&order_by=id&sort=asc')).paths).toEqual(['bob/c1', 'bob/c2', 'bob/c3', 'bob/c4', 'bob/c5']);
    expect((await list('?membership=true', alice)).paths).toEqual(['labs/catalog-labs']);
    expect((await list('?min_access_level=50', alice)).paths).toEqual(['labs/catalog-labs']);
    expect((await list('?owned=1', null)).paths).toEqual([]);
    expect((await list('?archived=false')).paths).toHaveLength(6);
    expect((await list('?archived=true')).paths).toEqual([]);
    expect((await list('?updated_after=2999-01-01T00:00:00Z')).paths).toEqual([]);
    expect((await list('?updated_before=2999-01-01T00:00:00Z')).paths).toHaveLength(6);
  });

  it('answers filters on absent features with an empty list, simple=true with the basic shape', async () => {
    for (const q of ['?starred=true', '?with_issues_enabled=1', '?with_merge_requests_enabled=True']) {
      const { res, paths } = await list(q);
      expect(paths).toEqual([]);
      expect(res.headers.get('x-total')).toBe('0');
    }
    expect((await list('?starred=False')).paths).toHaveLength(6);
    const simple = await (await gl(`/projects/${source.id}/forks?simple=true&per_page=1`, bob)).json();
    expect(simple[0]).toHaveProperty('path_with_namespace');
    expect(simple[0]).not.toHaveProperty('import_status');
  });

  it('rejects malformed filters with GitLab\'s 400 {"error"}', async () => {
    for (const q of ['?archived=maybe', '?order_by=size', '?min_access_level=31', '?updated_after=yesterday', '?sort=up']) {
      const res = await gl(`/projects/${source.id}/forks${q}`, bob);
      expect(res.status).toBe(400);
      expect(await errorBodyOf(res)).toEqual({ error: expect.any(String) });
    }
  });
});

describe('POST /projects/:id/fork/:forked_from_id and DELETE /projects/:id/fork', () => {
  it('links and unlinks, owners only: 201, 409 when already a fork, 204, then 304', async () => {
    const mine = await createRepo(bob, 'standalone', 'public');
    expect((await gl(`/projects/${mine.id}/fork/${dataset.id}`, carol, { method: 'POST' })).status).toBe(403);
    const linked = await gl(`/projects/bob%2Fstandalone/fork/alice%2Fdataset`, bob, { method: 'POST' });
    expect(linked.status).toBe(201);
    expect(await linked.json()).toMatchObject({ id: mine.id, import_status: 'finished', forked_from_project: { id: dataset.id } });
    expect(await (await s.api('/api/v1/repos/bob/standalone', { token: bob })).json()).toMatchObject({ fork: true, parent: { full_name: 'alice/dataset' } });

    const twice = await gl(`/projects/${mine.id}/fork/${dataset.id}`, bob, { method: 'POST' });
    expect(twice.status).toBe(409);
    expect((await twice.json()).message).toContain('already forked');

    expect((await gl(`/projects/${mine.id}/fork`, carol, { method: 'DELETE' })).status).toBe(403);
    expect((await gl(`/projects/${mine.id}/fork`, bob, { method: 'DELETE' })).status).toBe(204);
    expect((await gl(`/projects/${mine.id}/fork`, bob, { method: 'DELETE' })).status).toBe(304);
    const after = await (await gl(`/projects/${mine.id}`, bob)).json();
    expect(after.import_status).toBe('none');
    expect(after).not.toHaveProperty('forked_from_project');
  });

  /** Everything an anonymous caller tries to read of `commitId`'s data through `fullName`. */
  async function anonymousReads(fullName: string, commitId: string, digest: string) {
    const statuses = await Promise.all([
      s.api(`/api/v1/repos/${fullName}/commits/${commitId}`),
      s.api(`/api/v1/repos/${fullName}/commits/${commitId}/manifest`),
      s.api(`/api/v1/repos/${fullName}/chunks/${digest}`),
      s.api(`/api/v1/repos/${fullName}/chunks/fetch`, { method: 'POST', json: { digests: [digest] } }),
    ]);
    return statuses.map((r) => r.status);
  }

  /** A pushed snapshot of `fullName` as its owner sees it: the commit and its first chunk. */
  async function snapshotOf(token: string, fullName: string, tag: string) {
    const { commit_id } = await s.pushFiles(token, fullName, tag, { 'secret.txt': `${fullName} only\n`.repeat(500) });
    const manifest = await (await s.api(`/api/v1/repos/${fullName}/commits/${commit_id}/manifest`, { token })).json();
    return { commitId: commit_id, digest: manifest.entries[0].chunks[0].digest as string };
  }

  it('grants the linked project no read of its parent: anonymous reads through a public link stay 404 (issue 10)', async () => {
    await createRepo(alice, 'internal-data', 'internal');
    const leaked = await snapshotOf(alice, 'alice/internal-data', 'v1');
    const mirror = await createRepo(carol, 'mirror', 'public');
    await push(carol, 'carol/mirror', 'v1');

    const linked = await gl(`/projects/${mirror.id}/fork/alice%2Finternal-data`, carol, { method: 'POST' });
    expect(linked.status).toBe(201);
    expect(await linked.json()).toMatchObject({ id: mirror.id, forked_from_project: { path_with_namespace: 'alice/internal-data' } });
    expect(await anonymousReads('carol/mirror', leaked.commitId, leaked.digest)).toEqual([404, 404, 404, 404]);
    // Not even carol, who may read the parent itself, reads it through her own project.
    const asCarol = await s.api(`/api/v1/repos/carol/mirror/commits/${leaked.commitId}/manifest`, { token: carol });
    expect(asCarol.status).toBe(404);
    // The parent is not shown to those who cannot read it, and the project keeps its own data.
    expect(await (await gl(`/projects/${mirror.id}`, undefined)).json()).not.toHaveProperty('forked_from_project');
    expect((await s.api('/api/v1/repos/carol/mirror/tags/v1/archive')).status).toBe(200);
  });

  it('lets an organization member link only what she owns, and her link reads nothing of the organization (issue 10)', async () => {
    const dave = await s.token('dave');
    await s.api('/api/v1/user', { token: dave });
    expect((await s.api('/api/v1/orgs/labs/members/dave', { method: 'PUT', token: aliceInLabs, json: { role: 'member' } })).status).toBe(200);
    const vault = await createRepo(aliceInLabs, 'vault', 'private', 'labs');
    const leaked = await snapshotOf(aliceInLabs, 'labs/vault', 'v1');
    const own = await createRepo(dave, 'daves', 'public');

    // The organization's project is not dave's to link: 403 as GitLab (admin_project).
    const theirs = await gl(`/projects/${vault.id}/fork/${own.id}`, dave, { method: 'POST' });
    expect({ status: theirs.status, body: await errorBodyOf(theirs) }).toEqual({ status: 403, body: { message: expect.stringMatching(/^403 Forbidden/) } });
    expect((await gl(`/projects/${own.id}/fork/${vault.id}`, dave, { method: 'POST' })).status).toBe(201);
    expect(await anonymousReads('dave/daves', leaked.commitId, leaked.digest)).toEqual([404, 404, 404, 404]);
  });

  it('keeps a real fork\'s data when its relationship is removed', async () => {
    await createRepo(alice, 'kept', 'public');
    const source = await snapshotOf(alice, 'alice/kept', 'v1');
    const forked = await fork('alice%2Fkept', bob, { path: 'kept-fork', name: 'kept fork' });
    const { id } = await forked.json();
    expect((await gl(`/projects/${id}/fork`, bob, { method: 'DELETE' })).status).toBe(204);
    const manifest = await s.api(`/api/v1/repos/bob/kept-fork/commits/${source.commitId}/manifest`);
    expect(manifest.status).toBe(200);
    expect((await s.api(`/api/v1/repos/bob/kept-fork/chunks/${source.digest}`)).status).toBe(200);
  });

  it('answers 404 for a project or source the caller cannot see', async () => {
    const other = await createRepo(bob, 'other', 'public');
    const cases = [
      gl(`/projects/${other.id}/fork/alice%2Fsecret`, bob, { method: 'POST' }),
      gl(`/projects/${other.id}/fork/999999`, bob, { method: 'POST' }),
      gl('/projects/999999/fork', bob, { method: 'DELETE' }),
    ];
    for (const pending of cases) {
      const res = await pending;
      expect({ status: res.status, body: await errorBodyOf(res) }).toEqual({ status: 404, body: { message: '404 Project Not Found' } });
    }
  });
});
