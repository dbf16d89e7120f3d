import { afterAll, beforeAll, expect, it } from 'vitest';
import { generatedTar } from '../support/generated.js';
import { startTestServer, type TestServer } from '../support/server.js';

const GIB = 1024 ** 3;
let s: TestServer;
let alice: string;
let bob: string;

beforeAll(async () => {
  s = await startTestServer();
  alice = await s.token('alice');
  bob = await s.token('bob');
});
afterAll(() => s.stop());

function diff(after: Record<string, number>, before: Record<string, number>) {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - (before[k] ?? 0)]));
}

async function pushGenerated(repo: string, size: number, seed: number) {
  await s.api('/api/v1/user/repos', { method: 'POST', token: alice, json: { name: repo, visibility: 'public' } });
  const res = await s.api(`/api/v1/repos/alice/${repo}/tags/v1/archive`, {
    method: 'PUT',
    token: alice,
    body: generatedTar('disk.img', size, seed),
    headers: { 'content-type': 'application/x-tar' },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { bytes: number };
}

async function fork(repo: string) {
  const res = await s.api('/api/v1/repositories/fork', {
    method: 'POST',
    token: bob,
    json: { source_org: 'alice', source_repo: repo, source_tag: 'v1' },
  });
  expect(res.status).toBe(201);
}

it('a fork of a 1 GiB snapshot writes no chunk and no more rows than a fork of a 1 KiB one', async () => {
  await pushGenerated('small', 1024, 1);
  const big = await pushGenerated('big', GIB, 2);
  expect(big.bytes).toBe(GIB);
  expect(s.chunkCount()).toBeGreaterThan(GIB / (256 * 1024));

  const chunksBefore = s.chunkCount();
  const rows0 = s.metadataRows();
  await fork('small');
  const rows1 = s.metadataRows();
  await fork('big');
  const rows2 = s.metadataRows();

  expect(s.chunkCount()).toBe(chunksBefore);
  const smallFork = diff(rows1, rows0);
  const bigFork = diff(rows2, rows1);
  expect(bigFork).toEqual(smallFork);
  expect(Object.values(bigFork).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(6);
});
