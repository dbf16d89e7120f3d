/**
 * What one request can make the server do (issue 10, sections 2 and 4), each attack replayed over
 * real HTTP: listings read stored totals and never a manifest's entries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

async function createRepo(token: string, name: string, visibility = 'private') {
  const res = await s.api('/api/v1/user/repos', { method: 'POST', token, json: { name, visibility } });
  expect(res.status).toBe(201);
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
