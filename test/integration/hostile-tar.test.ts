/**
 * Hostile tars pushed to PUT .../tags/{tag}/archive, the one endpoint that takes a tar (issue
 * 14, "Bad input"): each is refused with a clear 4xx, or contained, and nothing lands outside
 * the data directory. A push never writes a file by its tar path: entries become manifest rows
 * and chunks in the chunk store, so containment is the manifest's rules (no `..`, no absolute
 * path, nothing below a symlink) and the caps on what a push may hold. Truncated and garbage
 * archives are spine.test.ts's ("a cut-off or malformed push").
 */
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createZstdCompressStream } from '../../src/lib/zstd.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries, type RawTarEntry } from '../support/trees.js';

const MAX_PUSH_BYTES = 16 * 1024 * 1024;
/** A name no file had before this run: finding it anywhere means an entry escaped. */
const MARKER = `escaped-${randomUUID()}`;

let s: TestServer;
let token: string;
let parent: string;
beforeAll(async () => {
  s = await startTestServer({ SNAPFORK_MAX_PUSH_BYTES: String(MAX_PUSH_BYTES) }, { subdir: 'data' });
  parent = dirname(s.dataDir);
  token = await s.token('alice');
  await s.createRepo(token, 'target', 'public');
});
afterAll(() => s.stop());

const push = (body: Buffer, tag = 'v1', headers: Record<string, string> = {}) =>
  s.api(`/api/v1/repos/alice/target/tags/${tag}/archive`, { method: 'PUT', token, body, headers: { 'content-type': 'application/x-tar', ...headers } });

async function statusOf(entries: RawTarEntry[]): Promise<{ status: number; error: string }> {
  const res = await push(tarOfEntries(entries));
  const body = await res.json();
  return { status: res.status, error: body.error ?? '' };
}

/** Every place an escaped entry could have landed, by the paths these tars use. */
async function escapes(): Promise<string[]> {
  const places = [parent, s.dataDir, process.cwd(), resolve(process.cwd(), '..'), tmpdir(), '/', '/tmp', '/etc'];
  const found: string[] = [];
  for (const dir of places) {
    for (const name of await readdir(dir).catch(() => [] as string[])) if (name.includes(MARKER)) found.push(join(dir, name));
  }
  return found;
}

it('refuses entries that climb out of the tree or start at the root with 400', async () => {
  const climbing: RawTarEntry[][] = [
    [{ path: `../${MARKER}`, body: 'x' }],
    [{ path: `../../../../../../tmp/${MARKER}`, body: 'x' }],
    [{ path: `a/../../${MARKER}`, body: 'x' }],
    [{ path: `a\\..\\..\\${MARKER}`, body: 'x' }],
    [{ path: `/tmp/${MARKER}`, body: 'x' }],
    [{ path: `\\${MARKER}`, body: 'x' }],
    [{ path: 'ok.txt', body: 'x' }, { path: `${MARKER}`, type: 'Link', linkpath: '../../etc/passwd' }],
    [{ path: 'ok.txt', body: 'x' }, { path: `${MARKER}`, type: 'Link', linkpath: '/etc/passwd' }],
  ];
  for (const entries of climbing) expect({ entries, ...(await statusOf(entries)) }).toMatchObject({ entries, status: 400 });
  expect(await escapes()).toEqual([]);
});

it('refuses device files, FIFOs and hard links to nothing, and a file below a symlink', async () => {
  const cases: [RawTarEntry[], number][] = [
    [[{ path: 'tty', type: 'CharacterDevice' }], 422],
    [[{ path: 'disk', type: 'BlockDevice' }], 422],
    [[{ path: 'pipe', type: 'FIFO' }], 422],
    [[{ path: 'orphan', type: 'Link', linkpath: 'missing.txt' }], 400],
    // A pull that wrote the link first would write the file through it, into `parent`.
    [[{ path: 'out', type: 'SymbolicLink', linkpath: parent }, { path: `out/${MARKER}`, body: 'x' }], 422],
    [[{ path: 'up', type: 'SymbolicLink', linkpath: '../..' }, { path: `up/${MARKER}`, body: 'x' }], 422],
  ];
  for (const [entries, status] of cases) expect({ entries, ...(await statusOf(entries)) }).toMatchObject({ entries, status });
  expect((await (await s.api('/api/v1/repos/alice/target/tags', { token })).json()).length).toBe(0);
  expect(await escapes()).toEqual([]);
});

it('keeps links that point out of the tree as links, never followed, and the last of duplicate entries', async () => {
  const res = await push(
    tarOfEntries([
      { path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' },
      { path: 'parent', type: 'SymbolicLink', linkpath: '../../..' },
      { path: 'data.txt', body: 'first' },
      { path: 'data.txt', body: 'second' },
      { path: 'copy.txt', type: 'Link', linkpath: 'data.txt' },
    ]),
  );
  expect(res.status).toBe(201);
  const base = '/api/v1/repos/alice/target/tags/v1';
  const tree = await (await s.api(`${base}/tree`, { token })).json();
  expect(tree.map((e: { path: string; type: string; link_target: string | null }) => [e.path, e.type, e.link_target])).toEqual([
    ['copy.txt', 'file', null],
    ['data.txt', 'file', null],
    ['parent', 'symlink', '../../..'],
    ['passwd', 'symlink', '/etc/passwd'],
  ]);
  // A link is data: reading it through the API finds no file, and /etc/passwd is never read.
  expect((await s.api(`${base}/files/passwd`, { token })).status).toBe(404);
  expect((await s.api(`${base}/files/parent/etc/passwd`, { token })).status).toBe(404);
  expect(await (await s.api(`${base}/files/data.txt`, { token })).text()).toBe('second');
  expect(await (await s.api(`${base}/files/copy.txt`, { token })).text()).toBe('second');
});

it('refuses a header claiming more than a push may hold as it arrives (413), and one claiming more than follows (400)', async () => {
  // The bytes keep coming, past the limit: the claim alone refuses them.
  const huge = tarOfEntries([{ path: 'huge.bin', body: Buffer.alloc(MAX_PUSH_BYTES + 1024 * 1024), size: 2 ** 40 }]);
  const claimed = await push(huge);
  expect({ status: claimed.status, body: await claimed.json() }).toMatchObject({ status: 413, body: { success: false } });
  // A claim the archive does not keep is a truncated archive, whatever its size.
  for (const size of [1024 * 1024, 2 ** 40]) expect(await statusOf([{ path: 'short.bin', body: 'x', size }])).toMatchObject({ status: 400, error: expect.stringContaining('Truncated') });
  expect((await (await s.api('/api/v1/repos/alice/target/tags', { token })).json()).map((t: { name: string }) => t.name)).toEqual(['v1']);
});

it('stops a decompression bomb at the push limit (413), gzip or zstd', async () => {
  // 64 MiB of zeros in files of 1 MiB: a few hundred KiB compressed, four times the limit decoded.
  const bomb = tarOfEntries(Array.from({ length: 64 }, (_, i) => ({ path: `zeros-${i}.bin`, body: Buffer.alloc(1024 * 1024) })));
  const gzipped = gzipSync(bomb, { level: 9 });
  expect(gzipped.length).toBeLessThan(bomb.length / 100);
  const zstd: Buffer[] = [];
  for await (const part of Readable.from([bomb]).pipe(createZstdCompressStream())) zstd.push(part as Buffer);
  for (const [encoding, body] of [['gzip', gzipped], ['zstd', Buffer.concat(zstd)]] as const) {
    const res = await push(body, 'bomb', { 'content-encoding': encoding });
    expect({ encoding, status: res.status, body: await res.json() }).toMatchObject({ encoding, status: 413, body: { success: false } });
  }
  expect((await s.api('/api/v1/repos/alice/target/tags/bomb', { token })).status).toBe(404);
  expect(await escapes()).toEqual([]);
});
