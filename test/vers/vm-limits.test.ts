/**
 * Memory and CPU limits of VM processes (issue 12), over real HTTP with the real QEMU runtime:
 * each VM's QEMU runs in a cgroup of its own (SNAPFORK_VM_CGROUPS=auto) limited to its guest's
 * RAM plus QEMU's overhead and one core per vCPU; the group goes with the VM (the runtime's with
 * its last VM), and the groups a killed server left are swept at the next start. Skipped, with the server's reason, where the
 * host's cgroups are not writable (the server then runs its VMs without them).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPU_PERIOD_US, QEMU_MEMORY_OVERHEAD_MIB } from '../../src/runtime/qemu/vm-cgroups.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { buildVmAssets } from '../support/vm-assets.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
const UNIFIED = existsSync(join(CGROUP_ROOT, 'cgroup.controllers'));

/** The cgroup directories of a process: v2's one, or v1's memory and cpu ones. */
async function groupsOf(pid: number): Promise<{ memory: string; cpu: string }> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  const pathOf = (controllers: string) => {
    const line = lines.find((l) => l.split(':')[1]!.split(',').includes(controllers));
    return line!.slice(line!.indexOf(':', line!.indexOf(':') + 1) + 1);
  };
  if (UNIFIED) {
    const dir = join(CGROUP_ROOT, pathOf(''));
    return { memory: dir, cpu: dir };
  }
  return { memory: join(CGROUP_ROOT, 'memory', pathOf('memory')), cpu: join(CGROUP_ROOT, 'cpu', pathOf('cpu')) };
}

const procsOf = async (dir: string) => (await readFile(join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);

/** Kills what runs in the groups under `dir`, removes them and `dir`. */
async function removeGroups(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    for (const pid of await procsOf(join(dir, entry.name))) process.kill(pid, 'SIGKILL');
    await rmdir(join(dir, entry.name)).catch(() => undefined);
  }
  await rmdir(dir).catch(() => undefined);
}

describe('VM processes in cgroups of their own', () => {
  let s: TestServer;
  let env: Record<string, string>;
  let labs: string;
  /** Why the server runs its VMs without cgroups, as it logged it; undefined when it runs them in cgroups. */
  let without: string | undefined;
  /** The runtime's groups, one per hierarchy (v1 has two): swept in afterAll whatever happens. */
  const runtimeGroups = new Set<string>();
  const logLines: string[] = [];
  const logDestination = { write: (line: string) => void logLines.push(line) };

  const start = async (dataDir?: string) => {
    s = await startTestServer(env, { logDestination, ...(dataDir && { dataDir }) });
    labs = await s.token('alice', { org: 'labs' });
    const warning = logLines.map((line) => JSON.parse(line) as { msg: string; reason?: string }).find((line) => line.msg.startsWith('VM processes run without cgroup'));
    without = warning?.reason;
  };

  beforeAll(async () => {
    env = { SNAPFORK_VM_ASSETS: await buildVmAssets(), SNAPFORK_VM_CGROUPS: 'auto' };
    await start();
  });
  afterAll(async () => {
    await s?.stop();
    for (const dir of runtimeGroups) {
      await removeGroups(dir);
      await rmdir(dirname(dir)).catch(() => undefined);
    }
  });

  it("runs a VM's QEMU in its own group, limited to its RAM and QEMU's overhead and one core per vCPU; DELETE removes it, and the runtime's with its last VM", async (ctx) => {
    if (without) ctx.skip(`the host's cgroups are not usable here: ${without}`);
    const res = await s.api('/api/v1/vm/new_root?wait_boot=true', { method: 'POST', token: labs, json: { vm_config: { vcpu_count: 2, mem_size_mib: 320 } } });
    expect(res.status).toBe(201);
    const { vm_id } = await res.json();
    const pid = Number(await readFile(join(s.dataDir, 'vms', vm_id, 'qemu.pid'), 'utf8'));
    const groups = await groupsOf(pid);
    for (const dir of Object.values(groups)) {
      expect(dir).toMatch(new RegExp(`/snapfork/[0-9a-f]{16}/${vm_id}$`));
      expect(await procsOf(dir)).toContain(pid);
      runtimeGroups.add(dirname(dir));
    }
    const memoryLimit = (320 + QEMU_MEMORY_OVERHEAD_MIB) * 1024 * 1024;
    if (UNIFIED) {
      expect(await readFile(join(groups.memory, 'memory.max'), 'utf8')).toBe(`${memoryLimit}\n`);
      expect(await readFile(join(groups.cpu, 'cpu.max'), 'utf8')).toBe(`${2 * CPU_PERIOD_US} ${CPU_PERIOD_US}\n`);
    } else {
      expect(await readFile(join(groups.memory, 'memory.limit_in_bytes'), 'utf8')).toBe(`${memoryLimit}\n`);
      expect(await readFile(join(groups.cpu, 'cpu.cfs_quota_us'), 'utf8')).toBe(`${2 * CPU_PERIOD_US}\n`);
      expect(await readFile(join(groups.cpu, 'cpu.cfs_period_us'), 'utf8')).toBe(`${CPU_PERIOD_US}\n`);
    }
    // The guest runs within them: exec answers.
    const exec = await s.api(`/api/v1/vm/${vm_id}/exec`, { method: 'POST', token: labs, json: { command: ['nproc'] } });
    expect(await exec.json()).toMatchObject({ exit_code: 0, stdout: '2\n' });

    expect((await s.api(`/api/v1/vm/${vm_id}`, { method: 'DELETE', token: labs })).status).toBe(200);
    for (const dir of Object.values(groups)) expect(existsSync(dir)).toBe(false);
    for (const dir of runtimeGroups) expect(existsSync(dir)).toBe(false);
  });

  it('at the next start, kills what runs in the groups a killed server left, and removes them', async (ctx) => {
    if (without) ctx.skip(`the host's cgroups are not usable here: ${without}`);
    expect(runtimeGroups.size).toBeGreaterThan(0);
    const { dataDir } = s;
    await s.stop();

    // What a killed server leaves: a VM's group with its process still in it.
    const orphan = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
    const exited = once(orphan, 'exit');
    const leftovers = [...runtimeGroups].map((dir) => join(dir, randomUUID()));
    for (const dir of leftovers) {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'cgroup.procs'), `${orphan.pid}\n`);
    }
    await start(dataDir);
    await exited;
    for (const dir of [...leftovers, ...runtimeGroups]) expect(existsSync(dir)).toBe(false);
  });
});
