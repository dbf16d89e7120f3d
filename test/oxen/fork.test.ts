/**
 * The Oxen dialect (seed 000), replayed against the real server: the fork, its status, the
 * repository lookup Oxen's client makes, and every error in Oxen's StatusMessage shape.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiResponse, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';

let s: TestServer;
/** Owner of organization `ox`, as in the seed's example. */
let alice: string;
/** The seed's example destination namespace. */
let newUser: string;
let bob: string;
let pushedBytes: number;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice', { org: 'ox' });
  [newUser, bob] = await Promise.all([s.token('new-user'), s.token('bob')]);
  await createRepo(alice, 'ox', 'yolov7-repo', 'public');
  const dir = await tempDir();
  await writeFile(join(dir, 'weights.pt'), randomBytes(150_000));
  pushedBytes = (await push('ox/yolov7-repo', 'v1', await tarOf(dir))).bytes;
  await writeFile(join(dir, 'labels.txt'), 'cat\ndog\n');
  await push('ox/yolov7-repo', 'v2', await tarOf(dir));
  await createRepo(alice, 'ox', 'private-set', 'private');
});
afterAll(() => s.stop());

async function createRepo(token: string, org: string, name: string, visibility: string) {
  const res = await s.api(`/api/v1/orgs/${org}/repos`, { method: 'POST', token, json: { name, visibility } });
  expect(res.status).toBe(201);
}

async function push(fullName: string, tag: string, body: Buffer): Promise<{ bytes: number }> {
  const res = await s.api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, {
    method: 'PUT',
    token: alice,
    body,
    headers: { 'content-type': 'application/x-tar' },
  });
  expect(res.status).toBe(201);
  return res.json();
}

const fork = (fullName: string, token: string | undefined, json: unknown) =>
  s.api(`/api/repos/${fullName}/fork`, { method: 'POST', token, json });

/** Every error is Oxen's StatusMessage, its reason in status_description. */
async function expectStatusMessage(res: ApiResponse, status: number, statusMessage: string, description?: RegExp) {
  expect(res.status).toBe(status);
  const body = await errorBodyOf(res);
  expect(body).toEqual({ status: 'error', status_message: statusMessage, oxen_version: '0.50.0', status_description: expect.any(String) });
  if (description) expect(body.status_description).toMatch(description);
}

describe('POST /api/repos/{namespace}/{repo_name}/fork', () => {
  it('forks the seed example with 202, all tags, the same parent, and no chunk written', async () => {
    const chunks = s.chunkCount();
    expect(chunks).toBeGreaterThan(0);
    const res = await fork('ox/yolov7-repo', newUser, { namespace: 'new-user' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({
      status: 'success',
      status_message: 'resource_created',
      oxen_version: '0.50.0',
      repository: 'new-user/yolov7-repo',
      fork_status: 'complete',
    });
    expect(s.chunkCount()).toBe(chunks);

    const native = await (await s.api('/api/v1/repos/new-user/yolov7-repo', { token: newUser })).json();
    expect(native).toMatchObject({ fork: true, parent: { full_name: 'ox/yolov7-repo' }, visibility: 'public' });
    const tags = await (await s.api('/api/v1/repos/new-user/yolov7-repo/tags', { token: newUser })).json();
    expect(tags.map((t: { name: string }) => t.name)).toEqual(['v1', 'v2']);
  });

  it('takes new_repo_name, or the source name when it is null, and may target an organization', async () => {
    const renamed = await fork('ox/yolov7-repo', bob, { namespace: 'bob', new_repo_name: 'yolo-copy' });
    expect(renamed.status).toBe(202);
    expect(await renamed.json()).toMatchObject({ repository: 'bob/yolo-copy' });
    const unnamed = await fork('ox/yolov7-repo', bob, { namespace: 'bob', new_repo_name: null });
    expect(unnamed.status).toBe(202);
    expect(await unnamed.json()).toMatchObject({ repository: 'bob/yolov7-repo' });
    const intoOrg = await fork('ox/yolov7-repo', alice, { namespace: 'ox', new_repo_name: 'yolo-v8' });
    expect(intoOrg.status).toBe(202);
    expect((await s.api('/api/v1/repos/ox/yolo-v8', { token: alice })).status).toBe(200);
  });

  it('replays the first 202 to a retry with the same Idempotency-Key instead of answering 409', async () => {
    const carol = await s.token('carol');
    const retry = () =>
      s.api('/api/repos/ox/yolov7-repo/fork', { method: 'POST', token: carol, json: { namespace: 'carol' }, headers: { 'Idempotency-Key': 'oxen-1' } });
    const first = await retry();
    expect(first.status).toBe(202);
    const second = await retry();
    expect(second.status).toBe(202);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(await second.json()).toEqual(await first.json());
  });

  it('keeps a private source private and hides it from outsiders (404)', async () => {
    const res = await fork('ox/private-set', alice, { namespace: 'alice' });
    expect(res.status).toBe(202);
    const native = await (await s.api('/api/v1/repos/alice/private-set', { token: alice })).json();
    expect(native).toMatchObject({ visibility: 'private', parent: { full_name: 'ox/private-set' } });
    await expectStatusMessage(await fork('ox/private-set', bob, { namespace: 'bob' }), 404, 'resource_not_found');
  });

  it('answers 404 in the StatusMessage shape when the source is missing', async () => {
    await expectStatusMessage(await fork('ox/nope', bob, { namespace: 'bob' }), 404, 'resource_not_found', /not found/);
    await expectStatusMessage(await fork('ox/nope', bob, { namespace: 'nowhere' }), 404, 'resource_not_found');
  });

  it('answers 409 when the destination exists, for a fork onto itself, and for an archived source', async () => {
    await expectStatusMessage(await fork('ox/yolov7-repo', newUser, { namespace: 'new-user' }), 409, 'conflict', /already exists/);
    await expectStatusMessage(await fork('ox/yolov7-repo', alice, { namespace: 'ox' }), 409, 'conflict', /itself/);
    await createRepo(alice, 'ox', 'frozen', 'public');
    expect((await s.api('/api/v1/repos/ox/frozen', { method: 'PATCH', token: alice, json: { archived: true } })).status).toBe(200);
    await expectStatusMessage(await fork('ox/frozen', bob, { namespace: 'bob' }), 409, 'conflict', /archived/);
  });

  it('answers 403 for a destination the caller cannot write to or that does not exist', async () => {
    await expectStatusMessage(await fork('ox/yolov7-repo', bob, { namespace: 'ox', new_repo_name: 'x' }), 403, 'forbidden', /ox/);
    await expectStatusMessage(await fork('ox/yolov7-repo', bob, { namespace: 'new-user', new_repo_name: 'x' }), 403, 'forbidden');
    await expectStatusMessage(await fork('ox/yolov7-repo', bob, { namespace: 'nowhere' }), 403, 'forbidden', /nowhere/);
  });

  it('answers 401 without a token, 400 for a malformed body, both as StatusMessage', async () => {
    await expectStatusMessage(await fork('ox/yolov7-repo', undefined, { namespace: 'bob' }), 401, 'unauthorized');
    await expectStatusMessage(await fork('ox/yolov7-repo', bob, { new_repo_name: 'x' }), 400, 'bad_request', /namespace/);
    await expectStatusMessage(await fork('ox/yolov7-repo', bob, { namespace: 'bob', new_repo_name: 'a b' }), 400, 'bad_request', /name/);
  });
});

describe('GET /api/repos/{namespace}/{repo_name}/fork/status', () => {
  it('reports a fork as complete', async () => {
    const res = await s.api('/api/repos/new-user/yolov7-repo/fork/status', { token: newUser });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ repository: 'new-user/yolov7-repo', status: 'complete', progress: null, error: null });
  });

  it('answers 404 for a repository that is not a fork, or is missing', async () => {
    const source = await s.api('/api/repos/ox/yolov7-repo/fork/status', { token: bob });
    await expectStatusMessage(source, 404, 'resource_not_found', /not a fork/);
    await expectStatusMessage(await s.api('/api/repos/bob/missing/fork/status', { token: bob }), 404, 'resource_not_found');
  });
});

describe('GET /api/repos/{namespace}/{repo_name}', () => {
  it("answers the RepositoryDataTypesResponse liboxen deserializes (storage_kind included), tags counted as branches", async () => {
    const res = await s.api('/api/repos/ox/yolov7-repo', { token: bob });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'success',
      status_message: 'resource_found',
      oxen_version: '0.50.0',
      repository: {
        namespace: 'ox',
        name: 'yolov7-repo',
        size: pushedBytes,
        data_types: [],
        min_version: '0.36.0',
        is_empty: false,
        // liboxen's RepositoryView requires it ("Could not deserialize repository" without).
        storage_kind: 'local',
        branch_count: 2,
      },
    });
    const empty = await (await s.api('/api/repos/ox/frozen')).json();
    expect(empty.repository).toMatchObject({ is_empty: true, branch_count: 0, size: 0 });
  });

  it('answers 404 resource_not_found for a missing or invisible repository', async () => {
    await expectStatusMessage(await s.api('/api/repos/ox/nope', { token: bob }), 404, 'resource_not_found');
    await expectStatusMessage(await s.api('/api/repos/ox/private-set', { token: bob }), 404, 'resource_not_found');
    await expectStatusMessage(await s.api('/api/repos/ox/private-set'), 404, 'resource_not_found');
  });
});
