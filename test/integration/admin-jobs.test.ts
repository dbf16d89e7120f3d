/**
 * Garbage collection and fsck as background jobs (Prefer: respond-async): 202 with the job and
 * its Location, the report once it ends, refusals answered at once, a job left running by a
 * server that stopped marked failed when it starts again, and the CLI waiting on a job.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let admin: string;
let alice: string;

beforeAll(async () => {
  s = await startTestServer();
  admin = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
  alice = await s.token('alice');
  await s.createRepo(alice, 'data');
  await s.pushFiles(alice, 'alice/data', 'v1', { 'a.txt': 'kept\n' });
  await s.pushFiles(alice, 'alice/data', 'gone', { 'b.bin': Buffer.alloc(100_000, 7) });
  expect((await s.api('/api/v1/repos/alice/data/tags/gone', { method: 'DELETE', token: alice })).status).toBe(204);
});
afterAll(() => s.stop());

const startJob = (path: string, json: unknown, token = admin) => s.api(path, { method: 'POST', token, json, headers: { prefer: 'respond-async' } });

/** Polls the job until it is no longer running; resolves with it. */
async function finished(id: string) {
  for (;;) {
    const res = await s.api(`/api/v1/admin/jobs/${id}`, { token: admin });
    expect(res.status).toBe(200);
    const job = await res.json();
    if (job.status !== 'running') return job;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('Prefer: respond-async', () => {
  it('starts a collection as a job: 202 with its Location, then its report', async () => {
    const res = await startJob('/api/v1/admin/gc', { grace_seconds: 0 });
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    const job = await res.json();
    expect(job).toMatchObject({ kind: 'gc', status: 'running', options: { dry_run: false, purge_deleted: false, grace_seconds: 0 }, result: null, error: null, finished_at: null });
    expect(res.headers.get('location')).toBe(`${s.url}/api/v1/admin/jobs/${job.job_id}`);

    const done = await finished(job.job_id);
    expect(done).toMatchObject({ job_id: job.job_id, status: 'succeeded', error: null, finished_at: expect.any(String) });
    // The tag's deleted file: one chunk of 100,000 bytes, which compress to almost nothing.
    expect(done.result).toMatchObject({ dry_run: false, chunks: 1, commits: 1 });
    expect((await s.api('/api/v1/admin/jobs', { token: admin }).then((r) => r.json()))[0]).toEqual(done);
  });

  it('runs fsck as a job, with its report', async () => {
    const res = await startJob('/api/v1/admin/fsck', { read_data: true });
    expect(res.status).toBe(202);
    const done = await finished((await res.json()).job_id);
    expect(done).toMatchObject({ kind: 'fsck', status: 'succeeded', options: { read_data: true }, result: { ok: true, read_data: 'all', missing_total: 0, corrupt_total: 0 } });
  });

  it('answers what the call would refuse at once, in the same words: 403, 401, 400', async () => {
    const denied = await startJob('/api/v1/admin/gc', {}, alice);
    expect(denied.status).toBe(403);
    expect((await errorBodyOf(denied)).error).toBe('token lacks the admin scope');
    expect((await s.api('/api/v1/admin/gc', { method: 'POST', json: {}, headers: { prefer: 'respond-async' } })).status).toBe(401);
    const bad = await startJob('/api/v1/admin/fsck', { read_data_subset: '0/3' });
    expect(bad.status).toBe(400);
    expect((await s.api('/api/v1/admin/jobs/no-such-job', { token: admin })).status).toBe(404);
    expect((await s.api('/api/v1/admin/jobs', { token: alice })).status).toBe(403);
  });

  it('marks failed a job its server left running when it stopped', async () => {
    const { host } = await finished((await (await startJob('/api/v1/admin/fsck', {})).json()).job_id);
    s.alterMetadata(`INSERT INTO admin_jobs (id, kind, status, options, host, created_at)
                     VALUES ('left-running', 'gc', 'running', '{}', '${host}', '2020-01-01T00:00:00.000Z')`);
    s = await s.restart();
    expect(await (await s.api('/api/v1/admin/jobs/left-running', { token: admin })).json()).toMatchObject({
      status: 'failed',
      error: 'the server running it stopped before it finished',
      finished_at: expect.any(String),
    });
  });

  it('snapfork gc runs a job and prints its report', async () => {
    const out: Buffer[] = [];
    const sink = (into: Buffer[]) => new Writable({ write: (chunk: Buffer, _enc, done) => void (into.push(Buffer.from(chunk)), done()) });
    const code = await run(['gc', '--dry-run', '--json', '--url', s.url, '--token', admin], { stdout: sink(out), stderr: sink([]), env: {}, now: () => 0 });
    expect(code).toBe(0);
    expect(JSON.parse(Buffer.concat(out).toString())).toMatchObject({ dry_run: true, chunks: 0 });
    const jobs = await (await s.api('/api/v1/admin/jobs?limit=1', { token: admin })).json();
    expect(jobs).toMatchObject([{ kind: 'gc', status: 'succeeded', options: { dry_run: true } }]);
  });
});
