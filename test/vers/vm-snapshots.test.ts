/**
 * Commits and branches of running VMs (issue 12) over real HTTP, with the real QEMU runtime:
 * a Vers fork's VM writes to its disk and memory, is committed and tagged, and a VM of the new
 * tag resumes with both; a live VM branches eight ways, each branch with its own identity,
 * diverging; a commit branches two ways. Errors of the branch calls in their own envelopes.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { pushGuestRootDisk } from '../support/vers.js';
import { buildVmAssets } from '../support/vm-assets.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('commits and branches of running VMs', () => {
  let s: TestServer;
  let labs: string;
  let bob: string;
  let forkCommit: string;
  /** The Vers fork's VM, after it wrote to its disk and memory. */
  let parent: string;
  /** The commit of `parent`, tagged os-fork:v2. */
  let committed: string;
  let blobDigest: string;

  const post = (path: string, json?: unknown, token = labs) => s.api(`/api/v1${path}`, { method: 'POST', token, json });
  const get = (path: string, token = labs) => s.api(`/api/v1${path}`, { token });
  const sh = async (vmId: string, line: string): Promise<string> => {
    const res = await post(`/vm/${vmId}/exec`, { command: ['sh', '-c', line] });
    expect(res.status).toBe(200);
    const { exit_code, stdout, stderr } = await res.json();
    expect({ exit_code, stderr }).toEqual({ exit_code: 0, stderr: '' });
    return stdout as string;
  };
  const stateOf = async (vmId: string) => (await (await get(`/vm/${vmId}/status`)).json()).state;

  beforeAll(async () => {
    const assets = await buildVmAssets();
    s = await startTestServer({ SNAPFORK_VM_ASSETS: assets, SNAPFORK_VM_MAX_RUNNING: '10', SNAPFORK_VM_MAX_RUNNING_PER_OWNER: '10' });
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    expect((await post('/repositories', { name: 'os' })).status).toBe(201);
    await pushGuestRootDisk(s, assets, labs, 'labs/os:v1');

    const fork = await post('/repositories/fork', { source_org: 'labs', source_repo: 'os', source_tag: 'v1', repo_name: 'os-fork' });
    expect(fork.status).toBe(201);
    ({ vm_id: parent } = await fork.json());
    forkCommit = (await (await get('/repositories/os-fork/tags/v1')).json()).commit_id;
  });
  afterAll(() => s?.stop());

  it("commits the fork's VM after it wrote: a new commit whose parent is the fork's, the VM running on", async () => {
    expect(await sh(parent, 'echo hello')).toBe('hello\n');
    // /root is on the disk; /tmp is a tmpfs, in the guest's memory only.
    blobDigest = await sh(parent, 'echo on-disk > /root/data.txt && echo in-memory > /tmp/memory.txt && dd if=/dev/urandom of=/root/blob bs=1M count=2 2>/dev/null && sha256sum /root/blob');
    const chunksBefore = s.chunkCount();

    const res = await post(`/vm/${parent}/commit`, { name: 'after-write', description: 'wrote data.txt' });
    expect(res.status).toBe(201);
    ({ commit_id: committed } = await res.json());
    expect(committed).toMatch(UUID);
    expect(await stateOf(parent)).toBe('running');
    expect(await sh(parent, 'cat /root/data.txt')).toBe('on-disk\n');
    // The 2 MiB the VM wrote and the chunks around its writes are new; the rest of the 512 MiB disk is shared.
    expect(s.chunkCount() - chunksBefore).toBeGreaterThan(8);
    const diskChunks = async (commitId: string) => {
      const manifest = (await (await get(`/repos/labs/os-fork/commits/${commitId}/manifest`)).json()) as { entries: { path: string; chunks: { digest: string; size: number }[] }[] };
      return manifest.entries.find((e) => e.path === 'rootfs.img')!.chunks;
    };
    const before = new Set((await diskChunks(forkCommit)).map((c) => c.digest));
    const rewritten = (await diskChunks(committed)).filter((c) => !before.has(c.digest));
    expect(rewritten.reduce((n, c) => n + c.size, 0)).toBeGreaterThan(2 * 1024 * 1024);
    expect(rewritten.reduce((n, c) => n + c.size, 0)).toBeLessThan(8 * 1024 * 1024);

    const lineage = await get(`/vm/commits/${committed}/parents`);
    expect(lineage.status).toBe(200);
    const [self, up] = await lineage.json();
    expect(self).toEqual({
      id: committed,
      name: 'after-write',
      owner_id: expect.any(String),
      is_public: false,
      created_at: expect.any(String),
      description: 'wrote data.txt',
      parent_vm_id: parent,
      grandparent_commit_id: forkCommit,
    });
    expect(up).toMatchObject({ id: forkCommit, parent_vm_id: null });
    expect((await get(`/vm/commits/${committed}/parents`, bob)).status).toBe(404);
    expect((await get(`/vm/commits/${randomUUID()}/parents`)).status).toBe(404);
  });

  it('tags the commit; a VM of the new tag resumes where the VM was, disk and memory, with its own identity', async () => {
    expect((await post('/repositories/os-fork/tags', { tag_name: 'v2', commit_id: committed })).status).toBe(201);
    const res = await post('/vm/from_commit', { ref: 'os-fork:v2' });
    expect(res.status).toBe(201);
    const { vm_id: resumed } = await res.json();
    expect(await sh(resumed, 'cat /root/data.txt /tmp/memory.txt; sha256sum /root/blob')).toBe(`on-disk\nin-memory\n${blobDigest}`);
    expect(await sh(resumed, 'hostname')).toBe(`${resumed.slice(0, 8)}\n`);
    expect(await sh(resumed, 'cat /etc/machine-id')).not.toBe(await sh(parent, 'cat /etc/machine-id'));
    const metadata = await (await get(`/vm/${resumed}/metadata`)).json();
    expect(metadata).toMatchObject({ parent_commit_id: committed, grandparent_vm_id: parent });
    expect((await s.api(`/api/v1/vm/${resumed}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('branches a live VM eight ways: each resumes its memory and disk with its own machine-id, and they diverge', async () => {
    // Nine VMs of one base disk, all reading it through one export.
    const res = await post(`/vm/branch/by_vm/${parent}?count=8`);
    expect(res.status).toBe(201);
    const { vms } = await res.json();
    expect(vms).toHaveLength(8);
    const branches = vms.map((v: { vm_id: string }) => v.vm_id);
    expect(await stateOf(parent)).toBe('running');
    const ids = new Set([await sh(parent, 'cat /etc/machine-id')]);
    for (const [i, branch] of branches.entries()) {
      expect(await stateOf(branch)).toBe('running');
      expect(await sh(branch, 'cat /root/data.txt /tmp/memory.txt')).toBe('on-disk\nin-memory\n');
      ids.add(await sh(branch, 'cat /etc/machine-id'));
      await sh(branch, `echo branch-${i} > /root/data.txt`);
    }
    expect(ids.size).toBe(9);
    for (const [i, branch] of branches.entries()) expect(await sh(branch, 'cat /root/data.txt')).toBe(`branch-${i}\n`);
    expect(await sh(parent, 'cat /root/data.txt')).toBe('on-disk\n');
    const listed = (await (await get('/vms')).json()).map((v: { vm_id: string }) => v.vm_id);
    expect(listed).toEqual(expect.arrayContaining([parent, ...branches]));
    for (const branch of branches) expect((await s.api(`/api/v1/vm/${branch}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('keep_paused leaves the VM paused after its branch; it resumes on request', async () => {
    const res = await post(`/vm/${parent}/branch?keep_paused=true`);
    expect(res.status).toBe(201);
    const [{ vm_id: branch }] = (await res.json()).vms;
    expect(await stateOf(parent)).toBe('paused');
    expect(await stateOf(branch)).toBe('running');
    expect((await s.api(`/api/v1/vm/${parent}/state`, { method: 'PATCH', token: labs, json: { state: 'Running' } })).status).toBe(200);
    expect(await sh(parent, 'cat /tmp/memory.txt')).toBe('in-memory\n');
    expect((await s.api(`/api/v1/vm/${branch}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('branches a commit two ways, each resuming its saved state; a commit id names a commit for /vm/{id}/branch', async () => {
    const res = await post(`/vm/branch/by_commit/${committed}?count=2`);
    expect(res.status).toBe(201);
    const branches = (await res.json()).vms.map((v: { vm_id: string }) => v.vm_id);
    expect(branches).toHaveLength(2);
    for (const branch of branches) expect(await sh(branch, 'cat /tmp/memory.txt')).toBe('in-memory\n');
    const byId = await post(`/vm/${committed}/branch`);
    expect(byId.status).toBe(201);
    const [{ vm_id: third }] = (await byId.json()).vms;
    expect(await sh(third, 'cat /root/data.txt')).toBe('on-disk\n');
    for (const vm of [...branches, third]) expect((await s.api(`/api/v1/vm/${vm}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('branches a tag of a bare disk three ways: each as of its commit, with its own machine-id, diverging', async () => {
    const v1 = (await (await get('/repositories/os/tags/v1')).json()).commit_id;
    const res = await post('/vm/branch/by_ref/os/v1?count=3');
    expect(res.status).toBe(201);
    const branches: string[] = (await res.json()).vms.map((v: { vm_id: string }) => v.vm_id);
    expect(new Set(branches).size).toBe(3);
    const machineIds = new Set<string>();
    for (const [index, branch] of branches.entries()) {
      expect((await (await get(`/vm/${branch}/metadata`)).json()).parent_commit_id).toBe(v1);
      // A fresh disk of the tag: none of what the fork's VM wrote.
      expect(await sh(branch, 'test -e /root/data.txt && echo yes || echo no')).toBe('no\n');
      machineIds.add((await sh(branch, `echo ${index} > /tmp/mine && cat /etc/machine-id`)).trim());
    }
    expect(machineIds.size).toBe(3);
    for (const [index, branch] of branches.entries()) expect(await sh(branch, 'cat /tmp/mine')).toBe(`${index}\n`);
    for (const vm of branches) expect((await s.api(`/api/v1/vm/${vm}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('answers errors of by_ref and by_vm as {vms: [], error}, of the others in the usual envelope', async () => {
    const missingTag = await post('/vm/branch/by_ref/os-fork/nope');
    expect(missingTag.status).toBe(404);
    expect(await errorBodyOf(missingTag)).toEqual({ vms: [], error: expect.stringMatching(/tag nope not found/) });
    const stranger = await post(`/vm/branch/by_vm/${parent}`, undefined, bob);
    expect(stranger.status).toBe(404);
    expect(await errorBodyOf(stranger)).toEqual({ vms: [], error: `vm ${parent} not found` });
    const tooMany = await post(`/vm/branch/by_vm/${parent}?count=17`);
    expect(tooMany.status).toBe(400);
    expect(await errorBodyOf(tooMany)).toEqual({ vms: [], error: 'count must be from 1 to 16' });
    // 1 VM runs; 10 more would pass the cap of 10.
    const overCap = await post(`/vm/branch/by_vm/${parent}?count=10`);
    expect(overCap.status).toBe(429);
    expect(await errorBodyOf(overCap)).toEqual({ vms: [], error: expect.stringMatching(/at most 10 VMs/) });
    expect(await post(`/vm/branch/by_commit/${randomUUID()}`).then(errorBodyOf)).toEqual({ error: 'commit not found', success: false });
    expect((await post(`/vm/${randomUUID()}/commit`)).status).toBe(404);
    expect((await (await get('/vms')).json()).map((v: { vm_id: string }) => v.vm_id)).toEqual([parent]);
  });

  it("refuses to commit a dead VM (409) and a stranger's (404)", async () => {
    expect((await post(`/vm/${parent}/commit`, {}, bob)).status).toBe(404);
    expect((await s.api(`/api/v1/vm/${parent}`, { method: 'DELETE', token: labs })).status).toBe(200);
    expect((await post(`/vm/${parent}/commit`)).status).toBe(404);
  });
});
