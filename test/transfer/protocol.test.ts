/**
 * The delta wire protocol against a real server: statuses of every route, the pack framing, the
 * manifest commit's checks, and the tenant check (no dedup oracle across tenants).
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readChunkRecords, recordHeader } from '../../src/lib/chunk-pack.js';
import { compressBlock, decompressBlock } from '../../src/lib/zstd.js';
import { fileEntry, packRecord, sha256 } from '../support/delta.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let alice: string;
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  bob = await s.token('bob');
});
afterAll(() => s.stop());

const chunk = (size = 40_000) => {
  const data = randomBytes(size);
  return { data, digest: sha256(data), size };
};
type Chunk = ReturnType<typeof chunk>;
const pack = (chunks: Chunk[]) => Buffer.concat(chunks.map((c) => packRecord(c.data)));
const createRepo = (token: string, name: string, visibility?: 'public' | 'internal' | 'private') => s.createRepo(token, name, visibility);
const missing = (token: string, repo: string, digests: string[]) =>
  s.api(`/api/v1/repos/${repo}/chunks/missing`, { method: 'POST', token, json: { digests } });
const putChunk = (token: string, repo: string, digest: string, body: Buffer, headers: Record<string, string> = {}) =>
  s.api(`/api/v1/repos/${repo}/chunks/${digest}`, {
    method: 'PUT',
    token,
    body,
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
const putPack = (token: string, repo: string, body: Buffer) =>
  s.api(`/api/v1/repos/${repo}/chunks`, { method: 'POST', token, body, headers: { 'content-type': 'application/octet-stream' } });
const commit = (token: string, repo: string, body: Record<string, unknown>) =>
  s.api(`/api/v1/repos/${repo}/commits`, { method: 'POST', token, json: body });
const fetchChunks = (token: string | undefined, repo: string, digests: string[]) =>
  s.api(`/api/v1/repos/${repo}/chunks/fetch`, { method: 'POST', token, json: { digests } });
const getChunk = (token: string, repo: string, digest: string, accept = 'application/octet-stream') =>
  s.api(`/api/v1/repos/${repo}/chunks/${digest}`, { token, headers: { accept } });

describe('wire protocol', () => {
  it('answers missing, stores chunks one by one (201 new, 200 again, 422, 413) and in packs', async () => {
    await createRepo(alice, 'wire');
    const [one, two, three, four] = [chunk(), chunk(), chunk(), chunk(100)];
    const asked = await missing(alice, 'alice/wire', [one.digest, two.digest, one.digest]);
    expect(asked.status).toBe(200);
    expect(await asked.json()).toEqual({ missing: [one.digest, two.digest] });

    const first = await putChunk(alice, 'alice/wire', one.digest, one.data);
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ digest: one.digest, size: one.size, created: true });
    expect((await putChunk(alice, 'alice/wire', one.digest, one.data)).status).toBe(200);
    const wrong = await putChunk(alice, 'alice/wire', two.digest, one.data);
    expect(wrong.status).toBe(422);
    expect(await wrong.json()).toMatchObject({ success: false });
    const big = Buffer.alloc(256 * 1024 + 1);
    expect((await putChunk(alice, 'alice/wire', sha256(big), big)).status).toBe(413);
    const zstd = await putChunk(alice, 'alice/wire', four.digest, compressBlock(four.data), { 'content-encoding': 'zstd' });
    expect(zstd.status).toBe(201);
    expect((await missing(alice, 'alice/wire', [one.digest, two.digest]).then((r) => r.json())).missing).toEqual([two.digest]);

    const packed = await putPack(alice, 'alice/wire', pack([two, three, two]));
    expect(packed.status).toBe(200);
    expect(await packed.json()).toEqual({ stored: 3, created: 2, bytes: 3 * 40_000 });
    expect((await missing(alice, 'alice/wire', [two.digest, three.digest]).then((r) => r.json())).missing).toEqual([]);

    const five = chunk();
    const lying = pack([five]);
    lying.writeUInt8(lying.readUInt8(4) ^ 1, 4); // the digest no longer matches the bytes
    expect((await putPack(alice, 'alice/wire', lying)).status).toBe(422);
    const oversized = recordHeader(five.digest, 256 * 1024 + 1);
    expect((await putPack(alice, 'alice/wire', oversized)).status).toBe(413);
    expect((await putPack(alice, 'alice/wire', pack([five]).subarray(0, 1000))).status).toBe(400);
    expect((await missing(alice, 'alice/wire', [five.digest]).then((r) => r.json())).missing).toEqual([five.digest]);

    const tooMany = Array.from({ length: 10_001 }, (_, i) => i.toString(16).padStart(64, '0'));
    expect((await missing(alice, 'alice/wire', tooMany)).status).toBe(413);
    expect((await missing(alice, 'alice/wire', ['XYZ'])).status).toBe(400);
    expect((await missing(bob, 'alice/wire', [one.digest])).status).toBe(404);
  });

  it('commits a manifest (201), refuses a moved parent (409) and bad manifests (422), serves manifest and chunks', async () => {
    await createRepo(alice, 'commits');
    const [a, b, unsent] = [chunk(), chunk(20_000), chunk()];
    expect((await putPack(alice, 'alice/commits', pack([a, b]))).status).toBe(200);
    const entries = [
      fileEntry('data/train.bin', [a, b]),
      { path: 'data', type: 'dir', mode: 0o755, size: 0, mtime: 1_700_000_000, link_target: null, chunks: [] },
      { path: 'latest', type: 'symlink', mode: 0o777, size: 0, mtime: 1_700_000_000, link_target: 'data/train.bin', chunks: [] },
      fileEntry('empty', []),
    ];
    const created = await commit(alice, 'alice/commits', { tag: 'v1', parent: null, message: 'first', manifest: { entries } });
    expect(created.status).toBe(201);
    const v1 = await created.json();
    expect(v1).toMatchObject({ repo_name: 'commits', tag_name: 'v1', reference: 'commits:v1', files: 2, bytes: 60_000, new_bytes: 60_000 });

    expect((await commit(alice, 'alice/commits', { tag: 'v1', parent: null, manifest: { entries } })).status).toBe(409);
    const moved = await commit(alice, 'alice/commits', { tag: 'v1', parent: v1.commit_id, manifest: { entries: entries.slice(0, 2) } });
    expect(moved.status).toBe(201);
    const v2 = await moved.json();
    expect(v2).toMatchObject({ files: 1, new_bytes: 0 });
    expect((await commit(alice, 'alice/commits', { tag: 'v1', parent: v1.commit_id, manifest: { entries } })).status).toBe(409);
    const tag = await (await s.api('/api/v1/repos/alice/commits/tags/v1', { token: alice })).json();
    expect(tag.commit_id).toBe(v2.commit_id);

    const withUnsent = await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: [fileEntry('x', [a, unsent])] } });
    expect(withUnsent.status).toBe(422);
    expect((await withUnsent.json()).details).toEqual({ missing: [unsent.digest] });
    const badSize = { ...fileEntry('x', [a]), size: 1 };
    expect((await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: [badSize] } })).status).toBe(422);
    const liedSize = fileEntry('x', [{ ...a, size: a.size + 1 }]);
    expect((await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: [liedSize] } })).status).toBe(422);
    const twice = [fileEntry('x', [a]), fileEntry('./x', [b])];
    expect((await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: twice } })).status).toBe(422);
    const escaping = [fileEntry('../x', [a])];
    expect((await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: escaping } })).status).toBe(400);
    const belowLink = [entries[2]!, fileEntry('latest/x', [a])];
    expect((await commit(alice, 'alice/commits', { tag: 'v3', manifest: { entries: belowLink } })).status).toBe(422);
    expect((await s.api('/api/v1/repos/alice/commits/tags/v3', { token: alice })).status).toBe(404);

    const manifest = await s.api(`/api/v1/repos/alice/commits/commits/${v1.commit_id}/manifest`, { token: alice });
    expect(manifest.status).toBe(200);
    const body = await manifest.json();
    expect(body.commit_id).toBe(v1.commit_id);
    expect(body.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(body.entries.map((e: { path: string }) => e.path)).toEqual(['data', 'data/train.bin', 'empty', 'latest']);
    expect(body.entries[1]).toEqual(entries[0]);

    const raw = await getChunk(alice, 'alice/commits', a.digest);
    expect(raw.status).toBe(200);
    expect(Buffer.from(await raw.arrayBuffer()).equals(a.data)).toBe(true);
    const zstd = await getChunk(alice, 'alice/commits', b.digest, 'application/zstd');
    expect(zstd.headers.get('content-type')).toContain('application/zstd');
    expect(decompressBlock(Buffer.from(await zstd.arrayBuffer()), b.size).equals(b.data)).toBe(true);
    // Uploaded but referenced by no commit: not readable through the repository.
    expect((await putChunk(alice, 'alice/commits', unsent.digest, unsent.data)).status).toBe(201);
    expect((await getChunk(alice, 'alice/commits', unsent.digest)).status).toBe(404);
  });

  it('commits a manifest read back unchanged under another tag (same digest), and refuses a digest that does not match', async () => {
    await createRepo(alice, 'roundtrip');
    const [a, b] = [chunk(), chunk(30_000)];
    expect((await putPack(alice, 'alice/roundtrip', pack([a, b]))).status).toBe(200);
    const entries = [fileEntry('weights/b.bin', [b]), fileEntry('a.bin', [a])];
    const v1 = await (await commit(alice, 'alice/roundtrip', { tag: 'v1', manifest: { entries } })).json();
    const read = await (await s.api(`/api/v1/repos/alice/roundtrip/commits/${v1.commit_id}/manifest`, { token: alice })).json();
    expect(Object.keys(read).sort()).toEqual(['commit_id', 'digest', 'entries']);

    const copied = await commit(alice, 'alice/roundtrip', { tag: 'copy', manifest: read });
    expect(copied.status).toBe(201);
    const copy = await copied.json();
    expect(copy.commit_id).not.toBe(v1.commit_id);
    const commitOf = async (id: string) => (await s.api(`/api/v1/repos/alice/roundtrip/commits/${id}`, { token: alice })).json();
    expect((await commitOf(copy.commit_id)).manifest_digest).toBe(read.digest);
    expect((await commitOf(v1.commit_id)).manifest_digest).toBe(read.digest);

    const wrongDigest = await commit(alice, 'alice/roundtrip', { tag: 'wrong', manifest: { ...read, digest: 'f'.repeat(64) } });
    expect(wrongDigest.status).toBe(422);
    expect((await wrongDigest.json()).error).toContain(read.digest);
    // The digest is over the entries: the same digest with one entry left out does not match.
    const fewer = await commit(alice, 'alice/roundtrip', { tag: 'wrong', manifest: { ...read, entries: read.entries.slice(1) } });
    expect(fewer.status).toBe(422);
    expect((await s.api('/api/v1/repos/alice/roundtrip/tags/wrong', { token: alice })).status).toBe(404);
  });
});

describe('batch read (chunks/fetch)', () => {
  it('streams the requested records in order, duplicates included, and refuses unreachable, too many and malformed digests', async () => {
    await createRepo(alice, 'batch');
    const [a, b, c] = [chunk(), chunk(1), chunk(200_000)];
    expect((await putPack(alice, 'alice/batch', pack([a, b, c]))).status).toBe(200);
    expect((await commit(alice, 'alice/batch', { tag: 'v1', manifest: { entries: [fileEntry('f', [a, c, b])] } })).status).toBe(201);

    const asked = [c, a, c, b];
    const res = await fetchChunks(alice, 'alice/batch', asked.map((x) => x.digest));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/octet-stream');
    const body = Buffer.from(await res.arrayBuffer());
    const records = [];
    for await (const r of readChunkRecords(Readable.from([body]), { maxChunkSize: 256 * 1024 })) records.push(r);
    expect(records.map((r) => r.digest)).toEqual(asked.map((x) => x.digest));
    records.forEach((r, i) => expect(r.data.equals(asked[i]!.data)).toBe(true));
    expect(body.length).toBe(asked.reduce((n, x) => n + 36 + x.size, 0));

    // Bob's private chunk is stored, but alice/batch does not reference it: the whole call is a
    // 404 naming it, before any byte of the chunks alice may read.
    await createRepo(bob, 'batch');
    const bobs = chunk();
    expect((await putPack(bob, 'bob/batch', pack([bobs]))).status).toBe(200);
    expect((await commit(bob, 'bob/batch', { tag: 'v1', manifest: { entries: [fileEntry('g', [bobs])] } })).status).toBe(201);
    const refused = await fetchChunks(alice, 'alice/batch', [a.digest, bobs.digest]);
    expect(refused.status).toBe(404);
    expect((await refused.json()).error).toContain(bobs.digest);
    // Uploaded to the repository but named by no commit: not readable through it either.
    const unsent = chunk();
    expect((await putPack(alice, 'alice/batch', pack([unsent]))).status).toBe(200);
    expect((await fetchChunks(alice, 'alice/batch', [unsent.digest])).status).toBe(404);
    expect((await fetchChunks(bob, 'alice/batch', [a.digest])).status).toBe(404);
    expect((await fetchChunks(undefined, 'alice/batch', [a.digest])).status).toBe(404);

    const tooMany = Array.from({ length: 10_001 }, () => a.digest);
    expect((await fetchChunks(alice, 'alice/batch', tooMany)).status).toBe(413);
    expect((await fetchChunks(alice, 'alice/batch', ['XYZ'])).status).toBe(400);
    expect((await fetchChunks(alice, 'alice/batch', [a.digest.toUpperCase()])).status).toBe(400);
  });
});

describe('no dedup oracle across tenants', () => {
  it("tells bob nothing about alice's private chunk until he sends its bytes", async () => {
    await createRepo(alice, 'secret');
    const secret = chunk();
    expect((await putPack(alice, 'alice/secret', pack([secret]))).status).toBe(200);
    expect((await commit(alice, 'alice/secret', { tag: 'v1', manifest: { entries: [fileEntry('key.bin', [secret])] } })).status).toBe(201);
    const chunksBefore = s.chunkCount();

    await createRepo(bob, 'guess');
    // Bob guessed the digest: the server answers exactly as for a digest nobody stored.
    const nobody = chunk().digest;
    expect(await (await missing(bob, 'bob/guess', [secret.digest, nobody])).json()).toEqual({ missing: [secret.digest, nobody] });
    const named = await commit(bob, 'bob/guess', { tag: 'v1', manifest: { entries: [fileEntry('key.bin', [secret])] } });
    expect(named.status).toBe(422);
    expect((await named.json()).details).toEqual({ missing: [secret.digest] });
    expect((await getChunk(bob, 'bob/guess', secret.digest)).status).toBe(404);
    expect((await getChunk(bob, 'alice/secret', secret.digest)).status).toBe(404);

    // Sending the bytes proves he has them; the store keeps one copy, and bob hears "created".
    const sent = await putChunk(bob, 'bob/guess', secret.digest, secret.data);
    expect(sent.status).toBe(201);
    expect(s.chunkCount()).toBe(chunksBefore);
    expect(await (await missing(bob, 'bob/guess', [secret.digest])).json()).toEqual({ missing: [] });
    const committed = await commit(bob, 'bob/guess', { tag: 'v1', manifest: { entries: [fileEntry('key.bin', [secret])] } });
    expect(committed.status).toBe(201);
    expect((await committed.json()).new_bytes).toBe(secret.size);
    expect((await getChunk(bob, 'bob/guess', secret.digest)).status).toBe(200);
  });

  it("reports a tar push's new bytes from the caller's view only", async () => {
    const { generatedTar } = await import('../support/generated.js');
    await createRepo(alice, 'image');
    await createRepo(bob, 'image');
    const push = (token: string, repo: string) =>
      s.api(`/api/v1/repos/${repo}/tags/v1/archive`, {
        method: 'PUT',
        token,
        body: generatedTar('disk.img', 300_000, 42),
        headers: { 'content-type': 'application/x-tar' },
      });
    expect((await (await push(alice, 'alice/image')).json()).new_bytes).toBe(300_000);
    expect((await (await push(bob, 'bob/image')).json()).new_bytes).toBe(300_000);
    expect((await (await push(bob, 'bob/image')).json()).new_bytes).toBe(0);
  });
});
