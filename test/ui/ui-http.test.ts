/**
 * The web UI over plain HTTP (no browser): its security headers, the session cookie's flags,
 * CSRF refusals, private repositories hidden from outsiders, bad input answered with a 4xx page,
 * and sessions that live in the cookie alone (a restarted server still opens them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { cookiePair, uiClient } from '../support/ui.js';

let s: TestServer;
let alice: string;
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  bob = await s.token('bob');
  await s.createRepo(alice, 'open-data', 'public');
  await s.pushFiles(alice, 'alice/open-data', 'v1', { 'readme.txt': 'hello\n' });
  await s.pushFiles(alice, 'alice/open-data', 'v2', { 'readme.txt': 'hello again\n' });
  await s.createRepo(alice, 'hidden', 'private');
  await s.pushFiles(alice, 'alice/hidden', 'v1', { 'secret.txt': 'the recipe\n' });
});
afterAll(() => s.stop());

const tagsOf = async (fullName: string) => (await (await s.api(`/api/v1/repos/${fullName}/tags`, { token: alice })).json()).map((t: { name: string }) => t.name);

describe('pages', () => {
  it('serves HTML with a strict Content-Security-Policy, nosniff and no framing', async () => {
    const res = await fetch(`${s.url}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).toContain('alice/open-data');
    expect(html).not.toContain('alice/hidden');
    // No inline script or style: the policy would block them.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle="/);
  });

  it('sends a browser that opens the server\'s address to the UI, and an API client the 404 it had', async () => {
    const browser = await fetch(`${s.url}/`, { redirect: 'manual', headers: { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' } });
    expect(browser.status).toBe(302);
    expect(browser.headers.get('location')).toBe(`${s.url}/ui/`);
    expect((await fetch(`${s.url}/`, { redirect: 'manual' })).status).toBe(404);
    expect((await fetch(`${s.url}/`, { redirect: 'manual', headers: { accept: 'application/json' } })).status).toBe(404);
  });

  it('serves the stylesheet and the script with their types, and 404 for another asset', async () => {
    const css = await fetch(`${s.url}/ui/static/ui.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    const etag = css.headers.get('etag')!;
    expect((await fetch(`${s.url}/ui/static/ui.css`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${s.url}/ui/static/ui.js`)).headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${s.url}/ui/static/..%2F..%2Fopenapi.yaml`)).status).toBe(404);
    expect((await fetch(`${s.url}/ui/static/nothing.css`)).status).toBe(404);
  });

  it('hides a private repository from outsiders with the 404 page the API would answer, and shows it to its owner', async () => {
    const bobs = await uiClient(s, bob);
    const visitor = await uiClient(s);
    for (const client of [visitor, bobs]) {
      for (const path of ['', '/network', '/storage', '/tags/v1/tree', '/tags/v1/file?path=secret.txt', '/tags/v1/history', '/tags/v1/archive']) {
        const res = await client.get(`/ui/repos/alice/hidden${path}`);
        expect(res.status, path).toBe(404);
        const html = await res.text();
        expect(html).toContain('Not found');
        expect(html).not.toContain('secret.txt');
      }
    }
    const catalogue = await (await bobs.get('/ui/?q=hidden')).text();
    expect(catalogue).not.toContain('alice/hidden');
    const owner = await uiClient(s, alice);
    const page = await owner.get('/ui/repos/alice/hidden/tags/v1/file?path=secret.txt');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('the recipe');
  });

  it('answers bad input with a 4xx page that says what is wrong, never a 500', async () => {
    const cases: [string, number, string][] = [
      ['/ui/?page=abc', 400, 'Query page must be an integer'],
      ['/ui/?q=' + 'x'.repeat(101), 400, 'at most 100 characters'],
      ['/ui/?q=a&q=b', 400, 'must be given once'],
      ['/ui/repos/alice/open-data/tags/v1/file', 400, 'Name a file'],
      ['/ui/repos/alice/open-data/tags/v1/file?path=nothing.txt', 404, 'File nothing.txt not found'],
      ['/ui/repos/alice/open-data/tags/v1/tree?path=readme.txt', 404, 'Directory readme.txt not found'],
      ['/ui/repos/alice/open-data/tags/nope/tree', 404, 'Tag nope not found'],
      ['/ui/namespaces/nobody', 404, 'Namespace nobody not found'],
      ['/ui/no/such/page', 404, 'There is no such page'],
      ['/ui/repos/alice/open-data/tags/v1/history?page=99999999999', 400, 'Query page must be an integer'],
    ];
    for (const [path, status, words] of cases) {
      const res = await fetch(s.url + path);
      expect(res.status, path).toBe(status);
      expect(res.headers.get('content-type'), path).toMatch(/^text\/html/);
      expect(await res.text(), path).toContain(words);
    }
  });

  it('shows a text file’s first bytes, and a binary file’s size and digest only', async () => {
    await s.pushFiles(alice, 'alice/open-data', 'mixed', { 'big.txt': 'line\n'.repeat(5000), 'blob.bin': Buffer.from([0, 1, 2, 3, 255, 0]) });
    const text = await (await fetch(`${s.url}/ui/repos/alice/open-data/tags/mixed/file?path=big.txt`)).text();
    expect(text).toContain('First bytes');
    expect(text).toContain('goes on beyond');
    // At most the preview's 4096 bytes of the 25,000: 819 whole lines and part of one.
    expect(text.match(/line\n/g)!.length).toBeLessThanOrEqual(820);
    const binary = await (await fetch(`${s.url}/ui/repos/alice/open-data/tags/mixed/file?path=blob.bin`)).text();
    expect(binary).toContain('A binary file');
    expect(binary).toMatch(/sha256-[0-9a-f]{64}/);
    expect(binary).toContain('6 bytes');
  });

  it('pages a large directory by cursor: every entry once, in name order, with links to the next page and back to the first', async () => {
    const files = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`many/f${String(i).padStart(3, '0')}.txt`, `${i}\n`]));
    await s.pushFiles(alice, 'alice/open-data', 'many', files);
    const seen: string[] = [];
    let next: string | undefined = '/ui/repos/alice/open-data/tags/many/tree?path=many';
    while (next) {
      const res = await fetch(`${s.url}${next}`);
      expect(res.status).toBe(200);
      const page = await res.text();
      seen.push(...[...page.matchAll(/>(f\d{3}\.txt)</g)].map((m) => m[1]!));
      if (seen.length > 100) expect(page).toContain('>First page</a>');
      next = /href="([^"]+)" rel="next"/.exec(page)?.[1]?.replace(/&amp;/g, '&');
    }
    expect(seen).toEqual(Object.keys(files).map((p) => p.slice('many/'.length)));
  });

  it('downloads a tag as the tar the native export answers', async () => {
    const ui = await fetch(`${s.url}/ui/repos/alice/open-data/tags/v1/archive`);
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-disposition')).toBe('attachment; filename="open-data-v1.tar"');
    const api = await s.api('/api/v1/repos/alice/open-data/tags/v1/archive');
    expect(Buffer.from(await ui.arrayBuffer()).equals(Buffer.from(await api.arrayBuffer()))).toBe(true);
  });
});

describe('sign-in and sessions', () => {
  it('sets an HttpOnly, SameSite=Strict session cookie scoped to /ui, not Secure over http', async () => {
    const page = await fetch(`${s.url}/ui/sign-in`);
    const visitor = page.headers.get('set-cookie') ?? '';
    expect(visitor).toMatch(/^snapfork_ui=/);
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const res = await fetch(`${s.url}/ui/sign-in`, {
      method: 'POST',
      headers: { cookie: cookiePair(visitor), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, token: alice, next: '/ui/repos/alice/hidden' }).toString(),
      redirect: 'manual',
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/ui/repos/alice/hidden?notice=signed-in&subject=alice');
    const cookie = res.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^snapfork_ui=[^;]+; Max-Age=\d+; Path=\/ui; Expires=[^;]+; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(alice);
    // The session's cookie alone opens the private repository: the token is not sent again.
    const signedIn = await fetch(`${s.url}/ui/repos/alice/hidden`, { headers: { cookie: cookiePair(cookie) } });
    expect(signedIn.status).toBe(200);
    expect(await signedIn.text()).toContain('Signed in as <strong>alice</strong>');
  });

  it('marks the cookie Secure, scoped below the public path, when the public URL is https', async () => {
    const behindProxy = await startTestServer({ SNAPFORK_PUBLIC_URL: 'https://snapfork.example/prefix' });
    try {
      const page = await fetch(`${behindProxy.url}/ui/sign-in`);
      expect(page.headers.get('set-cookie')).toMatch(/; Path=\/prefix\/ui; .*HttpOnly; Secure; SameSite=Strict$/);
      expect(await page.text()).toContain('action="/prefix/ui/sign-in"');
    } finally {
      await behindProxy.stop();
    }
  });

  it('refuses a token that does not verify, in words, and starts no session', async () => {
    const visitor = await uiClient(s);
    const res = await visitor.post('/ui/sign-in', { token: `${alice.slice(0, -4)}AAAA` });
    expect(res.status).toBe(401);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await res.text()).toContain('That token was not accepted: invalid or expired token.');
  });

  it('sends a signed-in user back only to a page of the UI', async () => {
    const visitor = await uiClient(s);
    for (const next of ['https://evil.example/', '//evil.example/ui/', '/api/v1/user', '/ui/\\evil']) {
      const res = await visitor.post('/ui/sign-in', { token: bob, next });
      expect(res.headers.get('location'), next).toBe('/ui/?notice=signed-in&subject=bob');
    }
  });

  it('keeps sessions in the cookie alone: a restarted server opens them', async () => {
    const client = await uiClient(s, alice);
    s = await s.restart();
    const res = await fetch(`${s.url}/ui/repos/alice/hidden`, { headers: { cookie: client.cookie } });
    expect(res.status).toBe(200);
  });

  it('signs out: the cookie is cleared', async () => {
    const client = await uiClient(s, alice);
    const res = await client.post('/ui/sign-out');
    expect(res.status).toBe(303);
    expect(res.headers.get('set-cookie')).toMatch(/^snapfork_ui=; Path=\/ui; Expires=Thu, 01 Jan 1970/);
  });

  it('ignores a tampered cookie: the visitor is anonymous', async () => {
    const client = await uiClient(s, alice);
    const [name, value] = client.cookie.split('=') as [string, string];
    const tampered = `${name}=${value.slice(0, -2)}${value.endsWith('A') ? 'B' : 'A'}${value.slice(-1)}`;
    const res = await fetch(`${s.url}/ui/repos/alice/hidden`, { headers: { cookie: tampered } });
    expect(res.status).toBe(404);
  });
});

describe('CSRF', () => {
  it('refuses a write without the session’s CSRF token with 403, and changes nothing', async () => {
    await s.pushFiles(alice, 'alice/open-data', 'keep', { 'a.txt': 'a' });
    const client = await uiClient(s, alice);
    for (const csrf of [null, '', 'forged', client.csrf.slice(0, -1)]) {
      const res = await client.post('/ui/repos/alice/open-data/tags/keep/delete', { csrf });
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('security (CSRF) token');
    }
    // Another session's token is no better.
    const other = await uiClient(s, alice);
    expect((await client.post('/ui/repos/alice/open-data/tags/keep/delete', { csrf: other.csrf })).status).toBe(403);
    // Nor is a token without its session's cookie.
    const noCookie = await fetch(`${s.url}/ui/repos/alice/open-data/tags/keep/delete`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${encodeURIComponent(client.csrf)}`,
    });
    expect(noCookie.status).toBe(403);
    expect(await tagsOf('alice/open-data')).toContain('keep');

    const res = await client.post('/ui/repos/alice/open-data/tags/keep/delete');
    expect(res.status).toBe(303);
    expect(await tagsOf('alice/open-data')).not.toContain('keep');
  });

  it('refuses sign-in and sign-out without the token too', async () => {
    const client = await uiClient(s, alice);
    expect((await client.post('/ui/sign-out', { csrf: null })).status).toBe(403);
    const visitor = await uiClient(s);
    expect((await visitor.post('/ui/sign-in', { csrf: null, token: alice })).status).toBe(403);
  });
});

describe('actions', () => {
  it('answers an action the API refuses with its status and its words', async () => {
    const bobs = await uiClient(s, bob);
    const forbidden = await bobs.post('/ui/repos/alice/open-data/tags/v1/delete');
    expect(forbidden.status).toBe(403);
    expect(await forbidden.text()).toContain('No write access to namespace alice.');
    const visitor = await uiClient(s);
    const anonymous = await visitor.post('/ui/repos/alice/open-data/fork', { name: 'x' });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).toContain('Authentication required.');
    const badVisibility = await bobs.post('/ui/repos/alice/open-data/fork', { name: 'x', visibility: 'everyone' });
    expect(badVisibility.status).toBe(400);
    const repeated = await fetch(`${s.url}/ui/repos/alice/open-data/fork`, {
      method: 'POST',
      headers: { cookie: bobs.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: `csrf=${encodeURIComponent(bobs.csrf)}&name=a&name=b`,
    });
    expect(repeated.status).toBe(400);
    expect(await repeated.text()).toContain('Form field name must be given once.');
  });

  it('forks and creates a tag through forms, as the API would', async () => {
    const bobs = await uiClient(s, bob);
    const forked = await bobs.post('/ui/repos/alice/open-data/fork', { namespace: 'bob', name: 'od', visibility: 'private', tag: 'v1' });
    expect(forked.status).toBe(303);
    expect(forked.headers.get('location')).toBe('/ui/repos/bob/od?notice=forked&subject=alice%2Fopen-data');
    const repo = await (await s.api('/api/v1/repos/bob/od', { token: bob })).json();
    expect(repo).toMatchObject({ visibility: 'private', parent: { full_name: 'alice/open-data' } });
    const [tag] = await (await s.api('/api/v1/repos/bob/od/tags', { token: bob })).json();
    const created = await bobs.post('/ui/repos/bob/od/tags', { name: 'pinned', commit: tag.commit_id });
    expect(created.status).toBe(303);
    expect((await (await s.api('/api/v1/repos/bob/od/tags/pinned', { token: bob })).json()).commit_id).toBe(tag.commit_id);
    const again = await bobs.post('/ui/repos/bob/od/tags', { name: 'pinned', commit: tag.commit_id });
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('Tag pinned already exists.');
  });

  it('leaves the API to the contract: /api answers are JSON as before', async () => {
    const res = await s.api('/api/v1/repos/alice/nothing');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });
});

describe('fork network', () => {
  const nodesOf = (html: string) => [...html.matchAll(/<a href="[^"]*" class="node[^"]*" data-repo="([^"]+)"/g)].map((m) => m[1]);

  it('draws forks of forks, hides forks an outsider may not see, and caps the page, saying so', async () => {
    await s.createRepo(alice, 'network', 'public');
    await s.pushFiles(alice, 'alice/network', 'v1', { 'a.txt': 'a' });
    const fork = async (token: string, source: string, name: string, visibility?: string) =>
      expect((await s.api(`/api/v1/repos/${source}/forks`, { method: 'POST', token, json: { name, ...(visibility && { visibility }) } })).status).toBe(201);
    await fork(bob, 'alice/network', 'net-bob');
    await fork(bob, 'bob/net-bob', 'net-bob-private', 'private');
    const carol = await s.token('carol');
    await fork(carol, 'bob/net-bob', 'net-carol');

    const visitorView = await (await fetch(`${s.url}/ui/repos/carol/net-carol/network`)).text();
    expect(nodesOf(visitorView)).toEqual(['alice/network', 'bob/net-bob', 'carol/net-carol']);
    expect(visitorView).not.toContain('larger than a page shows');
    const owner = await uiClient(s, bob);
    expect(nodesOf(await (await owner.get('/ui/repos/carol/net-carol/network')).text())).toEqual(['alice/network', 'bob/net-bob', 'carol/net-carol', 'bob/net-bob-private']);
    // Not even the private fork's own page draws it for a visitor.
    expect((await fetch(`${s.url}/ui/repos/bob/net-bob-private/network`)).status).toBe(404);

    // 60 repositories a page, the asked one and the path to it among them.
    for (let i = 0; i < 60; i++) await fork(carol, 'alice/network', `wide-${i}`);
    const capped = await (await fetch(`${s.url}/ui/repos/carol/net-carol/network`)).text();
    const drawn = nodesOf(capped);
    expect(drawn).toHaveLength(60);
    expect(drawn).toEqual(expect.arrayContaining(['alice/network', 'bob/net-bob', 'carol/net-carol']));
    expect(capped).toContain('This network is larger than a page shows: the 60 repositories nearest to carol/net-carol are drawn.');
    expect(capped).toContain('Figures are computed for the 24 repositories nearest to this one');
    expect(capped.match(/figures on its storage page/g)!.length).toBeGreaterThanOrEqual(36);
  });
});
