/**
 * `snapfork push` and `pull` as delta transfers against a real server: a push sends each chunk
 * the server lacks once while it chunks, an interrupted push resumes without resending what
 * arrived, and a pull of a changed tag into the old directory fetches only what changed and ends
 * byte-identical to a fresh pull.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, lstat, mkdir, open, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UPLOAD_LIMITS } from '../../src/cli/chunk-uploader.js';
import { run } from '../../src/cli/main.js';
import { chunkBuffer } from '../../src/domain/chunker.js';
import { PERMISSION_BITS } from '../../src/domain/model.js';
import { RECORD_HEADER_SIZE } from '../../src/lib/chunk-pack.js';
import { sha256 } from '../../src/lib/sha256.js';
import { generatedBytes } from '../support/generated.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { describeTree, tempDir } from '../support/trees.js';

const MIB = 1024 * 1024;
let s: TestServer;
let env: Record<string, string>;
let work: string;

beforeAll(async () => {
  s = await startTestServer();
  env = { SNAPFORK_URL: s.url, SNAPFORK_TOKEN: await s.token('alice') };
  work = await tempDir('snapfork-delta-');
});
afterAll(async () => {
  await s.stop();
  await rm(work, { recursive: true, force: true });
});

async function cli(...argv: string[]) {
  const text = () => {
    const parts: Buffer[] = [];
    return Object.assign(new Writable({ write: (c: Buffer, _e, cb) => (parts.push(Buffer.from(c)), cb()) }), {
      text: () => Buffer.concat(parts).toString(),
    });
  };
  const [stdout, stderr] = [text(), text()];
  const code = await run(argv, { stdout, stderr, env, now: Date.now });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
const json = async (...argv: string[]) => {
  const r = await cli(...argv, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { bytes: number; bytes_hashed: number; bytes_sent: number; bytes_fetched: number; bytes_reused: number; new_bytes: number };
};

/** The URL a fetch() call asks for, whichever of its three forms the caller used. */
const urlOf = (input: string | URL | Request) => (typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);

async function writeGenerated(file: string, size: number, seed: number) {
  const out = await open(file, 'w');
  for await (const piece of generatedBytes(size, seed)) await out.write(piece);
  await out.close();
}

/** Overwrites `length` bytes at `offset` with fresh random bytes. */
async function scribble(file: string, offset: number, length: number) {
  const fh = await open(file, 'r+');
  await fh.write(randomBytes(length), 0, length, offset);
  await fh.close();
}

/** What a commit of `dir` must hold, built here from the files themselves: entries by path, each file's chunks cut in full. */
async function expectedManifest(dir: string) {
  const entries: { path: string; type: string; mode: number; size: number; mtime: number; link_target: string | null; chunks: { digest: string; size: number }[] }[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(dir, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(dir, path));
      const base = { path, mode: st.mode & PERMISSION_BITS, mtime: Math.floor(st.mtimeMs / 1000), size: 0, link_target: null, chunks: [] };
      if (st.isSymbolicLink()) entries.push({ ...base, type: 'symlink', link_target: await readlink(join(dir, path)) });
      else if (st.isDirectory()) {
        entries.push({ ...base, type: 'dir' });
        await walk(path);
      } else {
        const chunks = chunkBuffer(await readFile(join(dir, path))).map((c) => ({ digest: sha256(c), size: c.length }));
        entries.push({ ...base, type: 'file', size: st.size, chunks });
      }
    }
  };
  await walk('');
  return entries.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

/** The digests of a pack body's records, in order. */
function packDigests(body: Buffer): string[] {
  const digests: string[] = [];
  for (let at = 0; at < body.length; at += RECORD_HEADER_SIZE + body.readUInt32BE(at)) digests.push(body.subarray(at + 4, at + RECORD_HEADER_SIZE).toString('hex'));
  return digests;
}

describe('delta push', () => {
  it('asks about and sends each distinct chunk once over several batches, duplicates across files included, and commits what the files cut to', async () => {
    // One chunk a small file: past two full batches of distinct chunks, some files copies of others.
    const distinct = 2 * UPLOAD_LIMITS.batchChunks + 100;
    const content = (i: number) => `file ${i % distinct}\n`.repeat(1 + (i % distinct) % 50);
    const src = join(work, 'batches');
    await mkdir(join(src, 'many'), { recursive: true });
    for (let i = 0; i < distinct + 200; i++) await writeFile(join(src, 'many', `f-${String(i).padStart(5, '0')}.txt`), content(i));
    const big = randomBytes(2 * MIB + 5);
    await writeFile(join(src, 'big.bin'), big);
    await writeFile(join(src, 'big-copy.bin'), big);
    await symlink('big.bin', join(src, 'link'));
    // Chunks alice sent before, under other names: the server has them, so they are not sent.
    const seed = join(work, 'batches-seed');
    await mkdir(seed);
    for (let i = 0; i < 300; i++) await writeFile(join(seed, `s-${i}`), content(i));
    await json('push', seed, 'alice/batches-seed:v1');

    const expected = await expectedManifest(src);
    const sizes = new Map(expected.flatMap((e) => e.chunks.map((c) => [c.digest, c.size] as const)));
    const seeded = new Set((await expectedManifest(seed)).flatMap((e) => e.chunks.map((c) => c.digest)));
    const asked: string[][] = [];
    const sent: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      const url = urlOf(input);
      if (init?.method === 'POST' && url.endsWith('/chunks/missing')) asked.push((JSON.parse(init.body as string) as { digests: string[] }).digests);
      if (init?.method === 'POST' && url.endsWith('/chunks')) sent.push(...packDigests(init.body as Buffer));
      return realFetch(input, init);
    };
    let pushed;
    try {
      pushed = await json('push', src, 'alice/batches:v1');
    } finally {
      globalThis.fetch = realFetch;
    }

    expect(asked.length).toBeGreaterThanOrEqual(3);
    expect(asked.flat().sort()).toEqual([...sizes.keys()].sort());
    expect(sent.sort()).toEqual([...sizes.keys()].filter((d) => !seeded.has(d)).sort());
    const bytes = expected.reduce((n, e) => n + e.size, 0);
    expect(pushed.bytes_hashed).toBe(bytes);
    expect(pushed.bytes_sent).toBe(sent.reduce((n, d) => n + sizes.get(d)!, 0));
    expect(pushed.bytes_reused).toBe(bytes - pushed.bytes_sent);

    const tag = (await (await s.api('/api/v1/repos/alice/batches/tags/v1', { token: env.SNAPFORK_TOKEN })).json()) as { commit_id: string };
    const manifest = await s.api(`/api/v1/repos/alice/batches/commits/${tag.commit_id}/manifest`, { token: env.SNAPFORK_TOKEN });
    expect(((await manifest.json()) as { entries: unknown[] }).entries).toEqual(expected);
  }, 60_000);

  it('fails, committing nothing, when a file grew between the scan and its chunking', async () => {
    const src = join(work, 'growing');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'steady\n');
    await writeFile(join(src, 'grows.log'), 'x'.repeat(1000));
    // The tag is read after the scan and before any chunking: the file grows right then.
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      if ((init?.method ?? 'GET') === 'GET' && urlOf(input).endsWith('/repos/alice/growing/tags/v1')) await appendFile(join(src, 'grows.log'), 'more lines');
      return realFetch(input, init);
    };
    const r = await cli('push', src, 'alice/growing:v1').finally(() => (globalThis.fetch = realFetch));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`\nsnapfork: ${join(src, 'grows.log')} changed while it was pushed (1000 bytes when scanned, 1010 read); push again\n`);
    expect((await s.api('/api/v1/repos/alice/growing/tags/v1', { token: env.SNAPFORK_TOKEN })).status).toBe(404);
  });


  it('resumes an interrupted push, sending only the packs that did not arrive', async () => {
    const src = join(work, 'resume');
    await mkdir(src);
    await writeGenerated(join(src, 'disk.img'), 24 * MIB, 7);
    await writeFile(join(src, 'notes.txt'), 'resumable\n');

    // The third pack request (the second batch's first) fails as a dropped connection would; the
    // packs out by then run to the end, and nothing starts after.
    const realFetch = globalThis.fetch;
    let packs = 0;
    let acked = 0;
    globalThis.fetch = async (input, init) => {
      const isPack = init?.method === 'POST' && urlOf(input).endsWith('/chunks');
      if (isPack && ++packs === 3) {
        throw new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'UND_ERR_SOCKET' }) });
      }
      const response = await realFetch(input, init);
      if (isPack && response.ok) acked += payload(init?.body as Buffer);
      return response;
    };
    let first;
    try {
      first = await cli('push', src, 'alice/resume:v1', '--json');
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('socket hang up');
    expect(packs).toBeGreaterThanOrEqual(3);
    expect(acked).toBeGreaterThan(0);
    expect((await s.api('/api/v1/repos/alice/resume/tags/v1', { token: env.SNAPFORK_TOKEN })).status).toBe(404);

    const total = 24 * MIB + 10;
    const second = await json('push', src, 'alice/resume:v1');
    expect(second.bytes_hashed).toBe(total);
    expect(second.bytes_sent).toBe(total - acked);
    expect(second.bytes_reused).toBe(acked);
    expect(second.new_bytes).toBe(total);

    const third = await json('push', src, 'alice/resume:v1');
    expect(third.bytes_sent).toBe(0);
    expect(third.new_bytes).toBe(0);
  });

  it('refuses to commit over a tag that moved since the push began', async () => {
    const src = join(work, 'race');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'a\n');
    await json('push', src, 'alice/race:v1');
    // The other writer lands between this push's tag read and its commit.
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      if (init?.method === 'POST' && urlOf(input).endsWith('/commits')) {
        globalThis.fetch = realFetch;
        expect((await cli('push', src, 'alice/race:v1')).code).toBe(0);
      }
      return realFetch(input, init);
    };
    await writeFile(join(src, 'a.txt'), 'b\n');
    const r = await cli('push', src, 'alice/race:v1').finally(() => (globalThis.fetch = realFetch));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^snapfork: 409 tag "v1" points at \S+, not \S+\n$/);
  });
});

/** Chunk bytes of a pack body, framing excluded. */
function payload(body: Buffer): number {
  let bytes = 0;
  for (let at = 0; at < body.length; at += RECORD_HEADER_SIZE + body.readUInt32BE(at)) bytes += body.readUInt32BE(at);
  return bytes;
}

describe('delta pull', () => {
  it('pulls a changed tag into the old directory fetching only the changes, identical to a fresh pull', async () => {
    const src = join(work, 'dataset');
    await mkdir(join(src, 'shards'), { recursive: true });
    await writeGenerated(join(src, 'disk.img'), 8 * MIB, 3);
    for (let i = 0; i < 40; i++) await writeFile(join(src, 'shards', `part-${i}.bin`), randomBytes(20_000 + i));
    await symlink('disk.img', join(src, 'current'));
    await mkdir(join(src, 'empty'));
    await json('push', src, 'alice/dataset:v1');

    const old = join(work, 'old');
    const fresh1 = await json('pull', 'alice/dataset:v1', old);
    expect(fresh1.bytes_fetched).toBe(fresh1.bytes);
    expect(await describeTree(old)).toEqual(await describeTree(src));

    // v2: three small edits of the image, two shards rewritten, one added, one removed, one chmod.
    for (const offset of [MIB, 4 * MIB, 7 * MIB]) await scribble(join(src, 'disk.img'), offset, 4096);
    await writeFile(join(src, 'shards', 'part-3.bin'), randomBytes(20_003));
    await writeFile(join(src, 'shards', 'part-4.bin'), randomBytes(30_000));
    await writeFile(join(src, 'shards', 'new.bin'), randomBytes(25_000));
    await rm(join(src, 'shards', 'part-5.bin'));
    await chmod(join(src, 'shards', 'part-6.bin'), 0o600);
    const pushed = await json('push', src, 'alice/dataset:v2');
    const changed = 20_003 + 30_000 + 25_000;
    expect(pushed.bytes_sent).toBeGreaterThan(changed);
    expect(pushed.bytes_sent).toBeLessThan(changed + 3 * 2 * 256 * 1024);

    const delta = await json('pull', 'alice/dataset:v2', old);
    expect(delta.bytes_hashed).toBe(fresh1.bytes - 20_005); // every old file at a v2 path
    expect(delta.bytes_fetched).toBe(pushed.bytes_sent);
    expect(delta.bytes_reused).toBe(delta.bytes - delta.bytes_fetched);

    const fresh = join(work, 'fresh');
    const fresh2 = await json('pull', 'alice/dataset:v2', fresh);
    expect(fresh2.bytes_fetched).toBe(fresh2.bytes);
    // Without --delete the removed shard stays; everything the tag has is byte-identical.
    const withoutDelete = await describeTree(old);
    expect(withoutDelete.filter((line) => !line.startsWith('shards/part-5.bin '))).toEqual(await describeTree(fresh));
    expect(withoutDelete.some((line) => line.startsWith('shards/part-5.bin '))).toBe(true);

    const cleaned = await json('pull', 'alice/dataset:v2', old, '--delete');
    expect(cleaned.bytes_fetched).toBe(0);
    expect(await describeTree(old)).toEqual(await describeTree(fresh));
    expect(await describeTree(fresh)).toEqual(await describeTree(src));
  });

  it('replaces whatever stands in the way of the tag, never writing through a symlink', async () => {
    const src = join(work, 'shapes');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'f.txt'), 'inside\n');
    await writeFile(join(src, 'x'), 'a file\n');
    await json('push', src, 'alice/shapes:v1');

    const target = join(work, 'shapes-target');
    const outside = join(work, 'outside');
    await mkdir(join(target, 'x'), { recursive: true }); // a directory where the tag has a file
    await mkdir(outside);
    await symlink(outside, join(target, 'd')); // a symlink where the tag has a directory
    await json('pull', 'alice/shapes:v1', target);
    expect(await describeTree(target)).toEqual(await describeTree(src));
    expect(await describeTree(outside)).toEqual([]);
  });
});
