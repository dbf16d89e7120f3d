/**
 * fsck over real HTTP, on a real server's data directory damaged on disk as a failing disk or a
 * lost file would damage it: what is missing or corrupt is named (with the manifest and path, or
 * the pack), a corrupt chunk is never served, and `snapfork fsck` exits 1 on a problem.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { flipChunkByte } from '../support/pack-files.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { errorBodyOf } from '../support/error-body.js';

const FSCK = '/api/v1/admin/fsck';

let servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
});

/** A server where alice pushed `data:v1` (random.bin: several distinct chunks) and forked it. */
async function storeWithData() {
  const s = await startTestServer();
  servers.push(s);
  const alice = await s.token('alice');
  const admin = await s.token('root', { scopes: ['admin'] });
  const random = randomBytes(300_000);
  await s.createRepo(alice, 'data');
  const v1 = await s.pushFiles(alice, 'alice/data', 'v1', { 'random.bin': random, 'notes.txt': 'hello\n' });
  const v2 = await s.pushFiles(alice, 'alice/data', 'v1', { 'random.bin': random, 'notes.txt': 'hello again\n' });
  const fork = await s.api('/api/v1/repos/alice/data/forks', { method: 'POST', token: alice, json: { name: 'data-fork' } });
  expect(fork.status).toBe(201);
  const manifest = await (await s.api(`/api/v1/repos/alice/data/commits/${v2.commit_id}/manifest`, { token: alice })).json();
  const file = (manifest.entries as { path: string; chunks: { digest: string; size: number }[] }[]).find((e) => e.path === 'random.bin')!;
  expect(file.chunks.length).toBeGreaterThan(1);
  return { s, alice, admin, random, v1, v2, manifestDigest: manifest.digest as string, chunks: file.chunks };
}

async function fsck(s: TestServer, token: string, body?: unknown) {
  const res = await s.api(FSCK, { method: 'POST', token, ...(body !== undefined && { json: body }) });
  expect(res.status).toBe(200);
  return res.json();
}

/** Runs the CLI; resolves with its exit code and what it printed. */
async function cli(argv: string[]) {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) => new Writable({ write: (chunk: Buffer, _enc, done) => void (into.push(Buffer.from(chunk)), done()) });
  const code = await run(argv, { stdout: sink(out), stderr: sink(err), env: {}, now: () => 0 });
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

describe('fsck', () => {
  it('finds nothing wrong in a sound store, reads data only when asked, and reads a subset deterministically', async () => {
    const { s, admin } = await storeWithData();
    const chunkCount = s.chunkCount();

    const quick = await fsck(s, admin);
    expect(quick).toMatchObject({
      ok: true,
      read_data: 'none',
      read_data_subset: null,
      commits_checked: 3, // v1, v2 and the fork's
      manifests_checked: 2,
      chunks_checked: 0,
      missing: [],
      missing_total: 0,
      corrupt: [],
      corrupt_total: 0,
    });
    expect(quick.references_checked).toBeGreaterThan(4);

    expect(await fsck(s, admin, { read_data: true })).toMatchObject({ ok: true, read_data: 'all', chunks_checked: chunkCount });
    const halves = [await fsck(s, admin, { read_data_subset: '1/2' }), await fsck(s, admin, { read_data_subset: '2/2' })];
    expect(halves.map((h) => h.read_data)).toEqual(['subset', 'subset']);
    expect(halves[0].chunks_checked + halves[1].chunks_checked).toBe(chunkCount);
    expect(await fsck(s, admin, { read_data_subset: '1/2' })).toMatchObject({ chunks_checked: halves[0].chunks_checked });
    expect((await fsck(s, admin, { read_data_subset: '100%' })).chunks_checked).toBe(chunkCount);

    for (const subset of ['0/2', '3/2', '1/0', '0%', '101%', 'half', '']) {
      const res = await s.api(FSCK, { method: 'POST', token: admin, json: { read_data_subset: subset } });
      expect(res.status, subset).toBe(400);
      expect((await res.json()).success).toBe(false);
    }
  });

  it('refuses every caller but a site administrator: 401 without a token, 403 without the admin scope', async () => {
    const { s, alice } = await storeWithData();
    const anonymous = await s.api(FSCK, { method: 'POST', json: {} });
    expect(anonymous.status).toBe(401);
    const user = await s.api(FSCK, { method: 'POST', token: alice, json: { read_data: true } });
    expect(user.status).toBe(403);
    expect(await errorBodyOf(user)).toEqual({ error: 'token lacks the admin scope', success: false });
  });

  it('names a chunk corrupted on disk with its pack when reading data, never serves it, and counts the run in metrics', async () => {
    const { s, alice, admin, random, chunks } = await storeWithData();
    const damaged = chunks[1]!.digest;
    const pack = await flipChunkByte(join(s.dataDir, 'chunks'), damaged);

    // Without reading data, fsck checks references only: it does not claim the bytes are sound.
    expect(await fsck(s, admin)).toMatchObject({ ok: true, read_data: 'none', chunks_checked: 0 });

    const report = await fsck(s, admin, { read_data: true });
    expect(report).toMatchObject({ ok: false, missing: [], corrupt_total: 1 });
    expect(report.corrupt).toEqual([{ kind: 'chunk', digest: damaged, pack, reason: 'its bytes do not hash to its digest' }]);

    // A read of the file holding it answers an error or a cut body, never wrong bytes.
    const read = await s.api('/api/v1/repos/alice/data/tags/v1/files/random.bin', { token: alice });
    const body = read.status === 200 ? await read.arrayBuffer().then((b) => Buffer.from(b), () => undefined) : undefined;
    expect(body === undefined || body.length < random.length).toBe(true);
    if (body) expect(random.subarray(0, body.length).equals(body)).toBe(true);
    const chunk = await s.api(`/api/v1/repos/alice/data/chunks/${damaged}`, { token: alice });
    expect(chunk.status).toBe(500);
    expect(await errorBodyOf(chunk)).toEqual({ error: 'stored data failed its integrity check', success: false });
    // The fork reads the same chunk: it is not served there either.
    const forked = await s.api(`/api/v1/repos/alice/data-fork/chunks/${damaged}`, { token: alice });
    expect(forked.status).toBe(500);

    const metrics = await (await s.api('/metrics')).text();
    expect(metrics).toMatch(/^snapfork_fsck_runs_total\{result="ok"\} 1$/m);
    expect(metrics).toMatch(/^snapfork_fsck_runs_total\{result="problems"\} 1$/m);
    expect(metrics).toMatch(/^snapfork_fsck_problems\{kind="corrupt"\} 1$/m);
    expect(metrics).toMatch(/^snapfork_fsck_problems\{kind="missing"\} 0$/m);
    expect(metrics).toMatch(/^snapfork_fsck_last_run_timestamp_seconds \d/m);
  });

  it('names a chunk gone from the store with the manifest and path that list it, and a size that does not match', async () => {
    const { s, admin, manifestDigest, chunks } = await storeWithData();
    const [gone, resized] = [chunks[0]!.digest, chunks[2]!.digest];
    const index = new Database(join(s.dataDir, 'chunks', 'index.db'));
    try {
      index.prepare('DELETE FROM chunks WHERE digest = ?').run(gone);
      index.prepare('UPDATE chunks SET size = size + 1 WHERE digest = ?').run(resized);
    } finally {
      index.close();
    }

    const report = await fsck(s, admin);
    expect(report.ok).toBe(false);
    // Both manifests (v1's and v2's) list random.bin with these chunks.
    expect(report.missing_total).toBe(2);
    expect(report.missing).toContainEqual({ kind: 'chunk', digest: gone, manifest: manifestDigest, path: 'random.bin' });
    expect(report.corrupt).toContainEqual({
      kind: 'size_mismatch',
      digest: resized,
      manifest: manifestDigest,
      path: 'random.bin',
      expected_size: chunks[2]!.size,
      actual_size: chunks[2]!.size + 1,
    });
    expect(report.corrupt_total).toBe(2);
  });

  it('names a commit whose manifest or parent is gone', async () => {
    const { s, admin, v1, v2, manifestDigest } = await storeWithData();
    // As lost rows would leave them: v2's parent v1, which no tag points at any more, and v2's
    // manifest, which the fork's commit shares.
    s.alterMetadata(`
      PRAGMA foreign_keys = OFF;
      DELETE FROM commits WHERE id = '${v1.commit_id}';
      DELETE FROM manifest_entries WHERE manifest_digest = '${manifestDigest}';
      DELETE FROM manifests WHERE digest = '${manifestDigest}';
    `);
    const report = await fsck(s, admin);
    expect(report.ok).toBe(false);
    expect(report.commits_checked).toBe(2);
    expect(report.missing).toContainEqual({ kind: 'parent', commit: v2.commit_id, parent: v1.commit_id });
    expect(report.missing).toContainEqual({ kind: 'manifest', commit: v2.commit_id, manifest: manifestDigest });
    expect(report.missing_total).toBe(3);
  });

  it('counts a parent deleted on purpose as the end of a history, not as missing', async () => {
    const { s, alice, admin, v1, v2 } = await storeWithData();
    // v1, the parent of v2, is no longer tagged, so Vers' DELETE /commits/{id} may delete it.
    const deleted = await s.api(`/api/v1/commits/${v1.commit_id}`, { method: 'DELETE', token: alice });
    expect(deleted.status).toBe(204);
    // v2 still names v1 as its parent; its history ends at v2.
    const history = await s.api('/api/v1/repos/alice/data/commits?tag=v1', { token: alice });
    expect((await history.json()).map((c: { id: string; parent_ids: string[] }) => [c.id, c.parent_ids])).toEqual([[v2.commit_id, [v1.commit_id]]]);
    expect(await fsck(s, admin)).toMatchObject({ ok: true, missing_total: 0 });
  });

  it('snapfork fsck prints a summary, exits 0 on a sound store and 1 when something is corrupt', async () => {
    const { s, admin, chunks } = await storeWithData();
    const flags = ['--url', s.url, '--token', admin];

    const sound = await cli(['fsck', '--read-data', ...flags]);
    expect(sound).toMatchObject({ code: 0, stderr: '' });
    expect(sound.stdout).toMatch(/^checked 3 commits, 2 manifests, \d+ chunk references; \d+ chunks read and hashed; .*\nno problems found\n$/);

    await flipChunkByte(join(s.dataDir, 'chunks'), chunks[0]!.digest);
    // Without --read-data nothing is read, so the damage is not seen.
    expect((await cli(['fsck', ...flags])).code).toBe(0);
    const damaged = await cli(['fsck', '--read-data', ...flags]);
    expect(damaged.code).toBe(1);
    expect(damaged.stdout).toContain(`corrupt (1):\n  chunk ${chunks[0]!.digest} in pack `);
    const json = await cli(['fsck', '--read-data-subset', '100%', '--json', ...flags]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, read_data: 'subset', read_data_subset: '100%', corrupt_total: 1 });

    const user = await cli(['fsck', '--url', s.url, '--token', await s.token('alice')]);
    expect(user).toMatchObject({ code: 1, stderr: 'snapfork: 403 token lacks the admin scope\n' });
  });
});
