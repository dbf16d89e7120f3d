/**
 * Vers' VM API (issue 12) over real HTTP. The checks that stop before a boot share one server;
 * the VM lifecycle boots the project's own guest (scripts/vm/build-guest.sh) with the real QEMU
 * runtime, four boots in all, each a couple of seconds of TCG: by ref, by commit id (a retry
 * of a 429), a Vers fork's VM on its first use, by tag name.
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorBodyOf } from '../support/error-body.js';
import { expectVersError, pushGuestRootDisk } from '../support/vers.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { buildVmAssets } from '../support/vm-assets.js';


const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** 4 KiB that pass for an ext4 root disk (its superblock magic) until a VM boots it. */
function ext4Magic(): Buffer {
  const disk = Buffer.alloc(4096);
  disk.writeUInt16LE(0xef53, 1024 + 56);
  return disk;
}


/** The Vers calls of one test server, by path under /api/v1. */
function versOf(s: TestServer) {
  return {
    get: (path: string, token?: string) => s.api(`/api/v1${path}`, { token }),
    post: (path: string, token: string | undefined, json: unknown, headers: Record<string, string> = {}) =>
      s.api(`/api/v1${path}`, { method: 'POST', token, json, headers }),
    patch: (path: string, token: string, json: unknown) => s.api(`/api/v1${path}`, { method: 'PATCH', token, json }),
    del: (path: string, token: string) => s.api(`/api/v1${path}`, { method: 'DELETE', token }),
  };
}

/** The namespace id a token acts in, as Vers' `owner_id` (read from a commit it made). */
async function ownerIdOf(s: TestServer, token: string): Promise<string> {
  const res = await s.api('/api/v1/commits', { token });
  expect(res.status).toBe(200);
  return (await res.json()).commits[0].owner_id;
}

describe('the VM API before any boot', () => {
  let s: TestServer;
  let vers: ReturnType<typeof versOf>;
  /** alice acting in the organization `labs`; bob in his own namespace. */
  let labs: string;
  let bob: string;
  /** A commit of labs/os whose only file is its root disk. */
  let bootable: string;

  beforeAll(async () => {
    // No VM may run: whatever passes every other check is refused at the cap, before a boot.
    s = await startTestServer({ SNAPFORK_VM_MAX_RUNNING: '0' });
    vers = versOf(s);
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    for (const name of ['os', 'data', 'other']) expect((await vers.post('/repositories', labs, { name })).status).toBe(201);
    bootable = (await s.pushFiles(labs, 'labs/os', 'v1', { 'disk.img': ext4Magic() })).commit_id;
    await s.pushFiles(labs, 'labs/data', 'v1', { 'a.csv': 'a\n', 'b.csv': 'b\n' });
    await s.pushFiles(labs, 'labs/other', 'v1', { 'rootfs.img': Buffer.alloc(4096, 2) });
  });
  afterAll(() => s.stop());

  it('400 for a ref not of the form repo_name:tag_name, and for a body naming no source or two', async () => {
    for (const ref of ['os', 'os:', ':v1', 'os:v1:x']) {
      await expectVersError(await vers.post('/vm/from_commit', labs, { ref }), 400, "Invalid ref format. Expected 'repo_name:tag_name'");
    }
    await expectVersError(await vers.post('/vm/from_commit', labs, {}), 400, 'give exactly one of commit_id, ref or tag_name');
    await expectVersError(await vers.post('/vm/from_commit', labs, { ref: 'os:v1', commit_id: bootable }), 400);
    await expectVersError(await vers.post('/vm/from_commit', labs, { commit_id: 7 }), 400);
  });

  it('404 "commit not found" for an unknown commit and for one the caller may not read', async () => {
    await expectVersError(await vers.post('/vm/from_commit', labs, { commit_id: randomUUID() }), 404, 'commit not found');
    await expectVersError(await vers.post('/vm/from_commit', labs, { commit_id: 'not-a-uuid' }), 404, 'commit not found');
    // labs/os is private: bob may not boot its commit.
    await expectVersError(await vers.post('/vm/from_commit', bob, { commit_id: bootable }), 404, 'commit not found');
    await expectVersError(await vers.post('/vm/from_commit', labs, { ref: 'os:v9' }), 404, /tag v9 not found/);
    await expectVersError(await vers.post('/vm/from_commit', labs, { ref: 'nothing:v1' }), 404);
    await expectVersError(await vers.post('/vm/from_commit', labs, { tag_name: 'v9' }), 404, /tag v9 not found/);
  });

  it('422 for a rootfs.img that is no ext4 image, and for a tag name that several repositories hold', async () => {
    await expectVersError(await vers.post('/vm/from_commit', labs, { ref: 'other:v1' }), 422, 'commit holds no bootable disk: rootfs.img is not an ext4 image');
    await expectVersError(await vers.post('/vm/from_commit', labs, { tag_name: 'v1' }), 422, /several repositories of labs \(data, os, \.\.\.\)/);
  });

  it('429 past the cap on running VMs, once the commit and its disk resolve; 401 without a token', async () => {
    // labs/data holds no root disk: a dataset, booted as the base image with its files at /data.
    for (const source of [{ ref: 'os:v1' }, { commit_id: bootable }, { ref: 'data:v1' }]) {
      await expectVersError(await vers.post('/vm/from_commit', labs, source), 429, 'this server runs at most 0 VMs at once: delete one or try again later');
    }
    await expectVersError(await vers.post('/vm/from_commit', undefined, { ref: 'os:v1' }), 401);
    await expectVersError(await vers.get('/vms'), 401);
    // A 429 leaves no VM behind.
    expect(await (await vers.get('/vms', labs)).json()).toEqual([]);
  });

  it("answers the Vers fork's VM, asleep on its commit, to its owner only; exec and resume wake it, past the cap a 429 leaves it asleep; delete removes it", async () => {
    const forked = await vers.post('/repositories/fork', bob, { source_org: 'labs', source_repo: 'os', source_tag: 'v1' });
    // labs/os is private to labs: bob cannot fork it. alice forks it into her own namespace.
    expect(forked.status).toBe(404);
    const alice = await s.token('alice');
    const fork = await vers.post('/repositories/fork', alice, { source_org: 'labs', source_repo: 'os', source_tag: 'v1', repo_name: 'os-fork' });
    expect(fork.status).toBe(201);
    const { vm_id } = await fork.json();
    expect(vm_id).toMatch(UUID);

    const status = await vers.get(`/vm/${vm_id}/status`, alice);
    expect(status.status).toBe(200);
    const vm = await status.json();
    expect(vm).toEqual({ vm_id, owner_id: await ownerIdOf(s, alice), state: 'sleeping', created_at: expect.any(String), labels: {} });
    for (const path of ['/vms', '/vm']) expect(await (await vers.get(path, alice)).json()).toEqual([vm]);

    // bob is no member of alice's namespace: 404, as for a VM that does not exist.
    await expectVersError(await vers.get(`/vm/${vm_id}/status`, bob), 404, `vm ${vm_id} not found`);
    await expectVersError(await vers.post(`/vm/${vm_id}/exec`, bob, { command: ['true'] }), 404);
    await expectVersError(await vers.patch(`/vm/${vm_id}/state`, bob, { state: 'Paused' }), 404);
    await expectVersError(await vers.del(`/vm/${vm_id}`, bob), 404);
    expect(await (await vers.get('/vms', bob)).json()).toEqual([]);
    await expectVersError(await vers.get(`/vm/${randomUUID()}/status`, alice), 404);
    // Acting in labs, alice lists labs' VMs, yet still reaches her own by id.
    expect(await (await vers.get('/vms', labs)).json()).toEqual([]);
    expect((await vers.get(`/vm/${vm_id}/status`, labs)).status).toBe(200);

    // Its first use boots it, and the cap (0 here) refuses the boot: it sleeps on.
    for (const wake of [vers.post(`/vm/${vm_id}/exec`, alice, { command: ['true'] }), vers.patch(`/vm/${vm_id}/state`, alice, { state: 'Running' })]) {
      await expectVersError(await wake, 429, 'this server runs at most 0 VMs at once: delete one or try again later');
    }
    expect(await (await vers.get(`/vm/${vm_id}/status`, alice)).json()).toEqual(vm);
    // Pausing does not wake it.
    await expectVersError(await vers.patch(`/vm/${vm_id}/state`, alice, { state: 'Paused' }), 409, /is sleeping/);
    await expectVersError(await vers.patch(`/vm/${vm_id}/state`, alice, { state: 'paused' }), 400);
    await expectVersError(await vers.post(`/vm/${vm_id}/exec`, alice, { command: [] }), 400);

    const deleted = await vers.del(`/vm/${vm_id}`, alice);
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ vm_id });
    await expectVersError(await vers.get(`/vm/${vm_id}/status`, alice), 404);
    await expectVersError(await vers.del(`/vm/${vm_id}`, alice), 404);
    expect(await (await vers.get('/vms', alice)).json()).toEqual([]);
  });

  it("a dataset fork's VM (no root disk) wakes like any other: past the cap a 429 leaves it asleep (its boot: vm-root.test.ts)", async () => {
    const alice = await s.token('alice');
    const fork = await vers.post('/repositories/fork', alice, { source_org: 'labs', source_repo: 'data', source_tag: 'v1', repo_name: 'data-fork' });
    expect(fork.status).toBe(201);
    const { vm_id } = await fork.json();
    await expectVersError(await vers.post(`/vm/${vm_id}/exec`, alice, { command: ['ls', '/data'] }), 429, 'this server runs at most 0 VMs at once: delete one or try again later');
    await expectVersError(await vers.patch(`/vm/${vm_id}/state`, alice, { state: 'Running' }), 429);
    expect((await (await vers.get(`/vm/${vm_id}/status`, alice)).json()).state).toBe('sleeping');
  });

  it('answers 409 naming the server that runs a VM for what only that server can do; its restart leaves the VM to it', async () => {
    const alice = await s.token('alice');
    const fork = await vers.post('/repositories/fork', alice, { source_org: 'labs', source_repo: 'os', source_tag: 'v1', repo_name: 'os-elsewhere' });
    const { vm_id } = await fork.json();
    // Another server sharing the database woke it (one server here: its row says so).
    s.alterMetadata(`UPDATE vms SET state = 'running', host = 'server-b' WHERE id = '${vm_id}'`);
    const elsewhere = `vm ${vm_id} runs on another snapfork server (server-b): send its requests to that server`;
    await expectVersError(await vers.post(`/vm/${vm_id}/exec`, alice, { command: ['true'] }), 409, elsewhere);
    await expectVersError(await vers.patch(`/vm/${vm_id}/state`, alice, { state: 'Paused' }), 409, elsewhere);
    await expectVersError(await vers.post(`/vm/${vm_id}/commit`, alice, {}), 409, elsewhere);
    const branch = await vers.post(`/vm/branch/by_vm/${vm_id}`, alice, {});
    expect(branch.status).toBe(409);
    expect(await errorBodyOf(branch)).toEqual({ vms: [], error: elsewhere });
    await expectVersError(await vers.del(`/vm/${vm_id}`, alice), 409, elsewhere);
    expect((await (await vers.get(`/vm/${vm_id}/status`, alice)).json()).state).toBe('running');
    // A restart marks dead what this server ran, not what another runs.
    s = await s.restart();
    vers = versOf(s);
    expect((await (await vers.get(`/vm/${vm_id}/status`, alice)).json()).state).toBe('running');
  });
});

/** Pids of the processes whose working directory is the VM's work directory or below (its QEMU). */
async function processesOf(s: TestServer, vmId: string): Promise<number[]> {
  const workDir = join(s.dataDir, 'vms', vmId);
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => '');
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cwd === workDir || cwd.startsWith(`${workDir}/`) || cmdline.includes(workDir)) pids.push(Number(name));
  }
  return pids;
}

describe('a VM booted from a pushed root disk, with the real QEMU runtime', () => {
  let s: TestServer;
  let vers: ReturnType<typeof versOf>;
  let labs: string;
  let bob: string;
  let commitId: string;
  let vm1: string;

  const exec = async (vmId: string, body: Record<string, unknown>) => {
    const res = await vers.post(`/vm/${vmId}/exec`, labs, body);
    expect(res.status).toBe(200);
    return res.json();
  };
  const stateOf = async (vmId: string, token = labs) => (await (await vers.get(`/vm/${vmId}/status`, token)).json()).state;

  beforeAll(async () => {
    const assets = await buildVmAssets();
    s = await startTestServer({ SNAPFORK_VM_ASSETS: assets, SNAPFORK_VM_MAX_RUNNING_PER_OWNER: '1' });
    vers = versOf(s);
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    expect((await vers.post('/repositories', labs, { name: 'os' })).status).toBe(201);
    commitId = await pushGuestRootDisk(s, assets, labs, 'labs/os:v1');
  });
  afterAll(() => s?.stop());

  it('boots from a ref (201 {vm_id}) and answers it running, to its owner', async () => {
    const res = await vers.post('/vm/from_commit', labs, { ref: 'os:v1' });
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(body).toEqual({ vm_id: expect.stringMatching(UUID) });
    vm1 = body.vm_id;
    const vm = { vm_id: vm1, owner_id: await ownerIdOf(s, labs), state: 'running', created_at: expect.any(String), labels: {} };
    expect(await (await vers.get(`/vm/${vm1}/status`, labs)).json()).toEqual(vm);
    expect(await (await vers.get('/vms', labs)).json()).toEqual([vm]);
    expect(await processesOf(s, vm1)).toHaveLength(1);
  });

  it('execs: echo, exit codes, env, stdin and working directory, a file written then read back, its own identity', async () => {
    expect(await exec(vm1, { command: ['echo', 'hello'] })).toEqual({ exit_code: 0, stdout: 'hello\n', stderr: '', exec_id: expect.any(String) });
    expect(await exec(vm1, { command: ['sh', '-c', 'echo oops >&2; exit 3'], exec_id: 'e-1' })).toEqual({ exit_code: 3, stdout: '', stderr: 'oops\n', exec_id: 'e-1' });
    const shell = await exec(vm1, { command: ['sh', '-c', 'cat; echo "$GREETING"; pwd'], stdin: 'from stdin\n', env: { GREETING: 'héllo' }, working_dir: '/tmp', timeout_secs: 0 });
    expect(shell).toMatchObject({ exit_code: 0, stdout: 'from stdin\nhéllo\n/tmp\n' });

    expect(await exec(vm1, { command: ['sh', '-c', 'echo kept > /root/note && sync'] })).toMatchObject({ exit_code: 0 });
    expect(await exec(vm1, { command: ['cat', '/root/note'] })).toMatchObject({ exit_code: 0, stdout: 'kept\n' });

    expect((await exec(vm1, { command: ['hostname'] })).stdout).toBe(`${vm1.slice(0, 8)}\n`);
    expect((await exec(vm1, { command: ['cat', '/etc/machine-id'] })).stdout).toMatch(/^[0-9a-f]{32}\n$/);
  });

  it('pauses and resumes (PATCH .../state, 200); a paused VM refuses exec with 409', async () => {
    const paused = await vers.patch(`/vm/${vm1}/state`, labs, { state: 'Paused' });
    expect(paused.status).toBe(200);
    expect(await stateOf(vm1)).toBe('paused');
    await expectVersError(await vers.post(`/vm/${vm1}/exec`, labs, { command: ['true'] }), 409);
    expect((await vers.patch(`/vm/${vm1}/state`, labs, { state: 'Paused' })).status).toBe(200);

    expect((await vers.patch(`/vm/${vm1}/state`, labs, { state: 'Running' })).status).toBe(200);
    expect(await stateOf(vm1)).toBe('running');
    expect(await exec(vm1, { command: ['cat', '/root/note'] })).toMatchObject({ stdout: 'kept\n' });
  });

  it('answers 404 to anyone outside the owning namespace, for every call; another member of labs reaches it', async () => {
    const bobInLabs = await s.token('bob', { org: 'labs' });
    for (const token of [bob, bobInLabs]) {
      await expectVersError(await vers.get(`/vm/${vm1}/status`, token), 404);
      await expectVersError(await vers.post(`/vm/${vm1}/exec`, token, { command: ['true'] }), 404);
      await expectVersError(await vers.patch(`/vm/${vm1}/state`, token, { state: 'Paused' }), 404);
      await expectVersError(await vers.del(`/vm/${vm1}`, token), 404);
    }
    expect(await (await vers.get('/vms', bob)).json()).toEqual([]);
    await expectVersError(await vers.get('/vms', bobInLabs), 403);

    const carol = await s.token('carol', { org: 'labs' });
    expect((await s.api('/api/v1/orgs/labs/members/carol', { method: 'PUT', token: labs, json: { role: 'member' } })).status).toBe(200);
    expect((await (await vers.get('/vms', carol)).json()).map((v: { vm_id: string }) => v.vm_id)).toEqual([vm1]);
    const res = await vers.post(`/vm/${vm1}/exec`, carol, { command: ['cat', '/root/note'] });
    expect(await res.json()).toMatchObject({ exit_code: 0, stdout: 'kept\n' });
    expect(await stateOf(vm1)).toBe('running');
  });

  it('429 past the per-owner cap, not kept for the idempotency key: after a delete (process gone) the retry boots', async () => {
    const key = { 'X-Idempotency-Key': randomUUID() };
    await expectVersError(await vers.post('/vm/from_commit', labs, { commit_id: commitId }, key), 429, 'labs may run at most 1 VMs at once: delete one or try again later');

    const deleted = await vers.del(`/vm/${vm1}`, labs);
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ vm_id: vm1 });
    expect(await processesOf(s, vm1)).toEqual([]);
    await expectVersError(await vers.get(`/vm/${vm1}/status`, labs), 404);

    const retried = await vers.post('/vm/from_commit', labs, { commit_id: commitId }, key);
    expect(retried.status).toBe(201);
    const { vm_id: vm2 } = await retried.json();
    expect(vm2).not.toBe(vm1);
    expect((await vers.get('/vms', labs).then((r) => r.json())).map((v: { vm_id: string }) => v.vm_id)).toEqual([vm2]);
    // A fresh copy-on-write layer over the same commit: what vm1 wrote is not there.
    expect(await exec(vm2, { command: ['cat', '/root/note'] })).toMatchObject({ exit_code: 1, stdout: '' });
    expect((await exec(vm2, { command: ['hostname'] })).stdout).toBe(`${vm2.slice(0, 8)}\n`);

    // Its process killed from outside, the VM is dead, and its slot free again.
    const [pid] = await processesOf(s, vm2);
    process.kill(pid!, 'SIGKILL');
    while ((await stateOf(vm2)) !== 'dead') await new Promise((resolve) => setImmediate(resolve));
    await expectVersError(await vers.post(`/vm/${vm2}/exec`, labs, { command: ['true'] }), 409, /is dead/);
  });

  it("boots the Vers fork's VM on its first use, once for concurrent first uses: booting meanwhile, then running", async () => {
    // Forked into alice's own namespace, so labs' cap of one running VM does not apply.
    const alice = await s.token('alice');
    const fork = await vers.post('/repositories/fork', alice, { source_org: 'labs', source_repo: 'os', source_tag: 'v1', repo_name: 'os-fork' });
    expect(fork.status).toBe(201);
    const { vm_id } = await fork.json();
    expect(await stateOf(vm_id, alice)).toBe('sleeping');

    const execs = Promise.all([1, 2].map(() => vers.post(`/vm/${vm_id}/exec`, alice, { command: ['echo', 'hi'] })));
    let settled = false;
    void execs.finally(() => { settled = true; });
    let state = 'sleeping';
    while (state === 'sleeping' && !settled) state = await stateOf(vm_id, alice);
    expect(state).toBe('booting');
    for (const res of await execs) {
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ exit_code: 0, stdout: 'hi\n', stderr: '' });
    }
    expect(await stateOf(vm_id, alice)).toBe('running');
    expect(await processesOf(s, vm_id)).toHaveLength(1);
    // Its own identity, as a VM booted from_commit gets.
    const hostname = await vers.post(`/vm/${vm_id}/exec`, alice, { command: ['hostname'] });
    expect((await hostname.json()).stdout).toBe(`${vm_id.slice(0, 8)}\n`);
  });

  it('boots by tag name; no VM outlives the server', async () => {
    const res = await vers.post('/vm/from_commit', labs, { tag_name: 'v1' });
    expect(res.status).toBe(201);
    const { vm_id } = await res.json();
    expect(await exec(vm_id, { command: ['echo', 'up'] })).toMatchObject({ stdout: 'up\n' });
    expect(await processesOf(s, vm_id)).toHaveLength(1);
    await s.stop();
    expect(await processesOf(s, vm_id)).toEqual([]);
  });
});
