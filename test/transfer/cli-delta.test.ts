/**
 * `snapfork push` and `pull` as delta transfers against a real server: an interrupted push
 * resumes without resending what arrived, and a pull of a changed tag into the old directory
 * fetches only what changed and ends byte-identical to a fresh pull.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { RECORD_HEADER_SIZE } from '../../src/lib/chunk-pack.js';
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

describe('delta push', () => {
  it('resumes an interrupted push, sending only the packs that did not arrive', async () => {
    const src = join(work, 'resume');
    await mkdir(src);
    await writeGenerated(join(src, 'disk.img'), 24 * MIB, 7);
    await writeFile(join(src, 'notes.txt'), 'resumable\n');

    // The second pack request fails as a dropped connection would; the others run to the end.
    const realFetch = globalThis.fetch;
    let packs = 0;
    let acked = 0;
    globalThis.fetch = async (input, init) => {
      const isPack = init?.method === 'POST' && urlOf(input).endsWith('/chunks');
      if (isPack && ++packs === 2) {
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
