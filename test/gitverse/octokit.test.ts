/**
 * @octokit/rest, GitHub's own client, pointed at the GitVerse dialect at the root of the server
 * and used unchanged: it sends `Authorization: token <t>` and GitHub's Accept header, follows
 * `Link` through `octokit.paginate`, and throws RequestError with the status on failures.
 */
import { Octokit } from '@octokit/rest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let alice: Octokit;
let bob: Octokit;
let carol: Octokit;
let anonymous: Octokit;

/** The error cases are expected: octokit need not log them. */
const QUIET = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

beforeAll(async () => {
  s = await startTestServer();
  const client = async (user?: string, org?: string) => new Octokit({ baseUrl: s.url, auth: user ? await s.token(user, { org }) : undefined, log: QUIET });
  [alice, bob, carol, anonymous] = await Promise.all([client('alice', 'labs'), client('bob', 'crew'), client('carol'), client()]);
  const res = await s.api('/api/v1/orgs/labs/repos', { method: 'POST', token: await s.token('alice', { org: 'labs' }), json: { name: 'model', visibility: 'public' } });
  expect(res.status).toBe(201);
  expect((await s.api('/api/v1/user/repos', { method: 'POST', token: await s.token('alice'), json: { name: 'hidden', visibility: 'private' } })).status).toBe(201);
});
afterAll(() => s.stop());

/** The status of the RequestError octokit throws. */
const statusOf = (call: Promise<unknown>) =>
  call.then(
    () => 0,
    (e: { status?: number }) => e.status,
  );

describe('@octokit/rest against GitVerse', () => {
  it('creates a fork in the own account and in an organization, then gets it', async () => {
    const own = await bob.rest.repos.createFork({ owner: 'labs', repo: 'model' });
    expect(own.status).toBe(201);
    expect(own.data).toMatchObject({ full_name: 'bob/model', fork: true, owner: { login: 'bob' }, parent: { full_name: 'labs/model' } });

    const inOrg = await bob.rest.repos.createFork({ owner: 'labs', repo: 'model', organization: 'crew', name: 'model-crew' });
    expect(inOrg.status).toBe(201);
    expect(inOrg.data).toMatchObject({ full_name: 'crew/model-crew', owner: { login: 'crew', type: 'Organization' } });

    const got = await carol.rest.repos.get({ owner: 'crew', repo: 'model-crew' });
    expect(got.data).toMatchObject({ id: inOrg.data.id, fork: true, parent: { full_name: 'labs/model' }, permissions: { admin: false, push: false, pull: true } });
    expect(got.data.url).toBe(`${s.url}/repos/crew/model-crew`);
  });

  it('lists forks across pages with octokit.paginate', async () => {
    for (const name of ['p1', 'p2', 'p3', 'p4']) {
      expect((await carol.rest.repos.createFork({ owner: 'labs', repo: 'model', name })).status).toBe(201);
    }
    const pages: number[] = [];
    const forks = await alice.paginate(alice.rest.repos.listForks, { owner: 'labs', repo: 'model', per_page: 2 }, (response) => {
      pages.push(response.data.length);
      return response.data;
    });
    expect(pages).toEqual([2, 2, 2]);
    expect(forks.map((f) => f.full_name)).toEqual(['carol/p4', 'carol/p3', 'carol/p2', 'carol/p1', 'crew/model-crew', 'bob/model']);
    const oldest = await anonymous.rest.repos.listForks({ owner: 'labs', repo: 'model', sort: 'oldest', per_page: 1 });
    expect(oldest.data.map((f) => f.full_name)).toEqual(['bob/model']);
    expect(oldest.headers.link).toContain('rel="next"');
    expect((await anonymous.rest.repos.get({ owner: 'labs', repo: 'model' })).data.forks_count).toBe(6);
  });

  it('throws the documented statuses', async () => {
    expect(await statusOf(carol.rest.repos.createFork({ owner: 'labs', repo: 'model', organization: 'no-such-org' }))).toBe(400);
    expect(await statusOf(anonymous.rest.repos.createFork({ owner: 'labs', repo: 'model' }))).toBe(401);
    expect(await statusOf(carol.rest.repos.createFork({ owner: 'labs', repo: 'model', organization: 'crew', name: 'x' }))).toBe(403);
    expect(await statusOf(carol.rest.repos.createFork({ owner: 'labs', repo: 'missing' }))).toBe(404);
    expect(await statusOf(bob.rest.repos.createFork({ owner: 'alice', repo: 'hidden' }))).toBe(404);
    expect(await statusOf(bob.rest.repos.createFork({ owner: 'labs', repo: 'model' }))).toBe(409);
    expect(await statusOf(bob.rest.repos.get({ owner: 'alice', repo: 'hidden' }))).toBe(404);
    expect(await statusOf(bob.rest.repos.listForks({ owner: 'alice', repo: 'hidden' }))).toBe(404);
    const error = await bob.rest.repos.get({ owner: 'alice', repo: 'hidden' }).catch((e: { response?: { data?: unknown } }) => e.response?.data);
    expect(error).toMatchObject({ message: 'Not Found' });
  });
});
