/**
 * A real server whose packs live in S3 (SNAPFORK_S3_*) and whose metadata and chunk index stay
 * in its data directory (no SNAPFORK_DATABASE_URL): one server over a bucket. Skipped, saying
 * why, without an S3 store to run on (test/support/s3.ts).
 */
import { randomBytes } from 'node:crypto';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyPrefix, freshPrefix, rawClient, s3Config, s3Env, S3_SKIP_REASON } from '../support/s3.js';
import { startTestServer, type TestServer } from '../support/server.js';

if (s3Config === undefined) console.warn(`S3 server tests skipped: ${S3_SKIP_REASON}`);

describe.skipIf(s3Config === undefined)(`a server with its packs in S3${s3Config === undefined ? ` (skipped: ${S3_SKIP_REASON})` : ''}`, () => {
  let prefix: string;
  let s: TestServer;

  beforeAll(async () => {
    prefix = freshPrefix(s3Config!, 's3-server');
    s = await startTestServer(s3Env(s3Config!, prefix));
  });
  afterAll(async () => {
    await s?.stop();
    if (prefix !== undefined) await emptyPrefix(rawClient(s3Config!), s3Config!.bucket, prefix);
  });

  it('writes packs to the bucket, indexes them in the data directory, and reads them again after a restart', async () => {
    const alice = await s.token('alice');
    await s.createRepo(alice, 'data');
    const content = randomBytes(2 * 1024 * 1024);
    await s.pushFiles(alice, 'alice/data', 'v1', { 'data.bin': content });

    const listed = await rawClient(s3Config!).send(new ListObjectsV2Command({ Bucket: s3Config!.bucket, Prefix: prefix }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length));
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((k) => /^packs\/[0-9a-f]{2}\/[0-9a-f]{32}\.pack$/.test(k))).toBe(true);
    expect(s.chunkCount()).toBeGreaterThan(0);
    expect(await readdir(join(s.dataDir, 'chunks'))).not.toContain('packs');

    // The index survives the process; the packs the restart finds are all indexed, so none goes.
    s = await s.restart();
    const read = await s.api('/api/v1/repos/alice/data/tags/v1/files/data.bin', { token: alice });
    expect(read.status).toBe(200);
    expect(Buffer.from(await read.arrayBuffer()).equals(content)).toBe(true);
    await expect(access(join(s.dataDir, 'chunks', 'index.db'))).resolves.toBeUndefined();
  });
});
