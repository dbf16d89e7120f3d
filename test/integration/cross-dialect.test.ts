/**
 * One fork network, five dialects: a fork made through any dialect is seen, with the same
 * parent, through every other; a deleted fork disappears from all of their lists and counts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let alice: string;
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  bob = await s.token('bob');
  expect((await s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'net', visibility: 'public' } })).status).toBe(201);
  await s.pushFiles(alice, 'alice/net', 'v1', { 'data.csv': 'a,b\n1,2\n' });
});
afterAll(() => s.stop());

/** Forks alice/net into bob's namespace under `name` through each dialect. */
const forkThrough: Record<string, (name: string) => Promise<number>> = {
  vers: async (name) => (await s.api('/api/v1/repositories/fork', { method: 'POST', token: bob, json: { source_org: 'alice', source_repo: 'net', source_tag: 'v1', repo_name: name } })).status,
  oxen: async (name) => (await s.api('/api/repos/alice/net/fork', { method: 'POST', token: bob, json: { namespace: 'bob', new_repo_name: name } })).status,
  forge: async (name) => (await s.api('/api/v1/repos/alice/net/forks', { method: 'POST', token: bob, json: { name } })).status,
  gitlab: async (name) => (await s.api('/api/v4/projects/alice%2Fnet/fork', { method: 'POST', token: bob, json: { path: name, name, namespace_path: 'bob' } })).status,
  gitverse: async (name) => (await s.api('/repos/alice/net/forks', { method: 'POST', token: bob, json: { name } })).status,
};

const forkNames = async () => ({
  forge: (await (await s.api('/api/v1/repos/alice/net/forks?per_page=100', { token: bob })).json()).map((r: { name: string }) => r.name).sort(),
  gitlab: (await (await s.api('/api/v4/projects/alice%2Fnet/forks?per_page=100', { token: bob })).json()).map((p: { path: string }) => p.path).sort(),
  gitverse: (await (await s.api('/repos/alice/net/forks?per_page=100', { token: bob })).json()).map((r: { name: string }) => r.name).sort(),
});

it('shows a fork made through any dialect, with the same parent, through every other', async () => {
  const created: Record<string, number> = {};
  for (const [dialect, fork] of Object.entries(forkThrough)) created[dialect] = await fork(`via-${dialect}`);
  expect(created).toEqual({ vers: 201, oxen: 202, forge: 201, gitlab: 201, gitverse: 201 });
  const names = Object.keys(forkThrough).map((d) => `via-${d}`).sort();
  expect(await forkNames()).toEqual({ forge: names, gitlab: names, gitverse: names });

  for (const name of names) {
    const native = await (await s.api(`/api/v1/repos/bob/${name}`, { token: bob })).json();
    expect(native).toMatchObject({ fork: true, parent: { full_name: 'alice/net' } });
    const gitlab = await (await s.api(`/api/v4/projects/bob%2F${name}`, { token: bob })).json();
    expect(gitlab).toMatchObject({ import_status: 'finished', forked_from_project: { path_with_namespace: 'alice/net' } });
    const gitverse = await (await s.api(`/repos/bob/${name}`, { token: bob })).json();
    expect(gitverse).toMatchObject({ fork: true, parent: { full_name: 'alice/net' } });
    expect((await s.api(`/api/repos/bob/${name}/fork/status`, { token: bob })).status).toBe(200);
  }
  const source = await (await s.api('/repos/alice/net', { token: bob })).json();
  expect(source.forks_count).toBe(names.length);
});

it('drops a deleted fork from every list and count', async () => {
  expect((await s.api('/api/v1/repos/bob/via-oxen', { method: 'DELETE', token: bob })).status).toBe(204);
  const names = Object.keys(forkThrough).filter((d) => d !== 'oxen').map((d) => `via-${d}`).sort();
  expect(await forkNames()).toEqual({ forge: names, gitlab: names, gitverse: names });
  expect((await (await s.api('/repos/alice/net', { token: bob })).json()).forks_count).toBe(names.length);
  expect((await s.api('/api/v4/projects/bob%2Fvia-oxen', { token: bob })).status).toBe(404);
});

it('gives exactly one of 200 concurrent forks to one name through each dialect; the others get 409 and nothing', async () => {
  const success = { vers: 201, oxen: 202, forge: 201, gitlab: 201, gitverse: 201 } as Record<string, number>;
  for (const [dialect, fork] of Object.entries(forkThrough)) {
    const statuses = await Promise.all(Array.from({ length: 200 }, () => fork(`race-${dialect}`)));
    const counts = statuses.reduce<Record<number, number>>((n, status) => ({ ...n, [status]: (n[status] ?? 0) + 1 }), {});
    expect(counts, dialect).toEqual({ [success[dialect]!]: 1, 409: 199 });
  }
  const bobs = await (await s.api('/api/v1/users/bob/repos?per_page=100', { token: bob })).json();
  const races = bobs.map((r: { name: string }) => r.name).filter((n: string) => n.startsWith('race-')).sort();
  expect(races).toEqual(Object.keys(forkThrough).map((d) => `race-${d}`).sort());
});
