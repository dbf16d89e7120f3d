/**
 * Outsiders probing a private repository learn nothing (issue 14, "Tokens"): every route of
 * every dialect that reads it (by owner and name, by numeric id, by commit id, by chunk digest),
 * and every fork of it, answers 404 in the dialect's own envelope, never 403, to a stranger
 * signed in and to an anonymous caller alike (401 where the route needs a signed-in caller);
 * its owner reads each of them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let owner: string;
let stranger: string;
let probes: Probe[];

interface Probe {
  dialect: keyof typeof NOT_FOUND;
  method: string;
  path: string;
  json?: unknown;
  /** Only reads: its owner may repeat it. */
  read: boolean;
}

const NOT_FOUND = {
  native: { error: expect.any(String), success: false },
  vers: { error: expect.any(String), success: false },
  forge: { error: expect.any(String), success: false },
  oxen: { status: 'error', status_message: 'resource_not_found' },
  gitlab: { message: expect.stringMatching(/^404 /) },
  gitverse: { message: 'Not Found', documentation_url: expect.any(String) },
};

beforeAll(async () => {
  // VMs capped at none: a VM route that leaked the commit would answer 429, not boot one.
  s = await startTestServer({ SNAPFORK_VM_MAX_RUNNING: '0' });
  owner = await s.token('olive', { org: 'acme' });
  stranger = await s.token('sam', { org: 'strangers' });
  const { id } = (await (await s.api('/api/v1/orgs/acme/repos', { method: 'POST', token: owner, json: { name: 'secret', visibility: 'private' } })).json()) as { id: number };
  const { commit_id: commit } = await s.pushFiles(owner, 'acme/secret', 'v1', { 'a.txt': 'private bytes\n' });
  const manifest = await (await s.api(`/api/v1/repos/acme/secret/commits/${commit}/manifest`, { token: owner })).json();
  const digest: string = manifest.entries[0].chunks[0].digest;
  const repo = '/api/v1/repos/acme/secret';
  const read = (dialect: Probe['dialect'], path: string, method = 'GET', json?: unknown): Probe => ({ dialect, method, path, json, read: true });
  const write = (dialect: Probe['dialect'], path: string, json: unknown, method = 'POST'): Probe => ({ dialect, method, path, json, read: false });
  probes = [
    read('native', repo),
    read('native', `${repo}/tags`),
    read('native', `${repo}/tags/v1`),
    read('native', `${repo}/tags/v1/archive`),
    read('native', `${repo}/tags/v1/tree`),
    read('native', `${repo}/tags/v1/files/a.txt`),
    read('native', `${repo}/commits`),
    read('native', `${repo}/commits/${commit}`),
    read('native', `${repo}/commits/${commit}/manifest`),
    read('native', `${repo}/chunks/${digest}`),
    read('native', `${repo}/chunks/fetch`, 'POST', { digests: [digest] }),
    write('native', `${repo}/chunks/missing`, { digests: [digest] }),
    read('forge', `${repo}/forks`),
    write('forge', `${repo}/forks`, { name: 'stolen' }),
    read('vers', '/api/v1/public/repositories/acme/secret'),
    read('vers', '/api/v1/public/repositories/acme/secret/tags'),
    read('vers', '/api/v1/public/repositories/acme/secret/tags/v1'),
    write('vers', `/api/v1/vm/commits/${commit}/parents`, undefined, 'GET'),
    write('vers', `/api/v1/commits/${commit}`, { is_public: true }, 'PATCH'),
    write('vers', '/api/v1/repositories/fork', { source_org: 'acme', source_repo: 'secret', source_tag: 'v1', repo_name: 'stolen' }),
    write('vers', '/api/v1/vm/from_commit', { commit_id: commit }),
    read('oxen', '/api/repos/acme/secret'),
    write('oxen', '/api/repos/acme/secret/fork', { namespace: 'sam', new_repo_name: 'stolen' }),
    read('gitlab', `/api/v4/projects/${id}`),
    read('gitlab', '/api/v4/projects/acme%2Fsecret'),
    read('gitlab', `/api/v4/projects/${id}/forks`),
    write('gitlab', `/api/v4/projects/${id}/fork`, { path: 'stolen' }),
    read('gitverse', '/repos/acme/secret'),
    read('gitverse', '/repos/acme/secret/forks'),
    read('gitverse', '/repos/acme/secret/issues'),
    read('gitverse', '/repos/acme/secret/issues/comments'),
    read('gitverse', '/repos/acme/secret/pulls'),
    read('gitverse', '/repos/acme/secret/languages'),
    write('gitverse', '/repos/acme/secret/forks', { name: 'stolen' }),
  ];
});
afterAll(() => s.stop());

async function answer(p: Probe, token: string | undefined) {
  const res = await s.api(p.path, { method: p.method, token, json: p.json });
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, body: type.includes('json') ? await res.json() : await res.text() };
}

it('answers a stranger 404 in the dialect of each route that reads or forks a private repository', async () => {
  const seen: Record<string, unknown> = {};
  const expected: Record<string, unknown> = {};
  for (const p of probes) {
    seen[`${p.method} ${p.path}`] = await answer(p, stranger);
    expected[`${p.method} ${p.path}`] = { status: 404, body: NOT_FOUND[p.dialect] };
  }
  expect(seen).toMatchObject(expected);
});

it('answers an anonymous caller 404 where anyone may read, 401 where a user is needed', async () => {
  const seen: Record<string, number> = {};
  const expected: Record<string, number> = {};
  for (const p of probes) {
    seen[`${p.method} ${p.path}`] = (await answer(p, undefined)).status;
    expected[`${p.method} ${p.path}`] = p.read ? 404 : 401;
  }
  expect(seen).toEqual(expected);
});

it('lets the owner read every one of those routes but the public ones', async () => {
  // Vers' /public/ routes show public repositories only, to their owners too.
  for (const p of probes.filter((x) => x.read && !x.path.includes('/public/'))) {
    expect({ path: p.path, status: (await answer(p, owner)).status }).toEqual({ path: p.path, status: 200 });
  }
});

it('lists the private repository to no outsider', async () => {
  for (const token of [stranger, undefined]) {
    for (const path of ['/api/v1/orgs/acme/repos', '/users/acme/repos', '/api/v1/public/repositories']) {
      expect(JSON.stringify(await (await s.api(path, { token })).json())).not.toContain('secret');
    }
  }
});
