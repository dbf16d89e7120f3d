/**
 * Reading one file, one range or one directory of a tag (issue 15): each answer comes from the
 * entries it needs, found by path, never from the whole manifest. These tests hold the answers
 * to what a reader relies on: the right bytes for any range (chunk boundaries, first and last
 * chunk, empty files), listings paged by a cursor that lose and repeat nothing, paths that are a
 * prefix of others, names with characters that need escaping, and 404s for what is not there.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedBytes } from '../support/generated.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries, type RawTarEntry } from '../support/trees.js';

let s: TestServer;
let token: string;
beforeAll(async () => {
  s = await startTestServer();
  token = await s.token('alice');
});
afterAll(() => s.stop());

const push = async (repo: string, entries: RawTarEntry[]) => {
  await s.createRepo(token, repo);
  const res = await s.api(`/api/v1/repos/alice/${repo}/tags/v1/archive`, {
    method: 'PUT',
    token,
    body: tarOfEntries(entries),
    headers: { 'content-type': 'application/x-tar' },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { commit_id: string };
};
const encodedPath = (path: string) => path.split('/').map(encodeURIComponent).join('/');
const readFile = (repo: string, path: string, headers: Record<string, string> = {}) =>
  s.api(`/api/v1/repos/alice/${repo}/tags/v1/files/${encodedPath(path)}`, { token, headers });

async function bytesOf(gen: AsyncGenerator<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of gen) parts.push(part);
  return Buffer.concat(parts);
}

describe('ranges', () => {
  let data: Buffer;
  /** Where each chunk of big.bin starts, and the file's end, as the server cut it. */
  let starts: number[];
  beforeAll(async () => {
    data = await bytesOf(generatedBytes(1024 * 1024 + 333, 3));
    const { commit_id } = await push('ranges', [{ path: 'big.bin', body: data }, { path: 'empty', body: '' }, { path: 'one', body: 'x' }]);
    const manifest = await (await s.api(`/api/v1/repos/alice/ranges/commits/${commit_id}/manifest`, { token })).json();
    const big = manifest.entries.find((e: { path: string }) => e.path === 'big.bin');
    starts = [0];
    for (const c of big.chunks as { size: number }[]) starts.push(starts.at(-1)! + c.size);
    expect(starts.length).toBeGreaterThan(4);
    expect(starts.at(-1)).toBe(data.length);
  });

  const expectRange = async (start: number, end: number) => {
    const res = await readFile('ranges', 'big.bin', { range: `bytes=${start}-${end}` });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${data.length}`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).toBe(end - start + 1);
    expect(body.equals(data.subarray(start, end + 1))).toBe(true);
  };

  it('serves every range at and around chunk boundaries, in the first and the last chunk', async () => {
    const last = data.length - 1;
    const boundary = starts[2]!;
    const lastChunk = starts.at(-2)!;
    const cases: [number, number][] = [
      [0, 0],
      [0, starts[1]! - 1],
      [starts[1]! - 1, starts[1]!],
      [boundary, boundary],
      [boundary - 1, boundary - 1],
      [boundary - 4096, boundary + 4095],
      [starts[1]!, starts[4]! - 1],
      [lastChunk - 1, lastChunk],
      [lastChunk, last],
      [last, last],
      [0, last],
    ];
    for (const [start, end] of cases) await expectRange(start, end);
    const tail = await readFile('ranges', 'big.bin', { range: 'bytes=-1' });
    expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(last))).toBe(true);
    const whole = await readFile('ranges', 'big.bin');
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(data)).toBe(true);
  });

  it('serves empty and one-byte files, and refuses a range past the end with 416', async () => {
    const empty = await readFile('ranges', 'empty');
    expect(empty.status).toBe(200);
    expect(empty.headers.get('content-length')).toBe('0');
    expect((await empty.arrayBuffer()).byteLength).toBe(0);
    const one = await readFile('ranges', 'one', { range: 'bytes=0-0' });
    expect(one.status).toBe(206);
    expect(await one.text()).toBe('x');
    expect((await readFile('ranges', 'big.bin', { range: `bytes=${data.length}-` })).status).toBe(416);
  });

  it('gives equal files equal ETags and answers 304 to a matching If-None-Match', async () => {
    const { commit_id: _ } = await push('same', [{ path: 'copy/of/big.bin', body: data }]);
    const etag = (await readFile('ranges', 'big.bin')).headers.get('etag');
    expect(etag).toMatch(/^"sha256-[0-9a-f]{64}"$/);
    expect((await s.api(`/api/v1/repos/alice/same/tags/v1/files/copy/of/big.bin`, { token })).headers.get('etag')).toBe(etag);
    expect((await readFile('ranges', 'one')).headers.get('etag')).not.toBe(etag);
    expect((await readFile('ranges', 'big.bin', { 'if-none-match': etag! })).status).toBe(304);
  });
});

describe('paths', () => {
  const special = ['sp ace.txt', 'hash#tag', 'what?', '100%', 'plus+sign', 'quote"d', 'ünïcødé ✓', '𝄞 clef', 'semi;colon'];
  beforeAll(async () => {
    await push('paths', [
      { path: 'a/', type: 'Directory' },
      { path: 'a/b', body: 'the file a/b' },
      { path: 'a/bc', body: 'the file a/bc' },
      { path: 'a/b.c', body: 'the file a/b.c' },
      { path: 'a/b c/x', body: 'below a/b c' },
      ...special.map((name) => ({ path: `odd/${name}`, body: `content of ${name}` })),
    ]);
  });

  it('reads the entry at exactly its path: a/b is not a/bc, nor a directory above a file', async () => {
    for (const path of ['a/b', 'a/bc', 'a/b.c', 'a/b c/x']) expect(await (await readFile('paths', path)).text()).toBe(path === 'a/b c/x' ? 'below a/b c' : `the file ${path}`);
    for (const name of special) expect(await (await readFile('paths', `odd/${name}`)).text()).toBe(`content of ${name}`);
  });

  it('answers 404 in the native envelope for a missing file, a directory, a prefix and a missing directory', async () => {
    for (const missing of ['a/bcd', 'a/b/', 'a', 'a/b c', 'A/b', 'nope', 'odd/100']) {
      const res = await readFile('paths', missing);
      expect(res.status, missing).toBe(404);
      expect(await errorBodyOf(res)).toMatchObject({ success: false });
    }
    for (const dir of ['nope', 'a/b', 'a/b c/x', 'a/bcd']) {
      const res = await s.api(`/api/v1/repos/alice/paths/tags/v1/tree?path=${encodeURIComponent(dir)}`, { token });
      expect(res.status, dir).toBe(404);
      expect(await errorBodyOf(res)).toMatchObject({ success: false });
    }
  });

  it('lists a directory with its own entries and the directories its deeper paths imply', async () => {
    const names = async (dir: string) =>
      ((await (await s.api(`/api/v1/repos/alice/paths/tags/v1/tree?path=${encodeURIComponent(dir)}`, { token })).json()) as { name: string; path: string; type: string }[]).map(
        (e) => [e.name, e.path, e.type],
      );
    expect(await names('')).toEqual([
      ['a', 'a', 'dir'],
      ['odd', 'odd', 'dir'],
    ]);
    expect(await names('a')).toEqual([
      ['b', 'a/b', 'file'],
      ['b c', 'a/b c', 'dir'],
      ['b.c', 'a/b.c', 'file'],
      ['bc', 'a/bc', 'file'],
    ]);
    expect(await names('a/b c')).toEqual([['x', 'a/b c/x', 'file']]);
    expect((await names('odd')).map(([name]) => name).sort()).toEqual([...special].sort());
  });

  it('pages through names that need escaping, each one a cursor in the next Link', async () => {
    const all = (await (await s.api('/api/v1/repos/alice/paths/tags/v1/tree?path=odd', { token })).json()) as { name: string }[];
    const seen: string[] = [];
    let url: string | undefined = `${s.url}/api/v1/repos/alice/paths/tags/v1/tree?path=odd&per_page=1`;
    while (url) {
      const res = await s.api(url.slice(s.url.length), { token });
      expect(res.status).toBe(200);
      seen.push(...((await res.json()) as { name: string }[]).map((e) => e.name));
      url = /<([^>]+)>; rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    }
    expect(seen).toEqual(all.map((e) => e.name));
    expect(seen).toHaveLength(special.length);
  });
});

describe('listing pages', () => {
  /**
   * Children of `big/` in the manifest's byte order: plain files, explicit directories with and
   * without entries below, directories only implied by deeper paths, and names that are
   * prefixes of one another, so that page ends fall on every kind.
   */
  const entries: RawTarEntry[] = [];
  const expected: [string, string][] = [];
  beforeAll(async () => {
    const children: { name: string; type: string; below?: string[]; explicit?: boolean }[] = [];
    for (let i = 0; i < 150; i++) {
      const n = String(i).padStart(3, '0');
      children.push({ name: `f${n}`, type: 'file' });
      if (i % 10 === 0) children.push({ name: `d${n}`, type: 'dir', explicit: true, below: ['x', 'y/z'] });
      if (i % 10 === 5) children.push({ name: `i${n}`, type: 'dir', below: ['deep/er/file', 'other'] });
      if (i % 25 === 0) children.push({ name: `e${n}`, type: 'dir', explicit: true });
      if (i % 30 === 0) children.push({ name: `p${n}`, type: 'dir', explicit: true, below: ['q'] }, { name: `p${n}.txt`, type: 'file' }, { name: `p${n} b`, type: 'file' });
      if (i % 30 === 15) children.push({ name: `j${n}`, type: 'dir', below: ['q'] }, { name: `j${n}.txt`, type: 'file' });
    }
    for (const c of children) {
      if (c.type === 'file') entries.push({ path: `big/${c.name}`, body: c.name });
      if (c.explicit) entries.push({ path: `big/${c.name}/`, type: 'Directory' });
      for (const below of c.below ?? []) entries.push({ path: `big/${c.name}/${below}`, body: below });
    }
    // A child's place: its own path, or for an implied directory, its first path below.
    const key = (c: (typeof children)[number]) => Buffer.from(c.type === 'file' || c.explicit ? `big/${c.name}` : `big/${c.name}/`);
    expected.push(...children.sort((a, b) => Buffer.compare(key(a), key(b))).map((c): [string, string] => [c.name, c.type]));
    await push('pages', [{ path: 'before', body: '' }, ...entries, { path: 'big0', body: '' }, { path: 'bigger/x', body: '' }]);
  });

  const page = async (query: string) => {
    const res = await s.api(`/api/v1/repos/alice/pages/tags/v1/tree?path=big${query}`, { token });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { name: string; type: string }[];
    const next = /<([^>]+)>; rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    return { names: body.map((e): [string, string] => [e.name, e.type]), next };
  };

  it('answers a directory of up to 1,000 children in one page, with no Link', async () => {
    const { names, next } = await page('');
    expect(names).toEqual(expected);
    expect(next).toBeUndefined();
  });

  it.each([1, 2, 7, 64])('pages through it %i at a time by the Link rel="next", losing and repeating nothing', async (perPage) => {
    const seen: [string, string][] = [];
    let url: string | undefined = `${s.url}/api/v1/repos/alice/pages/tags/v1/tree?path=big&per_page=${perPage}`;
    let pages = 0;
    while (url) {
      const res = await s.api(url.slice(s.url.length), { token });
      const body = (await res.json()) as { name: string; type: string }[];
      expect(res.status, JSON.stringify(body) + url).toBe(200);
      expect(body.length).toBeLessThanOrEqual(perPage);
      seen.push(...body.map((e): [string, string] => [e.name, e.type]));
      url = /<([^>]+)>; rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
      pages++;
    }
    expect(seen).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / perPage));
  });

  it('starts after any name, whether an entry, an implied directory or a name between', async () => {
    const at = (name: string) => expected.findIndex(([n]) => n === name);
    for (const after of ['f000', 'd000', 'i005', 'p000', 'p000 b', 'p000.txt', 'j015', 'j015.txt', 'e025']) {
      expect((await page(`&per_page=5&after=${encodeURIComponent(after)}`)).names, after).toEqual(expected.slice(at(after) + 1, at(after) + 6));
    }
    expect((await page(`&after=${encodeURIComponent('f0005')}`)).names[0]).toEqual(['f001', 'file']);
    expect((await page(`&after=${encodeURIComponent(expected.at(-1)![0])}`)).names).toEqual([]);
  });

  it('refuses a cursor holding "/" and a page size out of bounds with 400', async () => {
    for (const query of ['&after=d000%2Fx', '&per_page=0', '&per_page=1001', '&per_page=x']) {
      const res = await s.api(`/api/v1/repos/alice/pages/tags/v1/tree?path=big${query}`, { token });
      expect(res.status, query).toBe(400);
      expect(await errorBodyOf(res)).toMatchObject({ success: false });
    }
  });

  it('reads the same entries by their paths as the listing names them', async () => {
    const digest = createHash('sha256');
    for (const e of entries.filter((x) => x.type !== 'Directory').slice(0, 50)) {
      const body = await (await readFile('pages', e.path)).text();
      expect(body).toBe(String(e.body));
      digest.update(body);
    }
    expect(digest.digest('hex')).toMatch(/^[0-9a-f]{64}$/);
  });
});
