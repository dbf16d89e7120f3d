/**
 * VMs that boot what snapfork itself keeps (issue 12), over real HTTP with the real QEMU runtime:
 * `POST /vm/new_root` boots the base image of the system repository snapfork/images, imported
 * from the guest assets on first use and once only; a dataset's VM boots that image with the
 * dataset read-only at /data, and a commit of that VM boots its saved root disk with the
 * dataset at /data again. Seven boots in all, each a few seconds of TCG.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectVersError } from '../support/vers.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tempDir } from '../support/trees.js';
import { buildVmAssets } from '../support/vm-assets.js';

const execFileAsync = promisify(execFile);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;


/** 4 KiB that pass for an ext4 image (its superblock magic), so that a tree of it is not a dataset. */
function ext4Magic(): Buffer {
  const disk = Buffer.alloc(4096);
  disk.writeUInt16LE(0xef53, 1024 + 56);
  return disk;
}

describe('new_root, the system repository and dataset VMs', () => {
  let s: TestServer;
  let assets: string;
  let labs: string;
  let bob: string;
  /** Bytes of a dataset file that the VM must read back identical. */
  const blob = randomBytes(300_000);

  const post = (path: string, json: unknown, token = labs) => s.api(`/api/v1${path}`, { method: 'POST', token, json });
  const get = (path: string, token = labs) => s.api(`/api/v1${path}`, { token });
  const exec = async (vmId: string, command: string[], token = labs) => {
    const res = await post(`/vm/${vmId}/exec`, { command }, token);
    expect(res.status).toBe(200);
    return res.json();
  };
  const status = async (vmId: string, token = labs) => (await get(`/vm/${vmId}/status`, token)).json();
  const imageTag = async () => (await get('/repos/snapfork/images/tags/default', bob)).json();
  const imageCommits = async () => (await (await get('/repos/snapfork/images/commits', bob)).json()).length;

  beforeAll(async () => {
    assets = await buildVmAssets();
    s = await startTestServer({ SNAPFORK_VM_ASSETS: assets, SNAPFORK_VM_MAX_DATASET_BYTES: String(1024 * 1024) });
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    for (const name of ['data', 'big', 'bad']) expect((await post('/repositories', { name })).status).toBe(201);
    await s.pushFiles(labs, 'labs/data', 'v1', { 'a.csv': 'x,y\n1,2\n', 'sub/blob.bin': blob });
    await s.pushFiles(labs, 'labs/big', 'v1', { 'big.bin': randomBytes(1024 * 1024 + 1) });
    await s.pushFiles(labs, 'labs/bad', 'v1', { 'rootfs.img': ext4Magic(), 'snapfork-vm.json': '{"vcpu_count": 64}' });
  });
  afterAll(() => s?.stop());

  it('400 for a size, disk size or labels out of bounds, 404 for another image or kernel, before importing anything', async () => {
    for (const vm_config of [{ vcpu_count: 0 }, { vcpu_count: 5 }, { mem_size_mib: 64 }, { mem_size_mib: 8192 }]) {
      await expectVersError(await post('/vm/new_root', { vm_config }), 400, /^(vcpu_count|mem_size_mib) must be an integer from/);
    }
    await expectVersError(await post('/vm/new_root', { vm_config: { vcpu_count: 1.5 } }), 400);
    const labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    await expectVersError(await post('/vm/new_root', { vm_config: { labels } }), 400, 'at most 32 labels');
    await expectVersError(await post('/vm/new_root', { vm_config: { labels: { k: 7 } } }), 400);
    await expectVersError(await post('/vm/new_root', {}), 400);
    await expectVersError(await post('/vm/new_root', { vm_config: { kernel_name: 'vmlinuz-6.1' } }), 404, 'kernel vmlinuz-6.1 not found');
    await expectVersError(await post('/vm/new_root', { vm_config: { image_name: 'ubuntu' } }), 404, 'image ubuntu not found');
    await expectVersError(await s.api('/api/v1/vm/new_root', { method: 'POST', json: { vm_config: {} } }), 401);
    // Nothing was imported for these.
    expect((await get('/repos/snapfork/images', bob)).status).toBe(404);
  });

  it('imports the base image as snapfork/images:default on first use; boots it with wait_boot=true, sized and labelled as asked, its file system grown to the disk', async () => {
    await expectVersError(await post('/vm/new_root', { vm_config: { fs_size_mib: 100 } }), 400, 'fs_size_mib must be an integer from 512 (the size of image default) to 65536');
    // The 400 came after the import: the image is there, readable to any signed-in user.
    const tag = await imageTag();
    expect(tag.commit_id).toMatch(UUID);
    const tree = await (await get('/repos/snapfork/images/tags/default/tree', bob)).json();
    expect(tree.map((e: { path: string }) => e.path).sort()).toEqual(['rootfs.img', 'snapfork-vm.json']);

    const res = await s.api('/api/v1/vm/new_root?wait_boot=true', {
      method: 'POST',
      token: labs,
      json: { vm_config: { vcpu_count: 2, mem_size_mib: 320, fs_size_mib: 1024, image_name: 'default', kernel_name: 'default.bin', labels: { team: 'ml', run: '7' } } },
    });
    expect(res.status).toBe(201);
    const { vm_id } = await res.json();
    expect(vm_id).toMatch(UUID);
    const vm = { vm_id, owner_id: expect.any(String), state: 'running', created_at: expect.any(String), labels: { team: 'ml', run: '7' } };
    expect(await status(vm_id)).toEqual(vm);
    expect(await (await get('/vms')).json()).toEqual([vm]);

    expect((await exec(vm_id, ['nproc'])).stdout).toBe('2\n');
    const memKib = Number(/MemTotal:\s+(\d+)/.exec((await exec(vm_id, ['cat', '/proc/meminfo'])).stdout)![1]);
    expect(memKib).toBeGreaterThan(256 * 1024);
    // df -k: the root file system of the 512 MiB image now spans the 1024 MiB disk.
    const rootKib = Number((await exec(vm_id, ['df', '-k', '/'])).stdout.trim().split('\n')[1].split(/\s+/)[1]);
    expect(rootKib).toBeGreaterThan(900 * 1024);
    expect((await s.api(`/api/v1/vm/${vm_id}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it('answers wait_boot=false at once with the VM booting; it runs on its own', async () => {
    const res = await post('/vm/new_root?wait_boot=false', { vm_config: {} });
    expect(res.status).toBe(201);
    const { vm_id } = await res.json();
    // The answer came before the guest could have booted (seconds under TCG).
    expect(await status(vm_id)).toMatchObject({ state: 'booting', labels: {} });
    let state = 'booting';
    while (state === 'booting') state = (await status(vm_id)).state;
    expect(state).toBe('running');
    expect(await exec(vm_id, ['echo', 'up'])).toMatchObject({ exit_code: 0, stdout: 'up\n' });
    expect((await s.api(`/api/v1/vm/${vm_id}`, { method: 'DELETE', token: labs })).status).toBe(200);
  });

  it("a dataset fork's VM boots the base image with the tag's files read-only at /data; a second VM of it shares one image", async () => {
    const alice = await s.token('alice');
    const fork = await post('/repositories/fork', { source_org: 'labs', source_repo: 'data', source_tag: 'v1', repo_name: 'data-fork' }, alice);
    expect(fork.status).toBe(201);
    const { vm_id } = await fork.json();
    expect((await status(vm_id, alice)).state).toBe('sleeping');

    const listing = await exec(vm_id, ['sh', '-c', 'cd /data && find . -path ./lost+found -prune -o -print | sort'], alice);
    expect(listing).toMatchObject({ exit_code: 0, stdout: '.\n./a.csv\n./sub\n./sub/blob.bin\n' });
    expect((await exec(vm_id, ['cat', '/data/a.csv'], alice)).stdout).toBe('x,y\n1,2\n');
    const digest = createHash('sha256').update(blob).digest('hex');
    expect((await exec(vm_id, ['sha256sum', '/data/sub/blob.bin'], alice)).stdout).toBe(`${digest}  /data/sub/blob.bin\n`);
    const write = await exec(vm_id, ['sh', '-c', 'echo no > /data/new'], alice);
    expect(write.exit_code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);

    // from_commit of the same dataset: another VM, the same image.
    const second = await post('/vm/from_commit', { ref: 'data:v1' });
    expect(second.status).toBe(201);
    const other = (await second.json()).vm_id;
    expect((await exec(other, ['sha256sum', '/data/sub/blob.bin'])).stdout).toBe(`${digest}  /data/sub/blob.bin\n`);
    expect((await readdir(join(s.dataDir, 'datasets'))).filter((name) => name.endsWith('.img'))).toHaveLength(1);
    for (const [id, token] of [[vm_id, alice], [other, labs]] as const) {
      expect((await s.api(`/api/v1/vm/${id}`, { method: 'DELETE', token })).status).toBe(200);
    }
  });

  it("commits a dataset fork's VM: the dataset's entries unchanged, its root disk and machine in .snapfork-vm/; a VM of the tag resumes with both and /data", async () => {
    const alice = await s.token('alice');
    const post = (path: string, json?: unknown) => s.api(`/api/v1${path}`, { method: 'POST', token: alice, json });
    type Entry = { path: string; chunks: { digest: string; size: number }[] };
    const manifestOf = async (repo: string, commitId: string) => ((await (await get(`/repos/${repo}/commits/${commitId}/manifest`, alice)).json()) as { entries: Entry[] }).entries;
    const sh = async (vmId: string, line: string) => {
      const { exit_code, stdout, stderr } = await exec(vmId, ['sh', '-c', line], alice);
      expect({ exit_code, stderr }).toEqual({ exit_code: 0, stderr: '' });
      return stdout as string;
    };
    const listData = 'cd /data && find . -path ./lost+found -prune -o -print | sort';
    const fork = await post('/repositories/fork', { source_org: 'labs', source_repo: 'data', source_tag: 'v1', repo_name: 'data-work' });
    expect(fork.status).toBe(201);
    const { vm_id: worker, commit_id: forkCommit } = await fork.json();
    // /root is on the root disk; /tmp is a tmpfs, in the guest's memory only.
    await sh(worker, 'echo notes > /root/notes.txt && echo in-memory > /tmp/memory.txt');

    const res = await post(`/vm/${worker}/commit`, { name: 'with-notes' });
    expect(res.status).toBe(201);
    const { commit_id: committed } = await res.json();
    const lineage = (await (await get(`/vm/commits/${committed}/parents`, alice)).json()) as { id: string; parent_vm_id: string | null }[];
    expect(lineage.slice(0, 2)).toMatchObject([{ id: committed, parent_vm_id: worker }, { id: forkCommit }]);
    expect(await sh(worker, 'cat /root/notes.txt')).toBe('notes\n');

    // The dataset's entries are the fork's, chunk for chunk; the VM's disk and machine sit in .snapfork-vm/.
    const before = await manifestOf('alice/data-work', forkCommit);
    const after = await manifestOf('alice/data-work', committed);
    expect(after.filter((e) => !e.path.startsWith('.snapfork-vm'))).toEqual(before);
    expect(after.filter((e) => e.path.startsWith('.snapfork-vm')).map((e) => e.path)).toEqual([
      '.snapfork-vm',
      '.snapfork-vm/device.state',
      '.snapfork-vm/machine.json',
      '.snapfork-vm/memory.ram',
      '.snapfork-vm/rootfs.img',
    ]);
    // The root disk is the base image's chunks but where the VM wrote.
    const imageCommit = (await imageTag()).commit_id;
    const baseDisk = (await manifestOf('snapfork/images', imageCommit)).find((e) => e.path === 'rootfs.img')!.chunks;
    const savedDisk = after.find((e) => e.path === '.snapfork-vm/rootfs.img')!.chunks;
    const baseDigests = new Set(baseDisk.map((c) => c.digest));
    const rewritten = savedDisk.filter((c) => !baseDigests.has(c.digest)).reduce((n, c) => n + c.size, 0);
    expect(savedDisk.reduce((n, c) => n + c.size, 0)).toBe(baseDisk.reduce((n, c) => n + c.size, 0));
    expect(rewritten).toBeGreaterThan(0);
    expect(rewritten).toBeLessThan(16 * 1024 * 1024);

    expect((await post('/repositories/data-work/tags', { tag_name: 'v2', commit_id: committed })).status).toBe(201);
    const resumed = (await (await post('/vm/from_commit', { ref: 'data-work:v2' })).json()).vm_id;
    expect(await sh(resumed, 'cat /root/notes.txt /tmp/memory.txt')).toBe('notes\nin-memory\n');
    expect(await sh(resumed, listData)).toBe('.\n./a.csv\n./sub\n./sub/blob.bin\n');
    expect(await sh(resumed, 'sha256sum /data/sub/blob.bin')).toBe(`${createHash('sha256').update(blob).digest('hex')}  /data/sub/blob.bin\n`);
    // Every VM of the dataset, whichever commit, mounts the one image of it.
    expect((await readdir(join(s.dataDir, 'datasets'))).filter((name) => name.endsWith('.img'))).toHaveLength(1);

    // A fork of the new tag wakes on the saved disk too, and its commit keeps the disk where it was.
    // Its dataset image is built again (as on another server): the resumed kernel, which cached the
    // first image's superblock, still reads it.
    for (const name of await readdir(join(s.dataDir, 'datasets'))) if (name.endsWith('.img')) await rm(join(s.dataDir, 'datasets', name));
    const again = await post('/repositories/fork', { source_org: 'alice', source_repo: 'data-work', source_tag: 'v2', repo_name: 'data-again' });
    const { vm_id: forked, commit_id: againCommit } = await again.json();
    expect(await sh(forked, `cat /root/notes.txt /tmp/memory.txt && echo more >> /root/notes.txt && ${listData} && cat a.csv`)).toBe('notes\nin-memory\n.\n./a.csv\n./sub\n./sub/blob.bin\nx,y\n1,2\n');
    const second = (await (await post(`/vm/${forked}/commit`)).json()).commit_id;
    const secondTree = await manifestOf('alice/data-again', second);
    expect(secondTree.filter((e) => !e.path.startsWith('.snapfork-vm'))).toEqual(before);
    const secondDisk = secondTree.find((e) => e.path === '.snapfork-vm/rootfs.img')!.chunks;
    const savedDigests = new Set(savedDisk.map((c) => c.digest));
    expect(secondDisk.filter((c) => !savedDigests.has(c.digest)).reduce((n, c) => n + c.size, 0)).toBeLessThan(16 * 1024 * 1024);
    expect((await manifestOf('alice/data-again', againCommit)).find((e) => e.path === '.snapfork-vm/rootfs.img')!.chunks).toEqual(savedDisk);
    for (const id of [worker, resumed, forked]) expect((await s.api(`/api/v1/vm/${id}`, { method: 'DELETE', token: alice })).status).toBe(200);
  });

  it('413 for a dataset past SNAPFORK_VM_MAX_DATASET_BYTES (its fork VM sleeps on); 422 for a bad snapfork-vm.json', async () => {
    await expectVersError(await post('/vm/from_commit', { ref: 'big:v1' }), 413, 'a dataset of 1048577 bytes is more than the 1048576 a VM mounts at /data');
    const alice = await s.token('alice');
    const fork = await post('/repositories/fork', { source_org: 'labs', source_repo: 'big', source_tag: 'v1', repo_name: 'big-fork' }, alice);
    const { vm_id } = await fork.json();
    await expectVersError(await post(`/vm/${vm_id}/exec`, { command: ['ls', '/data'] }, alice), 413);
    expect((await status(vm_id, alice)).state).toBe('sleeping');

    await expectVersError(await post('/vm/from_commit', { ref: 'bad:v1' }), 422, 'snapfork-vm.json: vcpu_count must be an integer from 1 to 4');
  });

  it('a second start with the same assets makes no commit and stores no chunk; rebuilt assets move the tag, storing only the changed chunks', async () => {
    const before = { tag: await imageTag(), commits: await imageCommits(), chunks: s.chunkCount() };
    expect(before.commits).toBe(1);
    // No VM may run: new_root stops at the cap, after the import.
    s = await s.restart({ SNAPFORK_VM_MAX_RUNNING: '0' });
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    await expectVersError(await post('/vm/new_root', { vm_config: {} }), 429);
    expect(await imageTag()).toEqual(before.tag);
    expect(await imageCommits()).toBe(1);
    expect(s.chunkCount()).toBe(before.chunks);

    // Assets rebuilt with one changed byte near the end of the image's data.
    const rebuilt = await tempDir();
    await mkdir(rebuilt, { recursive: true });
    for (const name of ['vmlinux', 'initrd.cpio']) await copyFile(join(assets, name), join(rebuilt, name));
    await execFileAsync('cp', ['--sparse=always', join(assets, 'rootfs.img'), join(rebuilt, 'rootfs.img')]);
    await execFileAsync('sh', ['-c', `printf 'Z' | dd of=${join(rebuilt, 'rootfs.img')} bs=1 seek=4096 conv=notrunc 2>/dev/null`]);
    const { stdout } = await execFileAsync('sha256sum', [join(rebuilt, 'rootfs.img')]);
    await writeFile(join(rebuilt, 'assets.json'), JSON.stringify({ files: { 'rootfs.img': stdout.split(' ')[0] } }));
    s = await s.restart({ SNAPFORK_VM_ASSETS: rebuilt, SNAPFORK_VM_MAX_RUNNING: '0' });
    labs = await s.token('alice', { org: 'labs' });
    bob = await s.token('bob');
    await expectVersError(await post('/vm/new_root', { vm_config: {} }), 429);
    const moved = await imageTag();
    expect(moved.commit_id).not.toBe(before.tag.commit_id);
    expect(await imageCommits()).toBe(2);
    // One changed byte: the chunk around it, and nothing else, is new.
    expect(s.chunkCount() - before.chunks).toBeGreaterThanOrEqual(1);
    expect(s.chunkCount() - before.chunks).toBeLessThanOrEqual(2);
  });
});

describe('a server without guest assets', () => {
  let s: TestServer;
  afterAll(() => s?.stop());

  it('answers 503 in the Vers envelope, naming the build script, for new_root and for a dataset VM', async () => {
    s = await startTestServer({ SNAPFORK_VM_ASSETS: await tempDir() });
    const labs = await s.token('alice', { org: 'labs' });
    expect((await s.api('/api/v1/repositories', { method: 'POST', token: labs, json: { name: 'data' } })).status).toBe(201);
    await s.pushFiles(labs, 'labs/data', 'v1', { 'a.csv': 'x\n' });
    const post = (path: string, json: unknown) => s.api(`/api/v1${path}`, { method: 'POST', token: labs, json });
    await expectVersError(await post('/vm/new_root', { vm_config: {} }), 503, /build them with scripts\/vm\/build-guest\.sh/);
    await expectVersError(await post('/vm/from_commit', { ref: 'data:v1' }), 503, /scripts\/vm\/build-guest\.sh/);
    expect(await (await s.api('/api/v1/vms', { token: labs })).json()).toEqual([]);
  });
});
