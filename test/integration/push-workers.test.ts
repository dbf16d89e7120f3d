/**
 * Pushes cut, hashed and compressed on worker threads (issue 15), over real HTTP: the bytes come
 * back identical and deduplicated, through the tar push and the delta push; the tar push cuts
 * where the CLI does (chunkBuffer) in a job a segment; a worker that dies fails
 * the push it served with the endpoint's error envelope, stores nothing of it, and the server
 * goes on; stopping the server ends the pool's threads.
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Chunker, chunkBuffer } from '../../src/domain/chunker.js';
import { recordHeader } from '../../src/lib/chunk-pack.js';
import { ChunkCodecPool } from '../../src/lib/chunk-codec-pool.js';
import { sha256 } from '../../src/lib/sha256.js';
import { generatedBytes } from '../support/generated.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries } from '../support/trees.js';

/** ~3 MiB of keystream (dozens of chunks), a compressible table, and files under a chunk. */
async function sampleFiles(seed: number): Promise<Record<string, Buffer>> {
  const parts: Buffer[] = [];
  for await (const piece of generatedBytes(3 * 1024 * 1024 + 12_345, seed)) parts.push(piece);
  return {
    'blobs/big.bin': Buffer.concat(parts),
    'tables/t.csv': Buffer.from(Array.from({ length: 40_000 }, (_, i) => `${i},label-${i % 7},${(i * 31) % 1000}\n`).join('')),
    'small/a.txt': Buffer.from(`a file of its own ${seed}\n`),
    'small/empty': Buffer.alloc(0),
  };
}

const tarOfFiles = (files: Record<string, Buffer>) => tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body })));

/** Threads of this process (Linux): worker threads included. */
const threads = () => readdirSync('/proc/self/task').length;

describe('pushes on the worker pool', () => {
  let s: TestServer;
  let token: string;
  const pool = new ChunkCodecPool(2);

  beforeAll(async () => {
    s = await startTestServer({}, { chunkCodec: pool });
    token = await s.token('alice');
  });
  afterAll(() => s.stop());

  const pushTar = (repo: string, tag: string, body: Buffer) =>
    s.api(`/api/v1/repos/alice/${repo}/tags/${tag}/archive`, { method: 'PUT', token, body, headers: { 'content-type': 'application/x-tar' } });
  const readBack = async (repo: string, tag: string, path: string) => {
    const res = await s.api(`/api/v1/repos/alice/${repo}/tags/${tag}/files/${path}`, { token });
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  };

  it('stores a tar push whose files read back identical, and deduplicates a second push of the same bytes', async () => {
    await s.createRepo(token, 'first');
    await s.createRepo(token, 'again');
    const files = await sampleFiles(1);
    const pushed = await pushTar('first', 'v1', tarOfFiles(files));
    expect(pushed.status).toBe(201);
    expect(await pushed.json()).toMatchObject({ files: 4, new_bytes: files['blobs/big.bin']!.length + files['tables/t.csv']!.length + files['small/a.txt']!.length });
    expect(pool.workers, 'the pool did the hashing and compressing').toBeGreaterThan(0);
    for (const [path, body] of Object.entries(files)) expect((await readBack('first', 'v1', path)).equals(body), path).toBe(true);
    const chunks = s.chunkCount();

    const again = await pushTar('again', 'v1', tarOfFiles(files));
    expect(again.status).toBe(201);
    expect(s.chunkCount()).toBe(chunks);
    expect((await readBack('again', 'v1', 'blobs/big.bin')).equals(files['blobs/big.bin']!)).toBe(true);
  });

  it('cuts a pushed file on the workers where the CLI cuts it: a delta push of chunkBuffer\'s chunks stores nothing new', async () => {
    await s.createRepo(token, 'cuts');
    await s.createRepo(token, 'cli');
    // Several segments: random bytes, a run of zeros and constant bytes across segment boundaries.
    const random = (await sampleFiles(5))['blobs/big.bin']!;
    const image = Buffer.concat([random, Buffer.alloc(3 * 1024 * 1024), random.subarray(0, 500_000), Buffer.alloc(2 * 1024 * 1024 + 7, 0x5a), random.subarray(17)]);
    const counted = { cut: 0, encode: 0 };
    const cut = pool.cut.bind(pool);
    const encode = pool.encode.bind(pool);
    pool.cut = (...args) => (counted.cut++, cut(...args));
    pool.encode = (...args) => (counted.encode++, encode(...args));
    try {
      expect((await pushTar('cuts', 'v1', tarOfFiles({ 'disk.img': image }))).status).toBe(201);
    } finally {
      pool.cut = cut;
      pool.encode = encode;
    }
    const chunks = chunkBuffer(image);
    const segmentSize = 2 * 1024 * 1024;
    const segments = Array.from({ length: Math.ceil(image.length / segmentSize) }, (_, i) => image.subarray(i * segmentSize, (i + 1) * segmentSize));
    const zeros = segments.filter((segment) => !segment.some((byte) => byte !== 0));
    expect(zeros, 'a segment of zeros').toHaveLength(1);
    expect(counted.cut, 'one job a 2 MiB segment, but for those of zeros (cut on this thread)').toBe(segments.length - zeros.length);
    expect(counted.encode, 'a few chunks stitched between segments (the constant bytes all)').toBeLessThan(chunks.length / 2);
    const records = chunks.map((data) => ({ digest: sha256(data), data }));
    const body = Buffer.concat(records.flatMap(({ digest, data }) => [recordHeader(digest, data.length), data]));
    const sent = await s.api('/api/v1/repos/alice/cli/chunks', { method: 'POST', token, body, headers: { 'content-type': 'application/octet-stream' } });
    expect(sent.status).toBe(200);
    expect(await sent.json()).toMatchObject({ stored: chunks.length, created: 0 });
    expect((await readBack('cuts', 'v1', 'disk.img')).equals(image)).toBe(true);
  });

  it('stores a delta push (a chunk pack) whose chunks read back identical', async () => {
    await s.createRepo(token, 'delta');
    const { 'blobs/big.bin': big } = await sampleFiles(2);
    const chunker = new Chunker();
    const chunks = [...chunker.push(big!), ...chunker.finish()];
    const records = chunks.map((data) => ({ digest: sha256(data), data }));
    const body = Buffer.concat(records.flatMap(({ digest, data }) => [recordHeader(digest, data.length), data]));
    const sent = await s.api('/api/v1/repos/alice/delta/chunks', { method: 'POST', token, body, headers: { 'content-type': 'application/octet-stream' } });
    expect(sent.status).toBe(200);
    expect(await sent.json()).toMatchObject({ stored: chunks.length, created: chunks.length });
    const entries = [{ path: 'big.bin', type: 'file', mode: 0o644, size: big!.length, mtime: 0, link_target: null, chunks: records.map((r) => ({ digest: r.digest, size: r.data.length })) }];
    const committed = await s.api('/api/v1/repos/alice/delta/commits', { method: 'POST', token, json: { tag: 'v1', manifest: { entries } } });
    expect(committed.status).toBe(201);
    expect((await readBack('delta', 'v1', 'big.bin')).equals(big!)).toBe(true);
  });

  it('fails the push a dying worker served with the error envelope, stores none of it, and goes on', async () => {
    await s.createRepo(token, 'crash');
    const files = await sampleFiles(3);
    const chunks = s.chunkCount();
    pool.failNextBatch('simulated worker failure');
    const failed = await pushTar('crash', 'v1', tarOfFiles(files));
    expect(failed.status).toBe(500);
    expect(await failed.json()).toMatchObject({ success: false });
    expect(s.chunkCount()).toBe(chunks);
    expect((await s.api('/api/v1/repos/alice/crash/tags/v1/archive', { token })).status).toBe(404);

    const retried = await pushTar('crash', 'v1', tarOfFiles(files));
    expect(retried.status).toBe(201);
    expect((await readBack('crash', 'v1', 'blobs/big.bin')).equals(files['blobs/big.bin']!)).toBe(true);
  });
});

it("ends the pool's worker threads when the server stops", async () => {
  await readFile(import.meta.filename); // libuv's thread pool starts with the first file read: counted before
  const before = threads();
  const pool = new ChunkCodecPool(2);
  const server = await startTestServer({}, { chunkCodec: pool });
  const token = await server.token('alice');
  await server.createRepo(token, 'data');
  await server.pushFiles(token, 'alice/data', 'v1', await sampleFiles(4));
  expect(pool.workers).toBe(2);
  expect(threads()).toBeGreaterThanOrEqual(before + 2);
  await server.stop();
  expect(pool.workers).toBe(0);
  expect(threads()).toBe(before);
});
