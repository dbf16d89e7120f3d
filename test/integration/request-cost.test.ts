/**
 * What one request can make the server do (issue 10, sections 2 and 4), each attack replayed over
 * real HTTP: listings read stored totals and never a manifest's entries; a client-built manifest
 * references chunks as the chunker cuts them; an uploaded chunk pack is bounded; tar import and
 * client-built manifests obey one path and mode rule.
 */
import { Readable } from 'node:stream';
import { Header } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_CHUNK_SIZE } from '../../src/domain/chunker.js';
import { MAX_PACK_BYTES, MAX_PACK_RECORDS, recordHeader } from '../../src/lib/chunk-pack.js';
import { createZstdCompressStream } from '../../src/lib/zstd.js';
import { fileEntry as file, packRecord as record, sha256 } from '../support/delta.js';
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

const createRepo = (token: string, name: string, visibility?: 'public' | 'internal' | 'private') => s.createRepo(token, name, visibility);
const putPack = (token: string, repo: string, body: Buffer, headers: Record<string, string> = {}) =>
  s.api(`/api/v1/repos/${repo}/chunks`, { method: 'POST', token, body, headers: { 'content-type': 'application/octet-stream', ...headers } });
const commit = (token: string, repo: string, entries: object[]) =>
  s.api(`/api/v1/repos/${repo}/commits`, { method: 'POST', token, json: { tag: 'v1', manifest: { entries } } });

/** `repeat` copies of `block`, zstd-compressed as a stream (a small body that decodes large). */
async function zstdOf(block: Buffer, repeat: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const blocks = Readable.from((function* () {
    for (let i = 0; i < repeat; i++) yield block;
  })());
  for await (const part of blocks.pipe(createZstdCompressStream())) parts.push(part as Buffer);
  return Buffer.concat(parts);
}


describe('listings', () => {
  it('read sizes from stored totals: every listing and view answers with the manifest entries gone', async () => {
    await createRepo(alice, 'data', 'public');
    const pushed = await s.pushFiles(alice, 'alice/data', 'main', { 'a.bin': Buffer.alloc(3000, 1), 'b/c.bin': Buffer.alloc(5000, 2) });
    expect(pushed.bytes).toBe(8000);
    expect((await s.api('/repos/alice/data/forks', { method: 'POST', token: bob, json: {} })).status).toBe(201);
    const made = await (await s.api(`/api/v1/repos/alice/data/commits/${pushed.commit_id}`)).json();

    // A listing that loaded a manifest would now see no files and report 0 bytes.
    s.alterMetadata('DELETE FROM manifest_entries');
    expect(s.metadataRows().manifest_entries).toBe(0);

    const kib = Math.ceil(8000 / 1024);
    const listed = await (await s.api('/users/alice/repos')).json();
    expect(listed.map((r: { name: string; size: number; pushed_at: string }) => [r.name, r.size, r.pushed_at])).toEqual([['data', kib, made.created_at]]);
    const forks = await (await s.api('/repos/alice/data/forks')).json();
    expect(forks.map((r: { full_name: string; size: number }) => [r.full_name, r.size])).toEqual([['bob/data', kib]]);
    const fork = await (await s.api('/repos/bob/data')).json();
    expect([fork.size, fork.parent.size, fork.parent.pushed_at]).toEqual([kib, kib, made.created_at]);
    const oxen = await (await s.api('/api/repos/alice/data')).json();
    expect(oxen.repository).toMatchObject({ size: 8000, branch_count: 1 });
  });
});

describe('client-built manifests', () => {
  it('refuse chunks below the chunker minimum anywhere but at the end of a file (422)', async () => {
    await createRepo(alice, 'refs');
    const tiny = Buffer.from('x');
    const full = Buffer.alloc(MIN_CHUNK_SIZE + 1, 7);
    expect((await putPack(alice, 'alice/refs', Buffer.concat([record(tiny), record(full)]))).status).toBe(200);
    const tinyRef = { digest: sha256(tiny), size: 1 };
    const fullRef = { digest: sha256(full), size: full.length };

    // The attack: one file of many references to a 1-byte chunk (1,000,000 in the field).
    const amplified = await commit(alice, 'alice/refs', [file('f', Array.from({ length: 1000 }, () => tinyRef))]);
    expect(amplified.status).toBe(422);
    expect(await amplified.json()).toMatchObject({ success: false, error: expect.stringContaining(`at least ${MIN_CHUNK_SIZE} bytes`) });
    expect((await commit(alice, 'alice/refs', [file('f', [fullRef, tinyRef, fullRef])])).status).toBe(422);

    // As the chunker cuts: full chunks, then a short last one; a 1-byte file is one short chunk.
    const ok = await commit(alice, 'alice/refs', [file('f', [fullRef, fullRef, tinyRef]), file('g', [tinyRef])]);
    expect(ok.status).toBe(201);
    expect(await ok.json()).toMatchObject({ files: 2, bytes: 2 * full.length + 2 });
  });

  it('obey the tar import path rule (400) and keep permission bits only (422)', async () => {
    await createRepo(alice, 'paths');
    const data = Buffer.from('payload');
    expect((await putPack(alice, 'alice/paths', record(data))).status).toBe(200);
    const ref = { digest: sha256(data), size: data.length };
    for (const path of ['a\u0000b', '..\\..\\etc\\passwd', 'a\\..\\..\\b', '\\abs', '../up', '/abs']) {
      const res = await commit(alice, 'alice/paths', [file(path, [ref])]);
      expect({ path, status: res.status }).toEqual({ path, status: 400 });
      expect(await res.json()).toMatchObject({ success: false });
    }
    for (const mode of [0o4755, 0o2755, 0o1777]) {
      const res = await commit(alice, 'alice/paths', [file('run', [ref], mode)]);
      expect({ mode, status: res.status }).toEqual({ mode, status: 422 });
      expect(await res.json()).toMatchObject({ success: false, error: expect.stringContaining('0o777') });
    }
    expect((await commit(alice, 'alice/paths', [file('dir\\name', [ref], 0o755)])).status).toBe(201);
  });

  it('a tar push masks setuid, setgid and sticky bits off', async () => {
    await createRepo(alice, 'suid');
    const content = Buffer.from('#!/bin/sh\n');
    const header = Buffer.alloc(512);
    new Header({ path: 'run', mode: 0o6755, size: content.length, mtime: new Date(1_700_000_000_000), type: 'File' }).encode(header, 0);
    const tar = Buffer.concat([header, content, Buffer.alloc(512 - content.length), Buffer.alloc(1024)]);
    const pushed = await s.api('/api/v1/repos/alice/suid/tags/v1/archive', { method: 'PUT', token: alice, body: tar, headers: { 'content-type': 'application/x-tar' } });
    expect(pushed.status).toBe(201);
    const { commit_id } = await pushed.json();
    const manifest = await (await s.api(`/api/v1/repos/alice/suid/commits/${commit_id}/manifest`, { token: alice })).json();
    expect(manifest.entries.map((e: { path: string; mode: number }) => [e.path, e.mode])).toEqual([['run', 0o755]]);
  });
});

describe('chunk packs', () => {
  it('refuse the 30 KB zstd pack of 10 million empty records at its first record, and empty chunks (400)', async () => {
    await createRepo(alice, 'empty');
    const uploads = s.metadataRows().chunk_uploads;
    const empty = recordHeader(sha256(Buffer.alloc(0)), 0);
    const body = await zstdOf(Buffer.concat(Array.from({ length: 100_000 }, () => empty)), 100);
    expect(body.length).toBeLessThan(100_000);
    const res = await putPack(alice, 'alice/empty', body, { 'content-encoding': 'zstd' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ success: false, error: expect.stringContaining('no bytes') });
    expect((await putPack(alice, 'alice/empty', empty)).status).toBe(400);
    const single = await s.api(`/api/v1/repos/alice/empty/chunks/${sha256(Buffer.alloc(0))}`, {
      method: 'PUT',
      token: alice,
      body: Buffer.alloc(0),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(single.status).toBe(400);
    expect(s.metadataRows().chunk_uploads).toBe(uploads);
  });

  it(`refuse more than ${MAX_PACK_RECORDS} records and more than ${MAX_PACK_BYTES} bytes (413)`, async () => {
    await createRepo(alice, 'bounded');
    const bytes = Array.from({ length: 256 }, (_, i) => record(Buffer.of(i)));
    const many = Buffer.concat(Array.from({ length: MAX_PACK_RECORDS + 1 }, (_, i) => bytes[i % 256]!));
    const tooMany = await putPack(alice, 'alice/bounded', many);
    expect(tooMany.status).toBe(413);
    expect(await tooMany.json()).toMatchObject({ success: false, error: expect.stringContaining(`${MAX_PACK_RECORDS} records`) });
    expect((await putPack(alice, 'alice/bounded', many.subarray(0, MAX_PACK_RECORDS * 37))).status).toBe(200);

    const zeros = record(Buffer.alloc(256 * 1024));
    const large = await putPack(alice, 'alice/bounded', await zstdOf(zeros, Math.ceil(MAX_PACK_BYTES / zeros.length) + 1), { 'content-encoding': 'zstd' });
    expect(large.status).toBe(413);
    expect(await large.json()).toMatchObject({ success: false, error: expect.stringContaining(`${MAX_PACK_BYTES} bytes`) });
  });
});
