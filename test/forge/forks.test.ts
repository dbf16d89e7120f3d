/**
 * The forge dialect (seed 002), replayed against the real server: `GET|POST
 * /api/v1/repos/{owner}/{repo}/forks`, its rows, statuses and pagination, and @octokit/rest
 * driving the same endpoints unchanged.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Octokit } from '@octokit/rest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiResponse, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';

let s: TestServer;
let alice: string;
let bob: string;
let carol: string;
let demoId: number;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

beforeAll(async () => {
  s = await startTestServer();
  [alice, bob, carol] = await Promise.all([s.token('alice'), s.token('bob'), s.token('carol')]);
  const dir = await tempDir();
  await writeFile(join(dir, 'weights.bin'), randomBytes(200_000));
  await writeFile(join(dir, 'README'), 'demo\n');
  const demo = await createRepo(alice, 'demo', 'public');
  demoId = demo.id;
  const pushed = await s.api('/api/v1/repos/alice/demo/tags/trunk/archive', {
    method: 'PUT',
    token: alice,
    body: await tarOf(dir),
    headers: { 'content-type': 'application/x-tar' },
  });
  expect(pushed.status).toBe(201);
});
afterAll(() => s.stop());

async function createRepo(token: string, name: string, visibility: string) {
  const res = await s.api('/api/v1/user/repos', { method: 'POST', token, json: { name, visibility } });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: number };
}

const forkOf = (fullName: string, token: string | undefined, json?: unknown, headers?: Record<string, string>) =>
  s.api(`/api/v1/repos/${fullName}/forks`, { method: 'POST', token, json, headers });

async function expectError(res: ApiResponse, status: number, message?: RegExp) {
  expect(res.status).toBe(status);
  const body = await errorBodyOf(res);
  // `details`, when present, is the machine-readable side of the error (the fields it is about).
  expect(body).toEqual({ error: expect.any(String), success: false, ...('details' in body ? { details: expect.any(Object) } : {}) });
  if (message) expect(body.error).toMatch(message);
}

describe('POST /api/v1/repos/{owner}/{repo}/forks', () => {
  it('answers the seed example with 201 and the persisted row, writing no chunk', async () => {
    const chunks = s.chunkCount();
    expect(chunks).toBeGreaterThan(0);
    const res = await forkOf('alice/demo', bob, { name: 'demo-fork', visibility: 'private' });
    expect(res.status).toBe(201);
    const row = await res.json();
    expect(row).toEqual({
      id: expect.any(Number),
      name: 'demo-fork',
      owner_login: 'bob',
      owner_display_name: 'bob',
      description: '',
      visibility: 'private',
      star_count: 0,
      fork_count: 0,
      init_status: 'initialized',
      source_repo_id: demoId,
      default_branch: 'trunk',
      created_at: expect.stringMatching(ISO),
      // GitHub's identifying fields beside the seed's (test/integration/urls.test.ts follows them).
      full_name: 'bob/demo-fork',
      owner: expect.objectContaining({ login: 'bob', id: expect.any(Number), type: 'User', url: `${s.url}/users/bob` }),
      url: `${s.url}/api/v1/repos/bob/demo-fork`,
      html_url: `${s.url}/api/v1/repos/bob/demo-fork`,
      forks_url: `${s.url}/api/v1/repos/bob/demo-fork/forks`,
      tags_url: `${s.url}/api/v1/repos/bob/demo-fork/tags`,
      fork: true,
      parent: { id: demoId, full_name: 'alice/demo' },
    });
    expect(s.chunkCount()).toBe(chunks);

    // The same fork through the native API: same parent, and the single-repo endpoint to poll.
    const native = await (await s.api('/api/v1/repos/bob/demo-fork', { token: bob })).json();
    expect(native).toMatchObject({ id: row.id, fork: true, parent: { id: demoId, full_name: 'alice/demo' }, init_status: 'initialized' });
    const tags = await (await s.api('/api/v1/repos/bob/demo-fork/tags', { token: bob })).json();
    expect(tags.map((t: { name: string }) => t.name)).toEqual(['trunk']);
  });

  it("defaults to the source's name and visibility, with or without a body", async () => {
    const res = await forkOf('alice/demo', carol, {});
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'demo', owner_login: 'carol', visibility: 'public' });

    const dave = await s.token('dave');
    const bare = await s.api('/api/v1/repos/alice/demo/forks', { method: 'POST', token: dave });
    expect(bare.status).toBe(201);
    expect(await bare.json()).toMatchObject({ name: 'demo', owner_login: 'dave' });
  });

  it("targets the caller's own namespace even with an organization token", async () => {
    const token = await s.token('erin', { org: 'erinlabs' });
    const res = await forkOf('alice/demo', token, { name: 'erin-demo' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ owner_login: 'erin' });
    expect((await s.api('/api/v1/repos/erinlabs/erin-demo', { token })).status).toBe(404);
  });

  it('refuses a fork of your own repository into the same name (409), allows a new name', async () => {
    await expectError(await forkOf('alice/demo', alice, {}), 409, /itself/);
    const res = await forkOf('alice/demo', alice, { name: 'demo-copy' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'demo-copy', owner_login: 'alice', source_repo_id: demoId });
  });

  it('answers 409 when the target name is taken or the source is archived', async () => {
    const taken = await forkOf('alice/demo', bob, { name: 'demo-fork' });
    expect(await taken.clone().json()).toMatchObject({ details: { taken: ['name', 'displayName'] } });
    await expectError(taken, 409, /already exists/);
    await createRepo(alice, 'old', 'public');
    const archived = await s.api('/api/v1/repos/alice/old', { method: 'PATCH', token: alice, json: { archived: true } });
    expect(archived.status).toBe(200);
    await expectError(await forkOf('alice/old', bob, {}), 409, /archived/);
  });

  it("answers 422 when visibility exceeds the source's; a private source is pinned to private", async () => {
    await createRepo(alice, 'inner', 'internal');
    await expectError(await forkOf('alice/inner', bob, { visibility: 'public' }), 422, /visibility/);
    const internal = await forkOf('alice/inner', bob, { visibility: 'internal' });
    expect(internal.status).toBe(201);

    await createRepo(alice, 'secret', 'private');
    await expectError(await forkOf('alice/secret', alice, { name: 'secret-2', visibility: 'internal' }), 422);
    const pinned = await forkOf('alice/secret', alice, { name: 'secret-2' });
    expect(pinned.status).toBe(201);
    expect(await pinned.json()).toMatchObject({ visibility: 'private' });
  });

  it('answers 404 for a source the caller cannot see, 401 without a token, 403 without repo:write', async () => {
    await expectError(await forkOf('alice/secret', bob, {}), 404);
    await expectError(await forkOf('alice/nothing', bob, {}), 404);
    await expectError(await forkOf('alice/demo', undefined, {}), 401);
    const readOnly = await s.token('frank', { scopes: ['repo:read'] });
    await expectError(await forkOf('alice/demo', readOnly, {}), 403, /repo:write/);
  });

  it('rejects a malformed body with 400 in the native envelope', async () => {
    await expectError(await forkOf('alice/demo', bob, { visibility: 'secret' }), 400, /visibility/);
    await expectError(await forkOf('alice/demo', bob, { organization: 'labs' }), 400);
    await expectError(await forkOf('alice/demo', bob, { name: 'has space' }), 400, /name/);
  });

  it('replays the first 201 to a retry with the same Idempotency-Key', async () => {
    const gina = await s.token('gina');
    const key = { 'Idempotency-Key': 'fork-once' };
    const first = await forkOf('alice/demo', gina, { name: 'once' }, key);
    expect(first.status).toBe(201);
    const retry = await forkOf('alice/demo', gina, { name: 'once' }, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(await first.json());
  });
});

describe('GET /api/v1/repos/{owner}/{repo}/forks', () => {
  const names = ['f1', 'f2', 'f3', 'f4', 'f5'];

  beforeAll(async () => {
    const owner = await s.token('henry');
    await createRepo(owner, 'net', 'public');
    // One fork per user, in order, so that newest first is f5 .. f1.
    for (const [i, name] of names.entries()) {
      const res = await forkOf('henry/net', await s.token(`user${i + 1}`), { name, visibility: i === 2 ? 'private' : 'public' });
      expect(res.status).toBe(201);
    }
    // A fork of a fork counts on its parent's row only.
    expect((await forkOf('user1/f1', bob, { name: 'f1-child' })).status).toBe(201);
  });

  const list = (query: string, token?: string) => s.api(`/api/v1/repos/henry/net/forks${query}`, { token });

  it('lists rows newest first with the seed fields, hiding private forks from others', async () => {
    const res = await list('', bob);
    expect(res.status).toBe(200);
    const rows = await res.json();
    expect(rows.map((r: { name: string }) => r.name)).toEqual(['f5', 'f4', 'f2', 'f1']);
    expect(res.headers.get('x-total-count')).toBe('4');
    const f1 = rows.find((r: { name: string }) => r.name === 'f1');
    expect(f1).toEqual({
      id: expect.any(Number),
      name: 'f1',
      owner_login: 'user1',
      owner_display_name: 'user1',
      description: '',
      visibility: 'public',
      star_count: 0,
      fork_count: 1,
      init_status: 'initialized',
      created_at: expect.stringMatching(ISO),
      full_name: 'user1/f1',
      owner: expect.objectContaining({ login: 'user1', id: expect.any(Number), type: 'User', url: `${s.url}/users/user1` }),
      url: `${s.url}/api/v1/repos/user1/f1`,
      html_url: `${s.url}/api/v1/repos/user1/f1`,
      forks_url: `${s.url}/api/v1/repos/user1/f1/forks`,
      tags_url: `${s.url}/api/v1/repos/user1/f1/tags`,
      fork: true,
      parent: { id: expect.any(Number), full_name: 'henry/net' },
    });
    expect(rows.find((r: { name: string }) => r.name === 'f2').fork_count).toBe(0);

    // The owner of the private fork sees it; so does nobody else, signed in or not.
    const mine = await (await list('', await s.token('user3'))).json();
    expect(mine.map((r: { name: string }) => r.name)).toEqual(['f5', 'f4', 'f3', 'f2', 'f1']);
    expect((await (await list('')).json()).length).toBe(4);
  });

  it('pages with page/per_page, a Link header and X-Total-Count', async () => {
    const first = await list('?per_page=2', bob);
    expect((await first.json()).map((r: { name: string }) => r.name)).toEqual(['f5', 'f4']);
    expect(first.headers.get('link')).toMatch(/[?&]page=2[^>]*>; rel="next"/);
    const last = await list('?page=2&per_page=2', bob);
    expect((await last.json()).map((r: { name: string }) => r.name)).toEqual(['f2', 'f1']);
    expect(last.headers.get('link')).not.toMatch(/rel="next"/);
    expect(await (await list('?page=3&per_page=2', bob)).json()).toEqual([]);
    await expectError(await list('?per_page=0', bob), 400, /per_page/);
  });

  it('excludes soft-deleted forks from the rows and the counts', async () => {
    const deleted = await s.api('/api/v1/repos/bob/f1-child', { method: 'DELETE', token: bob });
    expect(deleted.status).toBe(204);
    const rows = await (await list('', bob)).json();
    expect(rows.find((r: { name: string }) => r.name === 'f1').fork_count).toBe(0);
    const removed = await s.api('/api/v1/repos/user5/f5', { method: 'DELETE', token: await s.token('user5') });
    expect(removed.status).toBe(204);
    const after = await list('', bob);
    expect((await after.json()).map((r: { name: string }) => r.name)).toEqual(['f4', 'f2', 'f1']);
    expect(after.headers.get('x-total-count')).toBe('3');
  });

  it('answers 404 for a source the caller cannot see and 403 without repo:read', async () => {
    await expectError(await s.api('/api/v1/repos/alice/secret/forks', { token: bob }), 404);
    await expectError(await s.api('/api/v1/repos/henry/none/forks', { token: bob }), 404);
    const writeOnly = await s.token('ivan', { scopes: ['repo:write'] });
    await expectError(await list('', writeOnly), 403, /repo:read/);
  });
});

describe('@octokit/rest against the forge', () => {
  // The expected 4xx answers would otherwise each be logged as a failed request.
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  const octokit = (auth?: string) => new Octokit({ baseUrl: `${s.url}/api/v1`, auth, log: quiet });

  it('creates a fork, lists forks across pages and reads the fork back', async () => {
    const kate = await s.token('kate');
    const created = await octokit(kate).rest.repos.createFork({ owner: 'alice', repo: 'demo', name: 'kate-demo' });
    expect(created.status).toBe(201);
    expect(created.data).toMatchObject({ name: 'kate-demo', owner_login: 'kate', source_repo_id: demoId });

    const pages: number[] = [];
    const client = octokit(kate);
    const all = await client.paginate(client.rest.repos.listForks, { owner: 'alice', repo: 'demo', per_page: 2 }, (response) => {
      pages.push(response.data.length);
      return response.data;
    });
    // The rows are the seed's, with GitHub's full_name and owner beside owner_login.
    const names = (all as unknown as { owner_login: string; owner: { login: string }; full_name: string; name: string }[]).map((r) => {
      expect(r.owner.login).toBe(r.owner_login);
      return r.full_name;
    });
    expect(names[0]).toBe('kate/kate-demo');
    expect(names).toContain('carol/demo');
    expect(names).toContain('alice/demo-copy');
    expect(names).not.toContain('bob/demo-fork');
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.every((n) => n <= 2)).toBe(true);

    const fork = await octokit(kate).rest.repos.get({ owner: 'kate', repo: 'kate-demo' });
    expect(fork.data).toMatchObject({ fork: true, parent: { full_name: 'alice/demo' } });
  });

  it('surfaces the error statuses as RequestErrors', async () => {
    const kate = await s.token('kate');
    await expect(octokit(kate).rest.repos.createFork({ owner: 'alice', repo: 'secret' })).rejects.toMatchObject({ status: 404 });
    const taken = octokit(kate).rest.repos.createFork({ owner: 'alice', repo: 'demo', name: 'kate-demo' });
    await expect(taken).rejects.toMatchObject({ status: 409 });
    // GitHub's createFork knows no visibility: the generic request sends the seed's field.
    const wider = octokit(kate).request('POST /repos/{owner}/{repo}/forks', { owner: 'alice', repo: 'inner', visibility: 'public' });
    await expect(wider).rejects.toMatchObject({ status: 422 });
    await expect(octokit().rest.repos.createFork({ owner: 'alice', repo: 'demo' })).rejects.toMatchObject({ status: 401 });
    await expect(octokit(kate).rest.repos.listForks({ owner: 'alice', repo: 'secret' })).rejects.toMatchObject({ status: 404 });
  });
});
