/**
 * @gitbeaker/rest, GitLab's JavaScript client, unchanged against snapfork: it sends
 * `PRIVATE-TOKEN`, builds `/api/v4/...` URLs under `host` with URL-encoded project paths, and
 * follows `Link: rel="next"` to gather every page.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Gitlab, GitbeakerRequestError } from '@gitbeaker/rest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';

let s: TestServer;
let alice: InstanceType<typeof Gitlab>;
let bob: InstanceType<typeof Gitlab>;
let sourceId: number;

beforeAll(async () => {
  s = await startTestServer();
  const aliceToken = await s.token('alice');
  alice = new Gitlab({ host: s.url, token: aliceToken });
  bob = new Gitlab({ host: s.url, token: await s.token('bob') });
  const created = await s.api('/api/v1/user/repos', { method: 'POST', token: aliceToken, json: { name: 'corpus', visibility: 'public' } });
  sourceId = ((await created.json()) as { id: number }).id;
  const dir = await tempDir();
  await writeFile(join(dir, 'train.jsonl'), '{"text": "hello"}\n');
  const pushed = await s.api('/api/v1/repos/alice/corpus/tags/main/archive', {
    method: 'PUT',
    token: aliceToken,
    body: await tarOf(dir),
    headers: { 'content-type': 'application/x-tar' },
  });
  expect(pushed.status).toBe(201);
});
afterAll(() => s.stop());

/** The status and text gitbeaker reports for a failed call. */
async function failure(call: Promise<unknown>): Promise<{ status: number; description: string }> {
  const e = await call.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GitbeakerRequestError);
  const { cause } = e as GitbeakerRequestError;
  return { status: cause!.response.status, description: cause!.description };
}

it('forks with Projects.fork and polls it with Projects.show, by id and by path', async () => {
  const fork = await bob.Projects.fork('alice/corpus', { path: 'corpus-bob', name: 'Corpus (bob)', description: 'mine' });
  expect(fork).toMatchObject({
    path_with_namespace: 'bob/corpus-bob',
    name: 'Corpus (bob)',
    description: 'mine',
    default_branch: 'main',
    import_status: 'finished',
    forked_from_project: { id: sourceId },
  });
  const shown = await bob.Projects.show(fork.id);
  expect(shown).toMatchObject({ id: fork.id, import_status: 'finished' });
  expect((await bob.Projects.show('bob/corpus-bob')).id).toBe(fork.id);
});

it('lists forks across pages with Projects.allForks, and reports GitLab\'s pagination', async () => {
  // A project's name is unique in its namespace, like its path: each fork names itself.
  for (const path of ['p1', 'p2', 'p3', 'p4']) await bob.Projects.fork(sourceId, { path, name: path });
  // gitbeaker's typings leave out the paging options of allForks, which it honours at runtime.
  const allPages = { perPage: 2, maxPages: 10 };
  const all = await alice.Projects.allForks(sourceId, { ...allPages, orderBy: 'path', sort: 'asc' });
  expect(all.map((p) => p.path)).toEqual(['corpus-bob', 'p1', 'p2', 'p3', 'p4']);

  const secondPage = { perPage: 2, page: 2 };
  const expanded = await alice.Projects.allForks(sourceId, { ...secondPage, showExpanded: true, orderBy: 'path', sort: 'asc' });
  const { data, paginationInfo } = expanded as unknown as { data: { path: string }[]; paginationInfo: unknown };
  expect(data.map((p) => p.path)).toEqual(['p2', 'p3']);
  expect(paginationInfo).toEqual({ total: 5, next: 3, current: 2, previous: 1, perPage: 2, totalPages: 3 });

  expect(await alice.Projects.allForks(sourceId, { search: 'p4' })).toHaveLength(1);
  expect(await alice.Projects.allForks(sourceId, { starred: true })).toEqual([]);
  expect(await bob.Projects.allForks(sourceId, { owned: true })).toHaveLength(5);
});

it('creates and removes a fork relationship', async () => {
  const own = await s.api('/api/v1/user/repos', { method: 'POST', token: await s.token('bob'), json: { name: 'unrelated', visibility: 'public' } });
  const { id } = (await own.json()) as { id: number };
  const linked = await bob.Projects.createForkRelationship(id, sourceId);
  expect(linked).toMatchObject({ id, forked_from_project: { id: sourceId } });
  await bob.Projects.removeForkRelationship(id);
  expect(await bob.Projects.show(id)).not.toHaveProperty('forked_from_project');
});

it('surfaces GitLab\'s errors: 404 project, 404 branch, 409 taken name, 403 not an owner', async () => {
  expect(await failure(bob.Projects.show(424242))).toEqual({ status: 404, description: '404 Project Not Found' });
  expect(await failure(bob.Projects.fork(sourceId, { path: 'x', branches: 'nope' }))).toEqual({ status: 404, description: '404 Source Branch Not Found' });
  const taken = await failure(bob.Projects.fork(sourceId, { path: 'corpus-bob' }));
  expect(taken.status).toBe(409);
  expect(taken.description).toContain('has already been taken');
  expect((await failure(alice.Projects.removeForkRelationship('bob/corpus-bob'))).status).toBe(403);
});
