/**
 * Absolute URLs the server prints, in every dialect: built from SNAPFORK_PUBLIC_URL when it is
 * configured, else from the request's own origin; each one answers. The native repository record
 * and the forge's fork rows carry GitHub's URL fields, which PyGithub follows (a fork POSTs to
 * `{url}/forks`; an object read from a fork answer is completed from its `url`).
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** The `rel="next"` URL of a Link header. */
const nextLink = (link: string | null) => /<([^>]+)>; rel="next"/.exec(link ?? '')?.[1];

async function setUp(s: TestServer) {
  const alice = await s.token('alice');
  const bob = await s.token('bob');
  const carol = await s.token('carol');
  for (const name of ['x', 'y']) {
    expect((await s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name, visibility: 'public' } })).status).toBe(201);
  }
  await s.pushFiles(alice, 'alice/x', 'v1', { 'a.txt': 'a' });
  for (const token of [bob, carol]) expect((await s.api('/api/v1/repos/alice/x/forks', { method: 'POST', token, json: {} })).status).toBe(201);
  return { alice };
}

describe("without SNAPFORK_PUBLIC_URL: the request's own origin", () => {
  let s: TestServer;
  let alice: string;
  beforeAll(async () => {
    s = await startTestServer();
    ({ alice } = await setUp(s));
  });
  afterAll(() => s.stop());

  it("gives the native repository GitHub's url, html_url, forks_url and tags_url, each answering", async () => {
    const repo = await (await s.api('/api/v1/repos/alice/x', { token: alice })).json();
    const url = `${s.url}/api/v1/repos/alice/x`;
    expect(repo).toMatchObject({ url, html_url: url, forks_url: `${url}/forks`, tags_url: `${url}/tags` });
    for (const field of ['url', 'html_url', 'forks_url', 'tags_url']) {
      const res = await fetch(repo[field], { headers: { authorization: `token ${alice}` } });
      expect(res.status, field).toBe(200);
    }
    const tags = (await (await fetch(repo.tags_url)).json()) as { name: string }[];
    expect(tags.map((t) => t.name)).toEqual(['v1']);
    // What PyGithub's create_fork() sends: an empty object to `{url}/forks`.
    const dave = await s.token('dave');
    const fork = await fetch(repo.forks_url, { method: 'POST', headers: { authorization: `token ${dave}`, 'content-type': 'application/json' }, body: '{}' });
    expect(fork.status).toBe(201);
    const forked = await (await s.api('/api/v1/repos/dave/x', { token: dave })).json();
    expect(forked).toMatchObject({ fork: true, parent: { full_name: 'alice/x' }, url: `${s.url}/api/v1/repos/dave/x` });
    // Every answer carrying a native repository has them: a list, a create, an update.
    const list = await (await s.api('/api/v1/users/alice/repos', { token: alice })).json();
    expect(list.map((r: { url: string }) => r.url)).toEqual([url, `${s.url}/api/v1/repos/alice/y`]);
    const patched = await (await s.api('/api/v1/repos/alice/y', { method: 'PATCH', token: alice, json: { description: 'why' } })).json();
    expect(patched.forks_url).toBe(`${s.url}/api/v1/repos/alice/y/forks`);
  });

  it("gives the forge's fork answer and fork list rows GitHub's full_name, owner and URL fields, each answering", async () => {
    const erin = await s.token('erin');
    const answers = async (row: Record<string, unknown> & { owner: { url: string } }) => {
      for (const url of [row.url, row.html_url, row.forks_url, row.tags_url, row.owner.url]) {
        const res = await fetch(String(url), { headers: { authorization: `token ${erin}` } });
        expect(res.status, String(url)).toBe(200);
      }
      // `url` is the native record of the same repository, which PyGithub completes an object from.
      expect(await (await fetch(String(row.url), { headers: { authorization: `token ${erin}` } })).json()).toMatchObject({ id: row.id, full_name: row.full_name });
    };

    const res = await s.api('/api/v1/repos/alice/x/forks', { method: 'POST', token: erin, json: {} });
    expect(res.status).toBe(201);
    const fork = await res.json();
    const url = `${s.url}/api/v1/repos/erin/x`;
    expect(fork).toMatchObject({
      name: 'x',
      owner_login: 'erin',
      full_name: 'erin/x',
      owner: { login: 'erin', id: expect.any(Number), type: 'User', url: `${s.url}/users/erin` },
      url,
      html_url: url,
      forks_url: `${url}/forks`,
      tags_url: `${url}/tags`,
    });
    await answers(fork);

    const rows = await (await s.api('/api/v1/repos/alice/x/forks', { token: erin })).json();
    expect(rows.map((r: { full_name: string }) => r.full_name)).toEqual(expect.arrayContaining(['erin/x', 'carol/x', 'bob/x']));
    for (const row of rows) {
      const rowUrl = `${s.url}/api/v1/repos/${row.full_name}`;
      expect(row).toMatchObject({ owner: { login: row.owner_login }, url: rowUrl, html_url: rowUrl, forks_url: `${rowUrl}/forks`, tags_url: `${rowUrl}/tags` });
      await answers(row);
    }
  });

  it('takes the origin a trusted proxy forwards (X-Forwarded-Proto and X-Forwarded-Host)', async () => {
    const headers = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'snapfork.example.com' };
    const repo = await (await s.api('/api/v1/repos/alice/x', { token: alice, headers })).json();
    expect(repo.url).toBe('https://snapfork.example.com/api/v1/repos/alice/x');
    const page = await s.api('/api/v1/users/alice/repos?per_page=1', { token: alice, headers });
    expect(nextLink(page.headers.get('link'))).toBe('https://snapfork.example.com/api/v1/users/alice/repos?per_page=1&page=2');
  });

  it('refuses with 400, in the dialect of the route and before doing anything, an origin no URL can start with', async () => {
    const origins: Record<string, string>[] = [
      { 'x-forwarded-host': 'a b' },
      { 'x-forwarded-host': '[::1' },
      { 'x-forwarded-host': 'x:99999' },
      { 'x-forwarded-host': 'alice@evil.example' },
      { 'x-forwarded-host': 'evil.example/path' },
      { 'x-forwarded-proto': 'javascript' },
      { 'x-forwarded-proto': 'a b' },
    ];
    const routes: [string, unknown][] = [
      ['/api/v1/users/alice/repos?per_page=1', { error: expect.stringMatching(/host|protocol/i), success: false }],
      ['/repos/alice/x/forks', { message: expect.stringMatching(/host|protocol/i), documentation_url: expect.any(String) }],
      ['/api/v4/projects/alice%2Fx', { error: expect.stringMatching(/host|protocol/i) }],
      ['/api/repos/alice/x', { status: 'error', status_description: expect.stringMatching(/host|protocol/i) }],
    ];
    for (const headers of origins) {
      for (const [path, envelope] of routes) {
        const res = await s.api(path, { token: alice, headers });
        expect({ headers, path, status: res.status, body: await res.json() }).toMatchObject({ headers, path, status: 400, body: envelope });
      }
    }
    // A fork asked for from such an origin is not made.
    const frank = await s.token('frank');
    expect((await s.api('/repos/alice/x/forks', { method: 'POST', token: frank, json: {}, headers: origins[0] })).status).toBe(400);
    expect((await s.api('/repos/frank/x', { token: frank })).status).toBe(404);
    // The Host header itself (fetch writes its own, so this one goes out on node:http).
    const { port } = new URL(s.url);
    for (const host of ['a b', 'x:99999', '[::1', 'alice@evil.example']) {
      const status = await new Promise<number | undefined>((resolve, reject) =>
        request({ host: '127.0.0.1', port, path: '/api/v1/users/alice/repos', headers: { host } }, (res) => resolve(res.resume().statusCode))
          .on('error', reject)
          .end(),
      );
      expect({ host, status }).toEqual({ host, status: 400 });
    }
  });
});

describe('with SNAPFORK_PUBLIC_URL: the configured base, in every dialect', () => {
  const PUBLIC = 'https://snapfork.example.com/forge';
  let s: TestServer;
  let alice: string;
  /** The URL the proxy at PUBLIC would forward `url` to. */
  const behindProxy = (url: string) => {
    expect(url.startsWith(`${PUBLIC}/`), url).toBe(true);
    return s.url + url.slice(PUBLIC.length);
  };
  const expectAnswers = async (urls: (string | undefined)[]) => {
    for (const url of urls) {
      expect(url).toBeDefined();
      const res = await fetch(behindProxy(url!), { headers: { authorization: `Bearer ${alice}` } });
      expect(res.status, url).toBe(200);
    }
  };
  beforeAll(async () => {
    // A trailing slash is dropped.
    s = await startTestServer({ SNAPFORK_PUBLIC_URL: `${PUBLIC}/` });
    ({ alice } = await setUp(s));
  });
  afterAll(() => s.stop());

  it('prints it whatever Host or X-Forwarded-Host the request came with', async () => {
    const headers = { 'x-forwarded-host': 'elsewhere.example' };
    const native = await (await s.api('/api/v1/repos/alice/x', { token: alice, headers })).json();
    expect(native.url).toBe(`${PUBLIC}/api/v1/repos/alice/x`);
    const nativePage = await s.api('/api/v1/users/alice/repos?per_page=1', { token: alice, headers });
    const forgePage = await s.api('/api/v1/repos/alice/x/forks?per_page=1', { token: alice, headers });
    await expectAnswers([native.url, native.html_url, native.forks_url, native.tags_url, nextLink(nativePage.headers.get('link')), nextLink(forgePage.headers.get('link'))]);
    const [forgeRow] = await forgePage.json();
    expect(forgeRow.url).toBe(`${PUBLIC}/api/v1/repos/${forgeRow.full_name}`);
    await expectAnswers([forgeRow.url, forgeRow.html_url, forgeRow.forks_url, forgeRow.tags_url, forgeRow.owner.url]);

    const gitverse = await (await s.api('/repos/alice/x', { token: alice, headers })).json();
    expect(gitverse.url).toBe(`${PUBLIC}/repos/alice/x`);
    const gitversePage = await s.api('/users/alice/repos?per_page=1', { token: alice, headers });
    await expectAnswers([gitverse.url, gitverse.forks_url, gitverse.owner.url, gitverse.owner.repos_url, nextLink(gitversePage.headers.get('link'))]);

    const gitlab = await (await s.api('/api/v4/projects/alice%2Fx', { token: alice, headers })).json();
    expect(gitlab._links.self).toBe(`${PUBLIC}/api/v4/projects/${gitlab.id}`);
    const gitlabPage = await s.api(`/api/v4/projects/${gitlab.id}/forks?per_page=1`, { token: alice, headers });
    await expectAnswers([gitlab.web_url, gitlab._links.self, gitlab._links.repo_branches, gitlab.namespace.web_url, nextLink(gitlabPage.headers.get('link'))]);
  });

  it('refuses a value that is not an absolute http(s) URL', () => {
    for (const bad of ['snapfork.example.com', 'ftp://snapfork.example.com', 'https://snapfork.example.com/?a=1']) {
      expect(() => loadConfig({ SNAPFORK_PUBLIC_URL: bad })).toThrow(/SNAPFORK_PUBLIC_URL/);
    }
  });
});
