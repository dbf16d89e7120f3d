/**
 * QemuRuntime with real QEMU (TCG) booting the real guest assets. Boots are few (each costs a
 * couple of seconds of a shared core): two VMs serve every test, a third boot fails on purpose.
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDomainError } from '../../src/domain/errors.js';
import { MAX_EXEC_OUTPUT, type VmSpec } from '../../src/domain/ports/vm-runtime.js';
import { HOLD_MARKER } from '../../src/runtime/qemu/boot-templates.js';
import type { ExportDisk } from '../../src/runtime/qemu/disk-export.js';
import { QemuRuntime, type QemuVm } from '../../src/runtime/qemu/qemu-runtime.js';
import { FileSource } from '../../src/runtime/qemu/qemu-snapshot.js';
import { buildVmAssets, quietLog } from '../support/vm-assets.js';
import { tempDir } from '../support/trees.js';

const sha256File = async (path: string) => {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
};

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const text = (bytes: Buffer) => bytes.toString('utf8');

describe('QemuRuntime', () => {
  let dir: string;
  let runtimeDir: string;
  let memoryDir: string;
  let baseImage: string;
  let baseDigest: string;
  let runtime: QemuRuntime;
  let vmA: QemuVm;
  let vmB: QemuVm;
  let leftover: { dir: string; pid: number; exited: Promise<unknown[]> };

  // Until the NBD server of src/runtime/nbd/ is merged here, QEMU opens the base image file
  // itself; with it, the export serves the spec's DiskSource at socketPath instead.
  const exportImage: ExportDisk = async () => ({ filename: baseImage, close: async () => undefined });

  const spec = async (hostname: string): Promise<VmSpec> => ({
    id: randomUUID(),
    vcpuCount: 1,
    memSizeMib: 256,
    disk: await FileSource.of(baseImage),
    identity: { hostname, machineId: randomUUID().replaceAll('-', '') },
  });

  beforeAll(async () => {
    const assets = await buildVmAssets();
    dir = await tempDir('snapfork-qemu-');
    baseImage = join(dir, 'rootfs.img');
    await copyFile(join(assets, 'rootfs.img'), baseImage);
    baseDigest = await sha256File(baseImage);
    runtimeDir = join(dir, 'vms');

    // What a crashed server leaves: a work directory whose recorded process still runs there.
    const leftoverDir = join(runtimeDir, randomUUID());
    await mkdir(leftoverDir, { recursive: true });
    const orphan = spawn('sleep', ['600'], { cwd: leftoverDir, detached: true, stdio: 'ignore' });
    leftover = { dir: leftoverDir, pid: orphan.pid!, exited: once(orphan, 'exit') };
    await writeFile(join(leftover.dir, 'qemu.pid'), `${leftover.pid}\n`);

    memoryDir = join('/dev/shm', `snapfork-test-${randomUUID()}`);
    runtime = await QemuRuntime.open({ runtimeDir, memoryDir, assetsDir: assets, exportDisk: exportImage, cgroups: 'auto', log: quietLog });
    [vmA, vmB] = await Promise.all([runtime.start(await spec('vm-a')), runtime.start(await spec('vm-b'))]);
  });

  afterAll(async () => {
    await runtime?.close();
    if (leftover?.pid && isAlive(leftover.pid)) process.kill(leftover.pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kills and removes what a crashed server left in its runtime directory', async () => {
    await expect(stat(leftover.dir)).rejects.toMatchObject({ code: 'ENOENT' });
    const [, signal] = await leftover.exited;
    expect(signal).toBe('SIGKILL');
  });

  it('boots to running and execs echo', async () => {
    expect(vmA.state()).toBe('running');
    const result = await vmA.exec({ command: ['echo', 'hello'] });
    expect({ exitCode: result.exitCode, stdout: text(result.stdout), stderr: text(result.stderr), truncated: result.truncated }).toEqual({
      exitCode: 0,
      stdout: 'hello\n',
      stderr: '',
      truncated: false,
    });
  });

  it('passes env, stdin and the working directory, and answers a nonzero exit code and stderr', async () => {
    const result = await vmA.exec({
      command: ['sh', '-c', 'echo "$GREETING $(cat) in $(pwd) with $PATH"; echo oops >&2; exit 3'],
      env: { GREETING: 'hi' },
      stdin: Buffer.from('from stdin'),
      workingDir: '/tmp',
    });
    expect(result.exitCode).toBe(3);
    expect(text(result.stdout)).toBe('hi from stdin in /tmp with /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
    expect(text(result.stderr)).toBe('oops\n');
    expect((await vmA.exec({ command: ['no-such-command'] })).exitCode).toBe(127);
  });

  it('kills a command at its timeout, children included, and answers 124', async () => {
    // The shell waits on its child sleep, which would hold the output open if only the shell died.
    const result = await vmA.exec({ command: ['sh', '-c', 'echo started; sleep 600; echo never'], timeoutSecs: 1 });
    expect(result.exitCode).toBe(124);
    const left = await vmA.exec({ command: ['sh', '-c', 'ps -o args | grep -c "^sleep 600" || true'] });
    expect(text(left.stdout)).toBe('0\n');
  });

  it('cuts output at MAX_EXEC_OUTPUT and says so', async () => {
    const result = await vmA.exec({ command: ['head', '-c', String(MAX_EXEC_OUTPUT + 100), '/dev/zero'] });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.length).toBe(MAX_EXEC_OUTPUT);
    expect(result.truncated).toBe(true);
  });

  it('keeps writes in the VM overlay across execs, never in the base image', async () => {
    expect((await vmA.exec({ command: ['sh', '-c', 'echo kept > /root/marker && sync'] })).exitCode).toBe(0);
    expect(text((await vmA.exec({ command: ['cat', '/root/marker'] })).stdout)).toBe('kept\n');
    expect((await vmB.exec({ command: ['cat', '/root/marker'] })).exitCode).not.toBe(0);
    expect(await sha256File(baseImage)).toBe(baseDigest);
  });

  it('gives each VM its own hostname and machine-id', async () => {
    const identity = async (vm: QemuVm) => text((await vm.exec({ command: ['sh', '-c', 'hostname; cat /etc/machine-id'] })).stdout);
    const [a, b] = await Promise.all([identity(vmA), identity(vmB)]);
    expect(a).toMatch(/^vm-a\n[0-9a-f]{32}\n$/);
    expect(b).toMatch(/^vm-b\n[0-9a-f]{32}\n$/);
    expect(a.split('\n')[1]).not.toBe(b.split('\n')[1]);
  });

  it('boots a later VM of the same shape from the kernel an earlier boot held (a boot template), with its own identity and the host clock', async () => {
    const consoleOf = (vm: QemuVm) => readFile(join(vm.workDir, 'console.log'), 'latin1');
    // The template's clock stopped when it was saved, during the first two boots: let time pass.
    await vmA.exec({ command: ['sleep', '2'] });
    const before = Math.floor(Date.now() / 1000);
    const vmC = await runtime.start(await spec('vm-c'));
    try {
      expect(await consoleOf(vmA)).toContain(HOLD_MARKER);
      expect(await consoleOf(vmC)).not.toContain(HOLD_MARKER); // it resumed past the hold
      const [hostname, machineId, seconds] = text((await vmC.exec({ command: ['sh', '-c', 'hostname; cat /etc/machine-id; date +%s'] })).stdout).split('\n');
      expect(hostname).toBe('vm-c');
      expect(machineId).toMatch(/^[0-9a-f]{32}$/);
      expect(machineId).not.toBe(text((await vmA.exec({ command: ['cat', '/etc/machine-id'] })).stdout).trim());
      expect(Number(seconds)).toBeGreaterThanOrEqual(before);
    } finally {
      await vmC.stop();
    }
  });

  it('boots the kernel when the boot template does not load, and saves a new template', async () => {
    const templates = join(memoryDir, 'templates');
    const states = async () => (await readdir(templates)).filter((name) => name.endsWith('.dev'));
    const [broken] = await states();
    await writeFile(join(templates, broken!), 'not a migration stream');
    const vmD = await runtime.start(await spec('vm-d'));
    try {
      expect(await readFile(join(vmD.workDir, 'console.log'), 'latin1')).toContain(HOLD_MARKER);
      expect(text((await vmD.exec({ command: ['hostname'] })).stdout)).toBe('vm-d\n');
      const now = await states();
      expect(now).toHaveLength(1);
      expect(now[0]).not.toBe(broken);
    } finally {
      await vmD.stop();
    }
  });

  it('refuses exec while paused and runs again after resume', async () => {
    await vmA.pause();
    await vmA.pause(); // idempotent
    expect(vmA.state()).toBe('paused');
    const refused = await vmA.exec({ command: ['true'] }).catch((error: unknown) => error);
    expect(isDomainError(refused) && refused.kind).toBe('conflict');
    await vmA.resume();
    expect(vmA.state()).toBe('running');
    expect((await vmA.exec({ command: ['echo', 'back'] })).exitCode).toBe(0);
  });

  it('marks a VM whose process is killed dead and tells onExit', async () => {
    const exited = new Promise<string>((resolve) => vmB.onExit(resolve));
    process.kill(vmB.pid!, 'SIGKILL');
    expect(await exited).toContain('SIGKILL');
    expect(vmB.state()).toBe('dead');
    const refused = await vmB.exec({ command: ['true'] }).catch((error: unknown) => error);
    expect(isDomainError(refused) && refused.kind).toBe('conflict');
    await vmB.stop();
    await expect(stat(vmB.workDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('stop() leaves no process and no work directory', async () => {
    const pid = vmA.pid!;
    await vmA.stop();
    await vmA.stop(); // idempotent
    expect(isAlive(pid)).toBe(false);
    expect(vmA.state()).toBe('dead');
    await expect(stat(vmA.workDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects a boot that fails, with the console saying why, and leaves nothing behind', async () => {
    const notExt4 = join(dir, 'zeros.img');
    await writeFile(notExt4, Buffer.alloc(1024 * 1024));
    const failingDir = join(dir, 'vms-failing');
    const failing = await QemuRuntime.open({
      runtimeDir: failingDir,
      assetsDir: await buildVmAssets(),
      exportDisk: async () => ({ filename: notExt4, close: async () => undefined }),
      cgroups: 'auto',
      log: quietLog,
    });
    try {
      await expect(failing.start(await spec('vm-c'))).rejects.toThrow(/did not boot: QEMU (exited|shut down)[^]*cannot mount \/dev\/vda/);
      // Only the shared directories stay, empty: no work directory, export or layer.
      expect((await readdir(failingDir)).sort()).toEqual(['disks', 'layers']);
      expect([...(await readdir(join(failingDir, 'disks'))), ...(await readdir(join(failingDir, 'layers')))]).toEqual([]);
    } finally {
      await failing.close();
    }
  });
});

