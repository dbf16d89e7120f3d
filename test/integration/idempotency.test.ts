/**
 * Idempotent replay under attack (issue 10, section 1), over real HTTP: a read is never recorded
 * nor buffered, a retry is matched on its whole body, keys belong to the full principal and the
 * route, and a replay gives back the first answer's bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordHeader } from '../../src/lib/chunk-pack.js';
import { packRecord, sha256 } from '../support/delta.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiResponse, type TestServer } from '../support/server.js';
import { tarOf, tempDir } from '../support/trees.js';

let s: TestServer;
let alice: string;
let aliceReadOnly: string;
let aliceInAcme: string;

const CHUNK_SIZE = 256 * 1024;
const key = (name: string) => ({ 'idempotency-key': name });

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  aliceReadOnly = await s.token('alice', { scopes: ['repo:read'] });
  aliceInAcme = await s.token('alice', { org: 'acme' });
});
afterAll(() => s.stop());

const createRepo = (name: string, visibility?: 'public' | 'internal' | 'private') => s.createRepo(alice, name, visibility);

/** SHA-256 and length of an answer's body, read as it streams. */
async function digestOf(res: ApiResponse): Promise<{ sha: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(piece);
    bytes += piece.length;
  }
  return { sha: hash.digest('hex'), bytes };
}

const databaseBytes = () =>
  ['snapfork.db', 'snapfork.db-wal'].map((f) => join(s.dataDir, f)).reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0);

describe('reads are never recorded', () => {
  it('streams a 1,000-digest chunks/fetch with a key, records nothing, and repeats it byte for byte', async () => {
    await createRepo('zeros');
    const data = randomBytes(CHUNK_SIZE);
    const digest = sha256(data);
    const put = await s.api(`/api/v1/repos/alice/zeros/chunks/${digest}`, {
      method: 'PUT',
      token: alice,
      body: data,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status).toBe(201);
    const entry = { path: 'z', type: 'file', mode: 0o644, size: CHUNK_SIZE, mtime: 1_700_000_000, link_target: null, chunks: [{ digest, size: CHUNK_SIZE }] };
    const commit = await s.api('/api/v1/repos/alice/zeros/commits', { method: 'POST', token: alice, json: { tag: 'main', manifest: { entries: [entry] } } });
    expect(commit.status).toBe(201);

    const digests = Array<string>(1000).fill(digest);
    const record = Buffer.concat([recordHeader(digest, CHUNK_SIZE), data]);
    const expected = createHash('sha256');
    for (let i = 0; i < digests.length; i++) expected.update(record);
    const want = { sha: expected.digest('hex'), bytes: record.length * digests.length };

    const before = databaseBytes();
    const fetchAll = () =>
      s.api('/api/v1/repos/alice/zeros/chunks/fetch', { method: 'POST', token: aliceReadOnly, json: { digests }, headers: key('fetch-1') });
    const first = await fetchAll();
    expect(first.status).toBe(200);
    expect(await digestOf(first)).toEqual(want);
    const retry = await fetchAll();
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await digestOf(retry)).toEqual(want);

    expect(s.metadataRows().idempotency_keys).toBe(0);
    expect(databaseBytes() - before).toBeLessThan(1024 * 1024);
  });
});

describe('a retry is matched on its whole body', () => {
  it('refuses a second, different tar of the same length under one key, and replays the same tar', async () => {
    await createRepo('tars');
    const tarWith = async (content: string) => {
      const dir = await tempDir();
      await writeFile(join(dir, 'a.txt'), content);
      return tarOf(dir);
    };
    const [one, two] = [await tarWith('first\n'), await tarWith('other\n')];
    expect(one.length).toBe(two.length);
    const push = (body: Buffer) =>
      s.api('/api/v1/repos/alice/tars/tags/v1/archive', {
        method: 'PUT',
        token: alice,
        body,
        headers: { 'content-type': 'application/x-tar', ...key('tar-1') },
      });

    const first = await push(one);
    expect(first.status).toBe(201);
    const firstBody = Buffer.from(await first.arrayBuffer());
    const commitId = (JSON.parse(firstBody.toString()) as { commit_id: string }).commit_id;

    const other = await push(two);
    expect(other.status).toBe(422);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(await errorBodyOf(other)).toEqual({ error: expect.stringContaining('different request'), success: false });
    const tag = await s.api('/api/v1/repos/alice/tars/tags/v1', { token: alice });
    expect((await tag.json()).commit_id).toBe(commitId);

    const same = await push(one);
    expect(same.status).toBe(201);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.from(await same.arrayBuffer())).toEqual(firstBody);
  });

  it('refuses a second, different chunk pack of the same length under one key', async () => {
    await createRepo('packs');
    const pack = () => {
      const data = randomBytes(40_000);
      return packRecord(data);
    };
    const send = (body: Buffer) =>
      s.api('/api/v1/repos/alice/packs/chunks', {
        method: 'POST',
        token: alice,
        body,
        headers: { 'content-type': 'application/octet-stream', ...key('pack-1') },
      });
    const [one, two] = [pack(), pack()];
    expect((await send(one)).status).toBe(200);
    const other = await send(two);
    expect(other.status).toBe(422);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    const same = await send(one);
    expect(same.headers.get('idempotent-replayed')).toBe('true');
  });

  it('refuses a second, different GitLab form body of the same length under one key', async () => {
    const { id } = await createRepo('forms', 'public');
    const bob = await s.token('bob');
    const fork = (path: string) =>
      s.api(`/api/v4/projects/${id}/fork`, {
        method: 'POST',
        body: `path=${path}`,
        headers: { 'private-token': bob, 'content-type': 'application/x-www-form-urlencoded', ...key('form-1') },
      });
    expect((await fork('aa')).status).toBe(201);
    const other = await fork('bb');
    expect(other.status).toBe(422);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(await s.api('/api/v1/repos/bob/bb', { token: bob }).then((r) => r.status)).toBe(404);
  });

  it('does not record an answer given before the body was read, so a corrected retry acts', async () => {
    await createRepo('chunks');
    const data = randomBytes(40_000);
    const digest = sha256(data);
    const put = (body: Buffer) =>
      s.api(`/api/v1/repos/alice/chunks/chunks/${digest}`, {
        method: 'PUT',
        token: alice,
        body,
        headers: { 'content-type': 'application/octet-stream', ...key('chunk-1') },
      });
    // Refused from its Content-Length alone: the body is never read.
    expect((await put(Buffer.alloc(CHUNK_SIZE + 1))).status).toBe(413);
    const corrected = await put(data);
    expect(corrected.status).toBe(201);
    expect(corrected.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('a key belongs to the full principal and the route', () => {
  it('does not replay a personal token\'s write to an org-scoped or a read-only token of the same login', async () => {
    const create = (token: string, path = '/api/v1/user/repos') =>
      s.api(path, { method: 'POST', token, json: { name: 'scoped', visibility: 'private' }, headers: key('scope-1') });
    expect((await create(alice)).status).toBe(201);

    const inOrg = await create(aliceInAcme);
    expect(inOrg.headers.get('idempotent-replayed')).toBeNull();
    expect(inOrg.status).toBe(409);

    const readOnly = await create(aliceReadOnly);
    expect(readOnly.headers.get('idempotent-replayed')).toBeNull();
    expect(readOnly.status).toBe(403);

    // The same key and body on another route is another request: it acts.
    const inAcme = await create(alice, '/api/v1/orgs/acme/repos');
    expect(inAcme.status).toBe(201);
    expect(inAcme.headers.get('idempotent-replayed')).toBeNull();

    const retried = await create(alice);
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
  });
});

describe('a replay is the first answer, byte for byte', () => {
  it('replays a JSON answer holding multi-byte UTF-8 with the same bytes and content type', async () => {
    const create = () =>
      s.api('/api/v1/user/repos', {
        method: 'POST',
        token: alice,
        json: { name: 'unicode', visibility: 'private', description: 'données ✓ 🚀 \u00ff' },
        headers: key('bytes-1'),
      });
    const first = await create();
    expect(first.status).toBe(201);
    const again = await create();
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(Buffer.from(await again.arrayBuffer())).toEqual(Buffer.from(await first.arrayBuffer()));
  });
});
