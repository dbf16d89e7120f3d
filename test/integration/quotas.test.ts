/**
 * Quotas per namespace over real HTTP on a real store: bytes stored (charged once per chunk, to
 * the namespace whose commit first referenced it; forks and deduplicated data free; given back
 * by garbage collection), repositories and running VMs, set by an administrator or by the
 * server's defaults, refused with 507 / 429 in each endpoint's envelope before anything is
 * written. Random bytes do not compress and share no chunk, so sizes are exact.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileEntry, sha256 } from '../support/delta.js';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tarOfEntries } from '../support/trees.js';

const KIB = 1024;

let s: TestServer;
let admin: string;

beforeAll(async () => {
  s = await startTestServer();
  admin = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
});
afterAll(() => s.stop());

async function quotaOf(namespace: string, token: string) {
  const res = await s.api(`/api/v1/namespaces/${namespace}/quota`, { token });
  expect(res.status).toBe(200);
  return res.json();
}

async function setQuota(namespace: string, limits: Record<string, number | null>) {
  const res = await s.api(`/api/v1/namespaces/${namespace}/quota`, { method: 'PUT', token: admin, json: limits });
  expect(res.status).toBe(200);
  return res.json();
}

const pushTar = (token: string, fullName: string, tag: string, files: Record<string, Buffer>) =>
  s.api(`/api/v1/repos/${fullName}/tags/${tag}/archive`, {
    method: 'PUT',
    token,
    body: tarOfEntries(Object.entries(files).map(([path, body]) => ({ path, body }))),
    headers: { 'content-type': 'application/x-tar' },
  });

async function storedChunks(): Promise<number> {
  const res = await s.api('/api/v1/admin/storage', { token: admin });
  expect(res.status).toBe(200);
  return (await res.json()).chunks;
}

describe('GET and PUT /api/v1/namespaces/{owner}/quota', () => {
  it('shows a member no limits and nothing used at first, and hides the quota from others', async () => {
    const dana = await s.token('dana');
    const erin = await s.token('erin');
    expect(await quotaOf('dana', dana)).toEqual({
      namespace: 'dana',
      limits: { bytes: null, repositories: null, running_vms: null },
      overrides: { bytes: null, repositories: null, running_vms: null },
      usage: { bytes: 0, repositories: 0, running_vms: 0 },
    });
    await s.api('/api/v1/user', { token: erin });
    expect((await s.api('/api/v1/namespaces/erin/quota', { token: dana })).status).toBe(404);
    expect((await s.api('/api/v1/namespaces/nobody-at-all/quota', { token: dana })).status).toBe(404);
    expect((await s.api('/api/v1/namespaces/dana/quota')).status).toBe(401);
  });

  it('lets administrators alone set limits, and refuses bad ones with 400', async () => {
    const dana = await s.token('dana');
    const own = await s.api('/api/v1/namespaces/dana/quota', { method: 'PUT', token: dana, json: { bytes: 1 } });
    expect(own.status).toBe(403);
    for (const body of [{ bytes: -1 }, { repositories: 1.5 }, { running_vms: '2' }, {}, { disk: 1 }]) {
      const res = await s.api('/api/v1/namespaces/dana/quota', { method: 'PUT', token: admin, json: body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    const set = await setQuota('dana', { bytes: 1000, repositories: 3 });
    expect(set.limits).toEqual({ bytes: 1000, repositories: 3, running_vms: null });
    expect(set.overrides).toEqual({ bytes: 1000, repositories: 3, running_vms: null });
    // null gives a limit back to the default; an absent one stays.
    const reset = await setQuota('dana', { bytes: null });
    expect(reset.overrides).toEqual({ bytes: null, repositories: 3, running_vms: null });
    expect((await s.api('/api/v1/namespaces/missing-ns/quota', { method: 'PUT', token: admin, json: { bytes: 1 } })).status).toBe(404);
  });
});

describe('the bytes quota', () => {
  it('charges new bytes once, refuses a push that passes it with 507 and no tag, and lets deduplicated data in', async () => {
    const alice = await s.token('alice');
    await s.createRepo(alice, 'q-data', 'public');
    await setQuota('alice', { bytes: 600 * KIB });
    const first = randomBytes(500 * KIB);
    expect((await pushTar(alice, 'alice/q-data', 'v1', { 'a.bin': first })).status).toBe(201);
    expect((await quotaOf('alice', alice)).usage.bytes).toBe(500 * KIB);

    // 200 KiB more would make 700 KiB of 600.
    const over = await pushTar(alice, 'alice/q-data', 'v2', { 'a.bin': first, 'b.bin': randomBytes(200 * KIB) });
    expect(over.status).toBe(507);
    expect(await errorBodyOf(over)).toEqual({
      error: expect.stringMatching(/^namespace alice is over its storage quota: \d+ of 614400 bytes stored/),
      success: false,
      details: { quota: 'bytes', limit: 600 * KIB, used: expect.any(Number) },
    });
    expect((await s.api('/api/v1/repos/alice/q-data/tags/v2', { token: alice })).status).toBe(404);
    expect((await quotaOf('alice', alice)).usage.bytes).toBe(500 * KIB);

    // The same bytes under another tag and name cost nothing.
    expect((await pushTar(alice, 'alice/q-data', 'v3', { 'copy.bin': first })).status).toBe(201);
    expect((await quotaOf('alice', alice)).usage.bytes).toBe(500 * KIB);
  });

  it('refuses a push of a namespace at its quota before reading its body', async () => {
    const frank = await s.token('frank');
    await s.createRepo(frank, 'q-full');
    await setQuota('frank', { bytes: 100 * KIB });
    expect((await pushTar(frank, 'frank/q-full', 'v1', { 'a.bin': randomBytes(100 * KIB) })).status).toBe(201);
    const before = await storedChunks();
    const res = await pushTar(frank, 'frank/q-full', 'v2', { 'b.bin': randomBytes(300 * KIB) });
    expect(res.status).toBe(507);
    expect(await storedChunks()).toBe(before);

    // A delta upload is refused the same way.
    const chunk = randomBytes(4 * KIB);
    const put = await s.api(`/api/v1/repos/frank/q-full/chunks/${sha256(chunk)}`, {
      method: 'PUT',
      token: frank,
      body: chunk,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status).toBe(507);
    expect(await storedChunks()).toBe(before);

    // Raised by an administrator, the same push goes through.
    await setQuota('frank', { bytes: 1024 * KIB });
    expect((await pushTar(frank, 'frank/q-full', 'v2', { 'b.bin': randomBytes(300 * KIB) })).status).toBe(201);
  });

  it('refuses a commit whose uploaded chunks would pass the quota, in the commit itself', async () => {
    // Each upload finds room (nothing is charged until a commit names the chunks); the commit of
    // all three would pass the quota, so its transaction refuses it and charges nothing.
    const lena = await s.token('lena');
    await s.createRepo(lena, 'q-delta');
    await setQuota('lena', { bytes: 100 * KIB });
    const chunks = [randomBytes(60 * KIB), randomBytes(60 * KIB), randomBytes(60 * KIB)];
    for (const chunk of chunks) {
      const put = await s.api(`/api/v1/repos/lena/q-delta/chunks/${sha256(chunk)}`, {
        method: 'PUT',
        token: lena,
        body: chunk,
        headers: { 'content-type': 'application/octet-stream' },
      });
      expect(put.status).toBe(201);
    }
    const refs = chunks.map((c) => ({ digest: sha256(c), size: c.length }));
    const commit = await s.api('/api/v1/repos/lena/q-delta/commits', {
      method: 'POST',
      token: lena,
      json: { tag: 'v1', manifest: { entries: [fileEntry('data.bin', refs)] } },
    });
    expect(commit.status).toBe(507);
    expect((await errorBodyOf(commit)).details).toEqual({ quota: 'bytes', limit: 100 * KIB, used: 180 * KIB });
    expect((await quotaOf('lena', lena)).usage.bytes).toBe(0);
    expect((await s.api('/api/v1/repos/lena/q-delta/tags/v1', { token: lena })).status).toBe(404);

    // One of them fits.
    const fits = await s.api('/api/v1/repos/lena/q-delta/commits', {
      method: 'POST',
      token: lena,
      json: { tag: 'v1', manifest: { entries: [fileEntry('data.bin', refs.slice(0, 1))] } },
    });
    expect(fits.status).toBe(201);
    expect((await quotaOf('lena', lena)).usage.bytes).toBe(60 * KIB);
  });

  it('charges a fork nothing, nor a push to it of what its source stored', async () => {
    const grace = await s.token('grace');
    const source = randomBytes(300 * KIB);
    await s.createRepo(grace, 'q-source', 'public');
    await s.pushFiles(grace, 'grace/q-source', 'v1', { 'data.bin': source });
    const henry = await s.token('henry');
    await s.api('/api/v1/user', { token: henry });
    await setQuota('henry', { bytes: 1 });
    const forked = await s.api('/api/v1/repos/grace/q-source/forks', { method: 'POST', token: henry, json: { name: 'q-fork' } });
    expect(forked.status).toBe(201);
    expect((await pushTar(henry, 'henry/q-fork', 'v2', { 'renamed.bin': source })).status).toBe(201);
    expect((await quotaOf('henry', henry)).usage).toEqual({ bytes: 0, repositories: 1, running_vms: 0 });
    expect((await quotaOf('grace', grace)).usage.bytes).toBe(300 * KIB);
  });

  it('gives back the bytes that garbage collection frees', async () => {
    const ivan = await s.token('ivan');
    await s.createRepo(ivan, 'q-gone');
    await s.pushFiles(ivan, 'ivan/q-gone', 'v1', { 'a.bin': randomBytes(200 * KIB) });
    expect((await quotaOf('ivan', ivan)).usage.bytes).toBe(200 * KIB);
    expect((await s.api('/api/v1/repos/ivan/q-gone', { method: 'DELETE', token: ivan })).status).toBe(204);
    const gc = await s.api('/api/v1/admin/gc', { method: 'POST', token: admin, json: { purge_deleted: true, grace_seconds: 0 } });
    expect(gc.status).toBe(200);
    expect((await quotaOf('ivan', ivan)).usage).toEqual({ bytes: 0, repositories: 0, running_vms: 0 });
  });
});

describe('the repositories quota', () => {
  it('refuses a new repository, a fork and a restore past it with 429, in each dialect', async () => {
    const judy = await s.token('judy');
    await s.createRepo(judy, 'q-one', 'public');
    await s.createRepo(judy, 'q-two');
    await setQuota('judy', { repositories: 2 });

    const created = await s.api('/api/v1/user/repos', { method: 'POST', token: judy, json: { name: 'q-three' } });
    expect(created.status).toBe(429);
    expect(await errorBodyOf(created)).toEqual({
      error: 'namespace judy has 2 repositories, its quota: delete one or ask an administrator to raise the quota',
      success: false,
      details: { quota: 'repositories', limit: 2, used: 2 },
    });
    const forked = await s.api('/api/v1/repos/judy/q-one/forks', { method: 'POST', token: judy, json: { name: 'q-one-fork' } });
    expect(forked.status).toBe(429);
    const project = (await (await s.api('/api/v1/repos/judy/q-one', { token: judy })).json()).id;
    const gitlab = await s.api(`/api/v4/projects/${project}/fork`, { method: 'POST', headers: { 'private-token': judy }, json: { path: 'q-gl-fork', name: 'q-gl-fork' } });
    expect(gitlab.status).toBe(429);
    expect(await errorBodyOf(gitlab)).toEqual({ message: expect.stringMatching(/judy has 2 repositories, its quota/) });
    expect((await quotaOf('judy', judy)).usage.repositories).toBe(2);

    // Deleting one makes room; restoring it is creating it again.
    expect((await s.api('/api/v1/repos/judy/q-two', { method: 'DELETE', token: judy })).status).toBe(204);
    expect((await s.api('/api/v1/user/repos', { method: 'POST', token: judy, json: { name: 'q-three' } })).status).toBe(201);
    expect((await s.api('/api/v1/repos/judy/q-two/restore', { method: 'POST', token: judy })).status).toBe(429);
  });

  it('applies the server default to every namespace without its own', async () => {
    const limited = await startTestServer({ SNAPFORK_QUOTA_REPOSITORIES: '1', SNAPFORK_QUOTA_RUNNING_VMS: '0' });
    try {
      const kim = await limited.token('kim');
      await limited.createRepo(kim, 'only');
      const second = await limited.api('/api/v1/user/repos', { method: 'POST', token: kim, json: { name: 'second' } });
      expect(second.status).toBe(429);
      const quota = await (await limited.api('/api/v1/namespaces/kim/quota', { token: kim })).json();
      expect(quota.limits).toEqual({ bytes: null, repositories: 1, running_vms: 0 });
      expect(quota.overrides).toEqual({ bytes: null, repositories: null, running_vms: null });

      // The running-VM quota answers before anything boots, in Vers' envelope.
      const vm = await limited.api('/api/v1/vm/new_root', { method: 'POST', token: kim, json: { vm_config: {} } });
      expect(vm.status).toBe(429);
      expect(await errorBodyOf(vm)).toEqual({ error: expect.stringMatching(/kim may run at most 0 VMs at once \(its quota/), success: false });
    } finally {
      await limited.stop();
    }
  });
});
