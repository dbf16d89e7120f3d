import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressBlock } from '../../src/lib/zstd.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type ApiResponse, type TestServer } from '../support/server.js';
import { describeTree, makeSampleTree, tarOf, tempDir, untar } from '../support/trees.js';

let s: TestServer;
let alice: string;
let bob: string;
let sampleDir: string;
let sampleTar: Buffer;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  bob = await s.token('bob');
  sampleDir = await makeSampleTree();
  sampleTar = await tarOf(sampleDir);
});
afterAll(() => s.stop());

async function createRepo(token: string, name: string, visibility = 'public', owner?: string) {
  const res = await s.api(owner ? `/api/v1/orgs/${owner}/repos` : '/api/v1/user/repos', {
    method: 'POST',
    token,
    json: { name, visibility },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { name: string };
}

async function push(token: string, fullName: string, tag: string, body: Buffer, headers: Record<string, string> = {}) {
  return s.api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, {
    method: 'PUT',
    token,
    body,
    headers: { 'content-type': 'application/x-tar', ...headers },
  });
}

async function pullInto(token: string | undefined, fullName: string, tag: string): Promise<string> {
  const res = await s.api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, { token });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/x-tar');
  const dir = await tempDir();
  await untar(Buffer.from(await res.arrayBuffer()), dir);
  return dir;
}

describe('push, fork, pull', () => {
  it('round-trips a tree byte for byte through a push, a fork and a pull', async () => {
    await createRepo(alice, 'dataset');
    const pushed = await push(alice, 'alice/dataset', 'v1', sampleTar);
    expect(pushed.status).toBe(201);
    const result = (await pushed.json()) as { commit_id: string; bytes: number; new_bytes: number };
    expect(result).toMatchObject({ repo_name: 'dataset', tag_name: 'v1', reference: 'dataset:v1', files: 6 });
    const sizes = await Promise.all(['hello.txt', 'empty', 'nested/deeper/random.bin', 'nested/données é.txt', 'with spaces.txt', 'run.sh'].map(async (f) => (await stat(join(sampleDir, f))).size));
    expect(result.bytes).toBe(sizes.reduce((a, b) => a + b, 0));
    expect(result.new_bytes).toBe(result.bytes);

    const fork = await s.api('/api/v1/repositories/fork', {
      method: 'POST',
      token: bob,
      json: { source_org: 'alice', source_repo: 'dataset', source_tag: 'v1' },
    });
    expect(fork.status).toBe(201);
    const forked = (await fork.json()) as { commit_id: string };
    expect(Object.keys(forked).sort()).toEqual(['commit_id', 'reference', 'repo_name', 'tag_name', 'vm_id']);
    expect(forked).toMatchObject({ repo_name: 'dataset', tag_name: 'v1', reference: 'dataset:v1' });
    expect(forked.commit_id).not.toBe(result.commit_id);

    const expected = await describeTree(sampleDir);
    expect(await describeTree(await pullInto(alice, 'alice/dataset', 'v1'))).toEqual(expected);
    expect(await describeTree(await pullInto(bob, 'bob/dataset', 'v1'))).toEqual(expected);

    const repo = await (await s.api('/api/v1/repos/bob/dataset', { token: bob })).json();
    expect(repo).toMatchObject({ fork: true, parent: { full_name: 'alice/dataset' }, forked_from_commit_id: result.commit_id, visibility: 'private' });
    const commit = await (await s.api(`/api/v1/repos/bob/dataset/commits/${forked.commit_id}`, { token: bob })).json();
    expect(commit.parent_ids).toEqual([result.commit_id]);
  });

  it('a second push of the same bytes stores nothing new, and moving a tag chains the commits', async () => {
    await createRepo(alice, 'again');
    const first = await (await push(alice, 'alice/again', 'latest', sampleTar)).json();
    const second = await (await push(alice, 'alice/again', 'latest', sampleTar)).json();
    expect(second.new_bytes).toBe(0);
    const history = await (await s.api('/api/v1/repos/alice/again/commits?tag=latest', { token: alice })).json();
    expect(history.map((c: { id: string }) => c.id)).toEqual([second.commit_id, first.commit_id]);
    expect(history[0].parent_ids).toEqual([first.commit_id]);
  });

  it('accepts gzip- and zstd-encoded pushes and serves zstd on request', async () => {
    await createRepo(alice, 'encoded');
    const gz = await push(alice, 'alice/encoded', 'gz', gzipSync(sampleTar), { 'content-encoding': 'gzip' });
    expect(gz.status).toBe(201);
    const zs = await push(alice, 'alice/encoded', 'zs', compressBlock(sampleTar.subarray(0, 512 * 3)), { 'content-encoding': 'zstd' });
    expect([201, 400]).toContain(zs.status);
    const res = await s.api('/api/v1/repos/alice/encoded/tags/gz/archive', { token: alice, headers: { accept: 'application/zstd' } });
    expect(res.headers.get('content-type')).toContain('application/zstd');
    const { createZstdDecompressStream } = await import('../../src/lib/zstd.js');
    const dir = await tempDir();
    await untar(Readable.from([Buffer.from(await res.arrayBuffer())]).pipe(createZstdDecompressStream()), dir);
    expect(await describeTree(dir)).toEqual(await describeTree(sampleDir));
  });

  it('serves single files with ranges and ETags, and lists trees', async () => {
    await createRepo(alice, 'files');
    await push(alice, 'alice/files', 'v1', sampleTar);
    const base = '/api/v1/repos/alice/files/tags/v1';
    const whole = await s.api(`${base}/files/nested/deeper/random.bin`, { token: alice });
    expect(whole.status).toBe(200);
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(bytes.equals(await readFile(join(sampleDir, 'nested/deeper/random.bin')))).toBe(true);
    const etag = whole.headers.get('etag')!;
    expect(etag).toMatch(/^"sha256-[0-9a-f]{64}"$/);

    const part = await s.api(`${base}/files/nested/deeper/random.bin`, { token: alice, headers: { range: 'bytes=100000-1200000' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100000-1200000/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(100000, 1200001))).toBe(true);
    const tail = await s.api(`${base}/files/nested/deeper/random.bin`, { token: alice, headers: { range: 'bytes=-10' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(bytes.length - 10))).toBe(true);
    const beyond = await s.api(`${base}/files/hello.txt`, { token: alice, headers: { range: 'bytes=999-' } });
    expect(beyond.status).toBe(416);
    expect(await beyond.json()).toMatchObject({ success: false });
    expect((await s.api(`${base}/files/hello.txt`, { token: alice, headers: { 'if-none-match': etag } })).status).toBe(200);
    const unicode = await s.api(`${base}/files/${encodeURIComponent('nested')}/${encodeURIComponent('données é.txt')}`, { token: alice });
    expect(await unicode.text()).toBe('unicode ✓\n');
    const empty = await s.api(`${base}/files/empty`, { token: alice });
    expect(empty.status).toBe(200);
    expect((await empty.arrayBuffer()).byteLength).toBe(0);

    const root = await (await s.api(`${base}/tree`, { token: alice })).json();
    expect(root.map((e: { name: string }) => e.name).sort()).toEqual(
      ['empty', 'empty-dir', 'hello.txt', 'link-to-random', 'nested', 'run.sh', 'with spaces.txt'].sort(),
    );
    const nested = await (await s.api(`${base}/tree?path=nested`, { token: alice })).json();
    expect(nested.find((e: { name: string }) => e.name === 'deeper').type).toBe('dir');
    expect((await s.api(`${base}/tree?path=nope`, { token: alice })).status).toBe(404);
  });

  it('a cut-off or malformed push leaves no commit and no tag', async () => {
    await createRepo(alice, 'atomic');
    const truncated = await push(alice, 'alice/atomic', 'v1', sampleTar.subarray(0, 1024 * 1024));
    expect(truncated.status).toBe(400);
    const garbage = await push(alice, 'alice/atomic', 'v1', Buffer.from('this is not a tar archive at all, not even close'.repeat(20)));
    expect(garbage.status).toBe(400);
    expect(await garbage.json()).toMatchObject({ success: false });
    const tags = await (await s.api('/api/v1/repos/alice/atomic/tags', { token: alice })).json();
    expect(tags).toEqual([]);
  });
});

describe('errors', () => {
  it('answers each error kind with its status and the {error, success:false} envelope', async () => {
    await createRepo(alice, 'errs');
    const cases: [Promise<ApiResponse>, number][] = [
      [s.api('/api/v1/repositories/fork', { method: 'POST', token: alice, body: '{"source_org":', headers: { 'content-type': 'application/json' } }), 400],
      [s.api('/api/v1/repositories/fork', { method: 'POST', token: alice, json: { source_org: 'alice' } }), 400],
      [s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'bad/name' } }), 400],
      [s.api('/api/v1/repositories/fork', { method: 'POST', json: { source_org: 'alice', source_repo: 'errs', source_tag: 'v1' } }), 401],
      [s.api('/api/v1/user', {}), 401],
      [s.api('/api/v1/repos/alice/errs', { method: 'DELETE', token: bob }), 403],
      [s.api('/api/v1/repos/alice/nope', { token: alice }), 404],
      [s.api('/api/v1/repos/alice/errs/tags/nope', { token: alice }), 404],
      [s.api('/api/v1/no/such/route', { token: alice }), 404],
      [s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: 'errs' } }), 409],
      [s.api('/api/v1/repos/alice/errs', { method: 'PATCH', token: alice, json: { default_tag: 'missing' } }), 422],
      [push(alice, 'alice/errs', 'v1', sampleTar, { 'content-type': 'application/octet-stream' }), 415],
    ];
    for (const [pending, status] of cases) {
      const res = await pending;
      const body = await res.json();
      expect({ status: res.status, body }).toMatchObject({ status, body: { success: false, error: expect.any(String) } });
    }
  });

  it('answers 413 past the push limit', async () => {
    const small = await startTestServer({ SNAPFORK_MAX_PUSH_BYTES: '1000000' });
    try {
      const token = await small.token('carol');
      await small.api('/api/v1/user/repos', { method: 'POST', token, json: { name: 'big' } });
      const res = await small.api('/api/v1/repos/carol/big/tags/v1/archive', {
        method: 'PUT', token, body: sampleTar, headers: { 'content-type': 'application/x-tar' },
      });
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ success: false });
    } finally {
      await small.stop();
    }
  });

  it('fork: 404 for a missing repository or tag, 409 when the target exists', async () => {
    await createRepo(alice, 'forkme');
    await push(alice, 'alice/forkme', 'v1', sampleTar);
    const fork = (json: object, token = bob) => s.api('/api/v1/repositories/fork', { method: 'POST', token, json });
    expect((await fork({ source_org: 'alice', source_repo: 'missing', source_tag: 'v1' })).status).toBe(404);
    expect((await fork({ source_org: 'alice', source_repo: 'forkme', source_tag: 'v9' })).status).toBe(404);
    expect((await fork({ source_org: 'ghost', source_repo: 'forkme', source_tag: 'v1' })).status).toBe(404);
    expect((await fork({ source_org: 'alice', source_repo: 'forkme', source_tag: 'v1', repo_name: 'mine', tag_name: 'base' })).status).toBe(201);
    const again = await fork({ source_org: 'alice', source_repo: 'forkme', source_tag: 'v1', repo_name: 'mine' });
    expect(again.status).toBe(409);
    expect(await errorBodyOf(again)).toEqual({ error: expect.stringContaining('already exists'), success: false, details: { taken: ['name', 'displayName'] } });
    const self = await fork({ source_org: 'alice', source_repo: 'forkme', source_tag: 'v1' }, alice);
    expect(self.status).toBe(409);
  });

  it('hides private repositories from everyone who cannot read them', async () => {
    await createRepo(alice, 'secret', 'private');
    await push(alice, 'alice/secret', 'v1', sampleTar);
    for (const token of [bob, undefined]) {
      expect((await s.api('/api/v1/repos/alice/secret', { token })).status).toBe(404);
      expect((await s.api('/api/v1/repos/alice/secret/tags/v1/archive', { token })).status).toBe(404);
      const listed = await (await s.api('/api/v1/users/alice/repos?per_page=100', { token })).json();
      expect(listed.map((r: { name: string }) => r.name)).not.toContain('secret');
    }
    const fork = await s.api('/api/v1/repositories/fork', {
      method: 'POST', token: bob, json: { source_org: 'alice', source_repo: 'secret', source_tag: 'v1' },
    });
    expect(fork.status).toBe(404);
    expect((await s.api('/api/v1/repos/alice/secret', { token: alice })).status).toBe(200);
  });

  it('lets organization members push and keeps non-members out', async () => {
    const orgToken = await s.token('dora', { org: 'labs' });
    await createRepo(orgToken, 'shared', 'private', 'labs');
    expect((await s.api('/api/v1/orgs/labs/members/bob', { method: 'PUT', token: orgToken, json: { role: 'member' } })).status).toBe(200);
    expect((await push(bob, 'labs/shared', 'v1', sampleTar)).status).toBe(201);
    const eve = await s.token('eve');
    expect((await push(eve, 'labs/shared', 'v1', sampleTar)).status).toBe(404);
    const evePublic = await createRepo(alice, 'open', 'public');
    expect(evePublic.name).toBe('open');
    expect((await push(eve, 'alice/open', 'v1', sampleTar)).status).toBe(403);
    // The Vers fork lands in the organization named by the token.
    await push(alice, 'alice/open', 'v1', sampleTar);
    const fork = await s.api('/api/v1/repositories/fork', {
      method: 'POST', token: orgToken, json: { source_org: 'alice', source_repo: 'open', source_tag: 'v1' },
    });
    expect(fork.status).toBe(201);
    expect((await s.api('/api/v1/repos/labs/open', { token: orgToken })).status).toBe(200);
  });
});

describe('tokens', () => {
  it('enforces scopes: a read-only token cannot push', async () => {
    const reader = await s.token('alice', { scopes: ['repo:read'] });
    await createRepo(alice, 'scoped');
    const res = await push(reader, 'alice/scoped', 'v1', sampleTar);
    expect(res.status).toBe(403);
  });
});
