/**
 * The GitVerse dialect (seed 004) at the root path, replayed against the real server:
 * `POST /repos/{owner}/{repo}/forks` with the seed's own request, every status its table lists,
 * the full `response.Repository`, the visibility rule, the 409 cases, `GET /repos/{owner}/{repo}`
 * and the paged fork list, and that every URL in an answer answers.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiResponse, type ApiInit, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';

let s: TestServer;
let alice: string;
let bob: string;
let carol: string;
/** Alice acting in `awesome-org`, bob in `my-team`: the organizations of the seed's example. */
let aliceOrg: string;
let bobTeam: string;
let snapshotBytes: number;

const OBJECT_TYPE = 'application/vnd.gitverse.object+json;version=latest';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** Every field of the seed's `response.Repository` table, `owner` and `permissions`, and its example's `html_url`. */
const REPOSITORY_FIELDS = [
  'allow_merge_commit', 'allow_rebase_merge', 'allow_squash_merge', 'archived', 'clone_url', 'contents_url', 'created_at',
  'default_branch', 'delete_branch_on_merge', 'description', 'disabled', 'fork', 'forks', 'forks_count', 'forks_url',
  'full_name', 'has_issues', 'has_wiki', 'html_url', 'id', 'is_template', 'issue_comment_url', 'issues_url', 'language',
  'languages_url', 'mirror_url', 'name', 'open_issues', 'open_issues_count', 'owner', 'permissions', 'private', 'pulls_url',
  'pushed_at', 'size', 'ssh_url', 'stargazers_count', 'topics', 'updated_at', 'url', 'visibility', 'watchers', 'watchers_count',
];
const OWNER_FIELDS = [
  'avatar_url', 'followers_url', 'following_url', 'html_url', 'id', 'login', 'organizations_url', 'repos_url', 'site_admin', 'type', 'url',
];

beforeAll(async () => {
  s = await startTestServer();
  [alice, bob, carol, aliceOrg, bobTeam] = await Promise.all([
    s.token('alice'),
    s.token('bob'),
    s.token('carol'),
    s.token('alice', { org: 'awesome-org' }),
    s.token('bob', { org: 'my-team' }),
  ]);
  const dir = await tempDir();
  await writeFile(join(dir, 'weights.bin'), randomBytes(300_000));
  await writeFile(join(dir, 'README'), 'project x\n');
  const tar = await tarOf(dir);
  await createRepo(aliceOrg, 'project-x', 'public', 'awesome-org');
  for (const tag of ['main', 'v2']) {
    const pushed = await s.api(`/api/v1/repos/awesome-org/project-x/tags/${tag}/archive`, {
      method: 'PUT',
      token: alice,
      body: tar,
      headers: { 'content-type': 'application/x-tar' },
    });
    expect(pushed.status).toBe(201);
    snapshotBytes = ((await pushed.json()) as { bytes: number }).bytes;
  }
  await createRepo(alice, 'secret', 'private');
  await createRepo(alice, 'inside', 'internal');
  await createRepo(alice, 'frozen', 'public');
  expect((await s.api('/api/v1/repos/alice/frozen', { method: 'PATCH', token: alice, json: { archived: true } })).status).toBe(200);
});
afterAll(() => s.stop());

async function createRepo(token: string, name: string, visibility: string, org?: string) {
  const res = await s.api(org ? `/api/v1/orgs/${org}/repos` : '/api/v1/user/repos', { method: 'POST', token, json: { name, visibility } });
  expect(res.status).toBe(201);
}

/** GitHub clients send `Authorization: token <t>`; the seed's curl sends `Bearer`. */
const gv = (path: string, token: string | undefined, init: Omit<ApiInit, 'token'> = {}) =>
  s.api(path, { ...init, headers: { ...(token ? { authorization: `token ${token}` } : {}), ...init.headers } });

const forkOf = (fullName: string, token: string | undefined, json: unknown = {}, headers: Record<string, string> = {}) =>
  gv(`/repos/${fullName}/forks`, token, { method: 'POST', json, headers });

async function expectError(res: ApiResponse, status: number, message?: RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = await errorBodyOf(res);
  expect(body).toMatchObject({ message: expect.any(String), documentation_url: expect.stringMatching(/^https:\/\//) });
  if (message) expect(body.message).toMatch(message);
  return body;
}


describe('POST /repos/{owner}/{repo}/forks', () => {
  it("replays the seed's example: 201 with the full repository object in the object media type", async () => {
    const chunks = s.chunkCount();
    const res = await s.api('/repos/awesome-org/project-x/forks', {
      method: 'POST',
      headers: { authorization: `Bearer ${bobTeam}`, accept: OBJECT_TYPE },
      json: { organization: 'my-team' },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/^application\/vnd\.gitverse\.object\+json/);
    const fork = await res.json();
    expect(fork).toMatchObject({
      id: expect.any(Number),
      name: 'project-x',
      full_name: 'my-team/project-x',
      private: false,
      visibility: 'public',
      fork: true,
      owner: { login: 'my-team', id: expect.any(Number), type: 'Organization', avatar_url: `${s.url}/avatars/my-team` },
      html_url: expect.stringMatching(/^http:\/\//),
      default_branch: 'main',
      url: `${s.url}/repos/my-team/project-x`,
      forks_url: `${s.url}/repos/my-team/project-x/forks`,
      forks_count: 0,
      forks: 0,
      size: Math.ceil(snapshotBytes / 1024),
      topics: [],
      language: null,
      mirror_url: null,
      permissions: { admin: true, push: true, pull: true },
      parent: {
        full_name: 'awesome-org/project-x',
        owner: { login: 'awesome-org', type: 'Organization' },
        fork: false,
        forks_count: 1,
        permissions: { admin: false, push: false, pull: true },
      },
    });
    expect(Object.keys(fork).sort()).toEqual([...REPOSITORY_FIELDS, 'parent'].sort());
    expect(Object.keys(fork.parent).sort()).toEqual(REPOSITORY_FIELDS);
    expect(Object.keys(fork.owner).sort()).toEqual(OWNER_FIELDS);
    expect(fork.created_at).toMatch(ISO);
    expect(fork.pushed_at).toMatch(ISO);
    expect(fork.size).toBeGreaterThan(0);
    // A fork shares the source's manifests: not one chunk is written.
    expect(s.chunkCount()).toBe(chunks);
  });

  it("accepts the seed's curl as written: a JSON body sent without a JSON Content-Type", async () => {
    const res = await s.api('/repos/awesome-org/project-x/forks', {
      method: 'POST',
      headers: { authorization: `Bearer ${carol}`, 'content-type': 'application/x-www-form-urlencoded', accept: OBJECT_TYPE },
      body: '{\n    "name": "curl-x"\n  }',
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ full_name: 'carol/curl-x', fork: true });
  });

  it('answers application/json unless the object media type is asked for', async () => {
    const res = await forkOf('awesome-org/project-x', carol, { name: 'carols-x' });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toMatchObject({ full_name: 'carol/carols-x', fork: true, parent: { full_name: 'awesome-org/project-x' } });
  });

  it("forks into the caller's own account without `organization`, whatever org the token acts in", async () => {
    const res = await forkOf('awesome-org/project-x', bobTeam, { description: 'Форк проекта для доработки' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ full_name: 'bob/project-x', owner: { login: 'bob', type: 'User' }, description: 'Форк проекта для доработки' });
  });

  it('is visible, with the same parent, through the native API', async () => {
    const native = await s.api('/api/v1/repos/my-team/project-x', { token: bob });
    expect(native.status).toBe(200);
    expect(await native.json()).toMatchObject({ fork: true, parent: { full_name: 'awesome-org/project-x' }, owner: { login: 'my-team' } });
  });

  it('forks only the default tag with default_branch_only', async () => {
    const res = await forkOf('awesome-org/project-x', carol, { name: 'main-only', default_branch_only: true });
    expect(res.status).toBe(201);
    const tags = (await (await s.api('/api/v1/repos/carol/main-only/tags', { token: carol })).json()) as { name: string }[];
    expect(tags.map((t) => t.name)).toEqual(['main']);
    const all = (await (await s.api('/api/v1/repos/carol/carols-x/tags', { token: carol })).json()) as { name: string }[];
    expect(all.map((t) => t.name).sort()).toEqual(['main', 'v2']);
  });

  it('400 for an organization that does not exist', async () => {
    await expectError(await forkOf('awesome-org/project-x', carol, { organization: 'no-such-org' }), 400, /no-such-org/);
    // A user is not an organization either.
    await expectError(await forkOf('awesome-org/project-x', carol, { organization: 'alice' }), 400);
  });

  it('400 for a malformed body', async () => {
    await expectError(await forkOf('awesome-org/project-x', carol, { name: 42 }), 400);
    await expectError(await forkOf('awesome-org/project-x', carol, { name: 'bad/name' }), 400);
  });

  it('401 without a token or with a bad one', async () => {
    await expectError(await forkOf('awesome-org/project-x', undefined), 401);
    await expectError(await forkOf('awesome-org/project-x', 'not-a-jwt'), 401);
    await expectError(await forkOf('awesome-org/project-x', undefined, { organization: 'no-such-org' }), 401);
  });

  it('403 without the right to create repositories in the organization', async () => {
    await expectError(await forkOf('awesome-org/project-x', carol, { organization: 'my-team', name: 'intruder' }), 403);
    const readOnly = await s.token('carol', { scopes: ['repo:read'] });
    await expectError(await forkOf('awesome-org/project-x', readOnly, { name: 'read-only' }), 403);
  });

  it('404 for a missing source and for a private source the caller cannot see', async () => {
    expect(await expectError(await forkOf('awesome-org/missing', carol), 404)).toEqual({
      message: 'Not Found',
      documentation_url: expect.any(String),
    });
    await expectError(await forkOf('alice/secret', bob), 404, /^Not Found$/);
    await expectError(await forkOf('nobody/anything', bob), 404);
  });

  it('409 for a taken name, a fork onto itself and an archived source', async () => {
    await expectError(await forkOf('awesome-org/project-x', bob), 409, /already exists/);
    await expectError(await forkOf('awesome-org/project-x', alice, { organization: 'awesome-org' }), 409, /itself/);
    await expectError(await forkOf('alice/frozen', bob), 409, /archived/);
  });

  it('keeps the visibility of a private or internal source', async () => {
    const own = await forkOf('alice/secret', alice, { name: 'secret-fork' });
    expect(own.status).toBe(201);
    expect(await own.json()).toMatchObject({ visibility: 'private', private: true, parent: { full_name: 'alice/secret' } });
    const inside = await forkOf('alice/inside', bob);
    expect(inside.status).toBe(201);
    expect(await inside.json()).toMatchObject({ visibility: 'internal', private: true, parent: { visibility: 'internal' } });
  });

  it('replays the first 201 for a retry with the same Idempotency-Key', async () => {
    const headers = { 'idempotency-key': 'gitverse-retry-1' };
    const first = await forkOf('awesome-org/project-x', carol, { name: 'retried' }, headers);
    expect(first.status).toBe(201);
    const again = await forkOf('awesome-org/project-x', carol, { name: 'retried' }, headers);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(await first.json());
    // Without the key the same request is a second fork, which the taken name refuses.
    await expectError(await forkOf('awesome-org/project-x', carol, { name: 'retried' }), 409);
  });
});

describe('GET /repos/{owner}/{repo}', () => {
  it('answers the full object with true counts and the caller’s permissions', async () => {
    const res = await gv('/repos/awesome-org/project-x', aliceOrg, { headers: { accept: OBJECT_TYPE } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/vnd\.gitverse\.object\+json/);
    const repo = await res.json();
    expect(Object.keys(repo).sort()).toEqual(REPOSITORY_FIELDS);
    const forks = (await (await gv('/repos/awesome-org/project-x/forks?per_page=100', aliceOrg)).json()) as unknown[];
    expect(repo).toMatchObject({
      fork: false,
      forks_count: forks.length,
      forks: forks.length,
      default_branch: 'main',
      description: null,
      size: Math.ceil(snapshotBytes / 1024),
      permissions: { admin: true, push: true, pull: true },
      stargazers_count: 0,
      open_issues_count: 0,
    });
    expect(forks.length).toBeGreaterThanOrEqual(5);
    expect(new Date(repo.pushed_at).getTime()).toBeGreaterThanOrEqual(new Date(repo.created_at).getTime());
    const anonymous = await (await gv('/repos/awesome-org/project-x', undefined)).json();
    expect(anonymous.permissions).toEqual({ admin: false, push: false, pull: true });
  });

  it('404 for private and internal repositories the caller may not see', async () => {
    await expectError(await gv('/repos/alice/secret', bob), 404, /^Not Found$/);
    await expectError(await gv('/repos/alice/secret', undefined), 404);
    await expectError(await gv('/repos/alice/inside', undefined), 404);
    expect((await gv('/repos/alice/inside', carol)).status).toBe(200);
    expect((await gv('/repos/alice/secret', alice)).status).toBe(200);
  });

  it('shows no parent once the source is no longer visible to the caller', async () => {
    await createRepo(alice, 'soon-private', 'public');
    expect((await forkOf('alice/soon-private', bob)).status).toBe(201);
    expect((await s.api('/api/v1/repos/alice/soon-private', { method: 'PATCH', token: alice, json: { visibility: 'private' } })).status).toBe(200);
    const seenByBob = await (await gv('/repos/bob/soon-private', bob)).json();
    expect(seenByBob.fork).toBe(true);
    expect(seenByBob).not.toHaveProperty('parent');
    const seenByAlice = await (await gv('/repos/bob/soon-private', alice)).json();
    expect(seenByAlice.parent).toMatchObject({ full_name: 'alice/soon-private', private: true });
  });

  it('serves every URL it hands out', async () => {
    const repo = await (await gv('/repos/my-team/project-x', bob)).json();
    const expand = (template: string) => template.replace(/\{[^}]*\}/g, '');
    const urls = [
      repo.url, repo.html_url, repo.forks_url, repo.languages_url, expand(repo.issues_url), expand(repo.issue_comment_url),
      expand(repo.pulls_url), expand(repo.contents_url), repo.owner.url, repo.owner.html_url, repo.owner.repos_url,
      repo.owner.followers_url, expand(repo.owner.following_url), repo.owner.organizations_url, repo.owner.avatar_url,
      repo.parent.url, repo.parent.owner.url,
    ] as string[];
    for (const url of urls) {
      expect(url.startsWith(`${s.url}/`), url).toBe(true);
      expect((await fetch(url, { headers: { authorization: `token ${bob}` } })).status, url).toBe(200);
    }
    const clone = await fetch(repo.clone_url, { headers: { authorization: `token ${bob}` } });
    expect(clone.status).toBe(200);
    expect(clone.headers.get('content-type')).toContain('application/x-tar');
    await clone.arrayBuffer();
    const owner = await (await gv('/users/my-team', undefined)).json();
    expect(owner).toEqual(repo.owner);
    const listed = (await (await gv('/users/my-team/repos', bob)).json()) as { full_name: string }[];
    expect(listed.map((r) => r.full_name)).toEqual(['my-team/project-x']);
    await expectError(await gv('/repos/alice/secret/issues', bob), 404);
    await expectError(await gv('/users/nobody', bob), 404);
  });

  it('speaks its envelope for unknown paths under its own and bad parameters too', async () => {
    for (const path of ['/repos/awesome-org/project-x/no/such/path', '/users/bob/nothing', '/avatars']) {
      expect(await expectError(await gv(path, bob), 404)).toEqual({ message: 'Not Found', documentation_url: expect.any(String) });
    }
    await expectError(await gv('/repos/awesome-org/project-x/forks?sort=sideways', bob), 400, /sort/);
  });
});

describe('GET /repos/{owner}/{repo}/forks', () => {
  const names = ['f1', 'f2', 'f3', 'f4', 'f5'];

  beforeAll(async () => {
    await createRepo(alice, 'pages', 'public');
    for (const name of names) expect((await forkOf('alice/pages', bob, { name })).status).toBe(201);
    // A private fork: seen by its owner, counted and listed for nobody else.
    expect((await s.api('/api/v1/repos/bob/f5', { method: 'PATCH', token: bob, json: { visibility: 'private' } })).status).toBe(200);
  });

  const listed = async (query: string, token: string | undefined) => {
    const res = await gv(`/repos/alice/pages/forks${query}`, token);
    expect(res.status).toBe(200);
    return { link: res.headers.get('link'), names: ((await res.json()) as { name: string }[]).map((r) => r.name) };
  };

  it('pages newest first with absolute next and last links', async () => {
    const first = await listed('?per_page=2', bob);
    expect(first.names).toEqual(['f5', 'f4']);
    expect(first.link).toContain(`<${s.url}/repos/alice/pages/forks?per_page=2&page=2>; rel="next"`);
    expect(first.link).toContain(`<${s.url}/repos/alice/pages/forks?per_page=2&page=3>; rel="last"`);
    const next = /<([^>]+)>; rel="next"/.exec(first.link ?? '')![1]!;
    const second = (await (await fetch(next, { headers: { authorization: `token ${bob}` } })).json()) as { name: string }[];
    expect(second.map((r) => r.name)).toEqual(['f3', 'f2']);
    const last = await listed('?per_page=2&page=3', bob);
    expect(last.names).toEqual(['f1']);
    expect(last.link).not.toContain('rel="next"');
    expect(last.link).toContain('rel="prev"');
  });

  it('sorts oldest first on request; stargazers and watchers sort like newest', async () => {
    expect((await listed('?sort=oldest', bob)).names).toEqual(names);
    expect((await listed('?sort=stargazers', bob)).names).toEqual([...names].reverse());
    expect((await listed('?sort=watchers', bob)).names).toEqual([...names].reverse());
  });

  it('defaults to 30 a page and reads per_page above 100 as 100', async () => {
    const all = await listed('?per_page=1000', bob);
    expect(all.names).toHaveLength(5);
    expect(all.link).toBeNull();
  });

  it('hides forks the caller may not see from the list and the counts', async () => {
    expect((await listed('', carol)).names).toEqual(['f4', 'f3', 'f2', 'f1']);
    expect((await listed('', undefined)).names).toEqual(['f4', 'f3', 'f2', 'f1']);
    expect((await (await gv('/repos/alice/pages', carol)).json()).forks_count).toBe(4);
    expect((await (await gv('/repos/alice/pages', bob)).json()).forks_count).toBe(5);
  });

  it('404 for a missing or invisible repository', async () => {
    await expectError(await gv('/repos/alice/missing/forks', bob), 404);
    await expectError(await gv('/repos/alice/secret/forks', bob), 404);
  });
});
