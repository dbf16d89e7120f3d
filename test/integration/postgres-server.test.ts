/**
 * A real server whose metadata lives in PostgreSQL (SNAPFORK_DATABASE_URL), driven over HTTP: a
 * push, a fork and reads through both repositories. Skipped, saying why, without a server to
 * run on (test/support/postgres.ts).
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrl, type TestDatabase } from '../support/postgres.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tempDir, untar } from '../support/trees.js';

describe.skipIf(postgresUrl === undefined)(`a server on PostgreSQL${postgresUrl === undefined ? ` (skipped: ${POSTGRES_SKIP_REASON})` : ''}`, () => {
  let database: TestDatabase;
  let s: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl!);
    s = await startTestServer({ SNAPFORK_DATABASE_URL: database.url });
  });
  afterAll(async () => {
    await s?.stop();
    await database?.drop();
  });

  it('pushes, forks and reads over HTTP with every record in PostgreSQL and no SQLite file', async () => {
    const alice = await s.token('alice');
    const bob = await s.token('bob');
    await s.createRepo(alice, 'Dataset', 'public');
    const pushed = await s.pushFiles(alice, 'alice/dataset', 'v1', { 'train.csv': 'a,b\n1,2\n', 'nested/readme.md': '# data\n' });

    const fork = await s.api('/api/v1/repositories/fork', { method: 'POST', token: bob, json: { source_org: 'alice', source_repo: 'dataset', source_tag: 'v1' } });
    expect(fork.status).toBe(201);
    const forked = await fork.json();
    expect(forked).toMatchObject({ repo_name: 'Dataset', tag_name: 'v1' });

    // The fork reads as a fork of the source, at the pushed commit, and serves the same files.
    const repo = await (await s.api('/api/v1/repos/bob/dataset', { token: bob })).json();
    expect(repo).toMatchObject({ fork: true, parent: { full_name: 'alice/Dataset' }, forked_from_commit_id: pushed.commit_id });
    const commit = await s.api(`/api/v1/repos/bob/dataset/commits/${forked.commit_id}`, { token: bob });
    expect(commit.status).toBe(200);
    expect(await commit.json()).toMatchObject({ parent_ids: [pushed.commit_id] });
    const archive = await s.api('/api/v1/repos/bob/dataset/tags/v1/archive', { token: bob });
    expect(archive.status).toBe(200);
    const dir = await tempDir();
    await untar(Buffer.from(await archive.arrayBuffer()), dir);
    expect(await readFile(join(dir, 'train.csv'), 'utf8')).toBe('a,b\n1,2\n');
    expect(await readFile(join(dir, 'nested/readme.md'), 'utf8')).toBe('# data\n');

    // A second fork to the same name is a conflict, answered as such.
    const again = await s.api('/api/v1/repositories/fork', { method: 'POST', token: bob, json: { source_org: 'alice', source_repo: 'dataset', source_tag: 'v1' } });
    expect(again.status).toBe(409);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ namespace: string; name: string }>(
        'SELECT n.name AS namespace, r.name FROM repositories r JOIN namespaces n ON n.id = r.namespace_id ORDER BY r.id',
      );
      expect(rows).toEqual([{ namespace: 'alice', name: 'Dataset' }, { namespace: 'bob', name: 'Dataset' }]);
    } finally {
      await client.end();
    }
    await expect(access(join(s.dataDir, 'snapfork.db'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
